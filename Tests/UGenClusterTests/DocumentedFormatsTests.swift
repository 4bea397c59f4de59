import Foundation
import UGenCluster
import UGenData
import UGenStore
import UGenTraining
import XCTest

/// The documentation is the contract: `Tests/python/read_from_docs.py`, a reader written from
/// Documentation/formats.md alone (h5py, numpy, zlib), must accept the files a real run writes — a dataset
/// split, its tokenizer and a checkpoint of a 2-stage cluster run — recomputing every checksum and the
/// tokenizer's content hash, and must reject a damaged copy, naming what is wrong.
final class DocumentedFormatsTests: XCTestCase {
    /// One real run per test process: the tokenized test data, 8 steps on 2 stages, a final checkpoint.
    enum RealRun {
        nonisolated(unsafe) private static var built: (dataset: String, tokenizer: String, checkpoint: String, run: String)?

        static func files() throws -> (dataset: String, tokenizer: String, checkpoint: String, run: String) {
            if let built { return built }
            let data = try ClusterDataset.path()
            let run = FileManager.default.temporaryDirectory.appendingPathComponent("ugen-documented-\(getpid())").path
            try? FileManager.default.removeItem(atPath: run)
            atexit {
                try? FileManager.default.removeItem(
                    atPath: FileManager.default.temporaryDirectory.appendingPathComponent("ugen-documented-\(getpid())").path)
            }
            try clusterRun(try tinyConfig(["cluster.stages=2"]), run: run)
            let checkpoint = try CheckpointFile.resolve("latest", runDirectory: run)
            built = (data + "/train.h5", data + "/tokenizer.h5", checkpoint, run)
            return built!
        }
    }

    static let script = packageRoot.appendingPathComponent("Tests/python/read_from_docs.py").path

    /// Runs the documented reader; returns its exit status and its output (stdout and stderr).
    func readFromDocs(_ dataset: String, _ tokenizer: String, _ checkpoint: String) throws -> (Int32, String) {
        let (status, out, err) = try runProcess("/usr/bin/env", ["python3", Self.script, dataset, tokenizer, checkpoint])
        let output = (out + err).trimmingCharacters(in: .whitespacesAndNewlines)
        print("read_from_docs.py exit \(status): \(output)")
        return (status, output)
    }

