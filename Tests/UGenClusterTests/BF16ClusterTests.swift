import Foundation
import UGenCluster
import UGenStore
import UGenTraining
import XCTest

/// bf16 keeps every guarantee fp32 has: the same bits on every stage count and schedule as the single
/// process, the same bits for the same seed, checkpoints that resume bit for bit, and checkpoints that
/// cross between the precisions (their weights are fp32 either way).
final class BF16ClusterTests: XCTestCase {
    func testEveryStageCountAndScheduleMatchesTheSingleProcessToTheBit() throws {
        let reference = try referenceRun(try tinyConfig(["train.precision=bf16"])).losses
        XCTAssertEqual(try referenceRun(try tinyConfig(["train.precision=bf16"])).losses, reference, "same seed, same bits")
        let fp32 = try referenceRun(try tinyConfig()).losses
        XCTAssertNotEqual(reference, fp32, "bf16 products really ran (the losses differ from fp32's)")
        XCTAssertEqual(reference[0], fp32[0], accuracy: 0.01 * fp32[0], "the first step's loss, before training moves apart")
        for (stages, schedule) in [(1, "zb"), (2, "zb"), (3, "zb"), (2, "1f1b"), (3, "gpipe")] {
            let dir = try temporaryDirectory(self) + "/run"
            let config = try tinyConfig(["train.precision=bf16", "cluster.stages=\(stages)", "cluster.schedule=\(schedule)"])
            let (outcome, losses) = try clusterRun(config, run: dir)
            XCTAssertEqual(outcome, .finished(step: 8))
            XCTAssertEqual(losses, reference, "\(stages) stages, \(schedule)")
            if stages == 2 {
                XCTAssertTrue(try metrics(dir).allSatisfy { $0["precision"] as? String == "bf16" })
                XCTAssertEqual(try events(dir).first { $0["kind"] as? String == "start" }?["precision"] as? String, "bf16")
            }
        }
    }

    /// Replicas sum their gradients in the single process's tree (`GradientTree`, `ReplicaReduce`), so in
    /// bf16 too the weights, and with them the losses, are the same bits.
    func testTwoReplicasOfTwoStagesMatchOneReplica() throws {
        let reference = try referenceRun(try tinyConfig(["train.precision=bf16"])).losses
        let config = try tinyConfig(["train.precision=bf16", "cluster.stages=2", "cluster.replicas=2", "cluster.micro_batches=2"])
        XCTAssertEqual(try clusterRun(config, run: try temporaryDirectory(self) + "/run").losses, reference)
    }

    func testResumeIsBitForBitAndCrossesPrecisionsWithAnEvent() throws {
        let tmp = try temporaryDirectory(self)
        let bf16 = ["train.precision=bf16", "cluster.stages=2", "train.steps=10"]
        let straight = try clusterRun(try tinyConfig(bf16), run: tmp + "/a")
        XCTAssertEqual(straight.outcome, .finished(step: 10))
        let first = try clusterRun(try tinyConfig(bf16), run: tmp + "/b", stopAfter: 5)
        XCTAssertEqual(first.outcome, .stopped(step: 5))
        let second = try clusterRun(
            try tinyConfig(["train.precision=bf16", "cluster.stages=3", "train.steps=10"]),
            run: tmp + "/b", resume: "latest")
        XCTAssertEqual(second.losses, straight.losses, "a bf16 run resumed on another stage count, to the bit")

        // The bf16 checkpoint of step 5 resumes in fp32, and an fp32 one in bf16; each says so.
        for (from, to) in [("bf16", "fp32"), ("fp32", "bf16")] {
            let dir = tmp + "/\(from)-to-\(to)"
            try clusterRun(try tinyConfig(["train.precision=\(from)", "train.steps=10"]), run: dir, stopAfter: 5)
            let resumed = try clusterRun(try tinyConfig(["train.precision=\(to)", "train.steps=10"]), run: dir, resume: "latest")
            XCTAssertEqual(resumed.outcome, .finished(step: 10))
            let change = try events(dir).first { $0["kind"] as? String == "precision" }
            XCTAssertEqual(change?["from"] as? String, from)
            XCTAssertEqual(change?["to"] as? String, to)
            XCTAssertEqual(change?["step"] as? Int, 5)
            XCTAssertEqual(
                try metrics(dir).map { $0["precision"] as? String }, Array(repeating: from, count: 5) + Array(repeating: to, count: 5))
        }
        XCTAssertNil(try events(tmp + "/b").first { $0["kind"] as? String == "precision" }, "no event when the precision stays")
    }
}
