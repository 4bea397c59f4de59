import CZeroMQ
import Foundation
import Logging
import UGenData
import UGenKernels
import UGenModel
import UGenRecords
import UGenStore
import UGenTraining

/// The coordinator: owns the configuration, the data stream, the vocabulary schedule and the run
/// directory; admits workers, gives each a pipeline stage, drives every step, combines the stages'
/// partial results (losses, gradient norms) and writes logs and checkpoints. It never touches
/// activations: those go from stage to stage directly.
///
/// One step, as the code below runs it:
///   1. take the step's global batch from the data stream and the step's vocabulary masks;
///   2. send each worker a `step` with its replica's rows (ids to first stages, targets to last ones);
///   3. collect every worker's `stepDone`: loss sums per micro-batch and squared gradient norms;
///   4. add the losses in global micro-batch order and the norms in stage order (the single process's
///      order, so both agree to the bit), and send `apply` with the learning rate and clip factor.
/// A lost worker abandons the step before `apply`: no update is ever half applied. The run then goes
/// back to its last checkpoint and continues once enough workers are present again.
public final class Coordinator {
    public struct Options {
        public var config: RunConfig
        public var runDirectory: String
        /// Control endpoint; port 0 picks a free one (printed, and passed to local workers).
        public var bind = "tcp://127.0.0.1:5555"
        public var secret = ""
        /// Workers to start on this machine (`ugen-worker join`), restarted when they die.
        public var localWorkers = 0
        /// The `ugen-worker` executable (default: next to this process's executable).
        public var workerExecutable: String?
        /// Where local worker i writes its output (`worker-i.log`); nil: this process's stdout and stderr.
        public var localWorkerLogs: String?
        /// `PATH` or `latest` (RUN/checkpoints/latest).
        public var resume: String?
        /// Stop (with a checkpoint) once this many steps are done; the schedule still spans train.steps.
        public var stopAfter: Int?
        /// Resume even when the checkpoint was trained on another tokenizer or dataset (`--allow-data-change`).
        public var allowDataChange = false
        /// `.curve(keys)`: the control socket is a CURVE server and admits only `authorizedKeys` (plus the
        /// keys it makes for its own local workers).
        public var security: Security = .plaintext
        public var authorizedKeys: Set<String> = []
        /// Seconds a step may take before it counts as hung (nil: max(60, 10 × cluster.lost_after_s)).
        public var stepDeadline: Double?
        public init(config: RunConfig, runDirectory: String) { self.config = config; self.runDirectory = runDirectory }
    }

    public enum Outcome: Equatable, Sendable { case finished(step: Int), stopped(step: Int) }

    let options: Options
    var config: RunConfig { options.config }
    public private(set) var endpoint = ""
    /// Called once the control socket is bound (tests learn the port from it).
    public var onBound: ((String) -> Void)?
    /// Called on the coordinator's thread at the end of every applied step, with the steps done
    /// (the control-plane benchmark times the steps with it).
    public var onStep: ((Int) -> Void)?
    var log = Logger(label: "ugen-coord")

    let data: RunData
    public let model: ModelConfig
    let runLog: RunLog
    var socket: ZMQSocket!
    var monitor: ZMQSocket?
    var local: LocalWorkers?
    /// Process ids of the workers started with `--local-workers` (any thread may read them).
    public var localWorkerPIDs: [Int32] { local?.pids ?? [] }

    // Workers: every hello gets a fresh id; a slot (replica·stages + stage) holds one id.
    struct Member {
        var identity: Data
        var hello: Hello
        var lastSeen: Date
        /// The name and host as they may be printed (validated at hello; escaped all the same).
        var name: String { PeerText.escape(hello.name, limit: 256) }
        var host: String { PeerText.escape(hello.host, limit: 256) }
        /// Whom its faults count against: its CURVE key, or its name in plain text.
        var principal: String { hello.publicKey ?? "name \(hello.name)" }
    }
    var members: [Int: Member] = [:]
    var identities: [Data: Int] = [:]
    var slots: [Int?] = []
    var nextWorkerId = 0
    var specs: [StageSpec] = []
    var stages = 0
    /// Set once a worker has been lost: elastic re-partitioning applies only to a run that already started.
    var recovering = false
    var generation = 0
    /// True while the slots' workers hold their assignment (collect watches them); every other member
    /// is a spare, dropped after `cluster.lost_after_s` without a heartbeat.
    var assigned = false
    /// Strikes and quarantines per peer (CURVE key, or worker name in plain text).
    var quarantine: Quarantine
    var refusals = RefusalLimiter()
    var budget = MessageBudget()

