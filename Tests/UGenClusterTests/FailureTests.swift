import Foundation
import XCTest
import UGenCluster
import UGenTraining

/// Workers die; the run goes back to its last checkpoint and finishes exactly as if nothing happened.
final class FailureTests: XCTestCase {
    /// Runs a coordinator on a thread; `during` gets it once training is under way.
    func runWithChaos(_ config: RunConfig, dir: String, workers: Int = 2, _ during: (Coordinator, String) throws -> Void) throws -> Coordinator.Outcome? {
        var o = Coordinator.Options(config: config, runDirectory: dir)
        o.bind = "tcp://127.0.0.1:0"
        o.localWorkers = workers
        o.workerExecutable = workerExecutable
        let coordinator = Box(try Coordinator(o))
        let outcome = Box<Coordinator.Outcome?>(nil)
        let thread = Thread { outcome.value = try? coordinator.value.run() }
        thread.start()
        try during(coordinator.value, dir)
        let deadline = Date().addingTimeInterval(120)
        while !thread.isFinished && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(thread.isFinished, "the run finished")
        return outcome.value
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
}
