import Foundation
import UGenKernels

/// The all-reduce of one stage's gradients among its replicas: recursive-halving reduce-scatter, then
/// recursive-doubling all-gather (Rabenseifner's algorithm), over the workers' data sockets.
///
/// Why this one: each replica sends and receives 2·(R−1)/R of the gradient a step, whatever R (the star
/// it replaces put 2·(R−1) on replica 0's link), and its sums follow the canonical gradient tree. In
/// reduce-scatter round s the partners are 2ˢ apart and hold the same segment; each keeps one half, adds
/// the partner's copy of it (lower replicas' sum + higher replicas' sum: the tree's sibling pair, and IEEE
/// addition is commutative, so both orders are the same bits) and gives away the other. With each
/// replica's own sum an aligned subtree (`GradientTree`), the result is the single process's sum to the
/// bit. Hence the replica count must be a power of two (`RunConfig` refuses others).
///
/// Every field of an incoming message is checked against the plan (round, sender, offset, size, not a
/// duplicate) before its segment is received, into memory set aside at assignment: nothing per step.
final class ReplicaReduce {
    /// One reduce-scatter round: the partner, the segment this replica keeps, and the one it gives away.
    struct Round { let partner: Int; let keep: Range<Int>; let give: Range<Int> }

    let replica: Int, replicas: Int
    /// The reduce-scatter rounds (p of them for 2ᵖ replicas); wire rounds p..<2p are the all-gather,
    /// wire round 2p−1−s undoing round s.
    let plan: [Round]
    /// Every gradient of the stage, flattened in parameter order: what is reduced.
    let flat: Tensor
    /// Per reduce-scatter round: the partner's copy of the kept segment.
    private let incoming: [Tensor]
    private var arrived: [Bool]
    private let peerKeys: [String]?
    private(set) var bytesSent = 0, bytesReceived = 0

    /// The gradients reduced, in parameter order.
    private let grads: [Tensor]

    init(replica: Int, replicas: Int, grads: [Tensor], peerKeys: [String]?) throws {
        let count = grads.reduce(0) { $0 + $1.count }
        guard replicas >= 2, replicas & (replicas - 1) == 0 else {
            throw ProtocolError("the all-reduce needs a power-of-two replica count, not \(replicas)")
        }
        guard (0..<replicas).contains(replica) else { throw ProtocolError("replica \(replica) outside 0..<\(replicas)") }
        guard count <= Int(Int32.max) else { throw ProtocolError("\(count) gradient elements do not fit a reduce header's offset") }
        self.replica = replica; self.replicas = replicas; self.peerKeys = peerKeys; self.grads = grads
        var plan: [Round] = [], segment = 0..<count, distance = 1
        while distance < replicas {
            let mid = segment.lowerBound + segment.count / 2
            let lower = segment.lowerBound..<mid, upper = mid..<segment.upperBound
            let keepLower = replica & distance == 0
            plan.append(Round(partner: replica ^ distance, keep: keepLower ? lower : upper, give: keepLower ? upper : lower))
            segment = keepLower ? lower : upper
            distance *= 2
        }
        self.plan = plan
        flat = Tensor([count])
        incoming = plan.map { Tensor([$0.keep.count]) }
        arrived = Array(repeating: false, count: 2 * plan.count)
    }

    /// The partners this replica talks to, one per distance 1, 2, 4, …
    var partners: [Int] { plan.map(\.partner) }

    /// Before a step: nothing has arrived, nothing was sent.
    func beginStep() {
        for i in arrived.indices { arrived[i] = false }
        bytesSent = 0; bytesReceived = 0
    }

    /// Copies the gradients into `flat` (before the reduce) or back out of it (after).
    func load() {
        var o = 0
        for g in grads { (flat.data + o).update(from: g.data, count: g.count); o += g.count }
    }
    func store() {
        var o = 0
        for g in grads { g.data.update(from: flat.data + o, count: g.count); o += g.count }
    }

    /// Where a message of wire round `round` belongs: its expected sender, offset and destination.
    private func slot(_ round: Int) -> (from: Int, segment: Range<Int>, into: UnsafeMutablePointer<Float>)? {
        let p = plan.count
        guard round >= 0 && round < 2 * p else { return nil }
        if round < p { return (plan[round].partner, plan[round].keep, incoming[round].data) }
        let r = plan[2 * p - 1 - round]
        return (r.partner, r.give, flat.data + r.give.lowerBound)
    }

    /// Receives the segment of a message whose header `h` was just read from `socket` (generation and
    /// step already checked), after checking its round, sender (its CURVE key `senderKey` when encrypted),
    /// offset and size. A message that does not fit is discarded and the reason thrown.
    func accept(_ h: ReduceHeader, from socket: ZMQSocket, senderKey: String?) throws {
        let round = Int(h.round), from = Int(h.fromReplica)
        guard let s = slot(round) else { try socket.discardRest(); throw ProtocolError("reduce message for round \(round) of \(arrived.count)") }
        guard from == s.from else {
            try socket.discardRest(); throw ProtocolError("reduce message of round \(round) from replica \(from), expected replica \(s.from)")
        }
        if let peerKeys, peerKeys.indices.contains(from), senderKey != peerKeys[from] {
            try socket.discardRest(); throw ProtocolError("reduce message claiming replica \(from) sent with another CURVE key")
        }
        guard Int(h.offset) == s.segment.lowerBound, !arrived[round], socket.hasMore else {
            try socket.discardRest()
            throw ProtocolError("reduce message of round \(round) at offset \(h.offset)\(arrived[round] ? ", a duplicate" : ""), expected offset \(s.segment.lowerBound)")
        }
        let expected = s.segment.count * 4
        let got = try socket.receive(into: s.into, capacity: expected)
        try socket.discardRest()
        guard got == expected else { throw ProtocolError("reduce message of round \(round) with \(got) bytes, expected \(expected)") }
        arrived[round] = true
        bytesReceived += DataHeader.size + got
    }

    /// Runs the all-reduce on `flat`: sends each round's segment to its partner through `sockets`
    /// (indexed by replica) and calls `receive` until that round's message is in. `waiting(partner)` is
    /// told whom it waits on (for the coordinator's hang diagnosis).
    func run(generation: Int32, step: Int32, sockets: [ZMQSocket?], receive: () throws -> Void, waiting: (Int) -> Void) throws {
        let p = plan.count
        func send(_ round: Int, _ to: Int, _ segment: Range<Int>) throws {
            guard let socket = sockets.indices.contains(to) ? sockets[to] : nil else { throw ProtocolError("no socket to replica \(to)") }
            let h = ReduceHeader(generation: generation, step: step, round: Int32(round), fromReplica: Int32(replica),
                                 offset: Int32(segment.lowerBound))
            try h.withBytes { try socket.sendPart($0, more: true) }
            try socket.sendPart(UnsafeRawBufferPointer(start: flat.data + segment.lowerBound, count: segment.count * 4), more: false)
            bytesSent += DataHeader.size + segment.count * 4
        }
        func receiveRound(_ round: Int, _ partner: Int) throws {
            waiting(partner)
            while !arrived[round] { try receive() }
        }
        for (s, r) in plan.enumerated() {
            try send(s, r.partner, r.give)
            try receiveRound(s, r.partner)
            addInPlace(flat.data + r.keep.lowerBound, incoming[s].data, count: r.keep.count)
        }
        for s in stride(from: p - 1, through: 0, by: -1) {
            let r = plan[s], round = 2 * p - 1 - s
            try send(round, r.partner, r.keep)
            try receiveRound(round, r.partner)
        }
    }
}
