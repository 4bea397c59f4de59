import CZlib
import Foundation
import UGenModel

/// A named float32 tensor as it travels to and from a checkpoint.
public struct NamedTensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var values: [Float]
    public init(name: String, shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "\(name): \(values.count) values for shape \(shape)")
        self.name = name; self.shape = shape; self.values = values
    }
}

/// Where training stands, beyond the tensors: enough to continue exactly.
public struct TrainingProgress: Sendable, Equatable {
    /// Completed optimizer steps (also the learning-rate schedule's position).
    public var step: Int
    public var tokensSeen: Int
    /// The data stream's seed and position (the packer's own state, as JSON text).
    public var dataSeed: Int
    public var dataState: String
    /// The progressive vocabulary's state at `step`: kind, active count, and the activation order.
    public var vocabKind: String
    public var vocabActive: Int
    public var vocabOrder: [Int32]
    /// Any other generator states, by name.
    public var rngStates: [String: UInt64]
    /// The resolved run configuration the run was trained with.
    public var configYAML: String

    public init(step: Int, tokensSeen: Int, dataSeed: Int, dataState: String, vocabKind: String, vocabActive: Int,
                vocabOrder: [Int32], rngStates: [String: UInt64], configYAML: String) {
        self.step = step; self.tokensSeen = tokensSeen; self.dataSeed = dataSeed; self.dataState = dataState
        self.vocabKind = vocabKind; self.vocabActive = vocabActive; self.vocabOrder = vocabOrder
        self.rngStates = rngStates; self.configYAML = configYAML
    }
}

/// Everything a checkpoint holds (Documentation/formats.md). Independent of the parallel layout: tensors are
/// stored whole under their HuggingFace names, whichever stages produced them.
public struct Checkpoint: Sendable, Equatable {
    public var model: ModelConfig
    /// The vocabulary layout (e.g. text_vocab, n_specials, codebook, bos_id …), stored beside the model.
    public var vocabLayout: [String: Int]
    public var params: [NamedTensor]
    public var adamM: [NamedTensor]
    public var adamV: [NamedTensor]
    public var optimizerStep: Int
    public var progress: TrainingProgress

    public init(model: ModelConfig, vocabLayout: [String: Int], params: [NamedTensor], adamM: [NamedTensor],
                adamV: [NamedTensor], optimizerStep: Int, progress: TrainingProgress) {
        self.model = model; self.vocabLayout = vocabLayout; self.params = params; self.adamM = adamM; self.adamV = adamV
        self.optimizerStep = optimizerStep; self.progress = progress
    }
}

/// The HDF5 checkpoint schema, written once:
///
///     /                      format = "ugen-checkpoint", version = 1
///     /config                model hyperparameters and the vocabulary layout, as attributes
///     /params/<name>         float32, HuggingFace names and shapes          (attr checksum)
///     /optimizer             attr step
///     /optimizer/m/<name>    AdamW first moments                            (attr checksum)
///     /optimizer/v/<name>    AdamW second moments                           (attr checksum)
///     /train                 attrs step, tokens_seen, lr_step, data_seed, data_state, vocab_kind,
///                            vocab_active, config, rng.<name>
///     /train/vocab_order     int32, visual codes in activation order        (attr checksum)
///
/// `checksum` is the CRC-32 (zlib) of the tensor's little-endian bytes, so `zlib.crc32(a.tobytes())`
/// checks it from Python. Files are written under a temporary name, flushed, synced, then renamed: a
/// crash never leaves a half file under a final name.
public enum CheckpointFile {
    public static let format = "ugen-checkpoint"
    public static let version = 1

    public static func crc32<T>(_ values: [T]) -> UInt32 {
        values.withUnsafeBytes { raw in
            UInt32(CZlib.crc32(0, raw.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt32(raw.count)))
        }
    }

    /// The file name for a step: `step-00001200.h5`.
    public static func fileName(step: Int) -> String { String(format: "step-%08d.h5", step) }

    // MARK: Writing

