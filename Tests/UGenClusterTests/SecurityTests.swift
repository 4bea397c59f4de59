import Foundation
import UGenCluster
import UGenTraining
import XCTest

/// CURVE between coordinator and workers: admitted keys train, others cannot join.
final class SecurityTests: XCTestCase {
    func testKeygenWritesAPrivateSecretAndItsPublicHalf() throws {
        let tmp = try temporaryDirectory(self)
        let (status, out, err) = try runProcess(coordExecutable, ["keygen", "--out", tmp + "/keys", "coordinator", "w1"])
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(out.contains("w1.key"))
        let attrs = try FileManager.default.attributesOfItem(atPath: tmp + "/keys/w1.key")
        XCTAssertEqual((attrs[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let pair = try CurveKeyPair(secretKey: try CurveKeyPair.readKey(tmp + "/keys/w1.key"))
        XCTAssertEqual(try CurveKeyPair.readPublicKeys(tmp + "/keys/w1.pub"), [pair.publicKey])
        let again = try runProcess(coordExecutable, ["keygen", "--out", tmp + "/keys", "w1"])
        XCTAssertEqual(again.0, 1, "an existing key is never overwritten")
    }

    func testInsecureRefusesANetworkBindAndRemoteWorkersNeedKeys() throws {
        XCTAssertThrowsError(
            try SecurityPolicy.coordinator(
                keyFile: nil, authorized: nil, insecure: true, bind: "tcp://0.0.0.0:5555",
                localWorkers: 0, workersNeeded: 2))
        XCTAssertThrowsError(
            try SecurityPolicy.coordinator(
                keyFile: nil, authorized: nil, insecure: false, bind: "tcp://127.0.0.1:5555",
                localWorkers: 1, workersNeeded: 2))
        XCTAssertEqual(
            try SecurityPolicy.coordinator(
                keyFile: nil, authorized: nil, insecure: true, bind: "tcp://127.0.0.1:5555",
                localWorkers: 0, workersNeeded: 2
            ).0, .plaintext)
        if case .plaintext = try SecurityPolicy.coordinator(
            keyFile: nil, authorized: nil, insecure: false, bind: "tcp://127.0.0.1:0",
            localWorkers: 2, workersNeeded: 2
        ).0 {
            XCTFail("local runs use CURVE by default")
        }
    }

    func testOnlyAdmittedKeysJoinAndTrain() throws {
        let tmp = try temporaryDirectory(self)
        _ = try runProcess(coordExecutable, ["keygen", "--out", tmp + "/keys", "coordinator", "good", "stranger"])
        try FileManager.default.createDirectory(atPath: tmp + "/admitted", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: tmp + "/keys/good.pub", toPath: tmp + "/admitted/good.pub")

        var o = Coordinator.Options(config: try tinyConfig(["train.steps=3"]), runDirectory: tmp + "/run")
        o.bind = "tcp://127.0.0.1:0"
        (o.security, o.authorizedKeys) = try SecurityPolicy.coordinator(
            keyFile: tmp + "/keys/coordinator.key", authorized: tmp + "/admitted", insecure: false, bind: o.bind,
            localWorkers: 0, workersNeeded: 1)
        let running = try RunningCoordinator(o)
        let endpoint: String? = running.endpoint

        let patience = ["--coordinator-timeout", "1.5", "--give-up-after", "1"]
        // A key the coordinator was not given: the handshake is refused, the worker never joins.
        let stranger = try runProcess(
            workerExecutable,
            [
                "join", "--coord", endpoint!, "--key", tmp + "/keys/stranger.key",
                "--coord-key", tmp + "/keys/coordinator.pub",
            ] + patience)
        XCTAssertEqual(stranger.0, 3, stranger.2)
        // No key at all: plain text cannot talk to a CURVE server.
        let plain = try runProcess(workerExecutable, ["join", "--coord", endpoint!] + patience)
        XCTAssertEqual(plain.0, 3, plain.2)
        // The admitted key, but a wrong idea of the coordinator's key: refused by the worker's own handshake.
        let fooled = try runProcess(
            workerExecutable,
            [
                "join", "--coord", endpoint!, "--key", tmp + "/keys/good.key",
                "--coord-key", tmp + "/keys/stranger.pub",
            ] + patience)
        XCTAssertEqual(fooled.0, 3, fooled.2)
        XCTAssertFalse(try events(tmp + "/run").contains { $0["kind"] as? String == "join" })

        let good = try runProcess(
            workerExecutable,
            [
                "join", "--coord", endpoint!, "--key", tmp + "/keys/good.key",
                "--coord-key", tmp + "/keys/coordinator.pub",
            ])
        XCTAssertEqual(good.0, 0, good.2)
        XCTAssertEqual(running.wait(), .finished(step: 3))
        let refused = try events(tmp + "/run").filter { $0["kind"] as? String == "refused" }
        XCTAssertTrue(refused.contains { ($0["reason"] as? String) == "key not admitted" }, "\(refused)")
    }

    func testTwoLocalStagesTalkCurveByDefault() throws {
        let tmp = try temporaryDirectory(self)
        let o = try localCurveOptions(try tinyConfig(["cluster.stages=2", "train.steps=4"]), run: tmp + "/run", workers: 2)
        XCTAssertEqual(try Coordinator(o).run(), .finished(step: 4))
        XCTAssertEqual(try exactLosses(tmp + "/run"), Array(try referenceRun(try tinyConfig(["train.steps=4"])).losses))
    }

    /// A message altered on the wire (one bit of an encrypted CURVE message, flipped by a proxy) is
    /// refused: a worker whose traffic is tampered with never joins, while the same proxy, untampered,
    /// carries a worker that trains.
    func testATamperedMessageIsRefused() throws {
        let tmp = try temporaryDirectory(self)
        _ = try runProcess(coordExecutable, ["keygen", "--out", tmp + "/keys", "coordinator", "good"])
        var o = Coordinator.Options(config: try tinyConfig(["train.steps=3"]), runDirectory: tmp + "/run")
        o.bind = "tcp://127.0.0.1:0"
        (o.security, o.authorizedKeys) = try SecurityPolicy.coordinator(
            keyFile: tmp + "/keys/coordinator.key", authorized: tmp + "/keys/good.pub", insecure: false, bind: o.bind,
            localWorkers: 0, workersNeeded: 1)
        let running = try RunningCoordinator(o)
        let endpoint: String? = running.endpoint

        /// Starts the proxy in front of the coordinator; returns it, its endpoint and its output.
        func proxy(tamper: Bool) throws -> (Process, String, Pipe) {
            let p = Process(), out = Pipe()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments =
                [
                    "python3", packageRoot.appendingPathComponent("cluster/checks/tamper_proxy.py").path,
                    String(endpoint!.dropFirst("tcp://".count)),
                ] + (tamper ? ["--tamper"] : [])
            p.standardOutput = out
            try p.run()
            var line = Data()
            while !line.contains(UInt8(ascii: "\n")) { line += out.fileHandleForReading.readData(ofLength: 1) }
            let port = String(decoding: line, as: UTF8.self).split(separator: " ")[1].trimmingCharacters(in: .whitespacesAndNewlines)
            return (p, "tcp://127.0.0.1:\(port)", out)
        }
        let worker = ["--key", tmp + "/keys/good.key", "--coord-key", tmp + "/keys/coordinator.pub"]

        let (bad, badEndpoint, badOut) = try proxy(tamper: true)
        let refused = try runProcess(
            workerExecutable,
            ["join", "--coord", badEndpoint] + worker
                + ["--coordinator-timeout", "1.5", "--give-up-after", "2"])
        bad.terminate()
        let tampered = String(decoding: badOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(tampered.contains("tampered"), "the proxy altered messages: \(tampered)")
        XCTAssertEqual(refused.0, 3, "a worker whose messages are altered never joins: \(refused.2)")
        XCTAssertFalse(try events(tmp + "/run").contains { $0["kind"] as? String == "join" })

        let (good, goodEndpoint, _) = try proxy(tamper: false)
        defer { good.terminate() }
        let trained = try runProcess(workerExecutable, ["join", "--coord", goodEndpoint] + worker)
        XCTAssertEqual(trained.0, 0, trained.2)
        XCTAssertEqual(running.wait(), .finished(step: 3))
    }
}
