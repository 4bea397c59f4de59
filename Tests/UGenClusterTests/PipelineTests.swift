import Foundation
import UGenCluster
import UGenKernels
import UGenStore
import UGenTraining
import XCTest

/// Real coordinator, real `ugen-worker` processes, real ZeroMQ on loopback, against the single process.
final class PipelineTests: XCTestCase {
    func testEveryStageCountMatchesTheSingleProcessToTheBit() throws {
        let reference = try referenceRun(try tinyConfig()).losses
        XCTAssertEqual(reference.count, 8)
        for stages in 1...4 {
            let config = try tinyConfig(["cluster.stages=\(stages)"])
            let (outcome, losses) = try clusterRun(config, run: try temporaryDirectory(self) + "/run")
            XCTAssertEqual(outcome, .finished(step: 8))
            XCTAssertEqual(losses, reference, "\(stages) stages")
        }
    }

    func testGPipeAndOneFOneBAgree() throws {
        let reference = try referenceRun(try tinyConfig()).losses
        let config = try tinyConfig(["cluster.stages=2", "cluster.schedule=gpipe"])
        XCTAssertEqual(try clusterRun(config, run: try temporaryDirectory(self) + "/run").losses, reference)
    }

    /// Zero bubble splits each backward in two and runs the weight halves late; the losses stay the
    /// single process's to the bit (and the tiny config's partition cuts inside a layer: see the assign events).
    func testZeroBubbleMatchesTheSingleProcessToTheBit() throws {
        let reference = try referenceRun(try tinyConfig()).losses
        for stages in [2, 3] {
            let dir = try temporaryDirectory(self) + "/run"
            let config = try tinyConfig(["cluster.stages=\(stages)", "cluster.schedule=zb"])
            let (outcome, losses) = try clusterRun(config, run: dir)
            XCTAssertEqual(outcome, .finished(step: 8))
            XCTAssertEqual(losses, reference, "\(stages) stages, zero bubble")
            let layers = try events(dir).filter { $0["kind"] as? String == "assign" }.compactMap { $0["layers"] as? String }
            XCTAssertEqual(layers.count, stages)
            if stages == 2 { XCTAssertTrue(layers.contains { $0.hasSuffix("attention") }, "\(layers)") }
        }
    }

    func testTwoReplicasOfTwoStagesMatchOneReplica() throws {
        let reference = try referenceRun(try tinyConfig()).losses
        let config = try tinyConfig(["cluster.stages=2", "cluster.replicas=2", "cluster.micro_batches=2"])
        XCTAssertEqual(try clusterRun(config, run: try temporaryDirectory(self) + "/run").losses, reference)
    }

    func testMetricsCarryEveryStageAndTheVocabularySchedule() throws {
        let dir = try temporaryDirectory(self) + "/run"
        try clusterRun(try tinyConfig(["cluster.stages=2"]), run: dir)
        let m = try metrics(dir)
        XCTAssertEqual(m.map { $0["step"] as! Int }, Array(1...8))
        for key in ["loss", "lr", "grad_norm", "tokens", "tokens_per_s", "active_visual_ids", "time", "stages"] {
            XCTAssertNotNil(m[0][key], key)
        }
        XCTAssertEqual(m.map { $0["active_visual_ids"] as! Int }, [0, 0, 4, 8, 12, 16, 16, 16])
        XCTAssertNil(m[0]["loss_img2txt"], "text-only steps have no image examples")
        let stages = m[3]["stages"] as! [[String: Any]]
        XCTAssertEqual(stages.map { $0["stage"] as! Int }, [0, 1])
        XCTAssertTrue(stages.allSatisfy { ($0["forward_ms"] as! Double) > 0 && ($0["backward_ms"] as! Double) > 0 })
        let kinds = try events(dir).map { $0["kind"] as! String }
        for k in ["start", "join", "assign", "phase", "checkpoint", "finished"] { XCTAssertTrue(kinds.contains(k), k) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/config.yaml"))
    }
}
