import Foundation
import Logging
import UGenTraining

/// Heartbeats on a socket of their own, from a thread of their own: a worker deep in a long step still
/// says it is alive, and notices when the coordinator stops answering.
final class HeartbeatLink: @unchecked Sendable {
    private let endpoint: String
    private let timeout: Double
    private let lock = NSLock()
    private let log: Logger
    private var _workerId = -1, _lost = false, running = false
    private var _interval = RunConfig().heartbeatSeconds
    private var thread: Thread?

    private let curve: (CurveKeyPair, String)?
    init(coordinator: String, timeout: Double, curve: (CurveKeyPair, String)?, log: Logger) {
        endpoint = coordinator; self.timeout = timeout; self.curve = curve; self.log = log
    }

    /// Seconds between heartbeats: `cluster.heartbeat_s` of the run once assigned, its default before.
    var interval: Double {
        get { lock.withLock { _interval } }
        set { lock.withLock { _interval = newValue } }
    }

    var workerId: Int {
        get { lock.withLock { _workerId } }
        set { lock.withLock { _workerId = newValue } }
    }
    var lost: Bool { lock.withLock { _lost } }
    /// The instance id in the coordinator's latest heartbeat reply.
    var coordinator: String? { lock.withLock { _coordinator } }
    private var _coordinator: String?

    // What the worker is doing, set from its main thread without allocating, reported in heartbeats.
    private var idleText = "idle", position: (step: Int, forward: Bool, microBatch: Int)? = nil
    private var waitingSince: DispatchTime? = nil, reducePartner: Int? = nil
    /// This worker's stage and replica (for the wait reports).
    var place: (stage: Int, replica: Int) {
        get { lock.withLock { _place } }
        set { lock.withLock { _place = newValue } }
    }
    private var _place = (stage: -1, replica: -1)
    func setStatus(_ s: String) {
        lock.withLock {
            idleText = s; position = nil; waitingSince = nil
        }
    }
    func setPosition(step: Int, forward: Bool, microBatch: Int) { lock.withLock { position = (step, forward, microBatch) } }
    /// `reduceFrom`: the replica whose all-reduce segment it waits for.
    func setWaiting(_ w: Bool, reduceFrom: Int? = nil) {
        lock.withLock {
            waitingSince = w ? DispatchTime.now() : nil; reducePartner = reduceFrom
        }
    }

    /// What the worker waits for now (nil: it is not waiting), for the coordinator's hang probe.
    var waitReport: WaitReport? {
        lock.withLock {
            guard let p = position, let w = waitingSince else { return nil }
            let secs = Double(DispatchTime.now().uptimeNanoseconds - w.uptimeNanoseconds) / 1e9
            if let partner = reducePartner {
                return WaitReport(step: p.step, what: .reduce, microBatch: -1, fromStage: _place.stage, fromReplica: partner, seconds: secs)
            }
            return WaitReport(
                step: p.step, what: p.forward ? .activation : .gradient, microBatch: p.microBatch,
                fromStage: _place.stage + (p.forward ? -1 : 1), fromReplica: _place.replica, seconds: secs)
        }
    }

    var status: String {
        lock.withLock {
            guard let p = position else { return idleText }
            var s = "step \(p.step): \(p.forward ? "forward" : "backward") of micro-batch \(p.microBatch)"
            if let w = waitingSince, let partner = reducePartner {
                let secs = Double(DispatchTime.now().uptimeNanoseconds - w.uptimeNanoseconds) / 1e9
                s += ", waiting for replica \(partner)'s all-reduce segment for \(String(format: "%.1f", secs)) s"
            } else if let w = waitingSince {
                let secs = Double(DispatchTime.now().uptimeNanoseconds - w.uptimeNanoseconds) / 1e9
                s +=
                    ", waiting for the \(p.forward ? "previous stage's activation" : "next stage's gradient") for "
                    + "\(String(format: "%.1f", secs)) s"
            }
            return s
        }
    }

    func start(workerId: Int) {
        lock.withLock {
            _workerId = workerId; running = true
        }
        let t = Thread { [weak self] in self?.loop() }
        thread = t
        t.start()
    }

    func stop() { lock.withLock { running = false } }

    /// The heartbeat socket, or nil after logging why it could not be set up (the worker then sends no
    /// heartbeats, and the coordinator will count it lost: the log says why).
    private func connectSocket() -> ZMQSocket? {
        do {
            let socket = try ZMQSocket(.dealer)
            if let (keys, server) = curve { try socket.makeCurveClient(keys, server: server) }
            try socket.connect(endpoint)
            return socket
        } catch {
            log.error("heartbeat socket to \(endpoint) cannot be set up, no heartbeats will be sent: \(error)")
            return nil
        }
    }

    private func loop() {
        guard let socket = connectSocket() else { return }
        var lastHeard = Date()
        while lock.withLock({ running }) {
            _ = try? socket.send(WireMessage(.heartbeat, Heartbeat(workerId: workerId, status: status)).frames)
            let deadline = Date().addingTimeInterval(interval)
            while Date() < deadline {
                if socket.poll(timeoutMs: 100), let frames = try? socket.receive() {
                    lastHeard = Date()
                    if let reply = try? WireMessage(frames: frames), let hb = try? reply.decode(Heartbeat.self) {
                        if let c = hb.coordinator { lock.withLock { _coordinator = c } }
                        if hb.probe == true {  // a step is past its deadline: say what we wait for, now
                            _ = try? socket.send(
                                WireMessage(
                                    .heartbeat,
                                    Heartbeat(
                                        workerId: workerId, status: status, answer: true,
                                        wait: waitReport)
                                ).frames)
                        }
                    }
                }
            }
            if Date().timeIntervalSince(lastHeard) > timeout { lock.withLock { _lost = true } }
        }
    }
}
