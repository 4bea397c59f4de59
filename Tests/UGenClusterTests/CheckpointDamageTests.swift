import Foundation
import UGenCluster
import UGenStore
import UGenTraining
import XCTest

var ugenExecutable: String { buildDirectory.appendingPathComponent("ugen").path }

/// Every kind of damage to a real checkpoint (a cluster run stopped mid-schedule), each checked through
/// `ugen inspect` (a process) and through resume (`Coordinator` with `resume`): both refuse, with the same
/// one-line message naming the file and the tensor or key, and the failed start leaves an `error` event.
/// `ugen export` and `ugen generate` refuse with the same line too.
final class CheckpointDamageTests: XCTestCase {
    nonisolated(unsafe) static var good: (config: RunConfig, dir: String)?

    /// A run of 4 steps, checkpoints at 2 and 4 (12 of 16 visual ids active at step 4).
    func goodRun() throws -> (config: RunConfig, dir: String) {
        if let g = Self.good { return g }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ugen-damage-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        atexit {
            try? FileManager.default.removeItem(
                atPath: FileManager.default.temporaryDirectory.appendingPathComponent("ugen-damage-\(getpid())").path)
        }
        let config = try tinyConfig(["train.steps=4", "train.checkpoint_every=2", "train.keep_checkpoints=5"])
        try clusterRun(config, run: dir + "/good")
        Self.good = (config, dir + "/good")
        return Self.good!
    }

    struct Damage: Sendable {
        var name: String
        /// Fragments the message must hold (besides the file's path).
        var expect: [String]
        /// Resume `latest` (and inspect RUN/checkpoints/latest) instead of the damaged file itself.
        var throughLatest = false
        var apply: @Sendable (_ file: String, _ checkpoints: String) throws -> Void
    }

