import CZeroMQ
import Foundation
import Logging
import UGenKernels
import UGenModel
import UGenStore
import UGenTraining

/// A worker process's job: join the coordinator, run the pipeline stage it is given, exchange
/// activations and gradients directly with its neighbours, and step the optimizer for its own
/// parameters.
public final class Worker {

    let options: Options
    var log: Logger
    private let control: ZMQSocket
    private let data: ZMQSocket
    private var dataEndpoint = ""
    private var toPrevious: ZMQSocket?, toNext: ZMQSocket?
    private var toReplicas: [ZMQSocket?] = []
    private var connectPeers: (() throws -> Void)?
    private let heartbeat: HeartbeatLink

    // Set by the assignment.
    private var assign: Assign!
    private var config: RunConfig!
    private var stage: Stage!
    private var optimizer: AdamWState!
    private var schedule = PipelineSchedule.oneFOneB

    // Per micro-batch receive buffers and arrival marks (allocated at the first step, then reused).
    private var activationIn: [Tensor] = [], gradientIn: [Tensor] = []
    /// rowsIn[kind.rawValue][k]: how many of micro-batch k's rows have arrived (they come in order).
    private var rowsIn: [[Int]] = [[], []]
    /// The gradient all-reduce among this stage's replicas (nil with one replica).
    private var reducer: ReplicaReduce?
    /// Runs the reduce while the weight pass goes on (nil with one replica).
    private var reduceThread: ReduceThread?
    private var headerBuffer = [UInt8](repeating: 0, count: 64)

    /// The coordinator broke into a step (a reset or shutdown is waiting on the control socket).
    struct Interrupted: Error { var reason: String }

    public init(_ options: Options) throws {
        self.options = options
        log = Logger(label: "ugen-worker \(options.name)")
        control = try ZMQSocket(.dealer)
        data = try ZMQSocket(.pull)
        if let keys = options.security.keys {
            guard let server = options.coordinatorKey else { throw SecurityError.curveNeedsCoordinatorKey }
            try control.makeCurveClient(keys, server: server)
            try data.makeCurveServer(keys)
            ZAPHandler.shared.replaceAllowed([])  // nobody may send data before the assignment names the peers
        }
        heartbeat = HeartbeatLink(
            coordinator: options.coordinator, timeout: options.coordinatorTimeout,
            curve: options.security.keys.map { ($0, options.coordinatorKey ?? "") }, log: log)
    }

    /// Call once, after the last worker is gone and just before the process exits: sends what is still
    /// queued (the goodbye to the coordinator) instead of dropping it with the process. At most 2 s.
    public static func flushBeforeExit() { ZMQContext.shared.terminate(within: 2) }

    /// Joins and works until the coordinator says shutdown (or refuses, or disappears).
    public func run() throws -> Outcome {
        guard try join() else { return .coordinatorLost }
        heartbeat.start(workerId: -1)
        defer { heartbeat.stop(); reduceThread?.stop() }
        while true {
            guard let msg = try nextControlMessage(timeoutMs: 200) else {
                if heartbeat.lost {
                    log.error("lost the coordinator: no answer for \(options.coordinatorTimeout) s"); return .coordinatorLost
                }
                if coordinatorRestarted {
                    log.warning("the coordinator was restarted; joining it again")
                    return .dropped("the coordinator was restarted")
                }
                continue
            }
            if let outcome = try handle(msg) { return outcome }
        }
    }

    /// Binds the data socket and says hello; false when the coordinator cannot be reached.
    private func join() throws -> Bool {
        BLAS.setThreads(options.threads)
        try control.connect(options.coordinator)
        let bound = try data.bind("tcp://\(bindHost()):*")
        dataEndpoint = bound.replacingOccurrences(of: "0.0.0.0", with: advertiseHost())
        let hello = Hello(
            protocolVersion: Int(Wire.version), name: options.name, host: ProcessInfo.processInfo.hostName,
            cores: ProcessInfo.processInfo.activeProcessorCount, secret: options.secret, dataEndpoint: dataEndpoint,
            publicKey: options.security.keys?.publicKey)
        do { try control.send(WireMessage(.hello, hello).frames) } catch {
            let how = options.security == .plaintext ? "plain text" : "CURVE handshake not completed"
            log.error("cannot reach the coordinator at \(options.coordinator) (\(how))")
            return false
        }
        log.info("joining \(options.coordinator) as \(options.name), data socket \(dataEndpoint)")
        return true
    }

