import Foundation
import UGenCluster
import UGenData
import UGenStore
import UGenTraining
import XCTest

/// A checkpoint knows its data: it records the tokenizer's content hash and the
/// dataset's identity, and resume refuses another tokenization of the same layout, saying what differs
/// and how to override.
final class DataIdentityTests: XCTestCase {
    /// The test dataset's layout (T = 300, K = 16) tokenized from other prose: other merges, same ids.
    func otherTokenization(_ root: String) throws -> String {
        let text =
            String(repeating: "Every worker of a pipeline holds some layers; gradients flow back stage by stage. ", count: 3)
            + ClusterDataset.prose.uppercased()
        return try ClusterDataset.tokenize(text, into: root)
    }

    func testResumeRefusesAnotherTokenizerSayingWhatDiffersAndTheOverride() throws {
        let tmp = try temporaryDirectory(self)
        try clusterRun(try tinyConfig(["train.steps=6"]), run: tmp + "/run", stopAfter: 3)
        let ckpt = try CheckpointFile.read(try CheckpointFile.resolve("latest", runDirectory: tmp + "/run"))
        let ours = try DatasetReader(path: try ClusterDataset.path() + "/train.h5")
        XCTAssertEqual(ckpt.progress.tokenizerHash, ours.tokenizerHash, "the checkpoint records the tokenizer")
        XCTAssertEqual(ckpt.progress.datasetHash, ours.identityHash, "and the dataset")

        let other = try otherTokenization(tmp + "/other")
        let theirs = try DatasetReader(path: other + "/train.h5")
        XCTAssertEqual(theirs.layout, ours.layout, "same layout: nothing else would notice")
        XCTAssertNotEqual(theirs.tokenizerHash, ours.tokenizerHash)

        var o = Coordinator.Options(config: try tinyConfig(["train.steps=6", "data.dir=\(other)"]), runDirectory: tmp + "/run")
        o.resume = "latest"
        XCTAssertThrowsError(try Coordinator(o)) { e in
            let text = "\(e)"
            XCTAssertFalse(text.contains("\n"), text)
            for part in [
                "step-00000003.h5", "tokenizer \(ours.tokenizerHash)", "tokenizer \(theirs.tokenizerHash)", other + "/train.h5",
                "--allow-data-change",
            ] {
                XCTAssertTrue(text.contains(part), "'\(text)' should mention \(part)")
            }
        }
        XCTAssertEqual(try events(tmp + "/run").last?["kind"] as? String, "error", "the refusal is an error event")
        o.allowDataChange = true
        XCTAssertNoThrow(try Coordinator(o), "the override resumes")

        // generate and eval decode with the tokenizer the checkpoint was trained with, or not at all.
        let (status, _, err) = try runProcess(
            ugenExecutable,
            [
                "generate", "--checkpoint", tmp + "/run/checkpoints/latest",
                "--tokenizer", other + "/tokenizer.h5", "--prompt", "The",
            ])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(
            err.hasPrefix("error: \(other)/tokenizer.h5: tokenizer \(theirs.tokenizerHash) is not the one checkpoint")
                && err.contains(ours.tokenizerHash) && err.split(separator: "\n").count == 1, err)
        XCTAssertEqual(
            try runProcess(
                ugenExecutable,
                [
                    "generate", "--checkpoint", tmp + "/run/checkpoints/latest", "--prompt", "The",
                    "--max-tokens", "4",
                ]
            ).0, 0, "its own tokenizer (data.dir of its config) works")
    }

    /// Same tokenizer, other examples (a checkpoint whose recorded dataset identity differs, its /train
    /// checksum recomputed as a careful tool would): refused too, naming the dataset hashes.
    func testResumeRefusesAnotherDatasetOfTheSameTokenizer() throws {
        let tmp = try temporaryDirectory(self)
        try clusterRun(try tinyConfig(["train.steps=6"]), run: tmp + "/run", stopAfter: 3)
        let path = tmp + "/run/checkpoints/step-00000003.h5"
        do {
            let f = try H5File.open(path, writable: true)
            try f.setAttribute("dataset_hash", "0123456789abcdef", at: "/train")
            try f.setAttribute("checksum", [try CheckpointVerifier.attributeChecksum(f, "/train")], at: "/train")
            try f.flush()
        }
        var o = Coordinator.Options(config: try tinyConfig(["train.steps=6"]), runDirectory: tmp + "/run")
        o.resume = "latest"
        XCTAssertThrowsError(try Coordinator(o)) { e in
            let text = "\(e)"
            XCTAssertTrue(
                text.hasPrefix(path + ": checkpoint was trained on dataset 0123456789abcdef") && text.contains("same tokenizer")
                    && text.contains("--allow-data-change"), text)
        }
    }

    /// `ugen-coord start --allow-data-change` is the flag the message names.
    func testTheOverrideFlagExists() throws {
        let (status, out, _) = try runProcess(coordExecutable, ["start", "--help"])
        XCTAssertEqual(status, 0)
        XCTAssertTrue(out.contains("--allow-data-change"), out)
    }
}
