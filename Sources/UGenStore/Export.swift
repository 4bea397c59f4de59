import Foundation
import UGenModel

/// Writes a checkpoint's parameters as `model.safetensors` plus a HuggingFace `config.json`
/// (`LlamaForCausalLM`), so the model loads in `transformers` unchanged.
///
/// safetensors: 8 bytes little-endian header length, a JSON header mapping each name to
/// `{dtype, shape, data_offsets}`, then the tensors' raw little-endian bytes back to back.
public enum SafetensorsExport {
    public static func write(_ ckpt: Checkpoint, to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tensors = ckpt.params.sorted { $0.name < $1.name }
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
        try configJSON(ckpt).write(to: URL(fileURLWithPath: dir + "/config.json"), options: .atomic)
    }

    static func configJSON(_ ckpt: Checkpoint) throws -> Data {
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
        return try JSONSerialization.data(withJSONObject: c, options: [.sortedKeys, .prettyPrinted])
    }
}

/// A human summary of an HDF5 file this product writes (checkpoint, dataset or tokenizer), or of any
/// HDF5 file (its tree). Checkpoint tensors are verified against their checksums.
public enum Inspector {
    public static func summary(path: String) throws -> String {
        let f = try H5File.open(path)
        let format = (try? f.stringAttribute("format")) ?? "(none)"
        var out = "\(path)\nformat: \(format)"
        if f.hasAttribute("version") { out += ", version \(try f.intAttribute("version"))" }
        out += "\n"
        if format == CheckpointFile.format { out += try checkpointSummary(f) } else { out += try treeSummary(f) }
        return out
    }

    static func checkpointSummary(_ f: H5File) throws -> String {
        let m = try CheckpointFile.readModelConfig(f)
        var out = "model: vocab \(m.vocabSize), d_model \(m.dModel), layers \(m.nLayers), heads \(m.nHeads)/\(m.nKVHeads) kv, "
        out += "ffn \(m.ffnHidden), rope θ \(m.ropeTheta), eps \(m.rmsEps), max_seq_len \(m.maxSeqLen)\n"
        out += "parameters: \(m.parameterCount.formatted())\n"
        var layout: [String] = []
        for k in try f.attributeNames(at: "/config") where !["vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads",
                                                               "ffn_hidden", "max_seq_len", "rope_theta", "rms_eps"].contains(k) {
            layout.append("\(k)=\(try f.intAttribute(k, at: "/config"))")
        }
        if !layout.isEmpty { out += "vocabulary: \(layout.joined(separator: " "))\n" }
        let step = try f.intAttribute("step", at: "/train")
        out += "training: step \(step), tokens seen \(try f.intAttribute("tokens_seen", at: "/train")), "
        out += "optimizer step \(try f.intAttribute("step", at: "/optimizer"))\n"
        let kind = try f.stringAttribute("vocab_kind", at: "/train")
        let active = try f.intAttribute("vocab_active", at: "/train")
        let order: [Int32] = try f.read("/train/vocab_order")
        out += "vocabulary schedule: \(kind), \(active) of \(order.count) visual ids active"
        if !order.isEmpty { out += "; activation order begins \(order.prefix(8).map(String.init).joined(separator: ", "))…" }
        out += "\n"
        out += "data: seed \(try f.intAttribute("data_seed", at: "/train")), state \(try f.stringAttribute("data_state", at: "/train"))\n"
        out += "\ntensor                                                   shape          checksum\n"
        var bad = 0
        for group in ["/params", "/optimizer/m", "/optimizer/v"] {
            for (name, shape) in m.parameterShapes {
                let path = "\(group)/\(name)"
                var status = "ok"
                do {
                    let values: [Float] = try f.read(path)
                    try CheckpointFile.verify(f, path, values)
                } catch { status = "BAD: \(error)"; bad += 1 }
                if group == "/params" || status != "ok" {
                    out += path.padding(toLength: 56, withPad: " ", startingAt: 0) + " "
                    out += "\(shape)".padding(toLength: 14, withPad: " ", startingAt: 0) + " \(status)\n"
                }
            }
        }
        out += bad == 0 ? "all \(3 * m.parameterShapes.count) tensors (parameters and both moments) match their checksums\n"
                        : "\(bad) tensors FAILED their checksum\n"
        return out
    }

    static func treeSummary(_ f: H5File) throws -> String {
        var out = ""
        for a in try f.attributeNames(at: "/") where a != "format" && a != "version" {
            let v = (try? f.stringAttribute(a)) ?? (try? f.attribute(a, as: Double.self).map { $0 == $0.rounded() ? String(Int($0)) : String($0) }.joined(separator: ","))
            out += "  @\(a) = \(v ?? "?")\n"
        }
        func walk(_ g: String, _ depth: Int) throws {
            for name in try f.members(of: g) {
                let p = (g == "/" ? "" : g) + "/" + name
                let indent = String(repeating: "  ", count: depth)
                if f.isDataset(p) { out += "\(indent)\(p)  \(try f.shape(of: p))\n" } else { out += "\(indent)\(p)/\n"; try walk(p, depth + 1) }
            }
        }
        try walk("/", 1)
        return out
    }
}