    /// One message from the coordinator: the outcome when it ends this worker's membership, else nil.
    private func handle(_ msg: WireMessage) throws -> Outcome? {
        switch msg.kind {
        case .reject:
            let reject = try? msg.decode(Reject.self)
            let reason = reject?.reason ?? "?"
            if let later = reject?.retryAfter, later.isFinite, later >= 0 {
                log.warning("refused by the coordinator for now: \(reason); joining again in \(String(format: "%.1f", later)) s")
                return .deferred(reason, min(later, 600))
            }
            log.error("refused by the coordinator: \(reason)")
            return .rejected(reason)
        case .assign: try setUp(msg)
        case .step:
            do { try runStep(msg) } catch let e as Interrupted {
                log.warning("step abandoned: \(e.reason)")
            } catch {
                log.error("step failed: \(error)")
                let culprit = (error as? PeerFault)?.key  // a neighbour's bad data message: its fault, named
                try control.send(
                    WireMessage(.failure, Failure(workerId: assign?.workerId ?? -1, reason: "\(error)", peerKey: culprit)).frames)
            }
            heartbeat.setStatus("idle")
        case .apply: try apply(msg)
        case .saveRequest: try save(msg)
        case .reset:
            let reset = try? msg.decode(Reset.self)
            let reason = reset?.reason ?? "?"
            if reset?.rejoin == true {
                log.warning("dropped by the coordinator (\(reason)); joining again")
                return .dropped(reason)
            }
            log.info("reset by the coordinator (\(reason)); waiting for a new assignment")
            heartbeat.setStatus("waiting for an assignment")
        case .shutdown:
            let reason = (try? msg.decode(Shutdown.self).reason) ?? "?"
            log.info("shutdown: \(reason)")
            // The coordinator waits for the goodbye; `flushBeforeExit` gets it onto the wire.
            try? control.set(ZMQ_LINGER, 1000)
            try? control.send(WireMessage(.shutdown, Shutdown(reason: "goodbye")).frames)
            return .finished
        case .heartbeat: break
        default: log.warning("ignoring unexpected \(msg.kind) from the coordinator")
        }
        return nil
    }

    /// True when the coordinator answering heartbeats is not the one that gave the assignment.
    private var coordinatorRestarted: Bool {
        guard let mine = assign?.coordinator, let heard = heartbeat.coordinator else { return false }
        return mine != heard
    }

    private func bindHost() -> String {
        let h = advertiseHost()
        return (h == "127.0.0.1" || h == "localhost") ? "127.0.0.1" : "0.0.0.0"
    }

    private func advertiseHost() -> String {
        if let a = options.advertise { return a }
        let host = options.coordinator.split(separator: "/").last?.split(separator: ":").first.map(String.init) ?? ""
        return (host == "127.0.0.1" || host == "localhost") ? "127.0.0.1" : ProcessInfo.processInfo.hostName
    }

    private func nextControlMessage(timeoutMs: Int) throws -> WireMessage? {
        guard control.poll(timeoutMs: timeoutMs) else { return nil }
        let frames = try control.receive()
        do { return try WireMessage(frames: frames) } catch {
            log.warning("ignoring a malformed message from the coordinator: \(error)")
            return nil
        }
    }

    // MARK: Assignment

