import Foundation
import UGenKernels

/// The all-reduce of one stage's gradients among its replicas: recursive-halving reduce-scatter, then
/// recursive-doubling all-gather (Rabenseifner's algorithm), over the workers' data sockets, bucket by
/// bucket on a thread of its own while the weight pass goes on (`ReduceThread`).
///
/// Why this one: each replica sends and receives 2·(R−1)/R of the gradient a step, whatever R (the star
/// it replaces put 2·(R−1) on replica 0's link), and its sums follow the canonical gradient tree. In
/// reduce-scatter round s the partners are 2ˢ apart and hold the same segment; each keeps one half, adds
/// the partner's copy of it (lower replicas' sum + higher replicas' sum: the tree's sibling pair, and IEEE
/// addition is commutative, so both orders are the same bits) and gives away the other. With each
/// replica's own sum an aligned subtree (`GradientTree`), the result is the single process's sum to the
/// bit. Hence the replica count must be a power of two (`RunConfig` refuses others).
///
/// A bucket larger than `pieceLimit` elements is cut into equal pieces, each halved and doubled on its
/// own: every element is still summed in the same tree (the layout never changes a bit), but a big
/// bucket's rounds overlap on the links instead of following one another, each a round trip long.
///
/// Every field of an incoming message is checked against the plan (round, sender, offset, size, not a
/// duplicate) before its segment is received, into memory set aside at assignment: nothing per step.
final class ReplicaReduce: @unchecked Sendable {
    /// One reduce-scatter round: the partner, the segment this replica keeps, and the one it gives away.
    struct Round { let partner: Int; let keep: Range<Int>; let give: Range<Int> }

    let replica: Int, replicas: Int
    /// The stage's gradient buckets (`Stage.gradientBuckets`), laid out one after another in `flat`.
    private let buckets: [[Tensor]]
    /// regions[b]: bucket b's elements in `flat`; bucketPieces[b]: its pieces' indices.
    private let regions: [Range<Int>], bucketPieces: [Range<Int>]
    /// pieceBucket[q]: the bucket piece q belongs to.
    private let pieceBucket: [Int]
    /// plans[q]: piece q's reduce-scatter rounds over its elements (p of them for 2ᵖ replicas). Piece
    /// q's wire rounds are q·2p + 0..<p (reduce-scatter) and q·2p + p..<2p (all-gather, wire round
    /// 2p−1−s undoing round s).
    private let plans: [[Round]]
    /// Every gradient of the stage, flattened bucket by bucket: what is reduced.
    let flat: Tensor
    /// incoming[q][s]: the partner's copy of the segment kept in piece q's round s.
    private let incoming: [[Tensor]]
    private var arrived: [Bool]
    /// progress[q]: the round (0..<2p, counted within the piece) whose segment piece q waits for; 2p
    /// once it is reduced, −1 before its bucket starts.
    private var progress: [Int]
    /// piecesLeft[b]: bucket b's pieces not yet reduced (its sum goes back to the gradients at 0).
    private var piecesLeft: [Int]
    /// Buckets started and not yet reduced; buckets not yet reduced (started or not).
    private(set) var inFlight = 0, unfinished = 0
    private let peerKeys: [String]?
    let partners: [Int]
    private(set) var bytesSent = 0, bytesReceived = 0

    /// `pieceLimit`: the most elements a piece holds (32 768: 128 kB of fp32, a tenth of a second at
    /// 10 Mbit/s, a millisecond at 1 Gbit/s; many more pieces would add headers and wake-ups).
    init(replica: Int, replicas: Int, buckets: [[Tensor]], peerKeys: [String]?, pieceLimit: Int = 1 << 15) throws {
        guard replicas >= 2, replicas & (replicas - 1) == 0 else {
            throw ProtocolError.allReduce(reason: "the all-reduce needs a power-of-two replica count, not \(replicas)")
        }
        guard (0..<replicas).contains(replica) else { throw ProtocolError.allReduce(reason: "replica \(replica) outside 0..<\(replicas)") }
        let count = buckets.joined().reduce(0) { $0 + $1.count }
        guard count <= Int(Int32.max) else {
            throw ProtocolError.allReduce(reason: "\(count) gradient elements do not fit a reduce header's offset")
        }
        self.replica = replica; self.replicas = replicas; self.peerKeys = peerKeys; self.buckets = buckets
        var regions: [Range<Int>] = [], at = 0
        for b in buckets { let n = b.reduce(0) { $0 + $1.count }; regions.append(at..<(at + n)); at += n }
        self.regions = regions
        var pieces: [Range<Int>] = [], pieceBucket: [Int] = [], bucketPieces: [Range<Int>] = []
        for (b, region) in regions.enumerated() {
            let limit = max(pieceLimit, 1), n = max(1, (region.count + limit - 1) / limit)
            bucketPieces.append(pieces.count..<(pieces.count + n))
            for i in 0..<n {
                pieces.append((region.lowerBound + region.count * i / n)..<(region.lowerBound + region.count * (i + 1) / n))
                pieceBucket.append(b)
            }
        }
        self.pieceBucket = pieceBucket; self.bucketPieces = bucketPieces
        plans = pieces.map { Self.plan(replica: replica, replicas: replicas, region: $0) }
        partners = plans.first?.map(\.partner) ?? []
        flat = Tensor([count])
        incoming = plans.map { $0.map { Tensor([$0.keep.count]) } }
        arrived = Array(repeating: false, count: 2 * partners.count * pieces.count)
        progress = Array(repeating: -1, count: pieces.count)
        piecesLeft = Array(repeating: 0, count: buckets.count)
    }

