import Foundation
import UGenCluster
import UGenTraining
import XCTest

/// Workers die; the run goes back to its last checkpoint and finishes exactly as if nothing happened.
final class FailureTests: XCTestCase {
    /// Runs a coordinator on a thread; `during` gets it once training is under way.
    func runWithChaos(_ config: RunConfig, dir: String, workers: Int = 2, _ during: (Coordinator, String) throws -> Void) throws
        -> Coordinator.Outcome?
    {
        var o = Coordinator.Options(config: config, runDirectory: dir)
        o.bind = "tcp://127.0.0.1:0"
        o.localWorkers = workers
        o.workerExecutable = workerExecutable
        let running = try RunningCoordinator(o)
        try during(running.coordinator, dir)
        let outcome = running.wait()
        XCTAssertTrue(running.isFinished, "the run finished")
        return outcome
    }

    func waitForSteps(_ dir: String, _ n: Int) {
        let deadline = Date().addingTimeInterval(60)
        while ((try? exactLosses(dir).count) ?? 0) < n && Date() < deadline { usleep(5_000) }
    }

    func testAKilledLocalWorkerIsRestartedAndTheRunEndsBitForBit() throws {
        let sets = ["train.steps=30", "train.checkpoint_every=5", "cluster.stages=2", "cluster.lost_after_s=1.5"]
        let tmp = try temporaryDirectory(self)
        let straight = try clusterRun(try tinyConfig(sets), run: tmp + "/a")
        let outcome = try runWithChaos(try tinyConfig(sets), dir: tmp + "/b") { c, dir in
            for victim in [1, 0] {
                waitForSteps(dir, victim == 1 ? 7 : 18)
                kill(c.localWorkerPIDs[victim], SIGKILL)
                usleep(200_000)
            }
        }
        XCTAssertEqual(outcome, .finished(step: 30))
        XCTAssertEqual(try exactLosses(tmp + "/b"), straight.losses)
        let kinds = try events(tmp + "/b").map { $0["kind"] as! String }
        XCTAssertEqual(kinds.filter { $0 == "lost" }.count, 2, "\(kinds)")
        XCTAssertEqual(kinds.filter { $0 == "resume" }.count, 2)
    }

