import Foundation
import UGenCluster
import UGenStore
import UGenTraining
import XCTest

/// The export carries the vocabulary schedule: a checkpoint exported mid-schedule
/// names its active visual ids in config.json, `--suppress-inactive` keeps `generate()` from emitting the
/// others, `--mean-inactive-rows` keeps greedy decoding from picking them, and a consumer that applies the
/// schedule gets `ugen eval`'s losses (numpy, no torch).
final class ExportScheduleTests: XCTestCase {
    func testAMidScheduleExportCarriesTheActiveIdsAndReproducesUgenEval() throws {
        let tmp = try temporaryDirectory(self)
        try clusterRun(try tinyConfig(["train.steps=4"]), run: tmp + "/run")
        let latest = tmp + "/run/checkpoints/latest"
        let model = try TrainedModel(checkpoint: latest)
        let active = try XCTUnwrap(model.activeVisual, "mid-schedule: some visual ids inactive").map(Int.init)
        XCTAssertEqual(active.count, 12)

        let (status, out, err) = try runProcess(
            ugenExecutable, ["export", "--checkpoint", latest, "--out", tmp + "/hf", "--suppress-inactive"])
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(out.contains("12 of 16 visual ids active"), out)
        let config = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tmp + "/hf/config.json"))) as? [String: Any])
        let schedule = try XCTUnwrap(config["ugen_vocab_schedule"] as? [String: Any], "config.json carries the schedule")
        let inactive = Array(model.layout.visualRange).filter { !active.contains($0) }
        XCTAssertEqual(schedule["active_visual_ids"] as? [Int], active)
        XCTAssertEqual(schedule["inactive_visual_ids"] as? [Int], inactive)
        XCTAssertEqual(schedule["inactive_input_id"] as? Int, Int(model.layout.unkImage))
        XCTAssertEqual(schedule["step"] as? Int, 4)
        let generation = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tmp + "/hf/generation_config.json"))) as? [String: Any]
        )
        XCTAssertEqual(generation["suppress_tokens"] as? [Int], inactive)

        let data = try ClusterDataset.path()
        let e = try runProcess(
            ugenExecutable,
            [
                "eval", "--checkpoint", latest, "--data", data + "/val.h5", "--json", tmp + "/eval.json",
                "--max-text", "6", "--max-captions", "4", "--max-images", "3", "--quiet",
            ])
        XCTAssertEqual(e.0, 0, e.2)
        let check = try runProcess(
            "/usr/bin/env",
            [
                "python3", packageRoot.appendingPathComponent("Tests/python/export_equals_eval.py").path,
                tmp + "/hf", data + "/val.h5", tmp + "/eval.json",
            ])
        XCTAssertEqual(check.0, 0, "export ≠ ugen eval (needs numpy, h5py, safetensors: make deps): \(check.1) \(check.2)")
        XCTAssertEqual(check.1.components(separatedBy: "(equal").count - 1, 3, check.1)
        print(check.1, terminator: "")

        // --mean-inactive-rows: greedy decoding never picks an inactive id, other weights untouched.
        let m = try runProcess(ugenExecutable, ["export", "--checkpoint", latest, "--out", tmp + "/hf-mean", "--mean-inactive-rows"])
        XCTAssertEqual(m.0, 0, m.2)
        let rows = try runProcess(
            "/usr/bin/env",
            [
                "python3", packageRoot.appendingPathComponent("Tests/python/check_mean_rows.py").path,
                tmp + "/hf", tmp + "/hf-mean", data + "/val.h5",
            ])
        XCTAssertEqual(rows.0, 0, rows.1 + rows.2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/hf-mean/generation_config.json"), "only with --suppress-inactive")
    }
}
