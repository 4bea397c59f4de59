import Foundation
import UGenCluster
import UGenTraining
import XCTest

/// A compromised or broken worker — holding an admitted key — cannot stall, hijack or forge:
/// each test plays one attack with real sockets and processes on loopback.
final class HardeningTests: XCTestCase {
    /// Keys for a CURVE run: the coordinator's and each named worker's, written as files.
    struct Keys {
        let dir: String
        let coordinator: CurveKeyPair
        var workers: [String: CurveKeyPair] = [:]
        init(_ dir: String, workers names: [String]) throws {
            self.dir = dir
            coordinator = try CurveKeyPair.generate()
            _ = try coordinator.write(directory: dir, name: "coordinator")
            for n in names { let k = try CurveKeyPair.generate(); _ = try k.write(directory: dir, name: n); workers[n] = k }
        }
        func workerArgs(_ name: String) -> [String] {
            ["--key", dir + "/\(name).key", "--coord-key", dir + "/coordinator.pub", "--name", name]
        }
    }

    func curveCoordinator(_ config: RunConfig, run: String, keys: Keys) throws -> RunningCoordinator {
        var o = Coordinator.Options(config: config, runDirectory: run)
        o.bind = "tcp://127.0.0.1:0"
        o.security = .curve(keys.coordinator)
        o.authorizedKeys = Set(keys.workers.values.map(\.publicKey))
        return try RunningCoordinator(o)
    }

