import Foundation
import UGenCluster
import UGenModel
import UGenTraining
import XCTest

final class Box<T>: @unchecked Sendable { var value: T; init(_ v: T) { value = v } }

/// Hostile or mistaken input: refused with a one-line reason; the coordinator stays up and trains.
final class ClusterBadInputTests: XCTestCase {
    func testUnknownKeyAndImpossibleLayoutAreOneLineErrors() throws {
        let tmp = try temporaryDirectory(self)
        try "model:\n  d_model: 32\n  colour: blue\n".write(toFile: tmp + "/bad.yaml", atomically: true, encoding: .utf8)
        var (status, _, err) = try runProcess(coordExecutable, ["start", "--config", tmp + "/bad.yaml", "--run", tmp + "/r"])
        XCTAssertEqual(status, 1)
        XCTAssertEqual(err.split(separator: "\n").count, 1, err)
        XCTAssertTrue(err.contains("unknown config key 'model.colour'") && err.contains("bad.yaml"), err)

        try "model:\n  n_layers: 2\n".write(toFile: tmp + "/ok.yaml", atomically: true, encoding: .utf8)
        (status, _, err) = try runProcess(coordExecutable, ["start", "--config", tmp + "/ok.yaml", "--set", "cluster.stages=3"])
        XCTAssertEqual(status, 1)
        XCTAssertEqual(err.split(separator: "\n").count, 1, err)
        XCTAssertTrue(err.contains("cluster.stages (3)") && err.contains("model.n_layers (2)"), err)

        (status, _, err) = try runProcess(
            coordExecutable,
            [
                "start", "--config", tmp + "/ok.yaml", "--set", "data.dir=\(tmp)/nowhere",
                "--insecure", "--bind", "tcp://127.0.0.1:0",
            ])
        XCTAssertEqual(status, 1)
        XCTAssertTrue(err.contains("\(tmp)/nowhere/train.h5"), err)
    }

    func testGarbageWrongVersionAndWrongSecretAreRefusedAndTrainingGoesOn() throws {
        let tmp = try temporaryDirectory(self)
        var o = Coordinator.Options(config: try tinyConfig(["train.steps=3"]), runDirectory: tmp + "/run")
        o.bind = "tcp://127.0.0.1:0"
        o.secret = "s3cret"
        let running = try RunningCoordinator(o)
        let endpoint: String? = running.endpoint

        func exchange(_ frames: [Data]) throws -> String? {
            let s = try ZMQSocket(.dealer)
            try s.connect(endpoint!)
            try s.send(frames)
            guard s.poll(timeoutMs: 5000) else { return nil }
            let reply = try WireMessage(frames: try s.receive())
            if reply.kind == .reset {  // a peer that has not joined is told to join
                let reset = try reply.decode(Reset.self)
                XCTAssertEqual(reset.rejoin, true)
                return reset.reason
            }
            XCTAssertEqual(reply.kind, .reject)
            return try reply.decode(Reject.self).reason
        }
        func hello(secret: String, version: Int = Int(Wire.version)) -> Hello {
            Hello(protocolVersion: version, name: "intruder", host: "nowhere", cores: 1, secret: secret, dataEndpoint: "tcp://127.0.0.1:1")
        }
        XCTAssertEqual(try exchange([Data("hello world".utf8)]), "not a UGen message (bad magic)")
        var old = WireMessage(.hello, hello(secret: "s3cret")).frames
        old[0][old[0].startIndex + 4] = 99
        XCTAssertEqual(try exchange(old), "protocol version 99 is not supported (this build speaks \(Wire.version))")
        XCTAssertEqual(try exchange(WireMessage(.hello, hello(secret: "guess")).frames), "wrong cluster secret from intruder@nowhere")
        // protocol.md's order: a malformed body is refused as such before "not joined" is looked at.
        XCTAssertEqual(
            try exchange([Data("UGEN".utf8) + Data([UInt8(Wire.version), 0, 2]) + Data("{not json".utf8)]), "malformed assign body")
        XCTAssertEqual(
            try exchange([Data("UGEN".utf8) + Data([UInt8(Wire.version), 0, 6]) + Data("{\"workerId\": 0".utf8)]),
            "malformed stepDone body")
        XCTAssertEqual(try exchange(WireMessage(.ready, Heartbeat(workerId: 0)).frames), "ready from a peer that has not joined")
        // A truncated header is said to be truncated (it is no "bad magic"); a malformed heartbeat is refused, not answered.
        XCTAssertEqual(
            try exchange([Data("UGEN".utf8) + Data([UInt8(Wire.version)])]), "truncated header (5 bytes; magic, version and kind take 7)")
        XCTAssertEqual(
            try exchange([Data("UGEN".utf8) + Data([UInt8(Wire.version), 0, 8]) + Data("{\"workerId\": \"x\"}".utf8)]),
            "malformed heartbeat body")
        XCTAssertEqual(
            try exchange(WireMessage(.hello, hello(secret: "s3cret", version: 7)).frames),
            "protocol version 7 is not supported (this coordinator speaks \(Wire.version))")

        // A well-behaved worker still trains.
        let (status, _, err) = try runProcess(workerExecutable, ["join", "--coord", endpoint!, "--secret", "s3cret", "--name", "good"])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(running.wait(), .finished(step: 3))
        let refused = try events(tmp + "/run").filter { $0["kind"] as? String == "refused" }
        XCTAssertEqual(refused.count, 9)
    }

