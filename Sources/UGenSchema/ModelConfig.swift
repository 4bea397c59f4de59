import Foundation

/// The model's hyperparameters (Documentation/model.md). Names match the HDF5 `/config` attributes.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var vocabSize: Int
    public var dModel: Int
    public var nLayers: Int
    public var nHeads: Int
    public var nKVHeads: Int
    public var ffnHidden: Int
    public var ropeTheta: Double = 10000
    public var rmsEps: Double = 1e-5
    public var maxSeqLen: Int

    public init(
        vocabSize: Int, dModel: Int, nLayers: Int, nHeads: Int, nKVHeads: Int? = nil, ffnHidden: Int,
        ropeTheta: Double = 10000, rmsEps: Double = 1e-5, maxSeqLen: Int
    ) {
        self.vocabSize = vocabSize; self.dModel = dModel; self.nLayers = nLayers; self.nHeads = nHeads
        self.nKVHeads = nKVHeads ?? nHeads; self.ffnHidden = ffnHidden; self.ropeTheta = ropeTheta
        self.rmsEps = rmsEps; self.maxSeqLen = maxSeqLen
    }

    public var headDim: Int { dModel / nHeads }
    /// Width of the fused q/k/v projection's output.
    public var qkvWidth: Int { (nHeads + 2 * nKVHeads) * headDim }

    /// Checks the shape rules; the error names the offending key.
    public func validate() throws {
        func need(_ ok: Bool, _ msg: String) throws { if !ok { throw ModelError.broken(rule: msg) } }
        try need(vocabSize > 0, "model.vocab_size must be positive")
        try need(dModel > 0 && nLayers > 0 && ffnHidden > 0 && maxSeqLen > 0, "model sizes must be positive")
        try need(nHeads > 0 && dModel % nHeads == 0, "model.n_heads (\(nHeads)) must divide model.d_model (\(dModel))")
        try need(headDim % 2 == 0, "model head_dim (d_model / n_heads = \(headDim)) must be even for RoPE")
        try need(nKVHeads > 0 && nHeads % nKVHeads == 0, "model.n_kv_heads (\(nKVHeads)) must divide model.n_heads (\(nHeads))")
        try need(ropeTheta > 0 && rmsEps > 0, "model.rope_theta and model.rms_eps must be positive")
    }

    /// Parameters that are matrix-product weights (for the 6·N FLOP count), per layer and for the head.
    public var matmulParameterCount: Int {
        let perLayer = dModel * qkvWidth + nHeads * headDim * dModel + 3 * dModel * ffnHidden
        return nLayers * perLayer + vocabSize * dModel
    }

    /// Training FLOPs per token: 6 × matmul parameters + 12·L·T·d for attention (the PaLM count).
    public func trainingFLOPsPerToken(seqLen: Int) -> Double {
        6 * Double(matmulParameterCount) + 12 * Double(nLayers * seqLen * dModel)
    }

    /// All parameter names in canonical (model) order with their shapes.
    public var parameterShapes: [(name: String, shape: [Int])] {
        var out: [(String, [Int])] = [("model.embed_tokens.weight", [vocabSize, dModel])]
        for l in 0..<nLayers { out += layerParameterShapes(l) }
        out += [("model.norm.weight", [dModel]), ("lm_head.weight", [vocabSize, dModel])]
        return out
    }

    public func layerParameterShapes(_ l: Int) -> [(name: String, shape: [Int])] {
        let p = "model.layers.\(l)."
        return [
            (p + "input_layernorm.weight", [dModel]),
            (p + "self_attn.q_proj.weight", [nHeads * headDim, dModel]),
            (p + "self_attn.k_proj.weight", [nKVHeads * headDim, dModel]),
            (p + "self_attn.v_proj.weight", [nKVHeads * headDim, dModel]),
            (p + "self_attn.o_proj.weight", [dModel, nHeads * headDim]),
            (p + "post_attention_layernorm.weight", [dModel]),
            (p + "mlp.gate_proj.weight", [ffnHidden, dModel]),
            (p + "mlp.up_proj.weight", [ffnHidden, dModel]),
            (p + "mlp.down_proj.weight", [dModel, ffnHidden]),
        ]
    }

    /// The parameters a stage holds, in canonical order (the same list `Stage.parameters` has).
    public func parameterShapes(for spec: StageSpec) -> [(name: String, shape: [Int])] {
        var out: [(name: String, shape: [Int])] = spec.hasEmbedding ? [("model.embed_tokens.weight", [vocabSize, dModel])] : []
        for b in spec.blocks {
            let layer = layerParameterShapes(b / 2)
            out += b % 2 == 0 ? layer[..<5] : layer[5...]  // attention: norm, q, k, v, o; MLP: norm, gate, up, down
        }
        if spec.hasHead { out += [("model.norm.weight", [dModel]), ("lm_head.weight", [vocabSize, dModel])] }
        return out
    }

    public var parameterCount: Int { parameterShapes.reduce(0) { $0 + $1.shape.reduce(1, *) } }
}