    static func flip(_ path: String, at offset: Int, mask: UInt8 = 0x40) throws {
        let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? h.close() }
        try h.seek(toOffset: UInt64(offset))
        let b = try h.read(upToCount: 1)![0]
        try h.seek(toOffset: UInt64(offset))
        h.write(Data([b ^ mask]))
    }

    static func flipInData(_ path: String, _ dataset: String, _ byte: Int = 5) throws {
        let offset = try H5File.open(path).dataOffset(of: dataset)
        try flip(path, at: offset + byte)
    }

    /// Flips a byte inside the first occurrence of `pattern` in the file (an attribute's stored value).
    static func flipInPattern(_ path: String, _ pattern: [UInt8], at index: Int, mask: UInt8 = 0x01) throws {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        guard let start = (0...(data.count - pattern.count)).first(where: { Array(data[$0..<$0 + pattern.count]) == pattern }) else {
            throw PatternNotFound(path: path, pattern: pattern)
        }
        try flip(path, at: start + index, mask: mask)
    }

    static func truncate(_ path: String, to size: (Int) -> Int) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(size(data.count)).write(to: URL(fileURLWithPath: path))
    }

    /// Opens the file for editing, as h5py would (no checksum is recomputed unless the edit does).
    static func edit(_ path: String, _ body: (H5File) throws -> Void) throws {
        let f = try H5File.open(path, writable: true)
        try body(f)
        try f.flush()
    }

    static func replaceTensor(_ f: H5File, _ name: String, _ values: [Float], shape: [Int]) throws {
        if f.exists(name) { try f.remove(name) }
        try f.write(name, values, shape: shape)
        try f.setAttribute("checksum", [Int64(CheckpointFile.crc32(values))], at: name)
    }

    static func recomputeAttributeChecksum(_ f: H5File, _ group: String) throws {
        try f.setAttribute("checksum", [try CheckpointVerifier.attributeChecksum(f, group)], at: group)
    }

    static let down = "/params/model.layers.1.mlp.down_proj.weight"

    static let damages: [Damage] = [
        Damage(name: "truncated to half", expect: []) { p, _ in try truncate(p) { $0 / 2 } },
        Damage(name: "truncated to 4 KB", expect: []) { p, _ in try truncate(p) { _ in 4096 } },
        Damage(name: "last 16 bytes cut", expect: []) { p, _ in try truncate(p) { $0 - 16 } },
        Damage(name: "empty file", expect: ["empty file"]) { p, _ in try truncate(p) { _ in 0 } },
        Damage(name: "not HDF5", expect: ["not an HDF5 file"]) { p, _ in
            try "step: 4\nweights: lots\n".write(toFile: p, atomically: false, encoding: .utf8)
        },
        Damage(name: "flipped byte in /params", expect: [down, "checksum mismatch"]) { p, _ in try flipInData(p, down) },
        Damage(name: "flipped byte in /optimizer/m", expect: ["/optimizer/m/model.embed_tokens.weight", "checksum mismatch"]) { p, _ in
            try flipInData(p, "/optimizer/m/model.embed_tokens.weight", 101)
        },
        Damage(name: "flipped byte in /optimizer/v", expect: ["/optimizer/v/lm_head.weight", "checksum mismatch"]) { p, _ in
            try flipInData(p, "/optimizer/v/lm_head.weight", 7)
        },
        Damage(name: "flipped byte in /train/vocab_order", expect: ["/train/vocab_order", "checksum mismatch"]) { p, _ in
            try flipInData(p, "/train/vocab_order", 2)
        },
        Damage(name: "flipped byte in a /config attribute (rope_theta)", expect: ["/config", "checksum of the attributes"]) { p, _ in
            try flipInPattern(p, withUnsafeBytes(of: (10000.0).bitPattern.littleEndian) { Array($0) }, at: 5)
        },
        Damage(name: "flipped byte in a /train attribute (data_state)", expect: ["/train", "checksum of the attributes"]) { p, _ in
            try flipInPattern(p, Array("\"batches\":4".utf8), at: 10)
        },
        Damage(name: "missing tensor", expect: ["/params/model.layers.2.self_attn.v_proj.weight", "missing tensor"]) { p, _ in
            try edit(p) { try $0.remove("/params/model.layers.2.self_attn.v_proj.weight") }
        },
        Damage(name: "extra tensor", expect: ["/optimizer/m/model.layers.7.extra.weight", "unexpected tensor"]) { p, _ in
            try edit(p) { try replaceTensor($0, "/optimizer/m/model.layers.7.extra.weight", [1, 2], shape: [2]) }
        },
        Damage(name: "extra object at the root", expect: ["/junk", "unexpected object"]) { p, _ in
            try edit(p) { try $0.ensureGroup("/junk") }
        },
        Damage(
            name: "changed shape [33] for [32], checksum recomputed",
            expect: ["/params/model.norm.weight", "stored shape [33]", "implies [32]"]
        ) { p, _ in
            try edit(p) { try replaceTensor($0, "/params/model.norm.weight", [Float](repeating: 1, count: 33), shape: [33]) }
        },
        Damage(
            name: "same-size transposed matrix, checksum recomputed",
            expect: ["/params/model.layers.0.mlp.gate_proj.weight", "stored shape [32, 64]", "implies [64, 32]"]
        ) { p, _ in
            try edit(p) { f in
                let v: [Float] = try f.read("/params/model.layers.0.mlp.gate_proj.weight")
                try replaceTensor(f, "/params/model.layers.0.mlp.gate_proj.weight", v, shape: [32, 64])
            }
        },
        Damage(name: "float64 tensor", expect: ["/params/model.norm.weight", "float64", "expected float32"]) { p, _ in
            try edit(p) { f in
                let v: [Double] = try f.read("/params/model.norm.weight")
                try f.remove("/params/model.norm.weight")
                try f.write("/params/model.norm.weight", v, shape: [32])
                try f.setAttribute("checksum", [Int64(CheckpointFile.crc32(v))], at: "/params/model.norm.weight")
            }
        },
        Damage(name: "/config d_model changed (as h5py would)", expect: ["/config", "checksum of the attributes"]) { p, _ in
            try edit(p) { try $0.setAttribute("d_model", 48, at: "/config") }
        },
        Damage(
            name: "/config d_model changed, checksum recomputed", expect: ["/params/model.embed_tokens.weight", "stored shape", "[", "48]"]
        ) { p, _ in
            try edit(p) {
                try $0.setAttribute("d_model", 48, at: "/config"); try recomputeAttributeChecksum($0, "/config")
            }
        },
        Damage(name: "fewer layers in /config, checksum recomputed", expect: ["/params/model.layers.2.", "unexpected tensor", "2 layers"]) {
            p, _ in
            try edit(p) {
                try $0.setAttribute("n_layers", 2, at: "/config"); try recomputeAttributeChecksum($0, "/config")
            }
        },
        Damage(
            name: "/config n_layers 2^40, checksum recomputed",
            expect: ["/config", "n_layers 1099511627776 implies", "tensors per group; the file holds"]
        ) { p, _ in
            try edit(p) {
                try $0.setAttribute("n_layers", 1 << 40, at: "/config"); try recomputeAttributeChecksum($0, "/config")
            }
        },
        Damage(
            name: "NaN in a parameter, checksum recomputed",
            expect: ["/params/model.layers.0.self_attn.q_proj.weight", "non-finite value nan at [3, 7]"]
        ) { p, _ in
            try edit(p) { f in
                var v: [Float] = try f.read("/params/model.layers.0.self_attn.q_proj.weight")
                v[3 * 32 + 7] = .nan
                try replaceTensor(f, "/params/model.layers.0.self_attn.q_proj.weight", v, shape: [32, 32])
            }
        },
        Damage(name: "Inf in a second moment, checksum recomputed", expect: ["/optimizer/v/model.norm.weight", "non-finite value inf"]) {
            p, _ in
            try edit(p) { f in
                var v: [Float] = try f.read("/optimizer/v/model.norm.weight")
                v[5] = .infinity
                try replaceTensor(f, "/optimizer/v/model.norm.weight", v, shape: [32])
            }
        },
        Damage(name: "vocab_order id out of range, checksum recomputed", expect: ["/train/vocab_order", "1049608", "not a visual id"]) {
            p, _ in
            try edit(p) { f in
                var o: [Int32] = try f.read("/train/vocab_order")
                o[3] = 1_049_608
                try f.remove("/train/vocab_order")
                try f.write("/train/vocab_order", o, shape: [o.count])
                try f.setAttribute("checksum", [Int64(CheckpointFile.crc32(o))], at: "/train/vocab_order")
            }
        },
        Damage(name: "vocab_active beyond the codebook, checksum recomputed", expect: ["/train", "vocab_active is 99", "0...16"]) { p, _ in
            try edit(p) {
                try $0.setAttribute("vocab_active", 99, at: "/train"); try recomputeAttributeChecksum($0, "/train")
            }
        },
        Damage(name: "optimizer step beyond the training step, checksum recomputed", expect: ["/optimizer", "step is 7", "0...4"]) { p, _ in
            try edit(p) {
                try $0.setAttribute("step", 7, at: "/optimizer"); try recomputeAttributeChecksum($0, "/optimizer")
            }
        },
        Damage(
            name: "garbage in latest", expect: ["latest: unreadable", "newest good checkpoint beside it", "step-00000004.h5"],
            throughLatest: true
        ) { _, dir in
            try Data([0xff, 0xfe, 0x00, 0x41, 0x9c]).write(to: URL(fileURLWithPath: dir + "/latest"))
        },
        Damage(
            name: "latest names a missing file", expect: ["latest: names step-00000009.h5, which does not exist", "step-00000004.h5"],
            throughLatest: true
        ) { _, dir in
            try "step-00000009.h5\n".write(toFile: dir + "/latest", atomically: true, encoding: .utf8)
        },
        Damage(
            name: "latest names a corrupt file",
            expect: [down, "checksum mismatch", "newest good checkpoint beside it is", "step-00000002.h5"],
            throughLatest: true
        ) { p, _ in try flipInData(p, down) },
    ]

    func testEveryDamageIsRefusedByInspectAndByResumeWithTheSameMessage() throws {
        let (config, good) = try goodRun()
        let root = try temporaryDirectory(self)
        XCTAssertEqual(try runProcess(ugenExecutable, ["inspect", good + "/checkpoints/step-00000004.h5"]).0, 0, "the good file passes")
        for (i, d) in Self.damages.enumerated() {
            let run = root + "/\(i)"
            try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: good + "/checkpoints", toPath: run + "/checkpoints")
            let file = run + "/checkpoints/step-00000004.h5"
            try d.apply(file, run + "/checkpoints")

            let (status, out, err) = try runProcess(ugenExecutable, ["inspect", d.throughLatest ? run + "/checkpoints/latest" : file])
            XCTAssertNotEqual(status, 0, "\(d.name): inspect must fail; it printed \(out)")
            let inspectLine = err.split(separator: "\n").first.map(String.init) ?? ""

            var o = Coordinator.Options(config: config, runDirectory: run)
            o.resume = d.throughLatest ? "latest" : file
            var resumeMessage = "resumed"
            do { _ = try Coordinator(o) } catch { resumeMessage = "\(error)" }

            XCTAssertEqual(inspectLine, "error: " + resumeMessage, "\(d.name): inspect and resume say the same")
            // export and generate load through the same verifier: the same words.
            let spec = d.throughLatest ? run + "/checkpoints/latest" : file
            for args in [["export", "--checkpoint", spec, "--out", run + "/hf"], ["generate", "--checkpoint", spec, "--prompt", "a"]] {
                let (s, _, e) = try runProcess(ugenExecutable, args)
                XCTAssertNotEqual(s, 0, "\(d.name): \(args[0]) must fail")
                XCTAssertEqual(
                    e.split(separator: "\n").first.map(String.init), "error: " + resumeMessage, "\(d.name): \(args[0]) says the same")
            }
            XCTAssertFalse(resumeMessage.contains("\n"), "\(d.name): one line")
            let named =
                d.throughLatest && d.name.hasPrefix("garbage") || d.name.contains("missing file") ? run + "/checkpoints/latest" : file
            XCTAssertTrue(resumeMessage.hasPrefix(named + ": "), "\(d.name): names the file first: \(resumeMessage)")
            for e in d.expect { XCTAssertTrue(resumeMessage.contains(e), "\(d.name): '\(resumeMessage)' should mention \(e)") }
            let errors = try events(run).filter { $0["kind"] as? String == "error" }
            XCTAssertEqual(errors.map { $0["message"] as? String }, [resumeMessage], "\(d.name): the failed start leaves an error event")
        }
    }
}

/// The bytes a damage test meant to flip are not in the file (the test's own assumption failed).
struct PatternNotFound: Error {
    var path: String
    var pattern: [UInt8]
}
