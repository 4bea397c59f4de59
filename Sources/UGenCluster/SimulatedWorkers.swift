import CZeroMQ
import Foundation
import UGenModel

/// Many fake workers in one process, for measuring the coordinator alone (`ugen-coord bench --control-plane`).
///
/// Each one speaks the real protocol over real sockets, as a `ugen-worker` does: a CURVE DEALER control
/// socket with its own key, a second one for heartbeats every half second, a `hello`, `ready` after its
/// assignment, and a well-formed `stepDone` (loss sums, task sums, one squared norm per parameter of its
/// stage) the moment a step order arrives; a `saveReply` with tensors of the right sizes; a goodbye at
/// `shutdown`. It computes nothing and has no data socket (it never gets a data message: no neighbour is
/// real), so whatever limits the steps per second is the coordinator, or this process on a shared machine
/// (its CPU time is reported beside the coordinator's).
public final class SimulatedWorkers {
    public struct Options: Sendable {
        public var coordinator: String
        public var coordinatorKey: String?
        /// One key pair per worker (CURVE), or none (plain text).
        public var keys: [CurveKeyPair]
        public var count: Int
        public var secret = ""
        public init(coordinator: String, coordinatorKey: String?, keys: [CurveKeyPair], count: Int) {
            self.coordinator = coordinator; self.coordinatorKey = coordinatorKey; self.keys = keys; self.count = count
        }
    }

    /// The coordinator turned a simulated worker away (a reject or reset): the measurement is void.
    struct Refused: Error, CustomStringConvertible { var description: String }

    /// What one fake worker was assigned.
    private struct Place { var workerId: Int; var spec: StageSpec; var model: ModelConfig }

    private let options: Options
    private var control: [ZMQSocket] = []
    private var heartbeats: [ZMQSocket] = []
    private var places: [Place?]
    private var finished: [Bool]
    /// Per worker: the stepDone arrays that do not change from step to step (built at the assignment).
    private var replyArrays: [[Data]]

    public init(_ options: Options) throws {
        self.options = options
        places = Array(repeating: nil, count: options.count)
        finished = Array(repeating: false, count: options.count)
        replyArrays = Array(repeating: [], count: options.count)
        // Two sockets per worker: past libzmq's default of 1023 sockets a context (before the first is made).
        zmq_ctx_set(ZMQContext.shared.handle, ZMQ_MAX_SOCKETS, Int32(max(1023, 2 * options.count + 16)))
        for i in 0..<options.count {
            let c = try ZMQSocket(.dealer), h = try ZMQSocket(.dealer)
            if let server = options.coordinatorKey {
                try c.makeCurveClient(options.keys[i], server: server)
                try h.makeCurveClient(options.keys[i], server: server)
            }
            control.append(c)
            heartbeats.append(h)
        }
    }

    /// Joins every worker, then answers until each has been told to shut down (or `seconds` pass).
    public func run(seconds: Double) throws {
        for i in 0..<options.count {
            try control[i].connect(options.coordinator)
            try heartbeats[i].connect(options.coordinator)
            // Never bound: the coordinator only passes data endpoints on, and no fake worker has a real neighbour.
            let hello = Hello(
                protocolVersion: Int(Wire.version), name: "sim-\(i)", host: "simulated", cores: 1,
                secret: options.secret, dataEndpoint: "tcp://127.0.0.1:\(20000 + i)",
                publicKey: options.keys.isEmpty ? nil : options.keys[i].publicKey)
            try control[i].send(WireMessage(.hello, hello).frames)
        }
        let all = control + heartbeats
        let end = Date().addingTimeInterval(seconds)
        var nextBeat = Date()
        while finished.contains(false) && Date() < end {
            if Date() >= nextBeat {
                for i in 0..<options.count where !finished[i] {
                    _ = heartbeats[i].sendNow(
                        WireMessage(.heartbeat, Heartbeat(workerId: places[i]?.workerId ?? -1, status: "simulated")).frames)
                }
                nextBeat = Date().addingTimeInterval(0.5)
            }
            for s in pollAny(all, timeoutMs: 100) {
                if s >= options.count {
                    while heartbeats[s - options.count].poll(timeoutMs: 0) { _ = try heartbeats[s - options.count].receive() }; continue
                }
                while control[s].poll(timeoutMs: 0) { try answer(s, WireMessage(frames: control[s].receive())) }
            }
        }
    }

    private func answer(_ i: Int, _ msg: WireMessage) throws {
        switch msg.kind {
        case .assign:
            let a = try msg.decode(Assign.self)
            places[i] = Place(workerId: a.workerId, spec: a.spec, model: a.model)
            let norms = [Double](repeating: 1e-4, count: a.model.parameterShapes(for: a.spec).count)
            replyArrays[i] = [bytes(norms)]
            try control[i].send(WireMessage(.ready, Ready(workerId: a.workerId)).frames)
        case .step:
            guard let p = places[i] else { return }
            let order = try msg.decode(StepOrder.self)
            // The last stage's loss sums (one per micro-batch) and task sums/weights, as a real worker sends them.
            let losses = p.spec.hasHead ? [Double](repeating: 1.0, count: order.microBatches) : []
            let tasks: [Double] = p.spec.hasHead ? [Double(order.microBatches), 0, 0, 1, 0, 0] : []
            let done = StepDone(workerId: p.workerId, step: order.step, forwardMs: 0, backwardMs: 0, waitMs: 0, commMs: 0)
            try control[i].send(WireMessage(.stepDone, done, arrays: [bytes(losses), bytes(tasks)] + replyArrays[i]).frames)
        case .saveRequest:
            guard let p = places[i] else { return }
            let r = try msg.decode(SaveRequest.self)
            let tensors = p.model.parameterShapes(for: p.spec).flatMap { s in
                Array(repeating: bytes([Float](repeating: 0, count: s.shape.reduce(1, *))), count: 3)
            }
            try control[i].send(
                WireMessage(.saveReply, SaveReply(workerId: p.workerId, step: r.step, optimizerStep: r.step), arrays: tensors).frames)
        case .shutdown:
            try control[i].send(WireMessage(.shutdown, Shutdown(reason: "goodbye")).frames)
            finished[i] = true
        case .reject, .reset:
            throw Refused(
                description: "simulated worker \(i): the coordinator sent \(msg.kind): \(String(decoding: msg.body, as: UTF8.self))")
        default: break
        }
    }
}
