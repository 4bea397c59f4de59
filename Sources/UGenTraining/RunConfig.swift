import Foundation
import UGenKernels
import UGenModel
import Yams

/// A training run's configuration: the YAML file's five groups (`model`, `data`, `train`,
/// `vocab_schedule`, `cluster`), every key listed once in `RunConfig.keys` with its default. Unknown keys
/// are errors that name the key; any key can be overridden with `--set group.key=value`.
public struct RunConfig: Equatable, Sendable {
    // model.*
    public var vocabSize = 0  // 0: take it from the dataset's vocabulary layout
    public var dModel = 64
    public var nLayers = 4
    public var nHeads = 4
    public var nKVHeads = 4
    public var ffnHidden = 172
    public var ropeTheta = 10000.0
    public var rmsEps = 1e-5
    public var maxSeqLen = 128
    // data.*
    public var dataDir = "data/tokenized"
    public var seqLen = 64
    public var batchRows = 8
    public var weightText = 1.0
    public var weightImg2Txt = 1.0
    public var weightTxt2Img = 1.0
    public var dataSeed = 1
    // train.*
    public var steps = 200
    public var lr = 3e-3
    public var minLR = 3e-4
    public var warmupSteps = 20
    public var weightDecay = 0.1
    public var beta1 = 0.9
    public var beta2 = 0.95
    public var adamEps = 1e-8
    public var gradClip = 1.0
    public var precision = Precision.fp32
    public var seed = 1234
    public var checkpointEvery = 0
    public var keepCheckpoints = 3
    public var logEvery = 10
    public var onNonfinite = "stop"
    public var maxNonfiniteSkips = 3
    // vocab_schedule.*
    public var vocabKind = "progressive"
    public var textOnlySteps = 20
    public var vocabStart = 16
    public var vocabEvery = 1
    public var vocabAdd = 1
    public var vocabSeed = 7
    public var vocabOrder = "random"
    public var vocabMasking = "all"
    // cluster.*
    public var stages = 1
    public var replicas = 1
    public var schedule = "zb"
    public var microBatches = 2
    public var threadsPerWorker = 1
    public var heartbeatSeconds = 0.5
    public var lostAfterSeconds = 5.0
    public var elastic = false
    public var maxRestarts = 3

    public init() {}

    /// A config key: its dotted name, a one-line meaning, and how to read/write it on the struct.
    public struct Key: Sendable {
        public let name: String
        public let help: String
        let get: @Sendable (RunConfig) -> Any
        let set: @Sendable (inout RunConfig, Any) throws -> Void
        /// The key's value in `c`, as text.
        public func text(_ c: RunConfig) -> String { "\(get(c))" }
    }

    private static func int(_ name: String, _ kp: WritableKeyPath<RunConfig, Int> & Sendable, _ help: String) -> Key {
        Key(
            name: name, help: help, get: { $0[keyPath: kp] },
            set: { c, v in
                guard let i = v as? Int ?? (v as? String).flatMap({ Int($0) }) else {
                    throw ConfigError.badValue(key: name, expected: "an integer", got: "\(v)")
                }
                c[keyPath: kp] = i
            })
    }
    private static func dbl(_ name: String, _ kp: WritableKeyPath<RunConfig, Double> & Sendable, _ help: String) -> Key {
        Key(
            name: name, help: help, get: { $0[keyPath: kp] },
            set: { c, v in
                guard let d = (v as? Double) ?? (v as? Int).map(Double.init) ?? (v as? String).flatMap({ Double($0) }) else {
                    throw ConfigError.badValue(key: name, expected: "a number", got: "\(v)")
                }
                c[keyPath: kp] = d
            })
    }
    private static func str(
        _ name: String, _ kp: WritableKeyPath<RunConfig, String> & Sendable, _ help: String,
        oneOf: [String]? = nil
    ) -> Key {
        Key(
            name: name, help: help, get: { $0[keyPath: kp] },
            set: { c, v in
                let s = "\(v)"
                if let oneOf, !oneOf.contains(s) {
                    throw ConfigError.badValue(key: name, expected: "one of \(oneOf.joined(separator: ", "))", got: s)
                }
                c[keyPath: kp] = s
            })
    }
    private static func precision(_ name: String, _ help: String) -> Key {
        Key(
            name: name, help: help, get: { $0.precision.rawValue },
            set: { c, v in
                guard let p = Precision(rawValue: "\(v)") else {
                    throw ConfigError.badValue(
                        key: name, expected: "one of \(Precision.allCases.map(\.rawValue).joined(separator: ", "))", got: "\(v)")
                }
                c.precision = p
            })
    }
    private static func bool(_ name: String, _ kp: WritableKeyPath<RunConfig, Bool> & Sendable, _ help: String) -> Key {
        Key(
            name: name, help: help, get: { $0[keyPath: kp] },
            set: { c, v in
                guard let b = v as? Bool ?? (v as? String).flatMap({ ["true": true, "false": false][$0.lowercased()] }) else {
                    throw ConfigError.badValue(key: name, expected: "true or false", got: "\(v)")
                }
                c[keyPath: kp] = b
            })
    }