/// A model configuration that breaks a shape rule, or a stage cut that does not fit the model: one
/// case per mistake, printed as one line naming the key.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    /// A shape rule of `ModelConfig.validate`; the text names the keys and values.
    case broken(rule: String)
    case noStages
    case moreStagesThanLayers(stages: Int, layers: Int)
    case blocksOutside(first: Int, end: Int, layers: Int)
    case sequenceTooLong(length: Int, maxSeqLen: Int)

    public var description: String {
        switch self {
        case .broken(let rule): rule
        case .noStages: "cluster.stages must be at least 1"
        case .moreStagesThanLayers(let stages, let layers):
            "cluster.stages (\(stages)) exceeds model.n_layers (\(layers)): every stage needs a layer"
        case .blocksOutside(let first, let end, let layers): "stage blocks \(first)..<\(end) outside a model of \(layers) layers"
        case .sequenceTooLong(let length, let max): "sequence length \(length) exceeds model.max_seq_len \(max)"
        }
    }
}

/// Which cut of the chain a stage holds: `[embedding] + blocks[a..<b] + [final norm + head]`.
///
/// The chain is counted in *residual blocks*, two per layer: block 2l is layer l's attention half
/// (`h = x + o(Attn(RMSNorm(x)))`), block 2l + 1 its MLP half (`out = h + down(SwiGLU(RMSNorm(h)))`). Both
/// halves read and write the residual stream, so a cut between them passes the same [N, d] tensor as a cut
/// between layers — and lets the partition balance stages to half a layer instead of a whole one.
public struct StageSpec: Codable, Equatable, Sendable, CustomStringConvertible {
    public var firstBlock: Int
    public var endBlock: Int
    public var hasEmbedding: Bool
    public var hasHead: Bool

    public init(blocks: Range<Int>, hasEmbedding: Bool, hasHead: Bool) {
        firstBlock = blocks.lowerBound; endBlock = blocks.upperBound
        self.hasEmbedding = hasEmbedding; self.hasHead = hasHead
    }

    /// Whole layers a..<b.
    public init(layers: Range<Int>, hasEmbedding: Bool, hasHead: Bool) {
        self.init(blocks: 2 * layers.lowerBound..<2 * layers.upperBound, hasEmbedding: hasEmbedding, hasHead: hasHead)
    }

    public var blocks: Range<Int> { firstBlock..<endBlock }
    /// The layers this stage holds all or half of.
    public var layers: Range<Int> { firstBlock / 2..<(endBlock + 1) / 2 }

    /// In words, e.g. "embedding + layers 0–1 + layer 2 attention" or "layer 2 MLP + layer 3 + head".
    public var description: String {
        var parts: [String] = hasEmbedding ? ["embedding"] : []
        var b = firstBlock
        if b < endBlock, b % 2 == 1 { parts.append("layer \(b / 2) MLP"); b += 1 }
        let wholeEnd = endBlock - endBlock % 2
        if b < wholeEnd {
            let a = b / 2, z = wholeEnd / 2 - 1
            parts.append(a == z ? "layer \(a)" : "layers \(a)–\(z)")
            b = wholeEnd
        }
        if b < endBlock { parts.append("layer \(b / 2) attention") }
        if hasHead { parts.append("head") }
        return parts.isEmpty ? "nothing" : parts.joined(separator: " + ")
    }

    /// The whole model as one stage (the single process).
    public static func whole(_ c: ModelConfig) -> StageSpec { StageSpec(layers: 0..<c.nLayers, hasEmbedding: true, hasHead: true) }

    /// Splits the model into `count` stages of contiguous residual blocks, minimising the largest stage's
    /// compute. Costs are per-token multiply-adds of the forward pass: an attention half costs its q/k/v/o
    /// products and the 2·T·d of its score and value products, an MLP half its three products, the head its
    /// V·d product plus a little for the softmax over V, the embedding a small copy.
    public static func partition(_ c: ModelConfig, stages count: Int, seqLen: Int) throws -> [StageSpec] {
        guard count >= 1 else { throw ModelError.noStages }
        guard count <= c.nLayers else {
            throw ModelError.moreStagesThanLayers(stages: count, layers: c.nLayers)
        }
        let attentionCost = Double(c.dModel * c.qkvWidth + c.nHeads * c.headDim * c.dModel) + 2 * Double(seqLen * c.dModel)
        let mlpCost = Double(3 * c.dModel * c.ffnHidden)
        let headCost = Double(c.vocabSize * c.dModel) * 1.15
        let embedCost = Double(c.dModel) * 0.5
        let n = 2 * c.nLayers
        // prefix[b] = cost of blocks 0..<b
        var prefix = [0.0]
        for b in 0..<n { prefix.append(prefix[b] + (b % 2 == 0 ? attentionCost : mlpCost)) }
        func cost(_ a: Int, _ b: Int) -> Double {
            prefix[b] - prefix[a] + (a == 0 ? embedCost : 0) + (b == n ? headCost : 0)
        }
        // Exhaustive dynamic programming over cut points (n is small); ties keep the earlier cut.
        var best = [[Double]](repeating: [Double](repeating: .infinity, count: n + 1), count: count + 1)
        var cut = [[Int]](repeating: [Int](repeating: 0, count: n + 1), count: count + 1)
        best[0][0] = 0
        for s in 1...count {
            for b in s...n {
                for a in (s - 1)..<b where best[s - 1][a] < .infinity {
                    let v = max(best[s - 1][a], cost(a, b))
                    if v < best[s][b] - 1e-9 { best[s][b] = v; cut[s][b] = a }
                }
            }
        }
        var bounds = [n]
        var b = n
        for s in stride(from: count, to: 0, by: -1) { b = cut[s][b]; bounds.append(b) }
        bounds.reverse()
        return (0..<count).map { i in
            StageSpec(blocks: bounds[i]..<bounds[i + 1], hasEmbedding: i == 0, hasHead: i == count - 1)
        }
    }
}
