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
        var r = CheckpointReport(path: path)
        func finding(_ object: String, _ problem: String) { r.findings.append("\(path): \(object): \(problem)") }

        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size == 0 {
            r.findings.append("\(path): empty file (0 bytes), not a checkpoint")
            return r
        }
        let f: H5File
        do { f = try H5File.open(path) } catch { r.findings.append("\(error)"); return r }
        guard f.hasAttribute("format"), (try? f.stringAttribute("format")) == CheckpointFile.format else {
            r.findings.append("\(path): not a UGen checkpoint (attribute format is not \"\(CheckpointFile.format)\")")
            return r
        }
        guard let v = try? f.intAttribute("version") else { finding("/", "attribute version is missing or not an integer"); return r }
        guard v == CheckpointFile.version else {
            r.findings.append("\(path): checkpoint version \(v) is not supported (expected \(CheckpointFile.version))")
            return r
        }
        // The whole object tree and every attribute on it, as HDF5's tools read them: damage to a header
        // that no reader of known objects would open (a time stamp, a link) is still damage.
        let everything: [String]
        do { everything = try f.visitAll() } catch { r.findings.append("\(error)"); return r }
        for object in everything {
            guard let names = try? f.attributeNames(at: object) else {
                finding(object, "its attributes cannot be listed (a damaged object header)")
                continue
            }
            for a in names where (try? f.attributeBytes(a, at: object)) == nil || !f.attributeTypeIsPlain(a, at: object) {
                finding(object, "attribute \(a) cannot be read as stored (a damaged object header)")
            }
        }
        for object in everything where object.hasPrefix("/config/") { finding(object, "unexpected object (/config holds only attributes)") }
        let root: [String]
        do { root = try f.members(of: "/") } catch { r.findings.append("\(error)"); return r }
        for name in root where !["config", "optimizer", "params", "train"].contains(name) {
            finding("/\(name)", "unexpected object (a checkpoint holds only /config, /params, /optimizer, /train)")
        }
        for name in ["config", "optimizer", "params", "train"] where !root.contains(name) { finding("/\(name)", "missing group") }
        guard root.contains("config") else { return r }

        // /config: the model, then the layout.
        checkAttributeChecksum(f, "/config", finding)
        var ints: [String: Int] = [:]
        var doubles: [String: Double] = [:]
        for k in modelKeys {
            do { ints[k] = try f.intAttribute(k, at: "/config") } catch { finding("/config", "attribute \(k) is missing or not a number") }
        }
        for k in modelDoubleKeys {
            do { doubles[k] = try f.doubleAttribute(k, at: "/config") } catch {
                finding("/config", "attribute \(k) is missing or not a number")
            }
        }
        guard r.findings.isEmpty || ints.count == modelKeys.count && doubles.count == modelDoubleKeys.count else { return r }
        let model = ModelConfig(
            vocabSize: ints["vocab_size"]!, dModel: ints["d_model"]!, nLayers: ints["n_layers"]!,
            nHeads: ints["n_heads"]!, nKVHeads: ints["n_kv_heads"]!, ffnHidden: ints["ffn_hidden"]!,
            ropeTheta: doubles["rope_theta"]!, rmsEps: doubles["rms_eps"]!, maxSeqLen: ints["max_seq_len"]!)
        do { try model.validate() } catch { finding("/config", "\(error)"); return r }
        // A damaged n_layers (2^40) must not make the verifier enumerate what it implies: a checkpoint
        // holds 3 tensors per name, so more names than the file has objects cannot be right.
        let names = 9 * Double(model.nLayers) + 3  // Double: no overflow on a damaged value
        guard names <= Double(everything.count) else {
            let implied = names < 9e18 ? Int(names).formatted() : "\(names)"
            finding(
                "/config",
                "n_layers \(model.nLayers) implies \(implied) tensors per group; the file holds \(everything.count) objects in all")
            return r
        }
        r.model = model
        var layout: [String: Int] = [:]
        let known = Set(modelKeys + modelDoubleKeys + ["checksum"])
        for k in (try? f.attributeNames(at: "/config")) ?? [] where !known.contains(k) {
            do { layout[k] = try f.intAttribute(k, at: "/config") } catch { finding("/config", "attribute \(k) is not an integer") }
        }
        r.vocabLayout = layout
        if let lv = layout["vocab_size"], lv != model.vocabSize {
            finding("/config", "vocab_size is \(model.vocabSize) but the vocabulary layout says \(lv)")
        }
        if let t = layout["text_vocab"], let s = layout["n_specials"], let k = layout["codebook"], t &+ s &+ k != model.vocabSize {
            finding(
                "/config",
                "text_vocab + n_specials + codebook = \(t) + \(s) + \(k) = \(t &+ s &+ k), not vocab_size \(model.vocabSize)")
        }

        // The tensors, as stored, against the config.
        let expected = model.parameterShapes
        var groups: [String: [NamedTensor]] = [:]
        for group in ["/params", "/optimizer/m", "/optimizer/v"] where f.exists(group) {
            let names: [String]
            do { names = try f.members(of: group) } catch { finding(group, "not a group"); continue }
            let known = Set(expected.map(\.name))
            for n in names where !known.contains(n) {
                let p = "\(group)/\(n)"
                r.tensors.append(.init(path: p, stored: try? f.shape(of: p), dtype: dtype(f, p), status: "UNEXPECTED"))
                finding(p, "unexpected tensor (the config, \(model.nLayers) layers, implies \(expected.count) tensors per group)")
            }
            var loaded: [NamedTensor] = []
            for (name, shape) in expected {
                let p = "\(group)/\(name)"
                guard names.contains(name) else {
                    r.tensors.append(.init(path: p, stored: nil, dtype: "-", status: "MISSING"))
                    finding(p, "missing tensor (the config implies shape \(shape))")
                    continue
                }
                let (tensor, status) = readTensor(f, p, name: name, shape: shape)
                r.tensors.append(.init(path: p, stored: try? f.shape(of: p), dtype: dtype(f, p), status: status ?? "ok"))
                if let status { finding(p, status) } else if let tensor, keepTensors { loaded.append(tensor) }
            }
            groups[group] = loaded
        }
        if f.exists("/optimizer") {
            for n in (try? f.members(of: "/optimizer")) ?? [] where n != "m" && n != "v" {
                finding("/optimizer/\(n)", "unexpected object (the optimizer holds only m and v)")
            }
            for n in ["m", "v"] where !f.exists("/optimizer/\(n)") { finding("/optimizer/\(n)", "missing group") }
        }
        var optimizerStep = 0
        if root.contains("optimizer") {
            checkAttributeChecksum(f, "/optimizer", finding)
            do { optimizerStep = try f.intAttribute("step", at: "/optimizer") } catch {
                finding("/optimizer", "attribute step is missing or not an integer")
            }
        }

        // /train: progress and the vocabulary schedule.
        guard root.contains("train") else { return r }
        checkAttributeChecksum(f, "/train", finding)
        var ti: [String: Int] = [:], ts: [String: String] = [:]
        for k in trainInts {
            do { ti[k] = try f.intAttribute(k, at: "/train") } catch { finding("/train", "attribute \(k) is missing or not an integer") }
        }
        for k in trainStrings {
            do { ts[k] = try f.stringAttribute(k, at: "/train") } catch { finding("/train", "attribute \(k) is missing or not a string") }
        }
        for n in (try? f.members(of: "/train")) ?? [] where n != "vocab_order" {
            finding("/train/\(n)", "unexpected object (/train holds only vocab_order)")
        }
        var order: [Int32] = []
        if !f.isDataset("/train/vocab_order") {
            finding("/train/vocab_order", "missing dataset")
        } else {
            let shape = (try? f.shape(of: "/train/vocab_order")) ?? []
            let t = try? f.storedType(of: "/train/vocab_order")
            if shape.count != 1 {
                finding("/train/vocab_order", "has shape \(shape), expected one dimension")
            } else if t == nil || t!.bytes != 4 || t!.isFloat || !t!.isSigned {
                finding("/train/vocab_order", "stored as \(dtype(f, "/train/vocab_order")), expected int32")
            } else {
                do {
                    order = try f.read("/train/vocab_order")
                    if let problem = checksumProblem(f, "/train/vocab_order", order) { finding("/train/vocab_order", problem) }
                } catch { r.findings.append("\(error)") }
            }
        }
        var rng: [String: UInt64] = [:]
        for k in (try? f.attributeNames(at: "/train")) ?? [] where k.hasPrefix("rng.") {
            do { rng[String(k.dropFirst(4))] = try f.attribute(k, at: "/train", as: UInt64.self)[0] } catch {
                finding("/train", "attribute \(k) is not a number")
            }
        }
        let tokenizerHash = (try? f.stringAttribute("tokenizer_hash", at: "/train")) ?? ""
        let datasetHash = (try? f.stringAttribute("dataset_hash", at: "/train")) ?? ""
        guard ti.count == trainInts.count, ts.count == trainStrings.count else { return r }

        // Ranges.
        let step = ti["step"]!, active = ti["vocab_active"]!, kind = ts["vocab_kind"]!
        if step < 0 { finding("/train", "step is \(step), negative") }
        if ti["tokens_seen"]! < 0 { finding("/train", "tokens_seen is \(ti["tokens_seen"]!), negative") }
        if let lrStep = try? f.intAttribute("lr_step", at: "/train"), lrStep != step {
            finding("/train", "lr_step is \(lrStep) but step is \(step)")
        }
        if optimizerStep < 0 || optimizerStep > step {
            finding("/optimizer", "step is \(optimizerStep), outside 0...\(step) (the training step)")
        }
        if !["progressive", "vanilla"].contains(kind) { finding("/train", "vocab_kind is \"\(kind)\", expected progressive or vanilla") }
        if (try? JSONSerialization.jsonObject(with: Data(ts["data_state"]!.utf8))) as? [String: Any] == nil {
            finding("/train", "data_state is not a JSON object")
        }
        let k = layout["codebook"] ?? order.count
        if active < 0 || active > max(k, order.count) { finding("/train", "vocab_active is \(active), outside 0...\(k) (the codebook)") }
        if let problem = scheduleProblem(order: order, active: active, layout: layout) { finding("/train/vocab_order", problem) }
        if let problem = configProblem(ts["config"]!, model) { finding("/config", problem) }

        let progress = TrainingProgress(
            step: step, tokensSeen: ti["tokens_seen"]!, dataSeed: ti["data_seed"]!,
            dataState: ts["data_state"]!, vocabKind: kind, vocabActive: active, vocabOrder: order,
            rngStates: rng, configYAML: ts["config"]!, tokenizerHash: tokenizerHash,
            datasetHash: datasetHash)
        r.progress = progress
        r.optimizerStep = optimizerStep
        if r.findings.isEmpty, keepTensors, let p = groups["/params"], let m = groups["/optimizer/m"], let v = groups["/optimizer/v"] {
            r.checkpoint = Checkpoint(
                model: model, vocabLayout: layout, params: p, adamM: m, adamV: v, optimizerStep: optimizerStep,
                progress: progress)
        }
        return r
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
