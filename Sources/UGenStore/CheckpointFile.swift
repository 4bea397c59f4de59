import CZlib
import Foundation
import UGenSchema

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
    /// What the run trained on: the content hash of the tokenizer its dataset was made with, and the
    /// dataset's identity (`RunData.datasetHash`). Empty when unknown (older files, other tools).
    public var tokenizerHash: String
    public var datasetHash: String

    public init(
        step: Int, tokensSeen: Int, dataSeed: Int, dataState: String, vocabKind: String, vocabActive: Int,
        vocabOrder: [Int32], rngStates: [String: UInt64], configYAML: String, tokenizerHash: String = "",
        datasetHash: String = ""
    ) {
        self.step = step; self.tokensSeen = tokensSeen; self.dataSeed = dataSeed; self.dataState = dataState
        self.vocabKind = vocabKind; self.vocabActive = vocabActive; self.vocabOrder = vocabOrder
        self.rngStates = rngStates; self.configYAML = configYAML
        self.tokenizerHash = tokenizerHash; self.datasetHash = datasetHash
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

    public init(
        model: ModelConfig, vocabLayout: [String: Int], params: [NamedTensor], adamM: [NamedTensor],
        adamV: [NamedTensor], optimizerStep: Int, progress: TrainingProgress
    ) {
        self.model = model; self.vocabLayout = vocabLayout; self.params = params; self.adamM = adamM; self.adamV = adamV
        self.optimizerStep = optimizerStep; self.progress = progress
    }
}

