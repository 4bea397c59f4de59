import Foundation
import UGenKernels
import XCTest

@testable import UGenCluster

/// The all-reduce alone, in one process over real ZeroMQ sockets on loopback: its sums are the
/// canonical tree's bits on every replica, and every field of a forged message is refused.
final class AllReduceTests: XCTestCase {
    /// R replicas, each with its own PULL socket, PUSH sockets to the others and a `ReduceThread`.
    final class Replicas {
        let pulls: [ZMQSocket], pushes: [[ZMQSocket?]], reducers: [ReplicaReduce], threads: [ReduceThread]
        let endpoints: [String]
        init(_ buckets: [[[Tensor]]], pieceLimit: Int = 1 << 15) throws {
            let replicas = buckets.count
            pulls = try (0..<replicas).map { _ in try ZMQSocket(.pull) }
            endpoints = try pulls.map { try $0.bind("tcp://127.0.0.1:*") }
            reducers = try (0..<replicas).map {
                try ReplicaReduce(replica: $0, replicas: replicas, buckets: buckets[$0], peerKeys: nil, pieceLimit: pieceLimit)
            }
            let endpoints = endpoints
            pushes = try reducers.map { r in
                try (0..<replicas).map { to in
                    guard r.partners.contains(to) else { return nil }
                    let s = try ZMQSocket(.push); try s.connect(endpoints[to]); return s
                }
            }
            threads = try reducers.map { try ReduceThread($0, onWait: { _ in }) }
        }
        deinit { for t in threads { t.stop() } }

        /// Every replica reduces step `step` of generation 1 at once; returns each one's failure, if any.
        func run(step: Int) -> [Error?] {
            for (i, t) in threads.enumerated() {
                reducers[i].beginStep()
                t.prepare(step: step, generation: 1, data: pulls[i], sockets: pushes[i])
            }
            for (i, t) in threads.enumerated() { for b in 0..<reducers[i].bucketCount { t.bucketFinal(b) } }
            return threads.map { t in
                do { try t.finish(check: {}); return nil } catch { return error }
            }
        }
    }