    func testAReplacementWorkerFillsTheSlotOfALostOne() throws {
        let sets = ["train.steps=16", "train.checkpoint_every=4", "cluster.stages=2", "cluster.lost_after_s=1.5", "cluster.max_restarts=0"]
        let tmp = try temporaryDirectory(self)
        let straight = try clusterRun(try tinyConfig(sets), run: tmp + "/a")
        var replacement: Process?
        let outcome = try runWithChaos(try tinyConfig(sets), dir: tmp + "/b") { c, dir in
            waitForSteps(dir, 6)
            kill(c.localWorkerPIDs[0], SIGKILL)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: workerExecutable)
            p.arguments = ["join", "--coord", c.endpoint, "--name", "replacement"]
            p.standardError = FileHandle.nullDevice
            try p.run()
            replacement = p
        }
        replacement?.waitUntilExit()
        XCTAssertEqual(outcome, .finished(step: 16))
        XCTAssertEqual(try exactLosses(tmp + "/b"), straight.losses)
        let assigned = try events(tmp + "/b").filter { $0["kind"] as? String == "assign" }.compactMap { $0["worker"] as? String }
        XCTAssertTrue(assigned.contains("replacement"), "\(assigned)")
    }

    /// `cluster.elastic`: a worker dies for good and nobody replaces it; the survivor takes every layer
    /// and the run ends exactly as the uninterrupted one.
    func testElasticRunShrinksToTheWorkersLeft() throws {
        let sets = [
            "train.steps=16", "train.checkpoint_every=4", "cluster.stages=2", "cluster.lost_after_s=1",
            "cluster.elastic=true",
        ]
        let tmp = try temporaryDirectory(self)
        let straight = try clusterRun(try tinyConfig(sets), run: tmp + "/a")
        var o = Coordinator.Options(config: try tinyConfig(sets), runDirectory: tmp + "/b")
        o.bind = "tcp://127.0.0.1:0"
        let running = try RunningCoordinator(o)
        let endpoint: String? = running.endpoint
        let workers = try (0..<2).map { i -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: workerExecutable)
            p.arguments = ["join", "--coord", endpoint!, "--name", "w\(i)"]
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            return p
        }
        waitForSteps(tmp + "/b", 6)
        kill(workers[1].processIdentifier, SIGKILL)
        XCTAssertEqual(running.wait(), .finished(step: 16))
        workers[0].waitUntilExit()
        XCTAssertEqual(try exactLosses(tmp + "/b"), straight.losses)
        let shrink = try events(tmp + "/b").filter { $0["kind"] as? String == "repartition" }
        XCTAssertEqual(shrink.count, 1, "\(shrink)")
        XCTAssertEqual(shrink.first?["to_stages"] as? Int, 1)
        XCTAssertEqual(workers[0].terminationStatus, 0)
    }

    /// A worker that stalls (SIGSTOP: alive but silent) is declared lost; when it wakes it is told it was
    /// dropped, joins again as a new worker, and the run ends bit for bit.
    func testAStalledWorkerIsDroppedAndJoinsAgain() throws {
        let sets = [
            "train.steps=16", "train.checkpoint_every=4", "cluster.stages=2", "cluster.lost_after_s=1",
            "cluster.max_restarts=0",
        ]
        let tmp = try temporaryDirectory(self)
        let straight = try clusterRun(try tinyConfig(sets), run: tmp + "/a")
        let outcome = try runWithChaos(try tinyConfig(sets), dir: tmp + "/b") { c, dir in
            waitForSteps(dir, 6)
            let pid = c.localWorkerPIDs[1]
            kill(pid, SIGSTOP)
            sleep(3)
            kill(pid, SIGCONT)
        }
        XCTAssertEqual(outcome, .finished(step: 16))
        XCTAssertEqual(try exactLosses(tmp + "/b"), straight.losses)
        let kinds = try events(tmp + "/b").map { $0["kind"] as! String }
        XCTAssertEqual(kinds.filter { $0 == "lost" }.count, 1, "\(kinds)")
        XCTAssertGreaterThanOrEqual(kinds.filter { $0 == "join" }.count, 3, "the stalled worker joined again: \(kinds)")
    }

    /// The coordinator is SIGKILLed mid-run and started again with `--resume latest` on the same address;
    /// the workers, never restarted, rejoin it and the run ends bit for bit.
    func testARestartedCoordinatorIsRejoinedByLiveWorkers() throws {
        let sets = ["train.steps=16", "train.checkpoint_every=4", "cluster.stages=2"]
        let tmp = try temporaryDirectory(self)
        let straight = try clusterRun(try tinyConfig(sets), run: tmp + "/a")
        let config = tmp + "/run.yaml"
        try (try tinyConfig(sets)).yaml.write(toFile: config, atomically: true, encoding: .utf8)
        let endpoint = "tcp://127.0.0.1:\(21000 + Int(getpid() % 4000))"
        func coordinator(_ extra: [String]) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: coordExecutable)
            p.arguments = ["start", "--config", config, "--run", tmp + "/b", "--bind", endpoint, "--insecure"] + extra
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            return p
        }
        let first = try coordinator([])
        let workers = try (0..<2).map { i -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: workerExecutable)
            p.arguments = ["join", "--coord", endpoint, "--name", "w\(i)", "--coordinator-timeout", "2"]
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            return p
        }
        waitForSteps(tmp + "/b", 9)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let second = try coordinator(["--resume", "latest"])
        second.waitUntilExit()
        for w in workers { w.waitUntilExit() }
        XCTAssertEqual(second.terminationStatus, 0)
        XCTAssertEqual(workers.map(\.terminationStatus), [0, 0], "the same worker processes finished the run")
        XCTAssertEqual(try exactLosses(tmp + "/b"), straight.losses)
        XCTAssertTrue(try events(tmp + "/b").contains { $0["kind"] as? String == "resume" })
    }
}
