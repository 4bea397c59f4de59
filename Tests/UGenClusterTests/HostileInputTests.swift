import Foundation
import UGenCluster
import UGenTraining
import XCTest

/// More than a thousand malformed, truncated, oversized and out-of-order messages at the coordinator's
/// control socket: it stays up, refuses each one it receives (the first ones of each peer with a logged
/// reason, the rest counted in one line per window), and a well-behaved
/// worker still trains afterwards. Oversized messages are dropped by libzmq (ZMQ_MAXMSGSIZE) before
/// anything is allocated for them.
final class HostileInputTests: XCTestCase {
    /// Over 60 lines on purpose: one scenario (the bad messages, then a good worker trains) that reads in order.
    func testAThousandBadMessagesThenAGoodWorkerTrains() throws {
        let tmp = try temporaryDirectory(self)
        var o = Coordinator.Options(config: try tinyConfig(["train.steps=3"]), runDirectory: tmp + "/run")
        o.bind = "tcp://127.0.0.1:0"
        let running = try RunningCoordinator(o)
        let endpoint: String? = running.endpoint

        var rng = SystemRandomNumberGenerator()
        let valid = WireMessage(
            .hello, Hello(protocolVersion: Int(Wire.version), name: "x", host: "h", cores: 1, secret: "", dataEndpoint: "tcp://127.0.0.1:1")
        ).frames
        let sockets = try (0..<8).map { _ in try ZMQSocket(.dealer) }
        for s in sockets { try s.connect(endpoint!) }
        let count = 1200
        for i in 0..<count {
            var frames: [Data]
            switch i % 8 {
            case 0: frames = [Data((0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })]
            case 1: frames = [valid[0].prefix(Int.random(in: 0..<7, using: &rng))]  // truncated head
            case 2: var f = valid[0]; f[f.startIndex + 6] = UInt8.random(in: 14...255, using: &rng); frames = [f]  // unknown kind
            case 3: frames = [valid[0].prefix(valid[0].count - Int.random(in: 1..<20, using: &rng))]  // truncated JSON
            case 4:  // out of order: messages only a joined worker may send, or only the coordinator sends
                let kinds: [Wire.Kind] = [.ready, .stepDone, .saveReply, .failure, .assign, .step, .apply, .reset]
                frames = WireMessage(kinds[i % kinds.count], Heartbeat(workerId: 0)).frames
            case 5:  // wrong version
                var f = valid[0]
                f[f.startIndex + 4] = UInt8.random(in: (UInt8(Wire.version) + 1)...255, using: &rng)
                frames = [f]
            case 6: frames = [Data("UGEN".utf8) + Data([UInt8(Wire.version), 0, 1]) + Data("[1,2,3]".utf8)]  // hello with a bad body
            default:
                frames =
                    WireMessage(.stepDone, Heartbeat(workerId: 0)).frames
                    + (0..<Int.random(in: 1..<6000, using: &rng)).map { _ in Data([0]) }
            }
            try sockets[i % sockets.count].send(frames)
        }
        // Oversized messages, from a socket of their own: libzmq drops them and the connection before
        // allocating (ZMQ_MAXMSGSIZE); nothing reaches the coordinator's code.
        let big = try ZMQSocket(.dealer)
        try big.connect(endpoint!)
        for _ in 0..<4 { try big.send([Data(count: 16 << 20)]) }

        let deadline = Date().addingTimeInterval(60)
        var refused = 0
        while Date() < deadline {
            // Refusals are logged one by one up to a burst per peer and window, then counted ("suppressed").
            refused = try events(tmp + "/run").filter { $0["kind"] as? String == "refused" }.reduce(0) {
                $0 + (($1["suppressed"] as? Int) ?? 1)
            }
            if refused >= count { break }
            usleep(50_000)
        }
        XCTAssertEqual(refused, count, "each bad message refused, with a logged reason or counted")
        XCTAssertLessThan(try events(tmp + "/run").count, 100, "a flood does not flood events.jsonl")
        XCTAssertFalse(running.isFinished, "the coordinator is still up")

        // A well-behaved worker still trains.
        let (status, _, err) = try runProcess(workerExecutable, ["join", "--coord", endpoint!, "--name", "good"])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(running.wait(), .finished(step: 3))
    }
}