    func randomBuckets(seed: UInt64) -> [[Tensor]] {
        var rng = SplitMix64(seed: seed)
        func tensor(_ n: Int) -> Tensor {
            Tensor([n], (0..<n).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53) * 2 - 1) * 1e3 })
        }
        return [[tensor(5), tensor(1)], [tensor(37)], [], [tensor(3), tensor(64)]]
    }

    func testFourReplicasEndWithTheTreeSumToTheBit() throws {
        try checkFourReplicas(pieceLimit: 1 << 15, messagesPerRound: 4)
    }

    /// Buckets cut into pieces of at most 8 elements (37 → 5 pieces, 6 + 1 → 1, 3 + 64 → 9, the empty
    /// bucket 1), each halved and doubled on its own and all in flight at once: the same bits.
    func testBucketsCutIntoPiecesGiveTheSameBits() throws {
        try checkFourReplicas(pieceLimit: 8, messagesPerRound: 16)
    }

    func checkFourReplicas(pieceLimit: Int, messagesPerRound: Int) throws {
        let buckets = (0..<4).map { randomBuckets(seed: UInt64(10 + $0)) }
        // The tree over replicas: (r0 + r1) + (r2 + r3), element by element.
        let expected = buckets[0].indices.map { b in
            buckets[0][b].indices.map { t in
                (0..<buckets[0][b][t].count).map { i in
                    (buckets[0][b][t][i] + buckets[1][b][t][i]) + (buckets[2][b][t][i] + buckets[3][b][t][i])
                }
            }
        }
        let replicas = try Replicas(buckets, pieceLimit: pieceLimit)
        XCTAssertTrue(replicas.run(step: 7).allSatisfy { $0 == nil })
        for r in 0..<4 {
            for b in buckets[r].indices {
                for t in buckets[r][b].indices {
                    XCTAssertEqual(buckets[r][b][t].array.map(\.bitPattern), expected[b][t].map(\.bitPattern), "replica \(r) bucket \(b)")
                }
            }
            // 2·(R−1)/R of the gradient's bytes, up to the rounding of odd halves (a float per bucket and round).
            let total = Double(buckets[r].joined().reduce(0) { $0 + $1.count } * 4), messages = messagesPerRound * 4
            for bytes in [replicas.reducers[r].bytesSent, replicas.reducers[r].bytesReceived] {
                XCTAssertEqual(Double(bytes - DataHeader.size * messages), 1.5 * total, accuracy: Double(4 * messages), "replica \(r)")
            }
        }
    }

    /// A forged segment (wrong sender, round, offset, size, step) fails the step with a one-line reason;
    /// one from an old generation is dropped without a word.
    func testForgedSegmentsAreRefusedOneLine() throws {
        let buckets = (0..<2).map { randomBuckets(seed: UInt64(20 + $0)) }
        let replicas = try Replicas(buckets)
        let forger = try ZMQSocket(.push)
        try forger.connect(replicas.endpoints[0])
        func forge(_ h: ReduceHeader, floats: Int) throws {
            let payload = [Float](repeating: 1, count: floats)
            try h.withBytes { try forger.sendPart($0, more: true) }
            try payload.withUnsafeBytes { try forger.sendPart($0, more: false) }
        }
        let cases: [(ReduceHeader, Int, String)] = [
            (ReduceHeader(generation: 1, step: 3, round: 0, fromReplica: 0, offset: 0), 3, "from replica 0, expected replica 1"),
            (ReduceHeader(generation: 1, step: 3, round: 99, fromReplica: 1, offset: 0), 3, "round 99 of 8"),
            (ReduceHeader(generation: 1, step: 3, round: 0, fromReplica: 1, offset: 2), 3, "at offset 2, expected offset 0"),
            (ReduceHeader(generation: 1, step: 3, round: 0, fromReplica: 1, offset: 0), 4, "with 16 bytes, expected 12"),
            (ReduceHeader(generation: 1, step: 4, round: 0, fromReplica: 1, offset: 0), 3, "for step 4 during step 3"),
        ]
        for (h, floats, reason) in cases {
            // Replica 1 is left out: replica 0 waits for its round-0 segment and gets the forgery first.
            replicas.reducers[0].beginStep()
            replicas.threads[0].prepare(step: 3, generation: 1, data: replicas.pulls[0], sockets: replicas.pushes[0])
            try forge(ReduceHeader(generation: 0, step: 3, round: 0, fromReplica: 1, offset: 0), floats: 3)  // old: dropped
            try forge(h, floats: floats)
            replicas.threads[0].bucketFinal(0)
            XCTAssertThrowsError(try replicas.threads[0].finish(check: {})) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(error)")
                XCTAssertFalse("\(error)".contains("\n"))
            }
        }
        // A pipeline message in the middle of the all-reduce is no segment either.
        replicas.reducers[0].beginStep()
        replicas.threads[0].prepare(step: 3, generation: 1, data: replicas.pulls[0], sockets: replicas.pushes[0])
        try DataHeader(kind: .activation, generation: 1, step: 3, microBatch: 0, firstRow: 0, rowCount: 1).withBytes {
            try forger.sendPart($0, more: true)
        }
        try [Float](repeating: 0, count: 4).withUnsafeBytes { try forger.sendPart($0, more: false) }
        replicas.threads[0].bucketFinal(0)
        XCTAssertThrowsError(try replicas.threads[0].finish(check: {})) {
            XCTAssertTrue("\($0)".contains("no all-reduce segment"), "\($0)")
        }

        // A clean step afterwards still reduces (what replica 1 sent meanwhile is of step 3: drained first).
        for pull in replicas.pulls { while pull.poll(timeoutMs: 200) { _ = try pull.receive() } }
        XCTAssertTrue(replicas.run(step: 5).allSatisfy { $0 == nil })
    }
}