    /// Halves `region` once per partner distance 1, 2, 4, …: the segments this replica keeps and gives.
    private static func plan(replica: Int, replicas: Int, region: Range<Int>) -> [Round] {
        var plan: [Round] = [], segment = region, distance = 1
        while distance < replicas {
            let mid = segment.lowerBound + segment.count / 2
            let lower = segment.lowerBound..<mid, upper = mid..<segment.upperBound
            let keepLower = replica & distance == 0
            plan.append(Round(partner: replica ^ distance, keep: keepLower ? lower : upper, give: keepLower ? upper : lower))
            segment = keepLower ? lower : upper
            distance *= 2
        }
        return plan
    }

    var bucketCount: Int { buckets.count }

    /// Before a step: nothing has arrived, nothing was sent.
    func beginStep() {
        for i in arrived.indices { arrived[i] = false }
        for q in progress.indices { progress[q] = -1 }
        for b in piecesLeft.indices { piecesLeft[b] = 0 }
        inFlight = 0
        unfinished = buckets.count
        bytesSent = 0; bytesReceived = 0
    }

    /// Where a message of wire round `round` belongs: its expected sender, segment and destination.
    private func slot(_ round: Int) -> (from: Int, segment: Range<Int>, into: UnsafeMutablePointer<Float>)? {
        let p = partners.count
        guard p > 0, round >= 0, round < arrived.count else { return nil }
        let q = round / (2 * p), r = round % (2 * p)
        if r < p { return (plans[q][r].partner, plans[q][r].keep, incoming[q][r].data) }
        let s = plans[q][2 * p - 1 - r]
        return (s.partner, s.give, flat.data + s.give.lowerBound)
    }

    /// Receives the segment of a message whose header `h` was just read from `socket`, after checking
    /// its generation (an old one is dropped), step, round, sender (its CURVE key when encrypted), offset
    /// and size. A message that does not fit is discarded and thrown as the sender's fault. Returns the
    /// piece the segment belongs to (nil: an old generation's message, dropped).
    @discardableResult
    func receive(header raw: UnsafeRawBufferPointer, from socket: ZMQSocket, generation: Int, step: Int) throws -> Int? {
        let h: ReduceHeader
        do { h = try ReduceHeader(raw) } catch {
            try socket.discardRest(); throw PeerFault(lastSenderOf: socket, "malformed reduce header")
        }
        return try receive(h, from: socket, generation: generation, step: step)
    }

    private func receive(_ h: ReduceHeader, from socket: ZMQSocket, generation: Int, step: Int) throws -> Int? {
        func refuse(_ reason: String) throws -> Never {
            try socket.discardRest()
            throw PeerFault(lastSenderOf: socket, reason)
        }
        guard Int(h.generation) == generation else {  // from before a recovery
            try socket.discardRest()
            return nil
        }
        guard Int(h.step) == step else { try refuse("reduce message for step \(h.step) during step \(step)") }
        let round = Int(h.round), from = Int(h.fromReplica)
        guard let s = slot(round) else { try refuse("reduce message for round \(round) of \(arrived.count)") }
        guard from == s.from else { try refuse("reduce message of round \(round) from replica \(from), expected replica \(s.from)") }
        if let peerKeys, peerKeys.indices.contains(from), socket.lastSender != peerKeys[from] {
            try refuse("reduce message claiming replica \(from) with another CURVE key")
        }
        guard Int(h.offset) == s.segment.lowerBound, !arrived[round], socket.hasMore else {
            try refuse(
                "reduce message of round \(round) at offset \(h.offset)\(arrived[round] ? ", a duplicate" : ""), "
                    + "expected offset \(s.segment.lowerBound)"
            )
        }
        let expected = s.segment.count * 4
        let got = try socket.receive(into: s.into, capacity: expected)
        try socket.discardRest()
        guard got == expected else { try refuse("reduce message of round \(round) with \(got) bytes, expected \(expected)") }
        arrived[round] = true
        bytesReceived += DataHeader.size + got
        return round / (2 * partners.count)  // the piece
    }

