import Foundation
import UGenSchema

/// Writes a checkpoint's parameters as `model.safetensors` plus a HuggingFace `config.json`
/// (`LlamaForCausalLM`), so the model loads in `transformers` unchanged.
///
/// safetensors: 8 bytes little-endian header length, a JSON header mapping each name to
/// `{dtype, shape, data_offsets}`, then the tensors' raw little-endian bytes back to back.
///
/// The progressive vocabulary's state goes with it: `config.json` holds `ugen_vocab_schedule` (the
/// active and inactive visual ids; see Documentation/checkpoints.md). With `suppressInactive`,
/// `generation_config.json` lists the inactive ids as `suppress_tokens`, so `model.generate()` in
/// transformers never emits them.
public enum SafetensorsExport {
    /// The checkpoint's visual ids split by the schedule (nil when the layout names no visual range).
    /// `vocab_order` holds ids (the cluster) or codes 0..<K (other writers); both are read.
    public static func visualIds(_ ckpt: Checkpoint) -> (first: Int, active: [Int], inactive: [Int])? {
        let l = ckpt.vocabLayout, p = ckpt.progress
        guard let t = l["text_vocab"], let s = l["n_specials"], let k = l["codebook"], k > 0 else { return nil }
        let first = t + s
        let all = Array(first..<(first + k))
        if p.vocabKind == "vanilla" || p.vocabActive >= k || p.vocabOrder.count != k { return (first, all, []) }
        let order = p.vocabOrder.map { Int($0) < first ? Int($0) + first : Int($0) }
        let active = Set(order.prefix(max(0, p.vocabActive)))
        return (first, all.filter(active.contains), all.filter { !active.contains($0) })
    }

    /// With `meanInactiveRows`, each inactive visual id's `lm_head` row becomes the mean of the active
    /// visual ids' rows: its logit is then the mean of the active visual logits, never above their
    /// maximum, so greedy decoding (transformers' default) never picks it, whatever the input. (No row can
    /// make a logit very negative for every input: the head has no bias and the normalised hidden state
    /// no fixed sign. Sampling can still draw it: `suppressInactive` covers sampling.)
    public static func write(_ ckpt: Checkpoint, to dir: String, suppressInactive: Bool = false, meanInactiveRows: Bool = false) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var tensors = ckpt.params.sorted { $0.name < $1.name }
        if meanInactiveRows, let v = visualIds(ckpt), !v.inactive.isEmpty, !v.active.isEmpty,
            let h = tensors.firstIndex(where: { $0.name == "lm_head.weight" })
        {
            let d = tensors[h].shape[1]
            var mean = [Double](repeating: 0, count: d)
            for id in v.active { for j in 0..<d { mean[j] += Double(tensors[h].values[id * d + j]) } }
            for id in v.inactive { for j in 0..<d { tensors[h].values[id * d + j] = Float(mean[j] / Double(v.active.count)) } }
        }
        var header: [String: Any] = ["__metadata__": ["format": "pt", "ugen_step": "\(ckpt.progress.step)"]]
        var offset = 0
        for t in tensors {
            let bytes = t.values.count * 4
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces so the data is 8-byte aligned
        var out = Data()
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for t in tensors { t.values.withUnsafeBytes { out.append(contentsOf: $0) } }  // x86-64 and arm64 are little-endian
        try out.write(to: URL(fileURLWithPath: dir + "/model.safetensors"), options: .atomic)
        try configJSON(ckpt, meanInactiveRows: meanInactiveRows).write(to: URL(fileURLWithPath: dir + "/config.json"), options: .atomic)
        let generation = dir + "/generation_config.json"
        if suppressInactive {
            var g: [String: Any] = ["suppress_tokens": visualIds(ckpt)?.inactive ?? []]
            for (k, id) in [("bos_token_id", "bos_id"), ("eos_token_id", "eos_id"), ("pad_token_id", "pad_id")] {
                if let v = ckpt.vocabLayout[id] { g[k] = v }
            }
            try JSONSerialization.data(withJSONObject: g, options: [.sortedKeys, .prettyPrinted])
                .write(to: URL(fileURLWithPath: generation), options: .atomic)
        } else {
            try? FileManager.default.removeItem(atPath: generation)  // a stale one from an earlier export would mislead
        }
    }