    private func setUp(_ msg: WireMessage) throws {
        let a = try msg.decode(Assign.self)
        assign = a
        toPrevious = nil; toNext = nil; toReplicas = []
        activationIn = []; gradientIn = []
        config = try RunConfig.parse(yaml: a.config, source: "assignment")
        schedule = PipelineSchedule(rawValue: config.schedule) ?? .oneFOneB
        heartbeat.workerId = a.workerId
        heartbeat.place = (a.stage, a.replica)
        heartbeat.interval = config.heartbeatSeconds
        let rows = config.batchRows / (config.replicas * config.microBatches)
        stage = try Stage(config: a.model, spec: a.spec, rows: rows, seqLen: config.seqLen, precision: config.precision)
        optimizer = AdamWState(parameters: stage.parameters)
        if a.withTensors {
            var params: [NamedTensor] = [], m: [NamedTensor] = [], v: [NamedTensor] = []
            for (i, p) in stage.parameters.enumerated() {
                let shape = p.value.shape, n = p.value.count
                params.append(NamedTensor(name: p.name, shape: shape, values: try msg.array(3 * i, Float.self, count: n)))
                m.append(NamedTensor(name: p.name, shape: shape, values: try msg.array(3 * i + 1, Float.self, count: n)))
                v.append(NamedTensor(name: p.name, shape: shape, values: try msg.array(3 * i + 2, Float.self, count: n)))
            }
            try stage.importTensors(params: params, m: m, v: v, into: optimizer, optimizerStep: a.optimizerStep)
        } else {
            stage.initialize(seed: UInt64(config.seed))
        }
        try setUpReduce(a)
        let partners = Set(reducer?.partners ?? [])
        let keys = options.security.keys
        if keys != nil {  // the data socket admits the neighbours and the all-reduce's partners, nobody else
            let partnerKeys = partners.compactMap { a.replicaPeerKeys?.indices.contains($0) == true ? a.replicaPeerKeys?[$0] : nil }
            ZAPHandler.shared.replaceAllowed(Set([a.previousKey, a.nextKey].compactMap { $0 } + partnerKeys))
        }
        func push(_ endpoint: String, _ peerKey: String?, _ role: String) throws -> ZMQSocket {
            let s = try ZMQSocket(.push)
            if let keys {
                guard let peerKey, !peerKey.isEmpty else { throw ProtocolError.missingPeerKey(role: role, endpoint: endpoint) }
                try s.makeCurveClient(keys, server: peerKey)
            }
            try s.connect(endpoint)
            return s
        }
        // Connected at the first step, not now: by then every peer has its assignment and admits our key
        // (a CURVE handshake refused now would not be retried).
        connectPeers = {
            if let p = a.previous { self.toPrevious = try push(p, a.previousKey, "previous stage") }
            if let n = a.next { self.toNext = try push(n, a.nextKey, "next stage") }
            self.toReplicas = try a.replicaPeers.enumerated().map { r, endpoint in
                guard partners.contains(r) else { return nil }  // the all-reduce's partners, 1, 2, 4, … replicas away
                return try push(endpoint, a.replicaPeerKeys?[r], "replica \(r)")
            }
        }
        log.info("stage \(a.stage + 1)/\(a.stages) (\(a.spec)), replica \(a.replica)")
        try control.send(WireMessage(.ready, Ready(workerId: a.workerId)).frames)
    }

    /// With replicas: the all-reduce of this stage's gradient buckets and its thread, fed by the stage
    /// as each bucket becomes final.
    private func setUpReduce(_ a: Assign) throws {
        reduceThread?.stop()
        reducer = nil; reduceThread = nil
        guard config.replicas > 1 else { return }
        let reducer = try ReplicaReduce(
            replica: a.replica, replicas: config.replicas, buckets: stage.gradientBuckets,
            peerKeys: options.security.keys == nil ? nil : a.replicaPeerKeys)
        let heartbeat = heartbeat
        let thread = try ReduceThread(reducer, onWait: { heartbeat.setWaiting(true, reduceFrom: $0) })
        stage.onBucketFinal = { thread.bucketFinal($0) }
        self.reducer = reducer; reduceThread = thread
    }

    // MARK: One step

    /// What a step's operations add up: the last stage's losses, and where the time went.
    private struct StepTally {
        var losses: StepLosses
        var forwardMs = 0.0, backwardMs = 0.0, waitMs = 0.0
    }