    /// Every key the configuration knows, in the order the resolved file lists them.
    public static let keys: [Key] = [
        int("model.vocab_size", \.vocabSize, "vocabulary size; 0 takes it from the dataset"),
        int("model.d_model", \.dModel, "model width"),
        int("model.n_layers", \.nLayers, "transformer blocks"),
        int("model.n_heads", \.nHeads, "query heads"),
        int("model.n_kv_heads", \.nKVHeads, "key/value heads (grouped-query when fewer)"),
        int("model.ffn_hidden", \.ffnHidden, "SwiGLU hidden width"),
        dbl("model.rope_theta", \.ropeTheta, "RoPE base"),
        dbl("model.rms_eps", \.rmsEps, "RMSNorm epsilon"),
        int("model.max_seq_len", \.maxSeqLen, "longest sequence the model takes"),
        str("data.dir", \.dataDir, "folder with train.h5, val.h5, tokenizer.h5"),
        int("data.seq_len", \.seqLen, "tokens per training row"),
        int("data.batch_rows", \.batchRows, "rows per global batch"),
        dbl("data.weight_text", \.weightText, "mixing weight of text examples"),
        dbl("data.weight_img2txt", \.weightImg2Txt, "mixing weight of image→text examples"),
        dbl("data.weight_txt2img", \.weightTxt2Img, "mixing weight of text→image examples"),
        int("data.seed", \.dataSeed, "data order seed"),
        int("train.steps", \.steps, "optimizer steps"),
        dbl("train.lr", \.lr, "peak learning rate"),
        dbl("train.min_lr", \.minLR, "floor of the cosine decay"),
        int("train.warmup_steps", \.warmupSteps, "linear warm-up steps"),
        dbl("train.weight_decay", \.weightDecay, "decoupled weight decay (2-D weights)"),
        dbl("train.beta1", \.beta1, "AdamW β1"),
        dbl("train.beta2", \.beta2, "AdamW β2"),
        dbl("train.eps", \.adamEps, "AdamW ε"),
        dbl("train.grad_clip", \.gradClip, "global gradient norm clip (0: off)"),
        precision(
            "train.precision",
            "matrix products in fp32, or bf16 operands with fp32 sums (weights, optimizer, norms, loss stay fp32)"),
        int("train.seed", \.seed, "weight initialisation seed"),
        int("train.checkpoint_every", \.checkpointEvery, "save every N steps (0: only at the end)"),
        int("train.keep_checkpoints", \.keepCheckpoints, "how many checkpoints to keep"),
        int("train.log_every", \.logEvery, "print a progress line every N steps"),
        str(
            "train.on_nonfinite", \.onNonfinite, "a step with a NaN/Inf loss or gradient norm: stop, or skip it (never applied)",
            oneOf: ["stop", "skip"]),
        int("train.max_nonfinite_skips", \.maxNonfiniteSkips, "with on_nonfinite skip: stop after this many skipped steps in a row"),
        str("vocab_schedule.kind", \.vocabKind, "progressive or vanilla", oneOf: ["progressive", "vanilla"]),
        int("vocab_schedule.text_only_steps", \.textOnlySteps, "steps that draw text only"),
        int("vocab_schedule.start", \.vocabStart, "visual ids active when images start"),
        int("vocab_schedule.every", \.vocabEvery, "steps between growths"),
        int("vocab_schedule.add", \.vocabAdd, "visual ids added per growth"),
        int("vocab_schedule.seed", \.vocabSeed, "seed of the activation order"),
        str(
            "vocab_schedule.order", \.vocabOrder,
            "activation order: random (the paper's) or frequency (most frequent codes in the training data first)",
            oneOf: ["random", "frequency"]),
        str(
            "vocab_schedule.masking", \.vocabMasking,
            "masking rules for inactive ids: all, softmax-and-loss (inputs not replaced) or inputs-only (an ablation)",
            oneOf: ["all", "softmax-and-loss", "inputs-only"]),
        int("cluster.stages", \.stages, "pipeline stages"),
        int("cluster.replicas", \.replicas, "data-parallel replicas of the pipeline"),
        str("cluster.schedule", \.schedule, "1f1b, gpipe or zb (zero bubble)", oneOf: ["1f1b", "gpipe", "zb"]),
        int("cluster.micro_batches", \.microBatches, "micro-batches per replica per step"),
        int("cluster.threads_per_worker", \.threadsPerWorker, "BLAS threads per worker"),
        dbl("cluster.heartbeat_s", \.heartbeatSeconds, "seconds between an assigned worker's heartbeats"),
        dbl("cluster.lost_after_s", \.lostAfterSeconds, "silence after which a worker is lost"),
        bool("cluster.elastic", \.elastic, "re-partition onto fewer workers when one is lost"),
        int("cluster.max_restarts", \.maxRestarts, "restarts of locally started workers"),
    ]