    static func configJSON(_ ckpt: Checkpoint, meanInactiveRows: Bool = false) throws -> Data {
        let m = ckpt.model
        var c: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": m.vocabSize, "hidden_size": m.dModel, "intermediate_size": m.ffnHidden,
            "num_hidden_layers": m.nLayers, "num_attention_heads": m.nHeads, "num_key_value_heads": m.nKVHeads,
            "head_dim": m.headDim, "max_position_embeddings": m.maxSeqLen, "rms_norm_eps": m.rmsEps, "rope_theta": m.ropeTheta,
            "hidden_act": "silu", "tie_word_embeddings": false, "attention_bias": false, "mlp_bias": false,
            "torch_dtype": "float32", "initializer_range": 0.02,
        ]
        for (k, id) in [("bos_token_id", "bos_id"), ("eos_token_id", "eos_id"), ("pad_token_id", "pad_id")] {
            if let v = ckpt.vocabLayout[id] { c[k] = v }
        }
        c["ugen_vocab_layout"] = ckpt.vocabLayout
        if let v = visualIds(ckpt) {
            var schedule: [String: Any] = [
                "kind": ckpt.progress.vocabKind, "step": ckpt.progress.step, "codebook": v.active.count + v.inactive.count,
                "first_visual_id": v.first, "active_count": v.active.count,
                "active_visual_ids": v.active, "inactive_visual_ids": v.inactive,
            ]
            if let unk = ckpt.vocabLayout["unk_img_id"] { schedule["inactive_input_id"] = unk }
            schedule["inactive_head_rows"] = meanInactiveRows && !v.inactive.isEmpty ? "mean of the active visual rows" : "as trained"
            c["ugen_vocab_schedule"] = schedule
        }
        return try JSONSerialization.data(withJSONObject: c, options: [.sortedKeys, .prettyPrinted])
    }
}

/// A human summary of an HDF5 file this product writes (checkpoint, dataset or tokenizer), or of any
/// HDF5 file (its tree). A checkpoint goes through `CheckpointVerifier`, the rules every loader applies:
/// the summary shows the shapes and types as stored, and every finding.
public enum Inspector {
    public struct Inspection {
        public var text: String
        /// One line each, naming the file, the object and what is wrong; the first is what loading refuses with.
        public var findings: [String]
    }

    /// Summarises `spec`: a file, a `latest` pointer or a run folder (as `CheckpointFile.locate`).
    public static func inspect(_ spec: String) throws -> Inspection {
        let (path, pointer) = try CheckpointFile.locate(spec)
        guard let f = try? H5File.open(path) else {  // empty, truncated, not HDF5: the verifier's words
            return Inspection(text: "", findings: findings(CheckpointVerifier.verify(path, keepTensors: false), pointer: pointer))
        }
        let format = (try? f.stringAttribute("format")) ?? "(none)"
        if format != CheckpointFile.format && !f.exists("/params") && !f.exists("/optimizer") {  // a dataset, a tokenizer, …
            var out = "\(path)\nformat: \(format)"
            if f.hasAttribute("version") { out += ", version \(try f.intAttribute("version"))" }
            return Inspection(text: out + "\n" + (try treeSummary(f)), findings: [])
        }
        let report = CheckpointVerifier.verify(path, keepTensors: false)
        return Inspection(text: checkpointSummary(f, report), findings: findings(report, pointer: pointer))
    }

    static func findings(_ r: CheckpointReport, pointer: String?) -> [String] {
        guard let first = r.error else { return [] }
        return [CheckpointFile.refusal(first, pointer: pointer, path: r.path).description] + r.findings.dropFirst()
    }