    /// One step: unpack the order's arrays, run the schedule's operations (the all-reduce starts on its
    /// own thread during the last of them), wait for the reduce, report.
    private func runStep(_ msg: WireMessage) throws {
        let order = try msg.decode(StepOrder.self)
        if let connect = connectPeers { try connect(); connectPeers = nil }
        var batch = try MicroBatch(
            stepMessage: msg, masked: order.masked, embedding: stage.spec.hasEmbedding, head: stage.spec.hasHead,
            positions: order.microBatches * stage.n, vocab: stage.config.vocabSize)
        prepare(order)
        defer { reduceThread?.abandon() }  // a step that fails or is interrupted leaves no reduce running
        var tally = StepTally(losses: StepLosses(microBatches: stage.spec.hasHead ? order.microBatches : 0))
        let slots = schedule.slots(stage: assign.stage, stages: assign.stages, microBatches: order.microBatches)
        for op in schedule.ops(stage: assign.stage, stages: assign.stages, microBatches: order.microBatches) {
            switch op {
            case .forward(let k):
                batch.index = k
                try forward(batch, order, stage.activations(k % slots), &tally)
            case .backward(let k) where toPrevious == nil:
                // Nothing to send upstream: both halves interleaved, so reduce buckets go out during the pass.
                try backwardInput(k, order, stage.activations(k % slots), &tally, withWeights: true)
            case .backward(let k), .backwardInput(let k):
                try backwardInput(k, order, stage.activations(k % slots), &tally)
                if case .backward = op { backwardWeights(stage.activations(k % slots), &tally) }
            case .backwardWeights(let k): backwardWeights(stage.activations(k % slots), &tally)
            }
        }
        let reduceWaitMs = try finishReduce(step: order.step)
        tally.waitMs += reduceWaitMs
        try report(order, tally, reduceWaitMs: reduceWaitMs)
    }

    /// Readies the step's receive buffers (allocated when the micro-batch count changes), gradients and reduce.
    private func prepare(_ order: StepOrder) {
        let m = order.microBatches, n = stage.n, d = stage.config.dModel
        if activationIn.count != m {
            activationIn = (0..<m).map { _ in Tensor([n, d]) }
            gradientIn = (0..<m).map { _ in Tensor([n, d]) }
            rowsIn = [Array(repeating: 0, count: m), Array(repeating: 0, count: m)]
        }
        for i in rowsIn.indices { for k in 0..<m { rowsIn[i][k] = 0 } }
        stage.zeroGrads(microBatches: m)
        commNanos = 0
        reducer?.beginStep()
        reduceThread?.prepare(step: order.step, generation: assign.generation, data: data, sockets: toReplicas)
    }