    static let keyIndex: [String: Key] = Dictionary(uniqueKeysWithValues: keys.map { ($0.name, $0) })

    /// Parses YAML text (groups of keys), then applies `overrides` ("group.key=value").
    /// `source` names the file in error messages.
    public static func parse(yaml: String, source: String = "config", overrides: [String] = []) throws -> RunConfig {
        var c = RunConfig()
        let loaded: Any?
        do { loaded = try Yams.load(yaml: yaml) } catch {
            throw ConfigError.notYAML(source: source, reason: String(String(describing: error).split(separator: "\n").first ?? ""))
        }
        if let loaded {
            guard let top = loaded as? [String: Any] else { throw ConfigError.notAMapping(source: source) }
            for (group, value) in top.sorted(by: { $0.key < $1.key }) {
                guard let inner = value as? [String: Any] else {
                    throw ConfigError.notAGroup(source: source, group: group)
                }
                for (k, v) in inner.sorted(by: { $0.key < $1.key }) {
                    try c.set("\(group).\(k)", v, source: source)
                }
            }
        }
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else { throw ConfigError.badOverride(o) }
            let key = String(o[..<eq]), raw = String(o[o.index(after: eq)...])
            let value: Any = (try? Yams.load(yaml: raw)).flatMap { $0 } ?? raw
            try c.set(key, value, source: "--set")
        }
        try c.validate()
        return c
    }

    public static func load(path: String, overrides: [String] = []) throws -> RunConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ConfigError.unreadable(path: path) }
        return try parse(yaml: text, source: path, overrides: overrides)
    }

    /// Sets one dotted key; unknown keys are an error naming the key.
    public mutating func set(_ name: String, _ value: Any, source: String = "config") throws {
        guard let key = Self.keyIndex[name] else { throw ConfigError.unknownKey(source: source, key: name) }
        do { try key.set(&self, value) } catch let e as ConfigError { throw ConfigError.inSource(source, e) }
    }

    /// Cross-key rules (what a single key cannot check).
    public func validate() throws {
        func need(_ ok: Bool, _ m: String) throws { if !ok { throw ConfigError.broken(rule: m) } }
        try need(seqLen >= 2 && seqLen <= maxSeqLen, "data.seq_len (\(seqLen)) must be in 2...model.max_seq_len (\(maxSeqLen))")
        try need(batchRows >= 1, "data.batch_rows must be at least 1")
        try need(stages >= 1 && stages <= nLayers, "cluster.stages (\(stages)) must be in 1...model.n_layers (\(nLayers))")
        try need(replicas >= 1, "cluster.replicas must be at least 1")
        // The all-reduce halves and doubles (its sums are the single process's tree only then).
        try need(
            replicas & (replicas - 1) == 0,
            "cluster.replicas (\(replicas)) must be a power of two (1, 2, 4, 8, …): the gradient all-reduce pairs replicas 1, 2, 4, … apart"
        )
        try need(microBatches >= 1, "cluster.micro_batches must be at least 1")
        try need(
            batchRows % (replicas * microBatches) == 0,
            "data.batch_rows (\(batchRows)) must divide evenly into cluster.replicas × cluster.micro_batches "
                + "(\(replicas) × \(microBatches))")
        try need(steps >= 1, "train.steps must be at least 1")
        try need(warmupSteps >= 0 && lr > 0 && minLR >= 0, "train.lr, train.min_lr, train.warmup_steps must be non-negative")
        try need(
            vocabEvery >= 1 && vocabAdd >= 1 && vocabStart >= 0 && textOnlySteps >= 0,
            "vocab_schedule.every and add must be ≥ 1, start and text_only_steps ≥ 0")
        try need(maxNonfiniteSkips >= 1, "train.max_nonfinite_skips must be at least 1")
        try need(
            heartbeatSeconds > 0 && heartbeatSeconds < lostAfterSeconds,
            "cluster.heartbeat_s (\(heartbeatSeconds)) must be above 0 and below cluster.lost_after_s (\(lostAfterSeconds))")
        try need(threadsPerWorker >= 1, "cluster.threads_per_worker must be at least 1")
        try need(
            weightText >= 0 && weightImg2Txt >= 0 && weightTxt2Img >= 0 && weightText + weightImg2Txt + weightTxt2Img > 0,
            "data.weight_* must be non-negative and not all zero")
    }

    /// The resolved configuration as YAML (written to RUN/config.yaml, into checkpoints and to the workers):
    /// groups and keys in the order of `keys`, strings double-quoted and escaped by Yams, so parsing it
    /// gives back an equal config whatever a string holds.
    public var yaml: String {
        var groups: [(name: String, pairs: [(Node, Node)])] = []
        for k in Self.keys {
            let parts = k.name.split(separator: ".", maxSplits: 1).map(String.init)
            if groups.last?.name != parts[0] { groups.append((parts[0], [])) }
            let v = k.get(self)
            let value = (v as? String).map { Node($0, Tag(.str), .doubleQuoted) } ?? Node("\(v)")
            groups[groups.count - 1].pairs.append((Node(parts[1]), value))
        }
        let root = Node.mapping(Node.Mapping(groups.map { (Node($0.name), Node.mapping(Node.Mapping($0.pairs))) }))
        // Serializing a mapping of plain scalars and strings cannot fail.
        return try! Yams.serialize(node: root)
    }

    /// A key's value as text (for comparisons and messages).
    public func value(of name: String) -> String {
        guard let k = Self.keys.first(where: { $0.name == name }) else { return "?" }
        return k.text(self)
    }

    // MARK: Derived pieces

    public func modelConfig(vocabSize v: Int) -> ModelConfig {
        ModelConfig(
            vocabSize: v, dModel: dModel, nLayers: nLayers, nHeads: nHeads, nKVHeads: nKVHeads,
            ffnHidden: ffnHidden, ropeTheta: ropeTheta, rmsEps: rmsEps, maxSeqLen: maxSeqLen)
    }

    public var adam: AdamWHyper { AdamWHyper(beta1: beta1, beta2: beta2, eps: adamEps, weightDecay: weightDecay) }

    public var lrSchedule: LRSchedule { LRSchedule(peak: lr, floor: minLR, warmup: warmupSteps, total: steps) }
}

/// Linear warm-up to `peak`, then cosine decay to `floor` at `total` steps (0-based step index).
public struct LRSchedule: Equatable, Sendable {
    public var peak: Double, floor: Double, warmup: Int, total: Int
    public init(peak: Double, floor: Double, warmup: Int, total: Int) {
        self.peak = peak; self.floor = floor; self.warmup = warmup; self.total = total
    }

    public func lr(at step: Int) -> Double {
        if step < warmup { return peak * Double(step + 1) / Double(warmup) }
        let span = max(1, total - warmup)
        let progress = min(1, Double(step - warmup) / Double(span))
        return floor + (peak - floor) * 0.5 * (1 + cos(.pi * progress))
    }
}