    /// The summary text alone (findings appended as lines), for callers that only print.
    public static func summary(path: String) throws -> String {
        let i = try inspect(path)
        return i.text + i.findings.map { "FINDING: \($0)\n" }.joined()
    }

    static func checkpointSummary(_ f: H5File, _ r: CheckpointReport) -> String {
        var out = "\(r.path)\nformat: \(CheckpointFile.format), version \((try? f.intAttribute("version")).map(String.init) ?? "?")\n"
        guard let m = r.model else { return out + "model: unreadable /config\n" }
        out += "model: vocab \(m.vocabSize), d_model \(m.dModel), layers \(m.nLayers), heads \(m.nHeads)/\(m.nKVHeads) kv, "
        out += "ffn \(m.ffnHidden), rope θ \(m.ropeTheta), eps \(m.rmsEps), max_seq_len \(m.maxSeqLen)\n"
        let count = m.parameterShapes.reduce(0.0) { $0 + $1.shape.reduce(1.0) { $0 * Double($1) } }  // no overflow on a damaged /config
        out += "parameters: \(count < 9e18 ? Int(count).formatted() : "\(count)")\n"
        if !r.vocabLayout.isEmpty {
            out += "vocabulary: \(r.vocabLayout.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))\n"
        }
        if let p = r.progress {
            out += "training: step \(p.step), tokens seen \(p.tokensSeen), optimizer step \(r.optimizerStep)\n"
            let codebook = r.vocabLayout["codebook"] ?? p.vocabOrder.count
            out += "vocabulary schedule: \(p.vocabKind), \(p.vocabActive) of \(codebook) visual ids active"
            if !p.vocabOrder.isEmpty {
                out += "; activation order begins \(p.vocabOrder.prefix(8).map(String.init).joined(separator: ", "))…"
            }
            out += "\n"
            out += "data: seed \(p.dataSeed), state \(p.dataState)\n"
            out += "data identity: tokenizer \(p.tokenizerHash.isEmpty ? "(not recorded)" : p.tokenizerHash), "
            out += "dataset \(p.datasetHash.isEmpty ? "(not recorded)" : p.datasetHash)\n"
        }
        out += "\ntensor (as stored)                                       shape          dtype    status\n"
        for t in r.tensors where t.path.hasPrefix("/params/") || t.status != "ok" {
            out += t.path.padding(toLength: 56, withPad: " ", startingAt: 0) + " "
            out += (t.stored.map { "\($0)" } ?? "-").padding(toLength: 14, withPad: " ", startingAt: 0) + " "
            out += t.dtype.padding(toLength: 8, withPad: " ", startingAt: 0) + " \(t.status)\n"
        }
        let bad = r.tensors.filter { $0.status != "ok" }.count
        out +=
            r.isValid
            ? "all \(r.tensors.count) tensors (parameters and both moments) as the config implies, checksums match, values finite; "
                + "/train verified\n"
            : "\(r.findings.count) finding\(r.findings.count == 1 ? "" : "s") (\(bad) tensor\(bad == 1 ? "" : "s")): "
                + "the checkpoint is refused\n"
        return out
    }

    static func treeSummary(_ f: H5File) throws -> String {
        var out = ""
        for a in try f.attributeNames(at: "/") where a != "format" && a != "version" {
            let numbers = try? f.attribute(a, as: Double.self).map { $0 == $0.rounded() ? String(Int($0)) : String($0) }
            let v = (try? f.stringAttribute(a)) ?? numbers?.joined(separator: ",")
            out += "  @\(a) = \(v ?? "?")\n"
        }
        func walk(_ g: String, _ depth: Int) throws {
            for name in try f.members(of: g) {
                let p = (g == "/" ? "" : g) + "/" + name
                let indent = String(repeating: "  ", count: depth)
                if f.isDataset(p) {
                    out += "\(indent)\(p)  \(try f.shape(of: p))\n"
                } else {
                    out += "\(indent)\(p)/\n"
                    try walk(p, depth + 1)
                }
            }
        }
        try walk("/", 1)
        return out
    }
}
