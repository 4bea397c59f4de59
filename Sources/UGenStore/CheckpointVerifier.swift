import Foundation
import UGenSchema
import Yams

/// What verifying one checkpoint file found: the tensors as they are stored, every problem (one line each,
/// naming the file, the object and what is wrong), and the checkpoint itself when there was none.
public struct CheckpointReport {
    public struct Tensor {
        public var path: String
        /// The shape as stored (nil when the object is not a readable dataset).
        public var stored: [Int]?
        public var dtype: String
        /// "ok", or the problem.
        public var status: String
    }

    public let path: String
    public internal(set) var findings: [String] = []
    public internal(set) var tensors: [Tensor] = []
    public internal(set) var model: ModelConfig?
    public internal(set) var vocabLayout: [String: Int] = [:]
    public internal(set) var progress: TrainingProgress?
    public internal(set) var optimizerStep = 0
    /// The whole checkpoint, set only when there are no findings.
    public internal(set) var checkpoint: Checkpoint?
    public var isValid: Bool { findings.isEmpty }
    /// The first finding as an error (what load, resume, export and generate refuse with).
    public var error: StoreError? { findings.first.map { StoreError(nil, .finding($0)) } }
}

/// The one checkpoint verifier: `CheckpointFile.read` (and so resume, recovery, `ugen export`, `ugen
/// generate`, `ugen eval`) and `ugen inspect` all go through it, so they agree on what a good file is.
///
/// Rules (Documentation/checkpoints.md):
/// - an HDF5 file, `format` = "ugen-checkpoint", `version` = 1; every object header and attribute in it
///   readable (HDF5 visits the whole tree); root members exactly config, optimizer, params, train;
/// - `/config`: every model key present and numeric, the model valid, the vocabulary layout consistent
///   (text_vocab + n_specials + codebook = vocab_size), and equal to the `model.*` keys of the run config
///   stored in `/train` (when it has one);
/// - `/params`, `/optimizer/m`, `/optimizer/v`: exactly the tensors the config implies, each float32 of
///   the implied shape, its `checksum` (CRC-32) matching, every value finite;
/// - `/config`, `/optimizer` and `/train` attributes: their `checksum` (CRC-32 over the other attributes, when present);
/// - `/train`: every attribute present; `vocab_order` int32 1-D with a matching checksum, empty or a
///   permutation of the K visual ids (or codes 0..<K); `vocab_active` in 0...K; `vocab_kind` progressive
///   or vanilla; `data_state` a JSON object; 0 ≤ optimizer step ≤ step.
public enum CheckpointVerifier {
    static let modelKeys = ["vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "ffn_hidden", "max_seq_len"]
    static let modelDoubleKeys = ["rope_theta", "rms_eps"]
    static let trainInts = ["step", "tokens_seen", "data_seed", "vocab_active"]
    static let trainStrings = ["data_state", "vocab_kind", "config"]

    /// Verifies `path` completely (reads every tensor once). Never throws: problems are findings. With
    /// `keepTensors` false (inspect) no tensor is kept in memory and `checkpoint` stays nil.
    public static func verify(_ path: String, keepTensors: Bool = true) -> CheckpointReport {
        let verification = CheckpointVerification(path, keepTensors: keepTensors)
        verification.run()
        return verification.report
    }

    static func dtype(_ f: H5File, _ p: String) -> String {
        guard let t = try? f.storedType(of: p) else { return "?" }
        return (t.isFloat ? "float" : t.isSigned ? "int" : "uint") + "\(t.bytes * 8)"
    }

    /// Reads one float32 tensor; the problem, if any: shape, type, checksum, then finiteness.
    static func readTensor(_ f: H5File, _ p: String, name: String, shape: [Int]) -> (NamedTensor?, String?) {
        guard f.isDataset(p) else { return (nil, "not a dataset") }
        guard let stored = try? f.shape(of: p) else { return (nil, "unreadable shape (corrupted?)") }
        guard stored == shape else { return (nil, "stored shape \(stored), the config implies \(shape)") }
        guard let t = try? f.storedType(of: p), t.isFloat, t.bytes == 4 else { return (nil, "stored as \(dtype(f, p)), expected float32") }
        let values: [Float]
        do { values = try f.read(p) } catch { return (nil, "cannot read the data (corrupted?)") }
        if let problem = checksumProblem(f, p, values) { return (nil, problem) }
        if let i = firstNonFinite(values) {
            var index: [Int] = [], rest = i
            for d in shape.reversed() { index.insert(rest % d, at: 0); rest /= d }
            return (nil, "non-finite value \(values[i]) at \(index) (checksum matches: written so, not damaged on disk)")
        }
        return (NamedTensor(name: name, shape: shape, values: values), nil)
    }

    /// The index of the first NaN or infinity (exponent bits all set), scanning the raw bits.
    static func firstNonFinite(_ values: [Float]) -> Int? {
        values.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: UInt32.self) { u in
                for i in u.indices where u[i] & 0x7F80_0000 == 0x7F80_0000 { return i }
                return nil
            }
        }
    }

    static func checksumProblem<T>(_ f: H5File, _ p: String, _ values: [T]) -> String? {
        guard let expected = try? f.attribute("checksum", at: p, as: Int64.self)[0] else { return "attribute checksum is missing" }
        let actual = Int64(CheckpointFile.crc32(values))
        guard expected == actual else { return "checksum mismatch (stored \(expected), computed \(actual)): the data is corrupted" }
        return nil
    }

    /// The CRC-32 over a group's attributes other than `checksum`: name, 0, value bytes, in name order.
    public static func attributeChecksum(_ f: H5File, _ group: String) throws -> Int64 {
        var bytes: [UInt8] = []
        for k in try f.attributeNames(at: group).sorted() where k != "checksum" {
            bytes += Array(k.utf8) + [0] + (try f.attributeBytes(k, at: group)) + [0]
        }
        return Int64(CheckpointFile.crc32(bytes))
    }

    static func checkAttributeChecksum(_ f: H5File, _ group: String, _ finding: (String, String) -> Void) {
        guard f.hasAttribute("checksum", at: group) else { return }  // files written before it, or by other tools
        guard let stored = try? f.attribute("checksum", at: group, as: Int64.self)[0] else {
            finding(group, "attribute checksum is not a number"); return
        }
        do {
            let actual = try attributeChecksum(f, group)
            if stored != actual {
                finding(group, "checksum of the attributes mismatches (stored \(stored), computed \(actual)): an attribute is corrupted")
            }
        } catch { finding(group, "cannot read the attributes (corrupted?)") }
    }

    /// The schedule state: `vocab_order` empty or a permutation of the K visual ids (or codes 0..<K),
    /// `vocab_active` in 0...K.
    static func scheduleProblem(order o: [Int32], active: Int, layout: [String: Int]) -> String? {
        let order = o.map(Int.init)  // Int arithmetic: layout values may be anything in a damaged file
        let k = layout["codebook"] ?? order.count
        guard !order.isEmpty else { return nil }
        guard order.count == k else { return "holds \(order.count) ids, the codebook has \(k)" }
        let first = (layout["text_vocab"] ?? 0) &+ (layout["n_specials"] ?? 0)
        let set = Set(order)
        guard set.count == k else { return "not a permutation: an id repeats" }
        let asIds = layout["text_vocab"] != nil && set.allSatisfy { $0 >= first && $0 - first < k }
        let asCodes = set.allSatisfy { $0 >= 0 && $0 < k }
        guard asIds || asCodes else {
            let bad = order.first { !($0 >= first && $0 - first < k) && !($0 >= 0 && $0 < k) } ?? -1
            return "id \(bad) is not a visual id (expected a permutation of \(first)..<\(first &+ k))"
        }
        return nil
    }

    /// `/config` against the `model:` section of the run config stored in `/train` (when there is one).
    static func configProblem(_ yaml: String, _ m: ModelConfig) -> String? {
        let model = ((try? Yams.load(yaml: yaml)) as? [String: Any])?["model"] as? [String: Any] ?? [:]
        let values = model.mapValues { "\($0)" }
        guard !values.isEmpty else { return nil }
        let ours: [(String, Double)] = [
            ("vocab_size", Double(m.vocabSize)), ("d_model", Double(m.dModel)), ("n_layers", Double(m.nLayers)),
            ("n_heads", Double(m.nHeads)), ("n_kv_heads", Double(m.nKVHeads)), ("ffn_hidden", Double(m.ffnHidden)),
            ("max_seq_len", Double(m.maxSeqLen)), ("rope_theta", m.ropeTheta), ("rms_eps", m.rmsEps),
        ]
        for (k, v) in ours {
            guard let text = values[k], let stored = Double(text) else { continue }
            if k == "vocab_size" && stored == 0 { continue }  // 0: taken from the dataset
            if stored != v {
                let ours = k.contains("_eps") || k.contains("theta") ? "\(v)" : "\(Int(v))"
                return "\(k) is \(ours) but the run config stored in /train says model.\(k): \(text)"
            }
        }
        return nil
    }
}

extension ModelConfig {
    /// The first hyperparameter that differs, as "KEY = A, the run has B" (nil when equal): one line,
    /// never a struct dump.
    public func firstDifference(from o: ModelConfig) -> String? {
        let pairs: [(String, String, String)] = [
            ("vocab_size", "\(vocabSize)", "\(o.vocabSize)"), ("d_model", "\(dModel)", "\(o.dModel)"),
            ("n_layers", "\(nLayers)", "\(o.nLayers)"), ("n_heads", "\(nHeads)", "\(o.nHeads)"),
            ("n_kv_heads", "\(nKVHeads)", "\(o.nKVHeads)"), ("ffn_hidden", "\(ffnHidden)", "\(o.ffnHidden)"),
            ("rope_theta", "\(ropeTheta)", "\(o.ropeTheta)"), ("rms_eps", "\(rmsEps)", "\(o.rmsEps)"),
            ("max_seq_len", "\(maxSeqLen)", "\(o.maxSeqLen)"),
        ]
        return pairs.first { $0.1 != $0.2 }.map { "model.\($0.0) = \($0.1), the run has \($0.2)" }
    }
}
