import Foundation
import UGenCluster
import UGenData
import UGenStore
import UGenTraining
import XCTest

/// Errors at start: one line naming the file, never a Swift struct dump; every
/// failed start writes an `error` event; garbage in `latest` names the pointer and the newest good
/// checkpoint beside it.
final class StartErrorTests: XCTestCase {
    func start(_ tmp: String, _ args: [String]) throws -> (status: Int32, err: String) {
        let config = try tinyConfig(["train.steps=4"])
        try config.yaml.write(toFile: tmp + "/c.yaml", atomically: true, encoding: .utf8)
        let (status, _, err) = try runProcess(
            coordExecutable,
            [
                "start", "--config", tmp + "/c.yaml", "--run", tmp + "/run",
                "--local-workers", "1", "--bind", "tcp://127.0.0.1:0",
            ] + args)
        return (status, err)
    }

    func lastError(_ run: String) throws -> String? {
        try events(run).last { $0["kind"] as? String == "error" }?["message"] as? String
    }

    func testGarbageInLatestNamesThePointerAndTheNewestGoodCheckpoint() throws {
        let tmp = try temporaryDirectory(self)
        XCTAssertEqual(try start(tmp, ["--steps", "2"]).status, 0)
        try Data((0..<64).map { UInt8(($0 * 37 + 11) % 256) }).write(to: URL(fileURLWithPath: tmp + "/run/checkpoints/latest"))
        let (status, err) = try start(tmp, ["--resume", "latest"])
        XCTAssertEqual(status, 1)
        let lines = err.split(separator: "\n").filter { $0.hasPrefix("error: ") }
        XCTAssertEqual(lines.count, 1, err)
        let message = String(lines.first?.dropFirst(7) ?? "")
        XCTAssertTrue(message.hasPrefix(tmp + "/run/checkpoints/latest: unreadable"), message)
        XCTAssertTrue(message.contains("newest good checkpoint beside it is \(tmp)/run/checkpoints/step-00000002.h5"), message)
        XCTAssertEqual(try lastError(tmp + "/run"), message, "the failed start is an error event")
    }

    func testAConfigErrorAtStartIsAnErrorEvent() throws {
        let tmp = try temporaryDirectory(self)
        let (status, err) = try start(tmp, ["--set", "train.on_nonfinite=maybe"])
        XCTAssertEqual(status, 1)
        let message = try XCTUnwrap(try lastError(tmp + "/run"), "an error event in a run that never started")
        XCTAssertTrue(message.contains("train.on_nonfinite") && err.contains(message), "\(message) / \(err)")
    }

    /// Data of another vocabulary size: the checkpoint's model differs from the run's in vocab_size
    /// only (model.vocab_size is 0, taken from the data, in both configs). Named, not dumped.
    func testAModelMismatchNamesTheKeyNotAStructDump() throws {
        let tmp = try temporaryDirectory(self)
        try clusterRun(try tinyConfig(["train.steps=2"]), run: tmp + "/run")
        let raw = tmp + "/raw"
        try FileManager.default.createDirectory(atPath: raw, withIntermediateDirectories: true)
        try ClusterDataset.prose.write(toFile: raw + "/prose.txt", atomically: true, encoding: .utf8)
        let pairs = try Digits.prepare(csv: packageRoot.appendingPathComponent("Tests/fixtures/digits-200.csv").path, out: raw + "/digits")
        var t = TokenizeOptions(textFiles: [raw + "/prose.txt"], pairFiles: [pairs], outDir: tmp + "/small")
        t.textVocab = 280
        t.codebookSize = 16
        t.kMeansIterations = 2
        t.valFraction = 0.1
        _ = try TokenizeJob.run(t)
        var o = Coordinator.Options(config: try tinyConfig(["train.steps=2", "data.dir=\(tmp)/small"]), runDirectory: tmp + "/run")
        o.resume = "latest"
        XCTAssertThrowsError(try Coordinator(o)) { e in
            let text = "\(e)"
            XCTAssertTrue(
                text.hasPrefix(tmp + "/run/checkpoints/step-00000002.h5: checkpoint has model.vocab_size = 322, the run has 302"), text)
            XCTAssertFalse(text.contains("ModelConfig(") || text.contains("\n"), text)
        }
        XCTAssertEqual(try lastError(tmp + "/run")?.contains("model.vocab_size"), true)

        // The single-process trainer says it the same way.
        let c = try tinyConfig(["train.steps=2", "data.dir=\(tmp)/small"])
        let trainer = try Trainer(config: c, model: c.modelConfig(vocabSize: 302))
        XCTAssertThrowsError(try trainer.restore(try CheckpointFile.read(tmp + "/run/checkpoints/step-00000002.h5"))) { e in
            XCTAssertEqual("\(e)", "checkpoint model has model.vocab_size = 322, the run has 302")
        }
    }
}