    func startWorker(_ args: [String], output: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: workerExecutable)
        p.arguments = ["join"] + args
        if let output {
            FileManager.default.createFile(atPath: output, contents: nil)
            p.standardOutput = FileHandle(forWritingAtPath: output)
            p.standardError = p.standardOutput
        } else {
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
        }
        try p.run()
        return p
    }

    func kinds(_ dir: String, _ kind: String) throws -> [[String: Any]] { try events(dir).filter { $0["kind"] as? String == kind } }

    // MARK: 1. The takeover loop

    /// An admitted key says hello without its CURVE key, then with it, answers `ready` and falls silent,
    /// again and again. Before: the honest neighbour was blamed ("assignment lacks a peer's CURVE key"),
    /// declared lost and re-assigned hundreds of times a second. Now the keyless hello is refused naming
    /// the key, the silent worker is the one lost and quarantined with growing backoff, the honest worker
    /// is never blamed, and a second honest worker finishes the run.
    func testAKeylessOrSilentWorkerIsQuarantinedNotItsHonestNeighbour() throws {
        let tmp = try temporaryDirectory(self)
        let keys = try Keys(tmp + "/keys", workers: ["honest", "attacker", "helper"])
        let config = try tinyConfig(["cluster.stages=2", "train.steps=3", "cluster.lost_after_s=1"])
        let running = try curveCoordinator(config, run: tmp + "/run", keys: keys)
        let honest = try startWorker(["--coord", running.endpoint] + keys.workerArgs("honest"))
        defer { if honest.isRunning { honest.terminate() } }

        let attacker = keys.workers["attacker"]!
        let s = try curveClient(attacker, of: keys, at: running.endpoint)
        func hello(withKey: Bool) throws {
            try s.send(helloFrames(name: "attacker", dataPort: 1, key: withKey ? attacker.publicKey : nil))
        }
        try hello(withKey: false)
        var lastHello = Date(), inRun = false
        let attackEnd = Date().addingTimeInterval(8)
        while Date() < attackEnd {
            guard s.poll(timeoutMs: 50) else {
                if !inRun && Date().timeIntervalSince(lastHello) > 0.2 { try hello(withKey: true); lastHello = Date() }
                continue
            }
            let msg = try WireMessage(frames: try s.receive())
            switch msg.kind {
            case .assign:  // takes the stage, says ready, then never a heartbeat nor a stepDone
                let a = try msg.decode(Assign.self)
                try s.send(WireMessage(.ready, Heartbeat(workerId: a.workerId)).frames)
                inRun = true
            case .reject, .reset:
                try hello(withKey: true); lastHello = Date(); inRun = false  // at once, whatever it was told
            default: break
            }
        }
        XCTAssertTrue(honest.isRunning, "the honest worker is still in the run")
        let helper = try startWorker(["--coord", running.endpoint] + keys.workerArgs("helper"))
        defer { if helper.isRunning { helper.terminate() } }
        XCTAssertEqual(running.wait(seconds: 60), .finished(step: 3))
        honest.waitUntilExit()
        XCTAssertEqual(honest.terminationStatus, 0)

        let lost = try kinds(tmp + "/run", "lost")
        XCTAssertFalse(lost.contains { $0["worker"] as? String == "honest" }, "the honest worker was blamed: \(lost)")
        XCTAssertTrue(lost.allSatisfy { $0["worker"] as? String == "attacker" }, "\(lost)")
        XCTAssertLessThanOrEqual(lost.count, 4, "re-assignment is bounded and backs off: \(lost.count) losses in 8 s")
        let refused = try kinds(tmp + "/run", "refused").compactMap { $0["reason"] as? String }
        XCTAssertTrue(
            refused.contains { $0.contains("carries no CURVE public key") && $0.contains(attacker.publicKey) },
            "the refusal names the key the hello lacked: \(refused.prefix(5))")
        let quarantined = try kinds(tmp + "/run", "quarantine")
        XCTAssertFalse(quarantined.isEmpty, "the loop ends with a quarantine event")
        XCTAssertTrue(quarantined.allSatisfy { $0["peer"] as? String == attacker.publicKey }, "\(quarantined)")
        XCTAssertLessThan(
            try String(contentsOfFile: tmp + "/run/events.jsonl", encoding: .utf8).utf8.count, 100_000, "events.jsonl stays small")
    }

    // MARK: 2. Peer text is escaped

    /// Names, hosts and statuses with newlines, carriage returns and ANSI escapes cannot forge a log line
    /// or reach events.jsonl raw: the coordinator's output has no line the peer wrote, and no ESC.
    func testPeerTextCannotForgeALogLineOrAnEvent() throws {
        let tmp = try temporaryDirectory(self)
        let config = tmp + "/run.yaml"
        try (try tinyConfig(["train.steps=2"])).yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let output = tmp + "/coord.log"
        let coord = try startCoordinatorProcess(["--config", config, "--run", tmp + "/run", "--insecure"], output: output)
        defer { if coord.isRunning { coord.terminate() } }
        let endpoint = try listeningEndpoint(output)
        let forged = "2026-12-02T00:00:00+0000 info ugen-coord: run finished at step 3000: FAKE"
        let s = try ZMQSocket(.dealer)
        try s.connect(endpoint)
        for (name, host) in [("evil\n" + forged, "h"), ("ok-name", "h\r\n" + forged + "\u{1b}[2J"), ("\u{1b}[31mred", "h")] {
            try s.send(
                WireMessage(
                    .hello,
                    Hello(
                        protocolVersion: Int(Wire.version), name: name, host: host, cores: 1, secret: "",
                        dataEndpoint: "tcp://127.0.0.1:1")
                ).frames)
            XCTAssertTrue(s.poll(timeoutMs: 5000))
            _ = try s.receive()
        }
        let (status, _, err) = try runProcess(workerExecutable, ["join", "--coord", endpoint, "--name", "good"])
        XCTAssertEqual(status, 0, err)
        coord.waitUntilExit()
        let log = try String(contentsOfFile: output, encoding: .utf8)
        XCTAssertFalse(log.split(separator: "\n").contains { $0.hasPrefix(forged) }, "a peer forged a log line:\n\(log)")
        XCTAssertFalse(log.contains("\u{1b}") || log.contains("\r"), "raw control characters in the log:\n\(log)")
        XCTAssertTrue(log.contains("evil\\n" + forged.prefix(40)), "the name is shown with a visible escape:\n\(log)")
        for e in try events(tmp + "/run") {
            for case let v as String in e.values {
                XCTAssertFalse(v.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, "control character in event \(e)")
            }
        }
    }

    /// The one escaping helper: every control character, ESC, DEL, C1 and the Unicode line separators and
    /// direction overrides become visible; plain text passes unchanged; long text is cut.
    func testPeerTextEscapesEveryControlCharacter() {
        XCTAssertEqual(PeerText.escape("w1.host-2@a:b+c"), "w1.host-2@a:b+c")
        XCTAssertEqual(PeerText.escape("a\nb\r\nc\td\u{1b}[31m\\"), "a\\nb\\r\\nc\\td\\e[31m\\\\")
        XCTAssertEqual(PeerText.escape("\u{0}\u{7}\u{7F}\u{85}\u{9B}"), "\\x{0}\\x{7}\\x{7F}\\x{85}\\x{9B}")
        XCTAssertEqual(PeerText.escape("x\u{2028}y\u{202E}z\u{FEFF}"), "x\\u{2028}y\\u{202E}z\\u{FEFF}")
        XCTAssertEqual(PeerText.escape("héllo wörld ✓"), "héllo wörld ✓")
        XCTAssertEqual(PeerText.escape(String(repeating: "a", count: 300), limit: 4), "aaaa…(300 bytes)")
        for c in 0..<0x20 { XCTAssertFalse(PeerText.escape(String(UnicodeScalar(UInt8(c)))).unicodeScalars.contains { $0.value < 0x20 }) }
    }

    // MARK: 3. Hellos are validated

    /// Every field of a hello is checked against protocol.md's limits; a name held by a live worker, or
    /// (CURVE) a second live identity under one key, is told to come back later.
    func testHellosOutsideTheLimitsAreRefused() throws {
        let tmp = try temporaryDirectory(self)
        var o = Coordinator.Options(config: try tinyConfig(["cluster.stages=2", "train.steps=2"]), runDirectory: tmp + "/run")
        o.bind = "tcp://127.0.0.1:0"
        let running = try RunningCoordinator(o)
        func exchange(
            _ s: ZMQSocket? = nil, name: String = "w", host: String = "127.0.0.1", cores: Int = 1,
            data: String = "tcp://127.0.0.1:7000"
        ) throws -> Reject? {
            let sock =
                try s
                ?? {
                    let d = try ZMQSocket(.dealer); try d.connect(running.endpoint); return d
                }()
            try sock.send(
                WireMessage(
                    .hello,
                    Hello(
                        protocolVersion: Int(Wire.version), name: name, host: host, cores: cores, secret: "",
                        dataEndpoint: data)
                ).frames)
            guard sock.poll(timeoutMs: 1000) else { return nil }
            let reply = try WireMessage(frames: try sock.receive())
            XCTAssertEqual(reply.kind, .reject)
            return try reply.decode(Reject.self)
        }
        for cores in [-1, 0, 1025, Int.max] {
            XCTAssertTrue(try exchange(cores: cores)?.reason.contains("cores \(cores) is outside 1...1024") ?? false, "cores \(cores)")
        }
        for data in [
            "garbage", "", "ipc:///tmp/x", "tcp://127.0.0.1:-5", "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000", "tcp://:80",
            "tcp://127.0.0.1",
        ] {
            XCTAssertTrue(try exchange(data: data)?.reason.contains("data endpoint") ?? false, "endpoint '\(data)'")
        }
        for name in ["", String(repeating: "n", count: 100_000), "a b", "x/y"] {
            XCTAssertTrue(try exchange(name: name)?.reason.contains("is not 1-128 letters") ?? false, "name of \(name.count) characters")
        }
        XCTAssertTrue(try exchange(host: "")?.reason.contains("host") ?? false)
        XCTAssertEqual(try events(tmp + "/run").filter { $0["kind"] as? String == "join" }.count, 0)

        // A live worker's name: refused for now (retry later), not taken over.
        let first = try ZMQSocket(.dealer)
        try first.connect(running.endpoint)
        XCTAssertNil(try exchange(first, name: "alive"), "a valid hello joins (a spare: no answer yet)")
        let taken = try exchange(name: "alive")
        XCTAssertTrue(taken?.reason.contains("taken by a live worker") ?? false, "\(String(describing: taken))")
        XCTAssertNotNil(taken?.retryAfter)
        XCTAssertEqual(try events(tmp + "/run").filter { $0["kind"] as? String == "join" }.count, 1)
        stop(running)
    }

    /// Ends a coordinator still waiting for workers (as SIGINT would).
    func stop(_ running: RunningCoordinator) {
        StopRequest.set()
        _ = running.wait(seconds: 10)
        StopRequest.clear()
    }

    /// One live identity per CURVE key: a second hello under an admitted key already held by a live worker is
    /// told to come back later.
    func testOneLiveWorkerPerCurveKey() throws {
        let tmp = try temporaryDirectory(self)
        let keys = try Keys(tmp + "/keys", workers: ["k"])
        let running = try curveCoordinator(try tinyConfig(["cluster.stages=2"]), run: tmp + "/run", keys: keys)
        let k = keys.workers["k"]!
        var replies: [Reject?] = []
        var sockets: [ZMQSocket] = []
        for i in 0..<3 {
            let s = try ZMQSocket(.dealer)
            try s.makeCurveClient(k, server: keys.coordinator.publicKey)
            try s.connect(running.endpoint)
            try s.send(
                WireMessage(
                    .hello,
                    Hello(
                        protocolVersion: Int(Wire.version), name: "k\(i)", host: "127.0.0.1", cores: 1, secret: "",
                        dataEndpoint: "tcp://127.0.0.1:7000", publicKey: k.publicKey)
                ).frames)
            replies.append(s.poll(timeoutMs: 1000) ? try WireMessage(frames: try s.receive()).decode(Reject.self) : nil)
            sockets.append(s)
        }
        XCTAssertNil(replies[0])
        for r in replies.dropFirst() {
            XCTAssertTrue(r?.reason.contains("already has a live worker (k0)") ?? false, "\(String(describing: r))")
            XCTAssertNotNil(r?.retryAfter)
        }
        XCTAssertEqual(try events(tmp + "/run").filter { $0["kind"] as? String == "join" }.count, 1)
        stop(running)
    }

    // MARK: 4. Spares expire

    /// Spares that said hello and fell silent expire after lost_after_s ("expired" event, which the
    /// dashboard shows): when a real worker is lost later, the coordinator never assigns a dead spare;
    /// the replacement that joins takes the slot and the run finishes.
    func testSilentSparesExpireAndAreNeverAssigned() throws {
        let tmp = try temporaryDirectory(self)
        var o = Coordinator.Options(
            config: try tinyConfig([
                "cluster.stages=2", "train.steps=100000", "train.checkpoint_every=20",
                "cluster.lost_after_s=1.5",
            ]), runDirectory: tmp + "/run")
        o.bind = "tcp://127.0.0.1:0"
        let running = try RunningCoordinator(o)
        let workers = try (0..<2).map { try startWorker(["--coord", running.endpoint, "--name", "real-\($0)"]) }
        defer { for w in workers where w.isRunning { w.terminate() } }
        XCTAssertTrue(waitUntil(60) { ((try? exactLosses(tmp + "/run").count) ?? 0) >= 2 })
        var spares: [ZMQSocket] = []
        for i in 0..<5 {
            let s = try ZMQSocket(.dealer)
            try s.connect(running.endpoint)
            try s.send(
                WireMessage(
                    .hello,
                    Hello(
                        protocolVersion: Int(Wire.version), name: "spare-\(i)", host: "127.0.0.1", cores: 1, secret: "",
                        dataEndpoint: "tcp://127.0.0.1:\(7000 + i)")
                ).frames)
            spares.append(s)
        }
        XCTAssertTrue(try waitUntil(10) { try kinds(tmp + "/run", "join").count == 7 })
        spares.removeAll()  // closed: no heartbeat ever
        XCTAssertTrue(try waitUntil(10) { try kinds(tmp + "/run", "expired").count == 5 }, "\((try? kinds(tmp + "/run", "expired")) ?? [])")
        kill(workers[1].processIdentifier, SIGKILL)
        let replacement = try startWorker(["--coord", running.endpoint, "--name", "replacement"])
        defer { if replacement.isRunning { replacement.terminate() } }
        XCTAssertTrue(try waitUntil(30) { try kinds(tmp + "/run", "assign").contains { $0["worker"] as? String == "replacement" } })
        let resumed = try exactLosses(tmp + "/run").count
        XCTAssertTrue(waitUntil(30) { ((try? exactLosses(tmp + "/run").count) ?? 0) >= resumed + 3 }, "training goes on")
        StopRequest.set()
        if case .stopped = running.wait(seconds: 30) {} else { XCTFail("the run stops when asked") }
        StopRequest.clear()
        replacement.waitUntilExit()
        let assigned = Set(try kinds(tmp + "/run", "assign").compactMap { $0["worker"] as? String })
        XCTAssertEqual(assigned, ["real-0", "real-1", "replacement"])
        XCTAssertEqual(try kinds(tmp + "/run", "lost").compactMap { $0["worker"] as? String }, ["real-1"])
    }

    // MARK: 5. Local workers die with their coordinator

    /// `ugen-coord start --local-workers 2`, killed with SIGKILL: its workers exit within seconds.
    func testLocalWorkersExitWhenTheirCoordinatorIsKilled() throws {
        let tmp = try temporaryDirectory(self)
        let config = tmp + "/run.yaml"
        try (try tinyConfig(["cluster.stages=2", "train.steps=100000"])).yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let output = tmp + "/coord.log"
        let coord = try startCoordinatorProcess(
            [
                "--config", config, "--run", tmp + "/run", "--local-workers", "2",
                "--worker-executable", workerExecutable,
            ], output: output)
        defer { if coord.isRunning { kill(coord.processIdentifier, SIGKILL) } }
        XCTAssertTrue(waitUntil(60) { ((try? exactLosses(tmp + "/run").count) ?? 0) >= 2 })
        let log = try String(contentsOfFile: output, encoding: .utf8)
        let pids = log.split(separator: "\n").compactMap { line -> Int32? in
            guard let r = line.range(of: "(pid ") else { return nil }
            return Int32(line[r.upperBound...].prefix { $0.isNumber })
        }
        XCTAssertEqual(pids.count, 2, log)
        kill(coord.processIdentifier, SIGKILL)
        coord.waitUntilExit()
        XCTAssertTrue(waitUntil(3) { !pids.contains(where: isAlive) }, "local workers outlived their coordinator: \(pids.filter(isAlive))")
        for pid in pids where isAlive(pid) { kill(pid, SIGKILL) }
    }

    // MARK: 8. Refusals are told, rate-limited

    /// A key the coordinator does not admit (logged with the peer's address and key), a plain-text client
    /// at the CURVE socket (the socket monitor), a heartbeat or message naming another worker's id
    /// (spoofed), and a flood beyond the per-peer message budget: each is refused with a logged reason,
    /// and the flood leaves events.jsonl small.
    func testRefusalsNameThePeerAndAFloodIsBudgeted() throws {
        let tmp = try temporaryDirectory(self)
        let keys = try Keys(tmp + "/keys", workers: ["member", "other"])
        let running = try curveCoordinator(try tinyConfig(["cluster.stages=2"]), run: tmp + "/run", keys: keys)
        defer { stop(running) }
        func client(_ k: CurveKeyPair?) throws -> ZMQSocket {
            let s = try ZMQSocket(.dealer)
            if let k { try s.makeCurveClient(k, server: keys.coordinator.publicKey) }
            try s.connect(running.endpoint)
            return s
        }
        func hello(_ name: String, _ k: CurveKeyPair) -> [Data] {
            WireMessage(
                .hello,
                Hello(
                    protocolVersion: Int(Wire.version), name: name, host: "127.0.0.1", cores: 1, secret: "",
                    dataEndpoint: "tcp://127.0.0.1:7000", publicKey: k.publicKey)
            ).frames
        }
        func refused() throws -> [[String: Any]] { try kinds(tmp + "/run", "refused") }

        let stranger = try CurveKeyPair.generate()
        let s1 = try client(stranger)
        try? s1.send(hello("stranger", stranger))
        XCTAssertTrue(try waitUntil(10) { try refused().contains { $0["reason"] as? String == "key not admitted" } })
        let denial = try refused().first { $0["reason"] as? String == "key not admitted" }
        XCTAssertEqual(denial?["key"] as? String, stranger.publicKey)
        XCTAssertEqual(denial?["address"] as? String, "127.0.0.1")

        let plain = try client(nil)
        try? plain.send(WireMessage(.heartbeat, Heartbeat(workerId: -1)).frames)
        XCTAssertTrue(
            try waitUntil(10) { try refused().contains { $0["reason"] as? String == "handshake failed" } }, "\((try? refused()) ?? [])")

        let member = try client(keys.workers["member"]!)
        try member.send(hello("member", keys.workers["member"]!))
        XCTAssertTrue(try waitUntil(10) { try kinds(tmp + "/run", "join").count == 1 })
        let other = try client(keys.workers["other"]!)
        try other.send(WireMessage(.heartbeat, Heartbeat(workerId: 0, status: "alive, honestly")).frames)  // member's id, other's key
        try member.send(WireMessage(.ready, Heartbeat(workerId: 7)).frames)  // a joined worker naming another id
        XCTAssertTrue(
            try waitUntil(10) { try refused().filter { ($0["reason"] as? String)?.contains("spoofed id") ?? false }.count == 2 },
            "\((try? refused()) ?? [])")

        let flood = WireMessage(.heartbeat, Heartbeat(workerId: -1)).frames
        for _ in 0..<12_000 { try other.send(flood) }
        XCTAssertTrue(
            try waitUntil(15) { try refused().contains { ($0["suppressed"] as? Int ?? 0) > 1000 } },
            "the flood is counted, not logged line by line")
        XCTAssertTrue(try refused().contains { ($0["reason"] as? String)?.contains("message budget") ?? false })
        XCTAssertLessThan(try events(tmp + "/run").count, 200)
        XCTAssertFalse(running.isFinished)
    }
}