    func testAWorkerWithTheWrongSecretExitsWithTheReason() throws {
        let tmp = try temporaryDirectory(self)
        var o = Coordinator.Options(config: try tinyConfig(["train.steps=1"]), runDirectory: tmp + "/run")
        o.bind = "tcp://127.0.0.1:0"
        o.secret = "right"
        let running = try RunningCoordinator(o)
        let endpoint: String? = running.endpoint
        let (status, _, err) = try runProcess(workerExecutable, ["join", "--coord", endpoint!, "--secret", "wrong"])
        XCTAssertEqual(status, 2)
        XCTAssertTrue(err.contains("wrong cluster secret"), err)
        _ = try runProcess(workerExecutable, ["join", "--coord", endpoint!, "--secret", "right"])
        _ = running.wait()
    }

    /// A data header reads back as written, byte for byte where protocol.md puts each field; a header of
    /// the wrong length or an unknown kind is refused.
    func testDataHeaderLayoutAndMalformedHeaders() throws {
        let h = DataHeader(kind: .gradient, generation: 3, step: -2, microBatch: 7, firstRow: 1, rowCount: 258)
        let b = h.bytes
        XCTAssertEqual(b.count, DataHeader.size)
        XCTAssertEqual(b[0], 1)
        XCTAssertEqual(Array(b[1..<5]), [3, 0, 0, 0])
        XCTAssertEqual(Array(b[5..<9]), [0xFE, 0xFF, 0xFF, 0xFF])
        XCTAssertEqual(Array(b[17..<21]), [2, 1, 0, 0])
        XCTAssertEqual(try b.withUnsafeBytes { try DataHeader($0) }, h)
        var unknown = b; unknown[0] = 9
        XCTAssertThrowsError(try unknown.withUnsafeBytes { try DataHeader($0) })
        XCTAssertThrowsError(try Array(b.dropLast()).withUnsafeBytes { try DataHeader($0) })
    }

    /// A stepDone's arrays read back as written: the loss sums, the task sums and weights where protocol.md
    /// puts them (six float64s: sums, then weights), the squared norms; a wrong count is refused.
    func testStepOutputsRoundTripInProtocolOrder() throws {
        var losses = StepLosses(microBatches: 2)
        losses.sums = [1.5, -0.25]
        losses.tasks.sum = [3, 0.5, 7]
        losses.tasks.weight = [10, 2, 4]
        let done = Heartbeat(workerId: 1)  // the arrays do not depend on the body
        let frames = WireMessage(.stepDone, done, arrays: StepOutputs(losses: losses, gradSquares: [9, 16, 25]).parts).frames
        let message = try WireMessage(frames: frames)
        XCTAssertEqual(try message.array(1, Double.self, count: 6), [3, 0.5, 7, 10, 2, 4])
        let back = try StepOutputs(message, microBatches: 2, head: true, parameters: 3)
        XCTAssertEqual(back.losses?.sums, losses.sums)
        XCTAssertEqual(back.losses?.tasks, losses.tasks)
        XCTAssertEqual(back.gradSquares, [9, 16, 25])
        let middle = try WireMessage(frames: WireMessage(.stepDone, done, arrays: StepOutputs(losses: nil, gradSquares: [1]).parts).frames)
        XCTAssertNil(try StepOutputs(middle, microBatches: 2, head: false, parameters: 1).losses)
        XCTAssertThrowsError(try StepOutputs(message, microBatches: 3, head: true, parameters: 3))
        XCTAssertThrowsError(try StepOutputs(middle, microBatches: 2, head: true, parameters: 1))
    }
}

/// protocol.md states the version the wire carries.
final class ProtocolDocumentTests: XCTestCase {
    func testProtocolDocumentNamesTheWireVersion() throws {
        let doc = try String(contentsOfFile: packageRoot.appendingPathComponent("Documentation/protocol.md").path, encoding: .utf8)
        XCTAssertTrue(
            doc.contains("version (UInt16 little-endian, now \(Wire.version))"),
            "protocol.md names another control-message version than the wire's \(Wire.version)")
    }
}
