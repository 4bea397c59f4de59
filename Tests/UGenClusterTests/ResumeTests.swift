import Foundation
import UGenCluster
import UGenStore
import UGenTraining
import XCTest

/// Checkpoints written by the cluster: resume to the bit, on another layout, after SIGINT and SIGKILL.
final class ResumeTests: XCTestCase {
    func finalParams(_ dir: String) throws -> [NamedTensor] {
        try CheckpointFile.read(try CheckpointFile.resolve("latest", runDirectory: dir)).params
    }

    func testStopAndResumeOnAnotherStageCountEqualsAStraightRun() throws {
        let tmp = try temporaryDirectory(self)
        let straight = try clusterRun(try tinyConfig(["cluster.stages=4", "train.steps=10"]), run: tmp + "/a")
        XCTAssertEqual(straight.outcome, .finished(step: 10))

        let first = try clusterRun(try tinyConfig(["cluster.stages=4", "train.steps=10"]), run: tmp + "/b", stopAfter: 5)
        XCTAssertEqual(first.outcome, .stopped(step: 5))
        XCTAssertEqual(first.losses, Array(straight.losses.prefix(5)))
        let second = try clusterRun(try tinyConfig(["cluster.stages=2", "train.steps=10"]), run: tmp + "/b", resume: "latest")
        XCTAssertEqual(second.outcome, .finished(step: 10))
        XCTAssertEqual(second.losses, straight.losses, "every loss of the resumed run, to the bit")
        XCTAssertEqual(try finalParams(tmp + "/b"), try finalParams(tmp + "/a"), "every final parameter, to the bit")
        XCTAssertTrue(try events(tmp + "/b").contains { $0["kind"] as? String == "resume" })

        // And the single process agrees with both.
        let reference = try referenceRun(try tinyConfig(["train.steps=10"]))
        XCTAssertEqual(reference.losses, straight.losses)
        XCTAssertEqual(reference.params, try finalParams(tmp + "/a"))
    }

    func testACheckpointOfAnotherModelIsRefusedWithTheKey() throws {
        let tmp = try temporaryDirectory(self)
        try clusterRun(try tinyConfig(["train.steps=2"]), run: tmp + "/a")
        var o = Coordinator.Options(config: try tinyConfig(["model.d_model=48"]), runDirectory: tmp + "/a")
        o.resume = "latest"
        XCTAssertThrowsError(try Coordinator(o)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("model.d_model") && text.contains("step-00000002.h5"), text)
            XCTAssertFalse(text.contains("\n"))
        }
    }

    /// SIGINT to a coordinator process: a checkpoint at the next step boundary, workers stopped, and
    /// `--resume latest` finishes the run exactly as an uninterrupted one.
    func testSigintCheckpointsAndResumeLatestContinuesExactly() throws {
        let tmp = try temporaryDirectory(self)
        let sets = ["train.steps=40", "cluster.stages=2", "data.dir=\(try ClusterDataset.path())"]
        let config = try tinyConfig(sets)
        let straight = try clusterRun(config, run: tmp + "/a")
        try config.yaml.write(toFile: tmp + "/c.yaml", atomically: true, encoding: .utf8)

        let p = Process()
        p.executableURL = URL(fileURLWithPath: coordExecutable)
        p.arguments = ["start", "--config", tmp + "/c.yaml", "--run", tmp + "/b", "--local-workers", "2", "--bind", "tcp://127.0.0.1:0"]
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while ((try? exactLosses(tmp + "/b").count) ?? 0) < 5 && Date() < deadline { usleep(10_000) }
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let stoppedAt = try exactLosses(tmp + "/b").count
        XCTAssertLessThan(stoppedAt, 40, "stopped early")
        let ckpt = try CheckpointFile.read(try CheckpointFile.resolve("latest", runDirectory: tmp + "/b"))
        XCTAssertEqual(ckpt.progress.step, stoppedAt)

        let (status, _, err) = try runProcess(
            coordExecutable,
            [
                "start", "--config", tmp + "/c.yaml", "--run", tmp + "/b",
                "--local-workers", "2", "--bind", "tcp://127.0.0.1:0", "--resume", "latest",
            ])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(try exactLosses(tmp + "/b"), straight.losses)
        XCTAssertEqual(try finalParams(tmp + "/b"), try finalParams(tmp + "/a"))
    }

    /// SIGKILL while checkpoints are being written, three times: `latest` always names a complete file
    /// that reads back (checksums checked) at a step the run had reached, each resumed run goes on past
    /// the checkpoint it resumed from, and the killed coordinator's local workers notice and exit.
    func testSigkillDuringCheckpointingLeavesLatestLoadable() throws {
        let tmp = try temporaryDirectory(self)
        let config = try tinyConfig([
            "train.steps=400", "train.checkpoint_every=1", "train.keep_checkpoints=2",
            "model.d_model=96", "model.ffn_hidden=256",
        ])
        try config.yaml.write(toFile: tmp + "/c.yaml", atomically: true, encoding: .utf8)
        var resumedFrom = 0
        for round in 0..<3 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: coordExecutable)
            p.arguments =
                ["start", "--config", tmp + "/c.yaml", "--run", tmp + "/b", "--local-workers", "1", "--bind", "tcp://127.0.0.1:0"]
                + (round > 0 ? ["--resume", "latest"] : [])
            p.standardError = FileHandle.nullDevice
            try p.run()
            let before = (try? exactLosses(tmp + "/b").count) ?? 0
            let deadline = Date().addingTimeInterval(60)
            while ((try? exactLosses(tmp + "/b").count) ?? 0) < before + 3 + round && Date() < deadline { usleep(2_000) }
            let workers = processes(withEnvironment: "UGEN_COORD_PID=\(p.processIdentifier)")
            XCTAssertEqual(workers.count, 1, "round \(round): the coordinator's one local worker is running")
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let reached = try exactLosses(tmp + "/b").count
            let latest = try CheckpointFile.resolve("latest", runDirectory: tmp + "/b")
            let step = try CheckpointFile.read(latest).progress.step
            XCTAssertGreaterThan(step, resumedFrom, "round \(round): \(latest) is past the checkpoint the run resumed from")
            XCTAssertLessThanOrEqual(step, reached, "round \(round): \(latest) is at a step the run reached (\(reached))")
            resumedFrom = step
            // Local workers see their coordinator gone (its pid, their heartbeats) and exit by themselves.
            XCTAssertTrue(
                waitUntil(5) { !workers.contains(where: isAlive) },
                "round \(round): local worker \(workers) still running 5 s after its coordinator died")
        }
    }

    /// Ids of live processes whose environment holds `entry` ("NAME=value"), read from /proc.
    func processes(withEnvironment entry: String) -> [pid_t] {
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { pid_t($0) } ?? []
        return ids.filter { id in
            guard let env = FileManager.default.contents(atPath: "/proc/\(id)/environ") else { return false }
            return env.split(separator: 0).contains { $0.elementsEqual(entry.utf8) }
        }
    }
}