/// A raw DEALER socket holding `key` (a hand-driven worker: it says only what the test sends).
func curveClient(_ key: CurveKeyPair, of keys: HardeningTests.Keys, at endpoint: String) throws -> ZMQSocket {
    let s = try ZMQSocket(.dealer)
    try s.makeCurveClient(key, server: keys.coordinator.publicKey)
    try s.connect(endpoint)
    return s
}

/// A hello from 127.0.0.1 with one core, announcing data port `dataPort` and the CURVE `key` (or none).
func helloFrames(name: String, dataPort: Int, key: String?) -> [Data] {
    WireMessage(
        .hello,
        Hello(
            protocolVersion: Int(Wire.version), name: name, host: "127.0.0.1", cores: 1, secret: "",
            dataEndpoint: "tcp://127.0.0.1:\(dataPort)", publicKey: key)
    ).frames
}

extension HardeningTests {
    /// `ugen-coord start ARGUMENTS --bind tcp://127.0.0.1:0` as a real process, its output going to `output`.
    func startCoordinatorProcess(_ arguments: [String], output: String) throws -> Process {
        FileManager.default.createFile(atPath: output, contents: nil)
        let coord = Process()
        coord.executableURL = URL(fileURLWithPath: coordExecutable)
        coord.arguments = ["start"] + arguments + ["--bind", "tcp://127.0.0.1:0"]
        coord.standardOutput = FileHandle(forWritingAtPath: output)
        coord.standardError = coord.standardOutput
        try coord.run()
        return coord
    }

    /// The endpoint a coordinator process wrote to `output` ("listening on tcp://…"), waiting up to 30 s.
    func listeningEndpoint(_ output: String) throws -> String {
        var endpoint: String?
        _ = waitUntil(30) {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            guard let r = text.range(of: "listening on ") else { return false }
            endpoint = String(text[r.upperBound...].prefix { $0 != " " })
            return true
        }
        struct NoEndpoint: Error, CustomStringConvertible { let description: String }
        guard let endpoint else { throw NoEndpoint(description: "\(output): the coordinator printed no endpoint within 30 s") }
        return endpoint
    }
}
