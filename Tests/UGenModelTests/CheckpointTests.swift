import UGenKernels
import UGenModel
import XCTest

@testable import UGenStore
@testable import UGenTraining

final class CheckpointTests: XCTestCase {
    var dir: String!

    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(getpid())-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func config() throws -> RunConfig {
        try RunConfig.parse(
            yaml: """
                model: {d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 32}
                data: {seq_len: 32, batch_rows: 4}
                train: {steps: 20, lr: 0.003, warmup_steps: 3, seed: 21}
                cluster: {micro_batches: 2}
                """)
    }

    func progress(_ t: Trainer, _ c: RunConfig) -> TrainingProgress {
        TrainingProgress(
            step: t.step, tokensSeen: t.step * 128, dataSeed: c.dataSeed, dataState: "{\"step\":\(t.step)}",
            vocabKind: c.vocabKind, vocabActive: 0, vocabOrder: [3, 1, 2, 0], rngStates: ["data": 77], configYAML: c.yaml)
    }

    /// Train 20 steps; separately train 10, save, load into a fresh trainer, train 10: the same losses and
    /// the same final parameters, to the bit.
    func testStopAndResumeIsBitForBit() throws {
        let c = try config()
        let source = ByteWindowSource(bytes: try fortunesText(), rows: 4, seqLen: 32, seed: 5)
        let straight = try Trainer(config: c, model: c.modelConfig(vocabSize: 256))
        let full = try (0..<20).map { straight.train(try source.batch(step: $0, textOnly: true)).loss }

        let first = try Trainer(config: c, model: c.modelConfig(vocabSize: 256))
        var resumed = try (0..<10).map { first.train(try source.batch(step: $0, textOnly: true)).loss }
        let path = try CheckpointFile.save(
            first.checkpoint(progress: progress(first, c), vocabLayout: ["codebook": 4]),
            runDirectory: dir, keep: 2)
        let loaded = try CheckpointFile.read(try CheckpointFile.resolve("latest", runDirectory: dir))
        XCTAssertEqual(loaded.progress, progress(first, c))
        XCTAssertEqual(path, dir + "/checkpoints/step-00000010.h5")

        let second = try Trainer(config: c, model: c.modelConfig(vocabSize: 256))
        try second.restore(loaded)
        resumed += try (10..<20).map { second.train(try source.batch(step: $0, textOnly: true)).loss }
        XCTAssertEqual(resumed, full)
        for (a, b) in zip(straight.stage.parameters, second.stage.parameters) { XCTAssertEqual(a.value.array, b.value.array, a.name) }
    }

    func testKeepsTheNewestAndLatestPointsAtAComplete() throws {
        let c = try config()
        let t = try Trainer(config: c, model: c.modelConfig(vocabSize: 256))
        for s in [5, 10, 15] {
            t.step = s
            try CheckpointFile.save(t.checkpoint(progress: progress(t, c), vocabLayout: [:]), runDirectory: dir, keep: 2)
        }
        XCTAssertEqual(
            CheckpointFile.list(runDirectory: dir).map { ($0 as NSString).lastPathComponent },
            ["step-00000010.h5", "step-00000015.h5"])
        XCTAssertEqual(try CheckpointFile.resolve("latest", runDirectory: dir), dir + "/checkpoints/step-00000015.h5")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints").filter { $0.contains(".tmp") }
        XCTAssertEqual(leftovers, [], "no temporary files left behind")
    }

    func saved() throws -> String {
        let c = try config()
        let t = try Trainer(config: c, model: c.modelConfig(vocabSize: 256))
        return try CheckpointFile.save(t.checkpoint(progress: progress(t, c), vocabLayout: [:]), runDirectory: dir, keep: 0)
    }

