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
    private var socket: ZMQSocket!
    private var monitor: ZMQSocket?
    private var local: LocalWorkers?
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
    private var members: [Int: Member] = [:]
    private var identities: [Data: Int] = [:]
    private var slots: [Int?] = []
    private var nextWorkerId = 0
    private var specs: [StageSpec] = []
    private var stages = 0
    /// Set once a worker has been lost: elastic re-partitioning applies only to a run that already started.
    private var recovering = false
    private var generation = 0
    /// True while the slots' workers hold their assignment (collect watches them); every other member
    /// is a spare, dropped after `cluster.lost_after_s` without a heartbeat.
    private var assigned = false
    /// Strikes and quarantines per peer (CURVE key, or worker name in plain text).
    private var quarantine: Quarantine
    private var refusals = RefusalLimiter()
    private var budget = MessageBudget()

    // Where training stands.
    private(set) var step = 0
    private var tokensSeen = 0
    private let initialDataState: String
    private var restorePoint: Checkpoint?
    /// `train.precision` of the run that wrote the `--resume` checkpoint.
    private var checkpointPrecision: Precision?
    private var lastCheckpointPath: String?

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

    // MARK: The run

    /// Runs to the end; a failure (a bind error, a non-finite step, …) leaves an `error` event.
    public func run() throws -> Outcome {
        do { return try runToEnd() } catch {
            runLog.event("error", [("message", .string("\(error)")), ("step", .int(step))])
            throw error
        }
    }

    private func runToEnd() throws -> Outcome {
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

    private func outcomeReason(_ o: Outcome) -> String {
        switch o { case .finished(let s): "run finished at step \(s)"; case .stopped(let s): "run stopped at step \(s)" }
    }

    /// The largest frame a worker may send: the biggest tensor, or a step's token arrays, with room.
    private var maxFrameBytes: Int64 {
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
    private func recruit() throws {
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

    private func assign() throws {
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

    private func train() throws -> Outcome {
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
                                               reduceMs: body.reduceMs, reduceWaitMs: body.reduceWaitMs))
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
    private var stepDeadline: Double { options.stepDeadline ?? max(60, 10 * config.lostAfterSeconds) }

    private func phaseEvents(after s: Int) {
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

    // MARK: Checkpoints

    /// Gathers replica 0's tensors stage by stage and writes them as one layout-independent checkpoint.
    private func checkpoint() throws {
        let t0 = Date()
        let ids = (0..<stages).map { slots[$0]! }
        broadcast(.saveRequest, SaveRequest(step: step), to: ids)
        let replies = try collect(.saveReply, from: ids, deadline: 120)
        var params: [NamedTensor] = [], mm: [NamedTensor] = [], vv: [NamedTensor] = []
        var optimizerStep = 0
        for (stage, id) in ids.enumerated() {
            let msg = replies[id]!.message
            do {
                optimizerStep = try msg.decode(SaveReply.self).optimizerStep
                for (i, (name, shape)) in model.parameterShapes(for: specs[stage]).enumerated() {
                    let count = shape.reduce(1, *)
                    params.append(NamedTensor(name: name, shape: shape, values: try msg.array(3 * i, Float.self, count: count)))
                    mm.append(NamedTensor(name: name, shape: shape, values: try msg.array(3 * i + 1, Float.self, count: count)))
                    vv.append(NamedTensor(name: name, shape: shape, values: try msg.array(3 * i + 2, Float.self, count: count)))
                }
            } catch { throw WorkerLost(workerId: id, reason: "malformed saveReply: \(error)") }
        }
        let sched = data.schedule
        let progress = TrainingProgress(step: step, tokensSeen: tokensSeen, dataSeed: config.dataSeed, dataState: data.source.state,
                                        vocabKind: sched.kind.rawValue, vocabActive: sched.activeCount(step: step),
                                        vocabOrder: sched.order.map { Int32(sched.firstVisualId + $0) },
                                        rngStates: ["init_seed": UInt64(config.seed), "vocab_seed": UInt64(config.vocabSeed)],
                                        configYAML: config.yaml, tokenizerHash: data.tokenizerHash, datasetHash: data.datasetHash)
        let ckpt = Checkpoint(model: model, vocabLayout: data.layout.attributes, params: params, adamM: mm, adamV: vv,
                              optimizerStep: optimizerStep, progress: progress)
        let path = try CheckpointFile.save(ckpt, runDirectory: options.runDirectory, keep: config.keepCheckpoints)
        lastCheckpointPath = path
        let ms = Date().timeIntervalSince(t0) * 1000
        runLog.event("checkpoint", [("step", .int(step)), ("path", .string(path)), ("ms", .double(ms))])
        log.info("checkpoint \(path) (\(String(format: "%.0f", ms)) ms)")
    }

    // MARK: Failures

    /// A worker stopped answering or reported a failure: the current step is abandoned whole, the run
    /// goes back to its last checkpoint (or its start) and waits for enough workers.
    private func recover(from lost: WorkerLost) throws {
        recovering = true
        assigned = false
        if let m = members[lost.workerId] {
            log.error("worker \(m.name) lost: \(lost.reason)")
            runLog.event("lost", [("worker", .string(m.name)), ("host", .string(m.host)), ("reason", .string(lost.reason)),
                                  ("step", .int(step))])
            // The fault is this worker's: a strike against its key; from the second one it is quarantined.
            strike(m.principal, name: m.name, reason: lost.reason)
            // If it is still alive (a hung step, a stalled link) it is told so, and joins again afresh.
            socket.sendNow([m.identity] + WireMessage(.reset, Reset(reason: "declared lost: \(lost.reason)", rejoin: true)).frames)
            identities[m.identity] = nil
            members[lost.workerId] = nil
            heartbeatIdentity[lost.workerId] = nil
        } else {
            log.error("step \(step) abandoned: \(lost.reason)")
            runLog.event("abandoned", [("reason", .string(lost.reason)), ("step", .int(step))])
        }
        // Everyone else drops what they were doing; they keep their place and get a new assignment.
        broadcast(.reset, Reset(reason: "worker \(lost.workerId) lost"), to: Array(members.keys))
        try rewind(to: try lastCheckpointPath.map(CheckpointFile.read))
        log.info("continuing from step \(step) once \(stages * config.replicas) workers are present")
    }

    /// A checkpoint keeps fp32 master weights whatever the run's precision, so it resumes in either; when
    /// the precision changes, an event says so (the losses from here on are not the other precision's).
    private func notePrecisionChange() {
        guard let saved = checkpointPrecision, saved != config.precision else { return }
        runLog.event("precision", [("from", .string(saved.rawValue)), ("to", .string(config.precision.rawValue)),
                                   ("step", .int(step)), ("checkpoint", .string(lastCheckpointPath ?? ""))])
        log.info("checkpoint trained in \(saved.rawValue) resumes in \(config.precision.rawValue) (master weights are fp32 either way)")
    }

    /// Puts the run back where `ckpt` left it (nil: its start): step, tokens seen, the data stream, and
    /// metrics.jsonl cut after that step; the next assignment sends the checkpoint's tensors.
    private func rewind(to ckpt: Checkpoint?) throws {
        restorePoint = ckpt
        step = ckpt?.progress.step ?? 0
        tokensSeen = ckpt?.progress.tokensSeen ?? 0
        try data.source.restore(state: ckpt?.progress.dataState ?? initialDataState)
        try runLog.truncateMetrics(after: step)
        runLog.event("resume", [("step", .int(step)), ("checkpoint", .string(lastCheckpointPath ?? "initial weights"))])
    }

    // MARK: Messages

    struct WorkerLost: Error { var workerId: Int; var reason: String }
    struct StopBeforeStart: Error {}

    private func send(_ id: Int, _ msg: WireMessage) throws { try send(id, frames: msg.frames, kind: msg.kind) }

    /// Sends a message's frames (built once for many workers) to worker `id`.
    private func send(_ id: Int, frames: [Data], kind: Wire.Kind) throws {
        guard let m = members[id] else { throw WorkerLost(workerId: id, reason: "gone") }
        do { try socket.send([m.identity] + frames) } catch {
            throw WorkerLost(workerId: id, reason: "cannot send \(kind): \(error)")
        }
    }

    private func broadcast<B: Encodable>(_ kind: Wire.Kind, _ body: B, to ids: [Int]? = nil) {
        let frames = WireMessage(kind, body).frames
        for id in ids ?? slots.compactMap({ $0 }) { try? send(id, frames: frames, kind: kind) }
    }

    /// Tells `ids` the run is over and waits (at most 2 s) until each has answered with its own
    /// `shutdown`. Without the wait the process could exit — and close the control socket — before
    /// libzmq's I/O thread had put the messages on the wire, and a remote worker would learn of the
    /// end only by its coordinator timeout (seen on the network-namespace hosts under CURVE).
    private func shutDown(_ ids: [Int], reason: String) {
        broadcast(.shutdown, Shutdown(reason: reason), to: ids)
        var waiting = Set(ids)
        let start = Date()
        while !waiting.isEmpty && Date().timeIntervalSince(start) < 2 {
            guard let got = try? pump(timeoutMs: 50) else { break }
            for m in got.messages where m.message.kind == .shutdown { waiting.remove(m.worker) }
        }
        if !waiting.isEmpty {
            log.info("no goodbye within 2 s from worker(s) \(waiting.sorted().map(String.init).joined(separator: ", "))")
        }
    }

    /// Waits for one `kind` message from each of `ids`; throws `WorkerLost` when one of them fails,
    /// disconnects or falls silent.
    ///
    /// Each message costs O(1); the scan of every awaited worker for silence (and the local workers'
    /// restart check) runs at most every 100 ms, not after every batch of messages, which made a step
    /// O(workers²) with hundreds of workers answering one by one.
    private func collect(_ kind: Wire.Kind, from ids: [Int], deadline: Double, stepOf: Int? = nil) throws -> [Int: Inbound] {
        var got: [Int: Inbound] = [:]
        let wanted = Set(ids)
        let start = Date()
        var lastScan = start
        while got.count < ids.count {
            for inbound in try pump(timeoutMs: 100).messages {
                let id = inbound.worker, msg = inbound.message
                guard wanted.contains(id) else { continue }
                if msg.kind == kind {
                    if let expected = stepOf, let body = inbound.stepDone, body.step != expected {
                        log.warning("dropping a stale \(kind) for step \(body.step) from worker \(id)")
                        continue
                    }
                    got[id] = inbound
                    continue
                }
                if msg.kind == .failure {
                    let f = try? msg.decode(Failure.self)
                    let reason = PeerText.escape(f?.reason ?? "failure")
                    // A failure caused by a neighbour's data message is the sender's fault, not the reporter's.
                    // Only a neighbour's key can reach a data socket (its ZAP handler admits no other), so a
                    // failure naming any other key is the reporter's own fault (a lie or a bug).
                    if let key = f?.peerKey {
                        let reporter = members[id]?.name ?? "worker \(id)"
                        guard let culprit = members.first(where: { $0.value.hello.publicKey == key })?.key, culprit != id,
                              let a = slots.firstIndex(of: id), let b = slots.firstIndex(of: culprit),
                              (a / stages == b / stages && abs(a % stages - b % stages) == 1) || (a % stages == b % stages) else {
                            throw WorkerLost(workerId: id, reason: "blames CURVE key \(PeerText.escape(key, limit: 48)), which is none of its neighbours': \(reason)")
                        }
                        throw WorkerLost(workerId: culprit, reason: "sent \(reporter) a bad data message: \(reason)")
                    }
                    throw WorkerLost(workerId: id, reason: reason)
                }
                log.warning("unexpected \(msg.kind) from worker \(id) while waiting for \(kind)")
            }
            let now = Date()
            guard got.count < ids.count else { break }
            if now.timeIntervalSince(lastScan) >= 0.1 {
                lastScan = now
                for id in ids where got[id] == nil {
                    guard let m = members[id] else { throw WorkerLost(workerId: id, reason: "gone") }
                    if now.timeIntervalSince(m.lastSeen) > config.lostAfterSeconds {
                        throw WorkerLost(workerId: id, reason: "no heartbeat for \(config.lostAfterSeconds) s")
                    }
                }
                local?.restartDead()
            }
            if now.timeIntervalSince(start) > deadline {
                let missing = ids.filter { got[$0] == nil }
                let (culprit, why, waits) = diagnoseHang(missing: missing)
                runLog.event("hang", [("waiting_for", .string("\(kind)")),
                                      ("workers", .array(missing.map { .string(members[$0]?.name ?? "?") })),
                                      ("status", .array(missing.map { .string(status[$0] ?? "unknown") })),
                                      ("waits", .array(waits)), ("blamed", .string(members[culprit]?.name ?? "?"))])
                throw WorkerLost(workerId: culprit, reason: "no \(kind) within \(Int(deadline)) s: \(why)")
            }
            if StopRequest.isSet && kind == .ready { throw StopBeforeStart() }
        }
        return got
    }

    /// What each worker last said it was doing (from its heartbeats).
    private var status: [Int: String] = [:]
    /// Each worker's heartbeat socket (to probe it), and its answers to the latest probe (nil: not waiting).
    private var heartbeatIdentity: [Int: Data] = [:]
    private var probeAnswers: [Int: WaitReport?] = [:]

    /// A step is past its deadline: asks every worker of the layout what it waits for (micro-batch, peer,
    /// since when), logs who waits on whom, and follows the waits from the first late worker to the one
    /// that waits on nobody: that one is blamed (a cycle, or no answers, blames the first late worker).
    private func diagnoseHang(missing: [Int]) -> (culprit: Int, why: String, waits: [JSONValue]) {
        let layout = slots.compactMap { $0 }
        probeAnswers = [:]
        for id in layout {
            guard let hb = heartbeatIdentity[id] else { continue }
            socket.sendNow([hb] + WireMessage(.heartbeat, Heartbeat(workerId: id, coordinator: instance, probe: true)).frames)
        }
        let asked = Date()
        while Date().timeIntervalSince(asked) < 2 && probeAnswers.count < layout.count { _ = try? pump(timeoutMs: 50) }
        func place(_ id: Int) -> (stage: Int, replica: Int)? { slots.firstIndex(of: id).map { ($0 % stages, $0 / stages) } }
        func worker(stage: Int, replica: Int) -> Int? {
            guard (0..<stages).contains(stage), (0..<config.replicas).contains(replica) else { return nil }
            return slots[replica * stages + stage]
        }
        func name(_ id: Int) -> String { members[id]?.name ?? "worker \(id)" }
        var waitsOn: [Int: Int] = [:]
        var waits: [JSONValue] = []
        for id in layout {
            guard let (stage, replica) = place(id) else { continue }
            var fields: [(String, JSONValue)] = [("worker", .string(name(id))), ("stage", .int(stage)), ("replica", .int(replica))]
            switch probeAnswers[id] {
            case .none:
                log.warning("hang: \(name(id)) (stage \(stage + 1), replica \(replica)) did not answer the probe")
                fields.append(("answer", .string("none")))
            case .some(.none):
                log.warning("hang: \(name(id)) (stage \(stage + 1), replica \(replica)) waits on nobody (\(status[id] ?? "no status"))")
                fields.append(("answer", .string("not waiting")))
            case .some(.some(let w)):
                let from = w.fromReplica.flatMap { worker(stage: w.fromStage, replica: $0) }
                if let from { waitsOn[id] = from }
                let whom = from.map { "\(name($0)) (stage \(w.fromStage + 1))" } ?? "stage \(w.fromStage + 1)"
                let what = w.what == .reduce ? "the gradient reduce" : "the \(w.what.rawValue) of micro-batch \(w.microBatch)"
                log.warning("hang: \(name(id)) (stage \(stage + 1), replica \(replica)) waits for \(what) of step \(w.step) from \(whom) for \(String(format: "%.1f", w.seconds)) s")
                fields += [("waiting_for", .string(w.what.rawValue)), ("micro_batch", .int(w.microBatch)), ("step", .int(w.step)),
                           ("from", .string(from.map(name) ?? "?")), ("seconds", .double(w.seconds))]
            }
            waits.append(.object(fields))
        }
        guard let first = missing.first else { return (layout.first ?? -1, "no worker is late", waits) }
        var at = first, seen: Set<Int> = [first]
        while let next = waitsOn[at] {
            guard !seen.contains(next) else { return (first, "circular wait starting at \(name(first))", waits) }
            seen.insert(next)
            at = next
        }
        if at == first {
            let said = probeAnswers[first] == nil ? "did not answer what it waits for" : "waits on nobody"
            return (first, "\(name(first)) \(said) (\(status[first] ?? "no status"))", waits)
        }
        let through = seen.count > 2 ? " through \(seen.count - 2) other worker(s)" : ""
        return (at, "\(name(at)) waits on nobody, and \(name(first)) waits on it\(through)", waits)
    }
    private var nextExpiryScan = Date.distantPast
    /// This process's instance id, in assignments and heartbeat replies: a worker that was assigned by a
    /// coordinator that has since been killed and restarted notices the new id and joins again, even when
    /// it was idle between steps and has nothing else to say.
    private let instance = String(UInt64.random(in: 1...UInt64.max), radix: 36)

    /// Receives what is waiting (up to `timeoutMs` for the first message): answers heartbeats, admits
    /// or refuses hellos, refuses malformed input with a logged reason, and returns the rest. Checks in
    /// the order protocol.md gives ("What the coordinator refuses").
    private func pump(timeoutMs: Int) throws -> (messages: [Inbound], joined: [Int]) {
        var out: [Inbound] = [], joined: [Int] = []
        for d in ZAPHandler.shared.takeDenied() {
            tell(peer: "address \(d.address)", reason: "CURVE key \(PeerText.escape(d.key, limit: 48)) is not admitted", event: "key not admitted",
                 sender: ZMQSocket.Sender(key: d.key, address: d.address), what: "a connection")
        }
        for (peer, n) in refusals.closedWindows() {
            log.warning("refused \(n) more message(s) from \(peer) in the last \(Int(refusals.window)) s (not logged one by one)")
            runLog.event("refused", [("peer", .string(peer)), ("reason", .string("more refusals, not logged one by one")), ("suppressed", .int(n))])
        }
        while let m = monitor, m.poll(timeoutMs: 0), let event = try? m.receive(), event.count >= 2, event[0].count >= 6 {
            let id = UInt16(event[0][event[0].startIndex]) | UInt16(event[0][event[0].startIndex + 1]) << 8
            let value = event[0].dropFirst(2).prefix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
            let what = Int32(id) == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                ? "handshake failed (ZMTP protocol error 0x\(String(value, radix: 16)): plain text at a CURVE socket, another protocol, or garbage)"
                : "handshake failed (\(String(cString: zmq_strerror(Int32(bitPattern: value)))))"
            tell(peer: "a client of \(PeerText.escape(String(decoding: event[1], as: UTF8.self), limit: 80))", reason: what, event: "handshake failed",
                 sender: nil, what: "a connection")
        }
        expireSpares()
        var wait = timeoutMs
        while socket.poll(timeoutMs: wait) {
            wait = 0
            let (frames, sender) = try socket.receiveWithSender(maxParts: Wire.maxParts)
            guard frames.count >= 2 else { continue }
            let identity = frames[0]
            guard budget.spend(sender.key ?? hex(identity)) else {  // a flood: dropped unread, told once in a while
                tell(peer: peerName(identity, sender), reason: "over its message budget (\(Int(budget.rate)) a second): dropped unread",
                     event: "over its message budget", sender: sender)
                continue
            }
            let msg: WireMessage
            var stepDone: StepDone?, heartbeat: Heartbeat?
            do {
                msg = try WireMessage(frames: Array(frames.dropFirst()))
                // The kinds every worker sends every step or half second are decoded once, here, and handed
                // on (decoding the same JSON four times was most of the coordinator's step at 256 workers).
                switch msg.kind {
                case .stepDone: stepDone = try msg.decode(StepDone.self)
                case .heartbeat: heartbeat = try msg.decode(Heartbeat.self)
                default: try msg.checkBody()
                }
            } catch {
                refuse(identity, "\(error)", sender: sender)
                continue
            }
            if let hb = heartbeat {
                if let m = members[hb.workerId] {
                    // The heartbeat socket is not the control socket: its key tells whose it is (CURVE).
                    guard options.security == .plaintext || m.hello.publicKey == sender.key else {
                        refuse(identity, "heartbeat names worker \(hb.workerId) (\(m.name)) but comes from another key (spoofed id)", sender: sender,
                               answer: false)
                        continue
                    }
                    members[hb.workerId]!.lastSeen = Date()
                    if let s = hb.status { status[hb.workerId] = PeerText.escape(s, limit: 200) }
                    heartbeatIdentity[hb.workerId] = identity
                    if hb.answer == true { probeAnswers[hb.workerId] = .some(hb.wait) }
                }
                socket.sendNow([identity] + WireMessage(.heartbeat, Heartbeat(workerId: -1, coordinator: instance)).frames)  // never blocks on a peer that does not read
                continue
            }
            if msg.kind == .hello {
                if let id = admit(identity, msg, sender: sender) { joined.append(id) }
                continue
            }
            guard let id = identities[identity] else {
                // Also what a live worker of a coordinator that was killed and restarted sends first (its
                // last stepDone): it is told to join again, not sent away.
                refuse(identity, "\(msg.kind) from a peer that has not joined", sender: sender, rejoin: true)
                continue
            }
            if let claimed = stepDone?.workerId ?? msg.claimedWorkerId, claimed != id {
                refuse(identity, "\(msg.kind) names worker \(claimed) but comes from worker \(id) (spoofed id)", sender: sender, answer: false)
                continue
            }
            members[id]!.lastSeen = Date()
            out.append(Inbound(worker: id, message: msg, stepDone: stepDone))
        }
        return (out, joined)
    }

    /// A message from a joined worker, its body checked; a stepDone's body already decoded.
    struct Inbound { var worker: Int; var message: WireMessage; var stepDone: StepDone? }

    private func hex(_ identity: Data) -> String { identity.map { String(format: "%02x", $0) }.joined() }

    private func peerName(_ identity: Data, _ sender: ZMQSocket.Sender?) -> String {
        identities[identity].flatMap { members[$0]?.name } ?? "peer \(hex(identity))"
    }

    /// Refuses a message: a one-line reason in the log and a `refused` event (rate-limited per peer),
    /// and (`answer`) a `reject` — or a `reset` asking it to join, for a peer that has not joined.
    private func refuse(_ identity: Data, _ reason: String, sender: ZMQSocket.Sender? = nil, rejoin: Bool = false,
                        retryAfter: Double? = nil, answer: Bool = true) {
        tell(peer: peerName(identity, sender), reason: reason, event: reason, sender: sender)
        guard answer else { return }
        let msg = rejoin ? WireMessage(.reset, Reset(reason: reason, rejoin: true))
                         : WireMessage(.reject, Reject(reason: reason, retryAfter: retryAfter))
        socket.sendNow([identity] + msg.frames)
    }

    /// Logs a refusal (of `what`: a message or a connection) unless its peer has had its share this window.
    private func tell(peer: String, reason: String, event: String, sender: ZMQSocket.Sender?, what: String = "a message") {
        guard refusals.admit(sender?.key ?? sender?.address ?? peer) else { return }
        var from = peer
        if let a = sender?.address, !peer.contains(a) { from += " at \(PeerText.escape(a, limit: 64))" }
        if let k = sender?.key, !reason.contains(k) { from += " (key \(PeerText.escape(k, limit: 48)))" }
        log.warning("refused \(what) from \(from): \(reason)")
        var fields: [(String, JSONValue)] = [("peer", .string(peer)), ("reason", .string(event))]
        if let a = sender?.address { fields.append(("address", .string(PeerText.escape(a, limit: 64)))) }
        if let k = sender?.key { fields.append(("key", .string(PeerText.escape(k, limit: 48)))) }
        runLog.event("refused", fields)
    }

    /// A fault of `peer`: a strike; from the second one (until a step completes) it is quarantined.
    private func strike(_ peer: String, name: String, reason: String, weight: Int = 1) {
        let (strikes, seconds) = quarantine.strike(peer, weight: weight)
        guard seconds > 0 else { return }
        log.warning("\(name) (\(peer)) quarantined for \(Int(seconds)) s after \(strikes) faults; the last: \(reason)")
        runLog.event("quarantine", [("worker", .string(name)), ("peer", .string(peer)), ("seconds", .double(seconds)),
                                    ("strikes", .int(strikes)), ("reason", .string(reason))])
    }

    /// Drops spares (members without an assignment being watched) silent for `cluster.lost_after_s`: the
    /// coordinator never assigns a worker it has not heard from lately, and forgets the dead ones.
    /// At most every 100 ms (it scans every member; pump runs once per batch of messages).
    private func expireSpares() {
        let now = Date()
        guard now >= nextExpiryScan else { return }
        nextExpiryScan = now.addingTimeInterval(0.1)
        let watched = assigned ? Set(slots.compactMap { $0 }) : []
        for (id, m) in members where !watched.contains(id) && now.timeIntervalSince(m.lastSeen) > config.lostAfterSeconds {
            let reason = "no heartbeat for \(config.lostAfterSeconds) s"
            log.warning("worker \(m.name) on \(m.host) expired: \(reason)")
            runLog.event("expired", [("worker", .string(m.name)), ("host", .string(m.host)), ("reason", .string(reason))])
            socket.sendNow([m.identity] + WireMessage(.reset, Reset(reason: "expired: \(reason)", rejoin: true)).frames)
            identities[m.identity] = nil
            members[id] = nil
            status[id] = nil
            heartbeatIdentity[id] = nil
        }
    }

    private func admit(_ identity: Data, _ msg: WireMessage, sender: ZMQSocket.Sender) -> Int? {
        guard let hello = try? msg.decode(Hello.self) else { refuse(identity, "malformed hello", sender: sender); return nil }
        guard hello.protocolVersion == Int(Wire.version) else {
            refuse(identity, "protocol version \(hello.protocolVersion) is not supported (this coordinator speaks \(Wire.version))", sender: sender)
            return nil
        }
        let who = "\(PeerText.escape(hello.name, limit: 64))@\(PeerText.escape(hello.host, limit: 64))"
        guard hello.secret == options.secret else { refuse(identity, "wrong cluster secret from \(who)", sender: sender); return nil }
        if let violation = HelloLimits.violation(hello) { refuse(identity, violation, sender: sender); return nil }
        if options.security != .plaintext {
            // A CURVE hello names the key it authenticated with: the data sockets of its neighbours will
            // admit and check exactly that key. Anything else is this peer's fault.
            guard let key = sender.key else { refuse(identity, "hello from \(who) without an authenticated CURVE key", sender: sender); return nil }
            guard hello.publicKey == key else {
                let said = hello.publicKey.map { "CURVE key \($0)" } ?? "no CURVE public key"
                let reason = "hello from \(who) carries \(said), but it authenticated with key \(key)"
                refuse(identity, reason, sender: sender)
                strike(key, name: PeerText.escape(hello.name, limit: 64), reason: reason, weight: 2)
                return nil
            }
        }
        let principal = sender.key ?? "name \(hello.name)"
        if let left = quarantine.remaining(principal) {
            refuse(identity, "\(who) is quarantined for \(Int(left.rounded(.up))) s more (repeated faults)", sender: sender, retryAfter: left)
            return nil
        }
        guard identities[identity] == nil else { refuse(identity, "\(who) has already joined", sender: sender); return nil }
        // One live worker per key and per name: a second is told to come back once the first is gone
        // (lost or expired after cluster.lost_after_s without a heartbeat).
        let retry = min(max(config.lostAfterSeconds / 2, 0.5), 5)
        if let key = sender.key, let holder = members.values.first(where: { $0.hello.publicKey == key }) {
            refuse(identity, "CURVE key \(key) already has a live worker (\(holder.name)); one worker per key", sender: sender, retryAfter: retry)
            return nil
        }
        if let holder = members.values.first(where: { $0.hello.name == hello.name }) {
            refuse(identity, "worker name \(holder.name) is taken by a live worker on \(holder.host)", sender: sender, retryAfter: retry)
            return nil
        }
        let id = nextWorkerId
        nextWorkerId += 1
        members[id] = Member(identity: identity, hello: hello, lastSeen: Date())
        identities[identity] = id
        let m = members[id]!
        log.info("worker \(m.name) joined from \(m.host) (\(hello.cores) cores)")
        var fields: [(String, JSONValue)] = [("worker", .string(m.name)), ("host", .string(m.host)), ("cores", .int(hello.cores)),
                                            ("data", .string(PeerText.escape(hello.dataEndpoint)))]
        if let k = hello.publicKey { fields.append(("key", .string(k))) }
        runLog.event("join", fields)
        return id
    }
}