    /// A copy of `path` with one byte of `object`'s data XOR-ed with `mask` (the object must be stored
    /// contiguous, as checkpoint tensors and the tokenizer's arrays are).
    func damagedCopy(of path: String, object: String, byte: Int, mask: UInt8) throws -> String {
        let dir = try temporaryDirectory(self)
        let copy = dir + "/" + (path as NSString).lastPathComponent
        try FileManager.default.copyItem(atPath: path, toPath: copy)
        let offset = try H5File.open(copy).dataOffset(of: object) + byte
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: copy))
        try h.seek(toOffset: UInt64(offset))
        let old = try XCTUnwrap(try h.read(upToCount: 1)).first!
        try h.seek(toOffset: UInt64(offset))
        h.write(Data([old ^ mask]))
        try h.close()
        return copy
    }

    func testTheDocumentedReaderAcceptsARealRunsFiles() throws {
        let f = try RealRun.files()
        let (status, output) = try readFromDocs(f.dataset, f.tokenizer, f.checkpoint)
        XCTAssertEqual(status, 0, "read_from_docs.py (needs h5py and numpy: make deps) failed: \(output)")
        // 4 layers: 9·4 + 3 = 39 tensors, each as parameter, m and v, and the activation order.
        XCTAssertTrue(output.hasPrefix("ok:") && output.contains("118 checkpoint checksums verified"), output)
        XCTAssertTrue(output.contains(try Tokenizers(path: f.tokenizer).hash), output)
        let val = (f.dataset as NSString).deletingLastPathComponent + "/val.h5"
        let (valStatus, valOutput) = try readFromDocs(val, f.tokenizer, f.checkpoint)
        XCTAssertEqual(valStatus, 0, "val.h5: \(valOutput)")
    }

    func testTheDocumentedReaderNamesAFlippedByteInATensor() throws {
        let f = try RealRun.files()
        let name = "/params/model.layers.2.mlp.up_proj.weight"
        let damaged = try damagedCopy(of: f.checkpoint, object: name, byte: 4 * 37 + 2, mask: 0x10)
        let (status, output) = try readFromDocs(f.dataset, f.tokenizer, damaged)
        XCTAssertEqual(status, 1, output)
        XCTAssertTrue(output.hasPrefix("FAIL: \(damaged): checksum mismatch in \(name)"), output)
        XCTAssertEqual(output.split(separator: "\n").count, 1, "one line: \(output)")
        // Our own reader agrees that the file is damaged, and where.
        XCTAssertThrowsError(try CheckpointFile.read(damaged)) { XCTAssertTrue("\($0)".contains(name), "\($0)") }
    }

    func testTheDocumentedReaderNamesATokenizerWhoseContentNoLongerMatchesItsHash() throws {
        let f = try RealRun.files()
        // The lowest byte of the first codebook value: the value stays in 0...1, only the hash can tell.
        let damaged = try damagedCopy(of: f.tokenizer, object: "/image/codebook", byte: 0, mask: 0x01)
        let (status, output) = try readFromDocs(f.dataset, damaged, f.checkpoint)
        XCTAssertEqual(status, 1, output)
        XCTAssertTrue(output.hasPrefix("FAIL: \(damaged): attribute content_hash is"), output)
        XCTAssertThrowsError(try TokenizerFile.read(damaged)) { XCTAssertTrue("\($0)".contains("content_hash"), "\($0)") }
    }

    func testTheDocumentedReaderRefusesACheckpointOfAnotherVocabulary() throws {
        let f = try RealRun.files()
        let dir = try temporaryDirectory(self)
        let copy = dir + "/other.h5"
        try FileManager.default.copyItem(atPath: f.checkpoint, toPath: copy)
        do {
            let h = try H5File.open(copy, writable: true)
            try h.setAttribute("codebook", 17, at: "/config")
        }
        let (status, output) = try readFromDocs(f.dataset, f.tokenizer, copy)
        XCTAssertEqual(status, 1, output)
        XCTAssertTrue(output.hasPrefix("FAIL: \(copy): /config: vocab_size"), output)
    }

    /// The hash test values printed in formats.md are what our implementation computes.
    func testContentHashTestValuesInFormatsMdAreOurs() throws {
        let doc = try String(contentsOfFile: packageRoot.appendingPathComponent("Documentation/formats.md").path, encoding: .utf8)
        let plain = TokenizerFile(
            merges: [97, 98], codebook: [], codebookSize: 0, patch: 0, channels: 0, imageWidth: 0,
            imageHeight: 0, kind: "none")
        let learned = TokenizerFile(
            merges: [97, 98], codebook: [0, 0.5, 1, 0.25], codebookSize: 2, patch: 1, channels: 2,
            imageWidth: 8, imageHeight: 8, kind: "kmeans")
        for t in [plain, learned] {
            XCTAssertTrue(doc.contains("`\(t.contentHash)`"), "formats.md does not give the test value \(t.contentHash)")
        }
        XCTAssertEqual(CheckpointFile.crc32(Array("123456789".utf8)), 0xCBF4_3926)
    }

    /// Every key a real run writes to metrics.jsonl and events.jsonl, and every event kind, is in formats.md.
    func testEveryRunLogKeyIsDocumented() throws {
        let f = try RealRun.files()
        let doc = try String(contentsOfFile: packageRoot.appendingPathComponent("Documentation/formats.md").path, encoding: .utf8)
        func documented(_ word: String) -> Bool { doc.contains("`\(word)`") }
        var missing: [String] = []
        for line in try metrics(f.run) {
            for k in line.keys where !documented(k) { missing.append("metrics.jsonl key \(k)") }
            for s in line["stages"] as? [[String: Any]] ?? [] {
                for k in s.keys where !documented(k) { missing.append("metrics.jsonl stages key \(k)") }
            }
        }
        let evs = try events(f.run)
        XCTAssertTrue(
            Set(evs.compactMap { $0["kind"] as? String }).isSuperset(of: ["start", "join", "assign", "phase", "checkpoint", "finished"]))
        for e in evs {
            let kind = e["kind"] as? String ?? "?"
            if !documented(kind) { missing.append("event kind \(kind)") }
            for k in e.keys where !documented(k) { missing.append("events.jsonl key \(k) (kind \(kind))") }
            if kind == "phase", let p = e["phase"] as? String, !doc.contains("`\"\(p)\"`") { missing.append("phase \(p)") }
        }
        XCTAssertEqual(Array(Set(missing)).sorted(), [], "not in Documentation/formats.md")
    }
}