/// The HDF5 checkpoint schema, written once:
///
///     /                      format = "ugen-checkpoint", version = 1
///     /config                model hyperparameters and the vocabulary layout, as attributes  (attr checksum)
///     /params/<name>         float32, HuggingFace names and shapes          (attr checksum)
///     /optimizer             attr step                                      (attr checksum)
///     /optimizer/m/<name>    AdamW first moments                            (attr checksum)
///     /optimizer/v/<name>    AdamW second moments                           (attr checksum)
///     /train                 attrs step, tokens_seen, lr_step, data_seed, data_state, vocab_kind,
///                            vocab_active, config, rng.<name>, tokenizer_hash, dataset_hash (attr checksum)
///     /train/vocab_order     int32, visual codes in activation order        (attr checksum)
///
/// `checksum` is the CRC-32 (zlib) of the tensor's little-endian bytes, so `zlib.crc32(a.tobytes())`
/// checks it from Python. The `checksum` of `/config`, `/optimizer` and `/train` is the CRC-32 over their other
/// attributes (see `CheckpointVerifier.attributeChecksum`). Files are written under a temporary name, flushed, synced, then renamed: a
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
        for (group, tensors) in [("/params", ckpt.params), ("/optimizer/m", ckpt.adamM), ("/optimizer/v", ckpt.adamV)] {
            for t in tensors where CheckpointVerifier.firstNonFinite(t.values) != nil {
                throw StoreError(path, .nonFinite(group: group, tensor: t.name))
            }
        }
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
                try f.setAttribute("checksum", [try CheckpointVerifier.attributeChecksum(f, "/optimizer")], at: "/optimizer")
                for t in ckpt.adamM { try writeTensor(f, "/optimizer/m/\(t.name)", t) }
                for t in ckpt.adamV { try writeTensor(f, "/optimizer/v/\(t.name)", t) }
                try writeProgress(f, ckpt.progress)
                try f.flush()
            }
            try syncFile(tmp)
            guard rename(tmp, path) == 0 else { throw StoreError(path, .cannotRename(from: tmp)) }
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
        for (k, v) in [
            ("vocab_size", m.vocabSize), ("d_model", m.dModel), ("n_layers", m.nLayers), ("n_heads", m.nHeads),
            ("n_kv_heads", m.nKVHeads), ("ffn_hidden", m.ffnHidden), ("max_seq_len", m.maxSeqLen),
        ] {
            try f.setAttribute(k, v, at: "/config")
        }
        try f.setAttribute("rope_theta", m.ropeTheta, at: "/config")
        try f.setAttribute("rms_eps", m.rmsEps, at: "/config")
        for (k, v) in layout.sorted(by: { $0.key < $1.key }) { try f.setAttribute(k, v, at: "/config") }
        try f.setAttribute("checksum", [try CheckpointVerifier.attributeChecksum(f, "/config")], at: "/config")
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
        if !p.tokenizerHash.isEmpty { try f.setAttribute("tokenizer_hash", p.tokenizerHash, at: "/train") }
        if !p.datasetHash.isEmpty { try f.setAttribute("dataset_hash", p.datasetHash, at: "/train") }
        try f.setAttribute("checksum", [try CheckpointVerifier.attributeChecksum(f, "/train")], at: "/train")
        try f.write("/train/vocab_order", p.vocabOrder, shape: [p.vocabOrder.count])
        try f.setAttribute("checksum", [Int64(crc32(p.vocabOrder))], at: "/train/vocab_order")
    }

    private static func syncFile(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw StoreError(path, .cannotOpenToSync) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StoreError(path, .fsyncFailed) }
    }

    private static func syncDirectory(_ dir: String) {
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    // MARK: Reading

    /// Reads a checkpoint through `CheckpointVerifier` (the rules `ugen inspect` applies): the first
    /// finding is the error, one line naming the file and the tensor or key.
    public static func read(_ path: String) throws -> Checkpoint {
        let report = CheckpointVerifier.verify(path)
        if let e = report.error { throw e }
        return report.checkpoint!
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
        guard rename(latestTmp, dir + "/latest") == 0 else { throw StoreError(dir + "/latest", .cannotUpdate) }
        syncDirectory(dir)
        if keep > 0 {
            let all = list(runDirectory: runDirectory)
            for old in all.dropLast(keep) where old != path { try? FileManager.default.removeItem(atPath: old) }
        }
        return path
    }

    /// Complete checkpoints of a run, oldest first: `step-XXXXXXXX.h5` only (the temporary files of a
    /// save, `step-….h5.tmp-PID`, never count).
    public static func list(runDirectory: String) -> [String] {
        let dir = runDirectory + "/checkpoints"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { isCheckpointName($0) }.sorted().map { dir + "/" + $0 }
    }

    static func isCheckpointName(_ name: String) -> Bool {
        name.hasPrefix("step-") && name.hasSuffix(".h5") && Int(name.dropFirst(5).dropLast(3)) != nil
    }

    /// Removes what interrupted saves left in RUN/checkpoints (`step-….h5.tmp-PID`, `latest.tmp-PID`)
    /// unless PID is this process. Returns the paths removed. Called when a run starts.
    @discardableResult
    public static func removeLeftovers(runDirectory: String) -> [String] {
        let dir = runDirectory + "/checkpoints"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        var removed: [String] = []
        for n in names.sorted() {
            guard let r = n.range(of: ".tmp-"), n.hasPrefix("step-") || n.hasPrefix("latest") else { continue }
            guard Int32(n[r.upperBound...]) != getpid() else { continue }
            if (try? FileManager.default.removeItem(atPath: dir + "/" + n)) != nil { removed.append(dir + "/" + n) }
        }
        return removed
    }

    /// The newest checkpoint of the folder holding `pointer` that verifies, other than `except`.
    public static func newestGood(beside pointer: String, except: String? = nil) -> String? {
        let dir = (pointer as NSString).deletingLastPathComponent
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter(isCheckpointName).sorted()
        for n in names.reversed() where dir + "/" + n != except {
            if CheckpointVerifier.verify(dir + "/" + n, keepTensors: false).isValid { return dir + "/" + n }
        }
        return nil
    }

    /// What to add to a refusal of `pointer`: the newest good checkpoint beside it, to resume from instead.
    public static func goodAlternative(beside pointer: String, except: String? = nil) -> String {
        guard let good = newestGood(beside: pointer, except: except) else { return "; no good checkpoint beside it" }
        return "; the newest good checkpoint beside it is \(good) (resume from it with --resume \(good))"
    }

    /// Reads a `latest` pointer file: the checkpoint it names, which must exist. Errors name the pointer
    /// and the newest good checkpoint beside it.
    public static func followPointer(_ pointer: String) throws -> String {
        guard FileManager.default.fileExists(atPath: pointer) else { throw StoreError(pointer, .noCheckpointToResume) }
        guard let data = FileManager.default.contents(atPath: pointer), let text = String(data: data, encoding: .utf8) else {
            throw StoreError(pointer, .pointerNotText, alternative: goodAlternative(beside: pointer))
        }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty else { throw StoreError(pointer, .pointerEmpty, alternative: goodAlternative(beside: pointer)) }
        let base = (name as NSString).lastPathComponent
        guard isCheckpointName(base), !name.contains("\n") else {
            let shown = name.count > 40 ? String(name.prefix(40)) + "…" : name
            throw StoreError(pointer, .pointerNotAName(shown), alternative: goodAlternative(beside: pointer))
        }
        let path = name.hasPrefix("/") ? name : (pointer as NSString).deletingLastPathComponent + "/" + name
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(pointer, .pointerTargetMissing(name), alternative: goodAlternative(beside: pointer))
        }
        return path
    }

    /// Resolves `latest` (or a path) to a checkpoint file: `PATH|latest`, where `latest` reads
    /// RUN/checkpoints/latest.
    public static func resolve(_ spec: String, runDirectory: String) throws -> String {
        guard spec == "latest" else { return spec }
        return try followPointer(runDirectory + "/checkpoints/latest")
    }

    /// A checkpoint file, a `latest` pointer file, or a run folder (its checkpoints/latest) → the file,
    /// and the pointer it came through.
    public static func locate(_ spec: String) throws -> (path: String, pointer: String?) {
        var isDir: ObjCBool = false
        let fm = FileManager.default
        guard fm.fileExists(atPath: spec, isDirectory: &isDir) else { throw StoreError(spec, .noSuchCheckpoint) }
        if isDir.boolValue {
            guard let pointer = [spec + "/checkpoints/latest", spec + "/latest"].first(where: { fm.fileExists(atPath: $0) }) else {
                throw StoreError(spec, .folderWithoutLatest)
            }
            return (try followPointer(pointer), pointer)
        }
        if (spec as NSString).lastPathComponent == "latest" { return (try followPointer(spec), spec) }
        return (spec, nil)
    }

    /// Locates (`latest` means RUN/checkpoints/latest) and verifies. The error is the verifier's first
    /// finding; when the file came through a `latest` pointer, with the newest good checkpoint beside it.
    public static func load(_ spec: String, runDirectory: String? = nil) throws -> (path: String, checkpoint: Checkpoint) {
        let (path, pointer) = try locate(spec == "latest" && runDirectory != nil ? runDirectory! + "/checkpoints/latest" : spec)
        let report = CheckpointVerifier.verify(path)
        if let e = report.error { throw refusal(e, pointer: pointer, path: path) }
        return (path, report.checkpoint!)
    }

    /// A refusal of `path`; through a pointer, naming the newest good checkpoint beside it.
    public static func refusal(_ error: StoreError, pointer: String?, path: String) -> StoreError {
        var e = error
        if pointer != nil { e.alternative += goodAlternative(beside: path, except: path) }
        return e
    }
}