    func assertReadFails(_ path: String, mentioning parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try CheckpointFile.read(path), file: file, line: line) { e in
            let msg = "\(e)"
            XCTAssertFalse(msg.contains("\n"), "one line: \(msg)", file: file, line: line)
            for p in parts { XCTAssertTrue(msg.contains(p), "'\(msg)' should mention \(p)", file: file, line: line) }
        }
    }

    func testTruncatedFileIsRefused() throws {
        let path = try saved()
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        assertReadFails(path, mentioning: [path])
    }

    func testFlippedByteInATensorIsNamed() throws {
        let path = try saved()
        let name = "/params/model.layers.1.mlp.down_proj.weight"
        let offset = try H5File.open(path).dataOffset(of: name)
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try h.seek(toOffset: UInt64(offset + 17))
        let byte = try h.read(upToCount: 1)![0]
        try h.seek(toOffset: UInt64(offset + 17))
        h.write(Data([byte ^ 0x40]))
        try h.close()
        assertReadFails(path, mentioning: [path, name, "checksum"])
    }

    func testMissingTensorAndWrongFormatAreNamed() throws {
        let path = try saved()
        // A file with everything but one tensor: rewrite without it.
        var ck = try CheckpointFile.read(path)
        ck.adamV.removeLast()
        let partial = dir + "/partial.h5"
        try CheckpointFile.write(ck, to: partial)
        assertReadFails(partial, mentioning: [partial, "/optimizer/v/lm_head.weight"])
        let other = dir + "/other.h5"
        let f = try H5File.create(other)
        try f.setAttribute("format", "ugen-dataset")
        _ = f
        assertReadFails(other, mentioning: [other, "not a UGen checkpoint"])
        assertReadFails(dir + "/nope.h5", mentioning: ["nope.h5", "no such file"])
    }

    func testCheckpointOfAnotherModelIsRefusedOnRestore() throws {
        let ck = try CheckpointFile.read(try saved())
        var c = try config(); c.dModel = 64
        let t = try Trainer(config: c, model: c.modelConfig(vocabSize: 256))
        XCTAssertThrowsError(try t.restore(ck))
    }
}

/// The checkpoint and its safetensors export, read from Python (h5py, numpy, safetensors from pip).
final class ExportTests: XCTestCase {
    func testPythonReadsCheckpointAndExportMatches() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("export-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try RunConfig.parse(
            yaml: "model: {d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 32}\ndata: {seq_len: 32}")
        let t = try Trainer(config: c, model: c.modelConfig(vocabSize: 300))
        let progress = TrainingProgress(
            step: 3, tokensSeen: 9, dataSeed: 1, dataState: "{}", vocabKind: "vanilla", vocabActive: 0,
            vocabOrder: [], rngStates: [:], configYAML: c.yaml)
        let path = try CheckpointFile.save(t.checkpoint(progress: progress, vocabLayout: ["bos_id": 257]), runDirectory: dir, keep: 1)
        try SafetensorsExport.write(try CheckpointFile.read(path), to: dir + "/hf")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", repoRoot.appendingPathComponent("Tests/python/check_checkpoint.py").path, path, dir + "/hf"]
        let pipe = Pipe()
        p.standardOutput = pipe; p.standardError = pipe
        try p.run(); p.waitUntilExit()
        let out = String(data: pipe.fileHandleForReading.readDataToEndOfFile(), encoding: .utf8) ?? ""
        XCTAssertEqual(p.terminationStatus, 0, "python check failed (needs `make deps` for h5py/safetensors): \(out)")
        XCTAssertTrue(out.contains("63 checksums verified, 21 tensors equal"), out)
        XCTAssertTrue(out.contains("3 attribute checksums verified"), "/config, /optimizer, /train checked from Python: \(out)")
    }
}

/// The verifier compares /config with the `model:` group of the run config stored in /train.
final class StoredConfigTests: XCTestCase {
    func testAModelKeyThatDiffersFromTheStoredRunConfigIsNamed() throws {
        let m = ModelConfig(vocabSize: 300, dModel: 64, nLayers: 2, nHeads: 4, ffnHidden: 96, maxSeqLen: 32)
        var c = try RunConfig.parse(
            yaml: "model: {d_model: 64, n_layers: 2, n_heads: 4, ffn_hidden: 96, max_seq_len: 32}\ndata: {seq_len: 32}")
        c.vocabSize = 300
        XCTAssertNil(CheckpointVerifier.configProblem(c.yaml, m), c.yaml)
        c.dModel = 48
        XCTAssertEqual(
            CheckpointVerifier.configProblem(c.yaml, m),
            "d_model is 64 but the run config stored in /train says model.d_model: 48")
        XCTAssertNil(CheckpointVerifier.configProblem("not: [yaml", m), "unreadable YAML names no key")
    }
}