    /// Where a step's segments go: the sockets to the replicas (indexed by replica), and the step's
    /// generation and number for their headers.
    struct Wire {
        let sockets: [ZMQSocket?]
        let generation: Int32, step: Int32
    }

    /// Starts bucket `b` (final in the stage's gradients): copies it into `flat`, sends its pieces' first
    /// segments, and moves them on past whatever their partners sent already.
    func start(bucket b: Int, _ wire: Wire) throws {
        var o = regions[b].lowerBound
        for g in buckets[b] {
            (flat.data + o).update(from: g.data, count: g.count)
            o += g.count
        }
        piecesLeft[b] = bucketPieces[b].count
        inFlight += 1
        for q in bucketPieces[b] {
            progress[q] = 0
            try send(piece: q, round: 0, wire)
        }
        for q in bucketPieces[b] { try advance(piece: q, wire) }
    }

    /// Moves a started piece on past every round whose segment has arrived: a reduce-scatter segment is
    /// added into the half kept (the same additions, in the same order, as a reduce run alone, so the
    /// same bits) and the next round's segment goes out at once. Each piece waits only for its own
    /// segments, so many are in flight at once and the links never idle between one piece's rounds
    /// while another has data. After a bucket's last piece its sum is copied back into the gradients.
    func advance(piece q: Int, _ wire: Wire) throws {
        let p = partners.count, base = q * 2 * p
        while progress[q] >= 0, progress[q] < 2 * p, arrived[base + progress[q]] {
            let k = progress[q]
            if k < p {
                let r = plans[q][k]
                addInPlace(flat.data + r.keep.lowerBound, incoming[q][k].data, count: r.keep.count)
            }
            progress[q] = k + 1
            if k + 1 < 2 * p {
                try send(piece: q, round: k + 1, wire)
            } else {
                pieceDone(bucket: pieceBucket[q])
            }
        }
    }

    private func pieceDone(bucket b: Int) {
        piecesLeft[b] -= 1
        guard piecesLeft[b] == 0 else { return }
        var o = regions[b].lowerBound
        for g in buckets[b] {
            g.data.update(from: flat.data + o, count: g.count)
            o += g.count
        }
        inFlight -= 1
        unfinished -= 1
    }

    /// Sends piece `q`'s segment of its wire round `k`: the half given away in reduce-scatter round k,
    /// or, in the all-gather (k ≥ p), the summed segment kept in round 2p−1−k.
    private func send(piece q: Int, round k: Int, _ wire: Wire) throws {
        let p = partners.count
        let r = plans[q][k < p ? k : 2 * p - 1 - k], segment = k < p ? r.give : r.keep
        guard let socket = wire.sockets.indices.contains(r.partner) ? wire.sockets[r.partner] : nil else {
            throw ProtocolError.allReduce(reason: "no socket to replica \(r.partner)")
        }
        let h = ReduceHeader(
            generation: wire.generation, step: wire.step, round: Int32(q * 2 * p + k), fromReplica: Int32(replica),
            offset: Int32(segment.lowerBound))
        try h.withBytes { try socket.sendPart($0, more: true) }
        try socket.sendPart(
            UnsafeRawBufferPointer(start: flat.data + segment.lowerBound, count: segment.count * 4), more: false)
        bytesSent += DataHeader.size + segment.count * 4
    }

    /// Whether bucket `b` was started this step.
    func hasStarted(_ b: Int) -> Bool { progress[bucketPieces[b].lowerBound] >= 0 }

    /// Every bucket is reduced and back in the gradients.
    var isDone: Bool { unfinished == 0 }

    /// The replica whose segment the first piece under way waits for (nil when none is under way): what
    /// the heartbeat's hang report names.
    var awaitedReplica: Int? {
        let p = partners.count
        guard let q = progress.firstIndex(where: { $0 >= 0 && $0 < 2 * p }) else { return nil }
        let k = progress[q]
        return plans[q][k < p ? k : 2 * p - 1 - k].partner
    }
}