    // Where training stands.
    var step = 0
    var tokensSeen = 0
    let initialDataState: String
    var restorePoint: Checkpoint?
    /// `train.precision` of the run that wrote the `--resume` checkpoint.
    var checkpointPrecision: Precision?
    var lastCheckpointPath: String?

    public init(_ options: Options) throws {
        self.options = options
        quarantine = Quarantine(base: options.config.lostAfterSeconds)
        do {
            data = try RunData.open(options.config)
            model = options.config.modelConfig(vocabSize: data.vocabSize)
            initialDataState = data.source.state
            _ = try StageSpec.partition(model, stages: options.config.stages, seqLen: options.config.seqLen)
            runLog = try RunLog(directory: options.runDirectory)
            if let r = options.resume {
                let (path, ckpt) = try CheckpointFile.load(r, runDirectory: options.runDirectory)
                checkpointPrecision = try Self.checkCompatible(ckpt, path: path, config: options.config, model: model).precision
                if !options.allowDataChange { try Self.checkSameData(ckpt, path: path, data: data, config: options.config) }
                restorePoint = ckpt
                lastCheckpointPath = path
            }
        } catch {
            Self.recordFailedStart(runDirectory: options.runDirectory, error)
            throw error
        }
        for path in CheckpointFile.removeLeftovers(runDirectory: options.runDirectory) {
            runLog.event("leftover_removed", [("path", .string(path))])
        }
    }

    /// A start that failed leaves an `error` event (with the one-line message) in RUN/events.jsonl.
    public static func recordFailedStart(runDirectory: String, _ error: Error) {
        (try? RunLog(directory: runDirectory))?.event("error", [("message", .string("\(error)"))])
    }

    /// A checkpoint resumes only on the data it was trained on: the same tokenizer (content hash) and the
    /// same dataset (identity hash). `--allow-data-change` overrides.
    static func checkSameData(_ ckpt: Checkpoint, path: String, data: RunData, config: RunConfig) throws {
        let p = ckpt.progress, train = config.dataDir + "/train.h5"
        if !p.tokenizerHash.isEmpty && p.tokenizerHash != data.tokenizerHash {
            throw RunError.otherTokenizer(path: path, saved: p.tokenizerHash, train: train, dataDir: config.dataDir,
                                          current: data.tokenizerHash)
        }
        if !p.datasetHash.isEmpty && p.datasetHash != data.datasetHash {
            throw RunError.otherDataset(path: path, saved: p.datasetHash, train: train, dataDir: config.dataDir,
                                        current: data.datasetHash)
        }
    }

    /// A checkpoint resumes a run only if the model and the data are the same; the parallel layout
    /// (stages, replicas, micro-batches) may differ. Names the first key that differs.
    /// Returns the checkpoint's own run config.
    @discardableResult
    static func checkCompatible(_ ckpt: Checkpoint, path: String, config: RunConfig, model: ModelConfig) throws -> RunConfig {
        let saved = try RunConfig.parse(yaml: ckpt.progress.configYAML, source: "\(path) (config)")
        let mustMatch = RunConfig.keys.filter { $0.name.hasPrefix("model.") || $0.name.hasPrefix("vocab_schedule.") }.map(\.name)
            + ["data.seq_len", "data.batch_rows", "data.seed", "train.seed"]
        for name in mustMatch where saved.value(of: name) != config.value(of: name) {
            throw RunError.otherSetting(path: path, key: name, saved: saved.value(of: name), current: config.value(of: name))
        }
        if let d = ckpt.model.firstDifference(from: model) { throw RunError.otherModel(path: path, difference: d) }
        return saved
    }

