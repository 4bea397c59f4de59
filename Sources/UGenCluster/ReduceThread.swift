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
    /// final[b]: bucket b holds the step's sum (buckets may become final in any order; each is started
    /// as soon as it is).
    private var final: [Bool]
    /// A pipe (read end, write end; both non-blocking) the training thread writes a byte to, to wake
    /// this thread from its poll on the data socket.
    private let wake: (read: Int32, write: Int32)
    // The step's, set by `prepare` before the thread runs.
    private var data: ZMQSocket?, sockets: [ZMQSocket?] = [], generation = 0, step = 0
    private var header = [UInt8](repeating: 0, count: 64)
    /// Nanoseconds from the hand-over to the reduce's end, in the last step.
    private(set) var reduceNanos: UInt64 = 0
    /// Of those, the nanoseconds this thread had nothing under way and waited for the backward pass to
    /// make a bucket final (the rest is network, partners and copies).
    private(set) var idleNanos: UInt64 = 0
    /// Nanoseconds from the first bucket final to the last, in the last step: the part of the backward
    /// pass a reduce can hide behind.
    var windowNanos: UInt64 { cond.withLock { lastFinal - firstFinal } }
    private var firstFinal: UInt64 = 0, lastFinal: UInt64 = 0

    /// `onWait(partner)`: the thread now waits for that replica's segment (for the heartbeat's hang report).
    /// Throws when the process has no file descriptor left for the wake-up pipe.
    init(_ reducer: ReplicaReduce, onWait: @escaping (Int) -> Void) throws {
        self.reducer = reducer; self.onWait = onWait
        final = Array(repeating: false, count: reducer.bucketCount)
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw ProtocolError.allReduce(reason: "no pipe for the all-reduce thread's wake-up (errno \(errno))")
        }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        wake = (fds[0], fds[1])
        let t = Thread { [self] in loop() }
        t.name = "all-reduce"
        t.start()
    }

    deinit {
        close(wake.read)
        close(wake.write)
    }

    /// Training thread, at a step's start (before any message of it is received).
    func prepare(step: Int, generation: Int, data: ZMQSocket, sockets: [ZMQSocket?]) {
        cond.withLock {
            self.step = step; self.generation = generation; self.data = data; self.sockets = sockets
            for b in final.indices { final[b] = false }; abort = false; failure = nil; state = .idle; reduceNanos = 0
            idleNanos = 0; firstFinal = 0; lastFinal = 0
        }
    }

    /// Training thread: bucket `b` holds the step's sum. The first one hands the data socket over.
    func bucketFinal(_ b: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        cond.withLock {
            final[b] = true
            if state == .idle {
                state = .running
                firstFinal = now
            }
            lastFinal = now
            cond.broadcast()
        }
        signalWake()
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
            signalWake()
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
            do { try reduceStep() } catch is Abandoned {} catch { result = error }
            reduceNanos = DispatchTime.now().uptimeNanoseconds - t0
            cond.withLock {
                failure = result
                state = .done
                cond.broadcast()
            }
        }
    }

    /// The step's reduce, driven by events: a bucket made final is started at once, a segment that
    /// arrives moves its piece on at once, so the buckets' rounds interleave on the links (a bucket
    /// never waits for the one before it). Sleeps in one poll on the data socket and the wake-up pipe.
    private func reduceStep() throws {
        let wire = ReplicaReduce.Wire(sockets: sockets, generation: Int32(generation), step: Int32(step))
        var waitingFor: Int? = nil
        while true {
            drainWake()
            try startFinalBuckets(wire)
            if reducer.isDone { return }
            if let r = reducer.awaitedReplica, r != waitingFor {
                waitingFor = r
                onWait(r)
            }
            guard let data else { throw ProtocolError.allReduce(reason: "the all-reduce has no data socket") }
            let idle = reducer.inFlight == 0, t = DispatchTime.now().uptimeNanoseconds
            let message = data.poll(timeoutMs: 50, orReadable: wake.read)
            if idle { idleNanos += DispatchTime.now().uptimeNanoseconds - t }
            if message, let q = try receiveOne() { try reducer.advance(piece: q, wire) }
        }
    }

    /// Starts every bucket the training thread made final since the last look; throws `Abandoned` once
    /// the training thread gave the step up.
    private func startFinalBuckets(_ wire: ReplicaReduce.Wire) throws {
        if cond.withLock({ abort }) { throw Abandoned() }
        for b in 0..<reducer.bucketCount where !reducer.hasStarted(b) {
            if cond.withLock({ final[b] }) { try reducer.start(bucket: b, wire) }
        }
    }

    /// Wakes the thread from its poll (a bucket made final, or an abandon).
    private func signalWake() {
        var one: UInt8 = 1
        _ = write(wake.write, &one, 1)  // a full pipe already wakes the thread
    }

    private func drainWake() {
        var bytes: (UInt64, UInt64) = (0, 0)
        while withUnsafeMutableBytes(of: &bytes, { read(wake.read, $0.baseAddress, $0.count) }) > 0 {}
    }

    /// Takes one message from the data socket (polling, so an abandon is noticed): after the hand-over
    /// only the partners' segments may come. Returns the piece of the segment (nil: dropped as old).
    private func receiveOne() throws -> Int? {
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
        return try header.withUnsafeBytes {
            try reducer.receive(
                header: UnsafeRawBufferPointer(rebasing: $0[0..<DataHeader.size]), from: data, generation: generation, step: step)
        }
    }
}