    /// Writes `ckpt` to `path` atomically (temporary name, flush, fsync, rename).
    public static func write(_ ckpt: Checkpoint, to path: String) throws {
        let tmp = path + ".tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        do {
            do {  // the scope closes the file before it is synced and renamed
                let f = try H5File.create(tmp)
                try f.setAttribute("format", format)
                try f.setAttribute("version", version)
                try writeConfig(f, ckpt.model, ckpt.vocabLayout)
                for t in ckpt.params { try writeTensor(f, "/params/\(t.name)", t) }
                try f.ensureGroup("/optimizer")
                try f.setAttribute("step", ckpt.optimizerStep, at: "/optimizer")
                for t in ckpt.adamM { try writeTensor(f, "/optimizer/m/\(t.name)", t) }
                for t in ckpt.adamV { try writeTensor(f, "/optimizer/v/\(t.name)", t) }
                try writeProgress(f, ckpt.progress)
                try f.flush()
            }
            try syncFile(tmp)
            guard rename(tmp, path) == 0 else { throw StoreError("\(path): cannot rename \(tmp) into place") }
            syncDirectory((path as NSString).deletingLastPathComponent)
        } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw error
        }
    }

    static func writeTensor(_ f: H5File, _ path: String, _ t: NamedTensor) throws {
        try f.write(path, t.values, shape: t.shape)
        try f.setAttribute("checksum", [Int64(crc32(t.values))], at: path)
    }

    static func writeConfig(_ f: H5File, _ m: ModelConfig, _ layout: [String: Int]) throws {
        try f.ensureGroup("/config")
        for (k, v) in [("vocab_size", m.vocabSize), ("d_model", m.dModel), ("n_layers", m.nLayers), ("n_heads", m.nHeads),
                       ("n_kv_heads", m.nKVHeads), ("ffn_hidden", m.ffnHidden), ("max_seq_len", m.maxSeqLen)] {
            try f.setAttribute(k, v, at: "/config")
        }
        try f.setAttribute("rope_theta", m.ropeTheta, at: "/config")
        try f.setAttribute("rms_eps", m.rmsEps, at: "/config")
        for (k, v) in layout.sorted(by: { $0.key < $1.key }) { try f.setAttribute(k, v, at: "/config") }
    }

    static func writeProgress(_ f: H5File, _ p: TrainingProgress) throws {
        try f.ensureGroup("/train")
        try f.setAttribute("step", p.step, at: "/train")
        try f.setAttribute("lr_step", p.step, at: "/train")
        try f.setAttribute("tokens_seen", p.tokensSeen, at: "/train")
        try f.setAttribute("data_seed", p.dataSeed, at: "/train")
        try f.setAttribute("data_state", p.dataState, at: "/train")
        try f.setAttribute("vocab_kind", p.vocabKind, at: "/train")
        try f.setAttribute("vocab_active", p.vocabActive, at: "/train")
        try f.setAttribute("config", p.configYAML, at: "/train")
        for (k, v) in p.rngStates.sorted(by: { $0.key < $1.key }) { try f.setAttribute("rng.\(k)", [v], at: "/train") }
        try f.write("/train/vocab_order", p.vocabOrder, shape: [p.vocabOrder.count])
        try f.setAttribute("checksum", [Int64(crc32(p.vocabOrder))], at: "/train/vocab_order")
    }

    private static func syncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw StoreError("\(path): cannot open to sync") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StoreError("\(path): fsync failed") }
    }

    private static func syncDirectory(_ dir: String) {
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    // MARK: Reading

    /// Reads and verifies a checkpoint: format, version, every tensor's shape and checksum. Errors are
    /// one line naming the file and the tensor or key.
    public static func read(_ path: String) throws -> Checkpoint {
        let f = try H5File.open(path)
        guard f.hasAttribute("format"), (try? f.stringAttribute("format")) == format else {
            throw StoreError("\(path): not a UGen checkpoint (attribute format is not \"\(format)\")")
        }
        let v = try f.intAttribute("version")
        guard v == version else { throw StoreError("\(path): checkpoint version \(v) is not supported (expected \(version))") }
        let model = try readModelConfig(f)
        let modelKeys: Set<String> = ["vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "ffn_hidden", "max_seq_len",
                                      "rope_theta", "rms_eps"]
        var layout: [String: Int] = [:]
        for k in try f.attributeNames(at: "/config") where !modelKeys.contains(k) { layout[k] = try f.intAttribute(k, at: "/config") }
        var params: [NamedTensor] = [], m: [NamedTensor] = [], vv: [NamedTensor] = []
        for (name, shape) in model.parameterShapes {
            params.append(try readTensor(f, "/params/\(name)", name: name, shape: shape))
            m.append(try readTensor(f, "/optimizer/m/\(name)", name: name, shape: shape))
            vv.append(try readTensor(f, "/optimizer/v/\(name)", name: name, shape: shape))
        }
        let optStep = try f.intAttribute("step", at: "/optimizer")
        let order: [Int32] = try f.read("/train/vocab_order")
        try verify(f, "/train/vocab_order", order)
        var rng: [String: UInt64] = [:]
        for k in try f.attributeNames(at: "/train") where k.hasPrefix("rng.") {
            rng[String(k.dropFirst(4))] = try f.attribute(k, at: "/train", as: UInt64.self)[0]
        }
        let progress = TrainingProgress(
            step: try f.intAttribute("step", at: "/train"), tokensSeen: try f.intAttribute("tokens_seen", at: "/train"),
            dataSeed: try f.intAttribute("data_seed", at: "/train"), dataState: try f.stringAttribute("data_state", at: "/train"),
            vocabKind: try f.stringAttribute("vocab_kind", at: "/train"), vocabActive: try f.intAttribute("vocab_active", at: "/train"),
            vocabOrder: order, rngStates: rng, configYAML: try f.stringAttribute("config", at: "/train"))
        return Checkpoint(model: model, vocabLayout: layout, params: params, adamM: m, adamV: vv, optimizerStep: optStep,
                          progress: progress)
    }

    public static func readModelConfig(_ f: H5File) throws -> ModelConfig {
        func int(_ k: String) throws -> Int { try f.intAttribute(k, at: "/config") }
        let c = ModelConfig(vocabSize: try int("vocab_size"), dModel: try int("d_model"), nLayers: try int("n_layers"),
                            nHeads: try int("n_heads"), nKVHeads: try int("n_kv_heads"), ffnHidden: try int("ffn_hidden"),
                            ropeTheta: try f.doubleAttribute("rope_theta", at: "/config"),
                            rmsEps: try f.doubleAttribute("rms_eps", at: "/config"), maxSeqLen: try int("max_seq_len"))
        do { try c.validate() } catch { throw StoreError("\(f.path): /config: \(error)") }
        return c
    }

    static func readTensor(_ f: H5File, _ path: String, name: String, shape: [Int]) throws -> NamedTensor {
        let stored = try f.shape(of: path)
        guard stored == shape else { throw StoreError("\(f.path): \(path) has shape \(stored), the model needs \(shape)") }
        let values: [Float] = try f.read(path)
        try verify(f, path, values)
        return NamedTensor(name: name, shape: shape, values: values)
    }

    static func verify<T>(_ f: H5File, _ path: String, _ values: [T]) throws {
        let expected = try f.attribute("checksum", at: path, as: Int64.self)[0]
        let actual = Int64(crc32(values))
        guard expected == actual else {
            throw StoreError("\(f.path): checksum mismatch in \(path) (stored \(expected), computed \(actual)): the file is corrupted")
        }
    }

    // MARK: The run's checkpoint folder

    /// Saves `ckpt` as RUN/checkpoints/step-XXXXXXXX.h5, points `latest` at it, and deletes all but the
    /// newest `keep`. Returns the file's path.
    @discardableResult
    public static func save(_ ckpt: Checkpoint, runDirectory: String, keep: Int) throws -> String {
        let dir = runDirectory + "/checkpoints"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let name = fileName(step: ckpt.progress.step)
        let path = dir + "/" + name
        try write(ckpt, to: path)
        let latestTmp = dir + "/latest.tmp-\(getpid())"
        try (name + "\n").write(toFile: latestTmp, atomically: false, encoding: .utf8)
        try syncFile(latestTmp)
        guard rename(latestTmp, dir + "/latest") == 0 else { throw StoreError("\(dir)/latest: cannot update") }
        syncDirectory(dir)
        if keep > 0 {
            let all = list(runDirectory: runDirectory)
            for old in all.dropLast(keep) where old != path { try? FileManager.default.removeItem(atPath: old) }
        }
        return path
    }

    /// Complete checkpoints of a run, oldest first.
    public static func list(runDirectory: String) -> [String] {
        let dir = runDirectory + "/checkpoints"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".h5") }.sorted().map { dir + "/" + $0 }
    }

    /// Resolves `latest` (or a path) to a checkpoint file: `PATH|latest`, where `latest` reads
    /// RUN/checkpoints/latest.
    public static func resolve(_ spec: String, runDirectory: String) throws -> String {
        guard spec == "latest" else { return spec }
        let pointer = runDirectory + "/checkpoints/latest"
        guard let text = try? String(contentsOfFile: pointer, encoding: .utf8) else {
            throw StoreError("\(pointer): no checkpoint to resume from")
        }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return runDirectory + "/checkpoints/" + name
    }
}