    private func clock() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e6 }

    /// The micro-batch's forward pass (and loss, on the last stage), piece by piece as its rows come in.
    private func forward(_ batch: MicroBatch, _ order: StepOrder, _ a: StageActivations, _ tally: inout StepTally) throws {
        let k = batch.index
        heartbeat.setPosition(step: order.step, forward: true, microBatch: k)
        let m = order.microBatches, d = stage.config.dModel
        let header = DataHeader(kind: .activation, generation: Int32(assign.generation), step: Int32(order.step), microBatch: Int32(k))
        // The step's first global micro-batch goes a row at a time (the pipeline fill), in every layout
        // alike: pieces by global index, so a replica's first micro-batch is cut as the single process cuts it.
        for rows in stage.forwardPieces(microBatch: assign.replica * m + k, of: config.replicas * m) {
            if !stage.spec.hasEmbedding { tally.waitMs += try waitFor(.activation, k, rows: rows.upperBound, step: order.step) }
            let t1 = clock()
            if !stage.spec.hasEmbedding {
                let width = stage.seqLen * d, at = rows.lowerBound * width
                (a.input.data + at).update(from: activationIn[k].data + at, count: rows.count * width)
            }
            stage.forward(a, batch, rows: rows)
            if stage.spec.hasHead {
                stage.crossEntropy(a, batch, gradScale: order.gradScale, rows: rows, into: &tally.losses)
            } else {
                try sendRows(toNext!, header, a.output, rows: rows)
            }
            tally.forwardMs += clock() - t1
        }
    }

    /// Micro-batch `k`'s input-gradient half, its result sent to the previous stage; `withWeights`: the
    /// whole backward pass, interleaved (`Stage.backward`).
    private func backwardInput(
        _ k: Int, _ order: StepOrder, _ a: StageActivations, _ tally: inout StepTally,
        withWeights: Bool = false
    ) throws {
        heartbeat.setPosition(step: order.step, forward: false, microBatch: k)
        var gradOut: Tensor? = nil
        if !stage.spec.hasHead {
            tally.waitMs += try waitFor(.gradient, k, rows: stage.rows, step: order.step)
            gradOut = gradientIn[k]
        }
        let t1 = clock()
        let gIn = withWeights ? stage.backward(a, gradOutput: gradOut) : stage.backwardInput(a, gradOutput: gradOut)
        if let gIn, let prev = toPrevious {
            let header = DataHeader(kind: .gradient, generation: Int32(assign.generation), step: Int32(order.step), microBatch: Int32(k))
            try sendRows(prev, header, gIn, rows: 0..<stage.rows)
        }
        tally.backwardMs += clock() - t1
    }

    private func backwardWeights(_ a: StageActivations, _ tally: inout StepTally) {
        let t0 = clock()
        stage.backwardWeights(a)
        tally.backwardMs += clock() - t0
    }

    /// The step's results to the coordinator: `StepDone` and its `StepOutputs`.
    private func report(_ order: StepOrder, _ tally: StepTally, reduceWaitMs: Double) throws {
        let done = StepDone(
            workerId: assign.workerId, step: order.step, forwardMs: tally.forwardMs, backwardMs: tally.backwardMs,
            waitMs: tally.waitMs, commMs: Double(commNanos) / 1e6, reduceBytesSent: reducer?.bytesSent,
            reduceBytesReceived: reducer?.bytesReceived,
            reduceMs: reduceThread.map { Double($0.reduceNanos) / 1e6 }, reduceWaitMs: reducer == nil ? nil : reduceWaitMs,
            reduceIdleMs: reduceThread.map { Double($0.idleNanos) / 1e6 },
            reduceWindowMs: reduceThread.map { Double($0.windowNanos) / 1e6 })
        let outputs = StepOutputs(losses: stage.spec.hasHead ? tally.losses : nil, gradSquares: stage.gradSquares())
        try control.send(WireMessage(.stepDone, done, arrays: outputs.parts).frames)
    }

    private var commNanos: UInt64 = 0

    /// Sends `rows` of a micro-batch's activation or gradient [rows·T, d].
    private func sendRows(_ socket: ZMQSocket, _ header: DataHeader, _ t: Tensor, rows: Range<Int>) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { commNanos += DispatchTime.now().uptimeNanoseconds - t0 }
        var h = header
        h.firstRow = Int32(rows.lowerBound); h.rowCount = Int32(rows.count)
        let width = t.count / stage.rows
        try h.withBytes { try socket.sendPart($0, more: true) }  // part by part: no array of parts per send
        try socket.sendPart(UnsafeRawBufferPointer(start: t.data + rows.lowerBound * width, count: rows.count * width * 4), more: false)
    }

    /// Receives data messages (into their micro-batch's buffer) until the first `rows` rows of `kind`
    /// for micro-batch `k` are in, and returns the milliseconds that took (the heartbeat says it is
    /// waiting meanwhile). Keeps an eye on the control socket: a shutdown there aborts the step.
    private func waitFor(_ kind: DataHeader.Kind, _ k: Int, rows: Int, step: Int) throws -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        heartbeat.setWaiting(true)
        defer { heartbeat.setWaiting(false) }
        while rowsIn[Int(kind.rawValue)][k] < rows {
            try receiveData(step: step)
        }
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
    }

    /// Receives one data message into the buffer its header names: an activation or gradient of a
    /// micro-batch, or a segment of the replicas' all-reduce (`ReduceHeader`, kind 2).
    private func receiveData(step: Int) throws {
        while true {
            for d in ZAPHandler.shared.takeDenied() {
                log.warning(
                    "refused a data connection from \(PeerText.escape(d.address)): CURVE key \(PeerText.escape(d.key)) is not a neighbour")
            }
            let ready = pollAny([data, control], timeoutMs: 500)
            if ready.contains(0) { break }
            try checkCoordinator(step: step, messageWaiting: ready.contains(1))
        }
        let size = try headerBuffer.withUnsafeMutableBytes { try data.receiveNotingSender(into: $0.baseAddress!, capacity: $0.count) }
        // Garbage is the sender's fault: the failure names its key (CURVE), so the coordinator blames it.
        func fault(_ reason: String) -> PeerFault { PeerFault(lastSenderOf: data, reason) }
        guard size == DataHeader.size, data.hasMore else {
            try data.discardRest(); throw fault("malformed data message (\(size)-byte header\(data.hasMore ? "" : ", no tensor part"))")
        }
        if headerBuffer[0] == ReduceHeader.kind { return try receiveReduce(step: step) }
        let header: DataHeader
        do { header = try headerBuffer.withUnsafeBytes { try DataHeader(UnsafeRawBufferPointer(rebasing: $0[0..<DataHeader.size])) } } catch
        {
            try data.discardRest(); throw fault("malformed data header")
        }
        let k = Int(header.microBatch)
        guard Int(header.generation) == assign.generation else {
            try data.discardRest()  // left over from before a recovery
            return
        }
        guard Int(header.step) == step, k >= 0, k < activationIn.count else {
            try data.discardRest(); throw fault("data message for step \(header.step) part \(k) during step \(step)")
        }
        let first = Int(header.firstRow), count = Int(header.rowCount)
        let expected = rowsIn[Int(header.kind.rawValue)][k]
        guard first == expected, count >= 1, first + count <= stage.rows else {
            try data.discardRest()
            throw fault(
                "data message with rows \(first)..<\(first + count) of micro-batch \(k), expected row \(expected) next of \(stage.rows)")
        }
        let dest = header.kind == .activation ? activationIn[k] : gradientIn[k]
        let width = dest.count / stage.rows
        let t0 = DispatchTime.now().uptimeNanoseconds
        let got = try data.receive(into: dest.data + first * width, capacity: count * width * 4)
        commNanos += DispatchTime.now().uptimeNanoseconds - t0
        guard got == count * width * 4 else { throw fault("data message of \(got) bytes, expected \(count * width * 4)") }
        rowsIn[Int(header.kind.rawValue)][k] = first + count
    }

    /// Throws `Interrupted` when the coordinator broke into step `step` (a message waits on the control
    /// socket), is lost, or was restarted.
    private func checkCoordinator(step: Int, messageWaiting: Bool) throws {
        if messageWaiting { throw Interrupted(reason: "the coordinator sent a message during step \(step)") }
        if heartbeat.lost { throw Interrupted(reason: "lost the coordinator during step \(step)") }
        if coordinatorRestarted { throw Interrupted(reason: "the coordinator was restarted during step \(step)") }
    }

    /// A segment of the all-reduce that came before this worker's reduce began (its header in
    /// `headerBuffer`): checked, then received where it belongs.
    private func receiveReduce(step: Int) throws {
        guard let reducer else {
            try data.discardRest(); throw PeerFault(lastSenderOf: data, "reduce message to a stage with one replica")
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        try headerBuffer.withUnsafeBytes {
            try reducer.receive(
                header: UnsafeRawBufferPointer(rebasing: $0[0..<DataHeader.size]), from: data,
                generation: assign.generation, step: step)
        }
        commNanos += DispatchTime.now().uptimeNanoseconds - t0
    }

    /// Waits for the all-reduce, which `ReduceThread` began as soon as the first bucket was final, while
    /// watching the coordinator. Returns the milliseconds the training thread waited (the part of the
    /// reduce not hidden behind the backward pass).
    private func finishReduce(step: Int) throws -> Double {
        guard let reduceThread else { return 0 }
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { heartbeat.setWaiting(false) }
        try reduceThread.finish { try checkCoordinator(step: step, messageWaiting: control.poll(timeoutMs: 0)) }
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
    }

    // MARK: Optimizer and checkpoints

    private func apply(_ msg: WireMessage) throws {
        let a = try msg.decode(Apply.self)
        stage.update(with: optimizer, lr: a.lr, hyper: config.adam, clipScale: a.clipScale)
    }

    private func save(_ msg: WireMessage) throws {
        let r = try msg.decode(SaveRequest.self)
        let reply = SaveReply(workerId: assign.workerId, step: r.step, optimizerStep: optimizer.step)
        // The tensors go from their own memory (ZeroMQ copies each once), not through Data copies.
        let tensors = stage.parameters.indices.flatMap { i in [stage.parameters[i].value, optimizer.m[i], optimizer.v[i]] }
        let parts = tensors.map { UnsafeRawBufferPointer(start: $0.data, count: $0.count * 4) }
        try WireMessage(.saveReply, reply).frames[0].withUnsafeBytes { try control.send([$0] + parts) }
    }
}