    // Kept by the message side (Coordinator+Messages.swift).
    /// What each worker last said it was doing (from its heartbeats).
    var status: [Int: String] = [:]
    /// Each worker's heartbeat socket (to probe it), and its answers to the latest probe (nil: not waiting).
    var heartbeatIdentity: [Int: Data] = [:]
    var probeAnswers: [Int: WaitReport?] = [:]

    var nextExpiryScan = Date.distantPast
    /// This process's instance id, in assignments and heartbeat replies: a worker that was assigned by a
    /// coordinator that has since been killed and restarted notices the new id and joins again, even when
    /// it was idle between steps and has nothing else to say.
    let instance = String(UInt64.random(in: 1...UInt64.max), radix: 36)

    // MARK: The run

    /// Runs to the end; a failure (a bind error, a non-finite step, …) leaves an `error` event.
    public func run() throws -> Outcome {
        do { return try runToEnd() } catch {
            runLog.event("error", [("message", .string("\(error)")), ("step", .int(step))])
            throw error
        }
    }

    func runToEnd() throws -> Outcome {
        socket = try ZMQSocket(.router)
        var localKeys: [CurveKeyPair] = []
        if let keys = options.security.keys {
            localKeys = try (0..<options.localWorkers).map { _ in try CurveKeyPair.generate() }
            ZAPHandler.shared.allow(options.authorizedKeys.union(localKeys.map(\.publicKey)))
            try socket.makeCurveServer(keys)
        }
        try socket.set(ZMQ_MAXMSGSIZE, int64: maxFrameBytes)
        try socket.set(ZMQ_ROUTER_MANDATORY, 1)
        // A worker whose queue stays full (it stopped reading its control socket) fails the send after 2 s
        // (it is then lost) instead of blocking the coordinator for ever; replies to peers are never waited for.
        try socket.set(ZMQ_SNDTIMEO, 2000)
        // Handshakes that fail before ZAP is asked (plain text or garbage at a CURVE server) are logged too.
        monitor = try socket.monitor(events: ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
        endpoint = try socket.bind(options.bind)
        log.info("listening on \(endpoint) (\(options.security == .plaintext ? "plain text" : "CURVE, \(options.authorizedKeys.count) admitted worker keys")) for \(config.stages * config.replicas) workers (\(config.stages) stages × \(config.replicas) replicas)")
        onBound?(endpoint)
        try runLog.writeConfig(config.yaml)
        if let ckpt = restorePoint {
            try rewind(to: ckpt)
            log.info("resuming from \(lastCheckpointPath ?? "?") at step \(step)")
            notePrecisionChange()
        } else {
            runLog.event("start", [("steps", .int(config.steps)), ("stages", .int(config.stages)), ("replicas", .int(config.replicas)),
                                   ("precision", .string(config.precision.rawValue))])
        }
        if options.localWorkers > 0 {
            local = try LocalWorkers(count: options.localWorkers, executable: options.workerExecutable,
                                     coordinator: endpoint.replacingOccurrences(of: "0.0.0.0", with: "127.0.0.1"),
                                     threads: config.threadsPerWorker, secret: options.secret, maxRestarts: config.maxRestarts,
                                     curve: options.security.keys.map { ($0.publicKey, localKeys) },
                                     logDirectory: options.localWorkerLogs, log: log)
        }
        defer { local?.stopAll() }
        stages = config.stages
        while true {
            do {
                try recruit()
                try assign()
                let outcome = try train()
                shutDown(slots.compactMap { $0 }, reason: outcomeReason(outcome))
                local?.waitAll(seconds: 5)
                return outcome
            } catch let lost as WorkerLost {
                try recover(from: lost)
            } catch let e as NonFiniteStep {
                shutDown(slots.compactMap { $0 }, reason: "run stopped: \(e)")
                local?.waitAll(seconds: 5)
                let latest = (try? CheckpointFile.resolve("latest", runDirectory: options.runDirectory)) ?? "nothing (no checkpoint yet)"
                throw RunError.stoppedNonFinite(reason: "\(e)", runDirectory: options.runDirectory, latest: latest)
            } catch is StopBeforeStart {
                log.info("stopped before training could start")
                shutDown(Array(members.keys), reason: "coordinator stopped")
                return .stopped(step: step)
            }
        }
    }

    func outcomeReason(_ o: Outcome) -> String {
        switch o { case .finished(let s): "run finished at step \(s)"; case .stopped(let s): "run stopped at step \(s)" }
    }

    /// The largest frame a worker may send: the biggest tensor, or a step's token arrays, with room.
    var maxFrameBytes: Int64 {
        let tensor = model.parameterShapes.map { $0.shape.reduce(1, *) }.max() ?? 0
        return Int64(max(tensor, config.batchRows * config.seqLen, model.vocabSize) * 8 + (1 << 20))
    }

    // MARK: Workers joining

    /// Waits until every slot of the layout has a worker (spares that joined earlier fill them first).
    ///
    /// Elastic (`cluster.elastic: true`): after a loss, when no replacement has come within
    /// `cluster.lost_after_s`, the workers present are re-partitioned into fewer stages (as many as
    /// they fill for every replica). The checkpoint does not depend on the layout, so the run goes on
    /// exactly as it would have on the full layout.
    func recruit() throws {
        slots = Array(repeating: nil, count: stages * config.replicas)
        var waiting = members.keys.sorted()
        let since = Date()
        assigned = false
        while true {
            for i in slots.indices where slots[i].map({ members[$0] == nil }) ?? false { slots[i] = nil }  // expired spares
            for id in waiting where members[id] != nil && slots.contains(where: { $0 == nil }) {
                slots[slots.firstIndex(where: { $0 == nil })!] = id
            }
            waiting = []
            if !slots.contains(where: { $0 == nil }) { return }
            if config.elastic && recovering && Date().timeIntervalSince(since) > config.lostAfterSeconds {
                let fits = members.count / config.replicas
                if fits >= 1 && fits < stages {
                    log.warning("elastic: no replacement within \(config.lostAfterSeconds) s; re-partitioning \(stages) stages onto \(fits)")
                    runLog.event("repartition", [("from_stages", .int(stages)), ("to_stages", .int(fits)),
                                                 ("replicas", .int(config.replicas)), ("step", .int(step))])
                    stages = fits
                    slots = Array(repeating: nil, count: stages * config.replicas)
                    waiting = members.keys.sorted()
                    continue
                }
            }
            if StopRequest.isSet { throw StopBeforeStart() }
            let joined = try pump(timeoutMs: 100).joined
            waiting = joined
            local?.restartDead()
        }
    }

    func assign() throws {
        generation += 1
        assigned = true
        for id in slots.compactMap({ $0 }) { members[id]?.lastSeen = Date() }
        specs = try StageSpec.partition(model, stages: stages, seqLen: config.seqLen)
        let endpoints = slots.map { members[$0!]!.hello.dataEndpoint }
        let keys = slots.map { members[$0!]!.hello.publicKey }
        let tensorIndex = restorePoint.map { c in Dictionary(uniqueKeysWithValues: c.params.indices.map { (c.params[$0].name, $0) }) }
        for (slot, id) in slots.enumerated() {
            let stage = slot % stages, replica = slot / stages
            let spec = specs[stage]
            var arrays: [Data] = []
            if let ckpt = restorePoint, let tensorIndex {
                for (name, _) in model.parameterShapes(for: spec) {
                    guard let i = tensorIndex[name] else { throw RunError.missingTensor(name) }
                    arrays += [bytes(ckpt.params[i].values), bytes(ckpt.adamM[i].values), bytes(ckpt.adamV[i].values)]
                }
            }
            let a = Assign(workerId: id!, stage: stage, replica: replica, stages: stages, spec: spec, model: model,
                           config: config.yaml,
                           previous: stage > 0 ? endpoints[slot - 1] : nil,
                           next: stage < stages - 1 ? endpoints[slot + 1] : nil,
                           replicaPeers: (0..<config.replicas).map { endpoints[$0 * stages + stage] },
                           previousKey: stage > 0 ? keys[slot - 1] : nil,
                           nextKey: stage < stages - 1 ? keys[slot + 1] : nil,
                           replicaPeerKeys: options.security == .plaintext ? nil : (0..<config.replicas).map { keys[$0 * stages + stage] ?? "" },
                           withTensors: restorePoint != nil, optimizerStep: restorePoint?.optimizerStep ?? 0,
                           generation: generation, coordinator: instance)
            try send(id!, WireMessage(.assign, a, arrays: arrays))
            let m = members[id!]!
            log.info("worker \(m.name) on \(m.host): stage \(stage + 1)/\(stages) \(spec), replica \(replica)")
            runLog.event("assign", [("worker", .string(m.name)), ("host", .string(m.host)), ("stage", .int(stage)),
                                    ("replica", .int(replica)), ("layers", .string(spec.description))])
        }
        _ = try collect(.ready, from: slots.map { $0! }, deadline: 120)
        log.info("all \(slots.count) workers ready; training from step \(step) to \(config.steps)")
    }

    // MARK: Training

    func train() throws -> Outcome {
        let m = config.microBatches, R = config.replicas
        let rowsPer = config.batchRows / (R * m), n = rowsPer * config.seqLen, perReplica = m * n
        let codebook = data.schedule.codebook
        // Squared norms each stage's worker sends (fixed until the next assignment, which a new train() follows).
        let parameterCounts = specs.map { model.parameterShapes(for: $0).count }
        var nonFinite = NonFiniteGuard(config)
        while step < config.steps {
            if StopRequest.isSet || (options.stopAfter.map { step >= $0 } ?? false) {
                try checkpoint()
                return .stopped(step: step)
            }
            let t0 = Date()
            let vocab = StepVocab.at(step: step, schedule: data.schedule, vocabSize: model.vocabSize)
            let batch = try data.source.batch(step: step, textOnly: data.schedule.isTextOnly(step: step))
            let maskSum = effectiveMaskSum(targets: batch.targets, mask: batch.mask, inactive: vocab.inactive)
            let order = StepOrder(step: step, microBatches: m, gradScale: Float(1 / max(maskSum, 1)), masked: vocab.inactive != nil)
            let orders = StepMessages(order: order, vocab: vocab, batch: batch, perReplica: perReplica)
            for (slot, id) in slots.enumerated() {
                try send(id!, frames: orders.frames(stage: slot % stages, of: stages, replica: slot / stages), kind: .step)
            }
            let done = try collect(.stepDone, from: slots.map { $0! }, deadline: stepDeadline, stepOf: step)

            // Combine in the single process's order: losses by global micro-batch, norms by stage.
            var lossSum = 0.0
            var tasks = TaskLosses()
            var squares: [Double] = [], stageOfSquares: [Int] = []
            var timings: [StageTiming] = []
            for (slot, id) in slots.enumerated() {
                let msg = done[id!]!.message, stage = slot % stages, r = slot / stages
                do {
                    guard let body = done[id!]!.stepDone else { throw ProtocolError.malformedBody(.stepDone) }
                    let count = parameterCounts[stage]
                    let out = try StepOutputs(msg, microBatches: m, head: stage == stages - 1, parameters: count)
                    for v in out.lossSums { lossSum += v }
                    if !out.taskSums.isEmpty { for i in 0..<3 { tasks.sum[i] += out.taskSums[i]; tasks.weight[i] += out.taskSums[3 + i] } }
                    if r == 0 {
                        squares += out.gradSquares
                        stageOfSquares += Array(repeating: stage, count: count)
                    }
                    let who = members[id!]!
                    timings.append(StageTiming(stage: stage, replica: r, worker: who.name, host: who.host, forwardMs: body.forwardMs,
                                               backwardMs: body.backwardMs, waitMs: body.waitMs, commMs: body.commMs,
                                               reduceBytesSent: body.reduceBytesSent, reduceBytesReceived: body.reduceBytesReceived,
                                               reduceMs: body.reduceMs, reduceWaitMs: body.reduceWaitMs,
                                               reduceIdleMs: body.reduceIdleMs, reduceWindowMs: body.reduceWindowMs))
                } catch {
                    // A worker that answers with nonsense is treated like one that failed: the step is dropped.
                    throw WorkerLost(workerId: id!, reason: "malformed stepDone: \(error)")
                }
            }
            let norm = globalNorm(squares)
            let lr = config.lrSchedule.lr(at: step)
            let loss = lossSum / max(maskSum, 1)
            if let what = NonFiniteGuard.problem(loss: loss, norm: norm) {
                // Never applied: the workers drop the gradients at the next step (no `apply` is sent).
                let stage = what == "loss" ? stages - 1 : stageOfSquares[squares.firstIndex { !$0.isFinite } ?? 0]
                let who = members[slots[stage]!]
                let producer = "pipeline stage \(stage + 1)/\(stages) (worker \(who?.name ?? "?") on \(who?.host ?? "?"))"
                func event(_ action: String) {
                    runLog.event("nonfinite", [("step", .int(step + 1)), ("quantity", .string(what)), ("stage", .int(stage)),
                                               ("worker", .string(who?.name ?? "?")), ("action", .string(action)),
                                               ("in_a_row", .int(nonFinite.inARow))])
                }
                do { _ = try nonFinite.check(step: step, loss: loss, norm: norm, stage: producer) } catch {
                    event("stopped")
                    throw error
                }
                event("skipped")
                log.warning("step \(step + 1): non-finite \(what) from \(producer): step skipped (\(nonFinite.inARow) in a row)")
                step += 1
                phaseEvents(after: step - 1)
                if config.checkpointEvery > 0 && step % config.checkpointEvery == 0 && step < config.steps { try checkpoint() }
                continue
            }
            _ = try nonFinite.check(step: step, loss: loss, norm: norm, stage: "")  // finite: ends a run of skips
            broadcast(.apply, Apply(step: step, lr: lr, clipScale: AdamW.clipScale(globalNorm: norm, maxNorm: config.gradClip)))
            step += 1
            if !quarantine.book.isEmpty {  // a step done forgives strikes
                for id in slots { if let m = members[id!] { quarantine.forgive(m.principal) } }
            }
            tokensSeen += Int(maskSum)
            let seconds = Date().timeIntervalSince(t0)
            runLog.metric(MetricsRecord(
                step: step, loss: loss, precision: config.precision.rawValue, lossText: tasks.mean(0), lossImg2Txt: tasks.mean(1),
                lossTxt2Img: tasks.mean(2), lr: lr, gradNorm: norm, tokens: Int(maskSum),
                tokensPerS: Double(config.batchRows * config.seqLen) / seconds, activeVisualIds: vocab.activeVisual,
                visualCodebook: codebook, stepMs: seconds * 1000, time: Date().timeIntervalSince1970, stages: timings))
            onStep?(step)
            phaseEvents(after: step - 1)
            if step % max(1, config.logEvery) == 0 || step == config.steps {
                log.info("step \(step)/\(config.steps)  loss \(String(format: "%.4f", loss))  lr \(String(format: "%.2e", lr))  grad norm \(String(format: "%.3f", norm))  \(Int(Double(config.batchRows * config.seqLen) / seconds)) tok/s  visual ids \(vocab.activeVisual)/\(codebook)")
            }
            if config.checkpointEvery > 0 && step % config.checkpointEvery == 0 && step < config.steps { try checkpoint() }
        }
        try checkpoint()
        runLog.event("finished", [("step", .int(step))])
        return .finished(step: step)
    }

    /// A step has this long before it counts as hung (generous: the first steps warm up).
    var stepDeadline: Double { options.stepDeadline ?? max(60, 10 * config.lostAfterSeconds) }

    func phaseEvents(after s: Int) {
        let sched = data.schedule
        guard sched.kind == .progressive else {
            if s == 0 { runLog.event("phase", [("phase", .string("vanilla: all visual ids active")), ("step", .int(0))]) }
            return
        }
        if sched.textOnlySteps > 0 && s + 1 == sched.textOnlySteps {
            runLog.event("phase", [("phase", .string("text-only over")), ("step", .int(s + 1))])
            log.info("phase: text-only steps over; \(sched.activeCount(step: s + 1)) visual ids active")
        }
        if s + 1 == sched.allActiveStep {
            runLog.event("phase", [("phase", .string("all visual ids active")), ("step", .int(s + 1))])
            log.info("phase: all \(sched.codebook) visual ids active")
        }
    }
}
