import Foundation

/// Runs a step's all-reduce (`ReplicaReduce`) on a thread of its own, bucket by bucket as the weight
/// pass makes them final (`Stage.onBucketFinal`), so the communication of the head and the last layers
/// overlaps the weight products of the first ones (zero bubble runs weight passes late: more of them
/// are left to hide behind).
///
/// The training thread hands over the data socket when the first bucket is final. That happens only in
/// the step's last backward pass (the trees complete on the last micro-batch), after its last receive:
/// from then on the training thread receives nothing more this step, and this thread receives the
/// partners' segments. `finish` waits for the end while watching the coordinator; `abandon`
/// stops a reduce the step gave up on. The replica sockets are used by this thread only.
final class ReduceThread: @unchecked Sendable {
    private enum State { case idle, running, done, stopped }
    /// The thread gave up a reduce its step abandoned.
    private struct Abandoned: Error {}

    private let reducer: ReplicaReduce
    private let onWait: (Int) -> Void
    private let cond = NSCondition()
    private var state = State.idle, abort = false, failure: Error?
    /// final[b]: bucket b holds the step's sum (buckets may become final out of order; they are reduced in order).
    private var final: [Bool]
    // The step's, set by `prepare` before the thread runs.
    private var data: ZMQSocket?, sockets: [ZMQSocket?] = [], generation = 0, step = 0
    private var header = [UInt8](repeating: 0, count: 64)
    /// Nanoseconds from the hand-over to the reduce's end, in the last step.
    private(set) var reduceNanos: UInt64 = 0

    /// `onWait(partner)`: the thread now waits for that replica's segment (for the heartbeat's hang report).
    init(_ reducer: ReplicaReduce, onWait: @escaping (Int) -> Void) {
        self.reducer = reducer; self.onWait = onWait
        final = Array(repeating: false, count: reducer.bucketCount)
        let t = Thread { [self] in loop() }
        t.name = "all-reduce"
        t.start()
    }

    /// Training thread, at a step's start (before any message of it is received).
    func prepare(step: Int, generation: Int, data: ZMQSocket, sockets: [ZMQSocket?]) {
        cond.withLock {
            self.step = step; self.generation = generation; self.data = data; self.sockets = sockets
            for b in final.indices { final[b] = false }; abort = false; failure = nil; state = .idle; reduceNanos = 0
        }
    }

    /// Training thread: bucket `b` holds the step's sum. The first one hands the data socket over.
    func bucketFinal(_ b: Int) {
        cond.withLock {
            final[b] = true
            if state == .idle { state = .running }
            cond.broadcast()
        }
    }

    /// Training thread: waits for the reduce to end, calling `check` every 100 ms (it throws when the
    /// coordinator breaks in; the reduce is then abandoned). Rethrows the reduce's failure.
    func finish(check: () throws -> Void) throws {
        while true {
            let running: Bool = cond.withLock {
                if state == .running { _ = cond.wait(until: Date().addingTimeInterval(0.1)) }
                return state == .running
            }
            if !running { break }
            do { try check() } catch { abandon(); throw error }
        }
        let error: Error? = cond.withLock {
            state = .idle; return failure
        }
        if let error { throw error }
    }

    /// Training thread: stops a running reduce and waits until the thread has let go of the sockets.
    func abandon() {
        cond.withLock {
            guard state == .running else { state = .idle; return }
            abort = true
            cond.broadcast()
            while state == .running { cond.wait() }
            state = .idle
        }
    }

    /// Ends the thread (a new assignment brings a new one) and lets go of the sockets, so that the
    /// process's ZeroMQ context can close at exit.
    func stop() {
        abandon()
        cond.withLock {
            state = .stopped; data = nil; sockets = []; cond.broadcast()
        }
    }

    private func loop() {
        while true {
            let go: Bool = cond.withLock {
                while state != .running && state != .stopped { cond.wait() }
                return state == .running
            }
            guard go else { return }
            let t0 = DispatchTime.now().uptimeNanoseconds
            var result: Error? = nil
            do {
                for b in 0..<reducer.bucketCount {
                    let stop: Bool = cond.withLock {
                        while !final[b] && !abort { cond.wait() }
                        return abort
                    }
                    if stop { throw Abandoned() }
                    try reducer.reduce(
                        bucket: b, generation: Int32(generation), step: Int32(step), sockets: sockets,
                        receive: { try self.receiveOne() }, waiting: onWait)
                }
            } catch is Abandoned {} catch { result = error }
            reduceNanos = DispatchTime.now().uptimeNanoseconds - t0
            cond.withLock {
                failure = result; state = .done; cond.broadcast()
            }
        }
    }

    /// Takes one message from the data socket (polling, so an abandon is noticed): after the hand-over
    /// only the partners' segments may come.
    private func receiveOne() throws {
        guard let data else { throw ProtocolError.allReduce(reason: "the all-reduce has no data socket") }
        while !data.poll(timeoutMs: 50) {
            if cond.withLock({ abort }) { throw Abandoned() }
        }
        let size = try header.withUnsafeMutableBytes { try data.receiveNotingSender(into: $0.baseAddress!, capacity: $0.count) }
        guard size == DataHeader.size, header[0] == ReduceHeader.kind, data.hasMore else {
            try data.discardRest()
            throw PeerFault(
                lastSenderOf: data,
                "a data message that is no all-reduce segment (\(size)-byte header, kind \(header[0])) during step \(step)'s all-reduce")
        }
        try header.withUnsafeBytes {
            try reducer.receive(
                header: UnsafeRawBufferPointer(rebasing: $0[0..<DataHeader.size]), from: data, generation: generation, step: step)
        }
    }
}
