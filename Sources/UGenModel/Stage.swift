import Foundation
import UGenKernels

/// What one micro-batch leaves behind in a stage for its backward pass. A stage keeps a pool of these so
/// a pipeline schedule can hold several micro-batches in flight; they are allocated once and reused.
public final class StageActivations {
    /// Token ids as fed to the embedding (after any substitution), first stage only.
    public let tokens: UnsafeMutablePointer<Int32>
    /// residual[0] is the stage input; residual[i+1] the output of its i-th layer.
    public let residual: [Tensor]
    let layers: [BlockActivations]
    // Head (last stage only).
    let finalRstd: Tensor?, finalNorm: Tensor?
    /// Logits until the loss is taken, then d(loss)/d(logits).
    let logits: Tensor?
    /// Each position's loss (0 where masked), after `loss(...)`.
    public let tokenLoss: Tensor?

    init(_ c: ModelConfig, _ spec: StageSpec, rows: Int, seqLen: Int) {
        let n = rows * seqLen, d = c.dModel
        tokens = .allocate(capacity: n)
        tokens.initialize(repeating: 0, count: n)
        residual = (0...spec.layers.count).map { _ in Tensor([n, d]) }
        layers = spec.layers.map { _ in BlockActivations(c, rows: rows, seqLen: seqLen) }
        if spec.hasHead {
            finalRstd = Tensor([n]); finalNorm = Tensor([n, d]); logits = Tensor([n, c.vocabSize]); tokenLoss = Tensor([n])
        } else {
            finalRstd = nil; finalNorm = nil; logits = nil; tokenLoss = nil
        }
    }

    deinit { tokens.deallocate() }

    /// The stage's input activations [rows·seqLen, d] (fill this on a stage without the embedding).
    public var input: Tensor { residual[0] }
    /// The stage's output activations (meaningless on the last stage, whose output is the loss).
    public var output: Tensor { residual[residual.count - 1] }
}

final class BlockActivations {
    let rstd1, norm1, qkv, probs, attn, mid, rstd2, norm2, gateUp, act: Tensor
    init(_ c: ModelConfig, rows: Int, seqLen: Int) {
        let n = rows * seqLen, d = c.dModel
        rstd1 = Tensor([n]); norm1 = Tensor([n, d]); qkv = Tensor([n, c.qkvWidth])
        probs = Tensor([rows * c.nHeads * seqLen * seqLen]); attn = Tensor([n, c.nHeads * c.headDim])
        mid = Tensor([n, d]); rstd2 = Tensor([n]); norm2 = Tensor([n, d])
        gateUp = Tensor([n, 2 * c.ffnHidden]); act = Tensor([n, c.ffnHidden])
    }
}

/// A cut of the model's chain — `[embedding] + layers[a..<b] + [final norm + LM head]` — with
/// `forward` and `backward`. The single process runs the whole chain as one stage; the cluster runs
/// the cuts in different processes and passes `output` / `gradInput` between them.
///
/// Micro-batches have a fixed shape (rows × seqLen). Parameter gradients accumulate across
/// micro-batches until `zeroGrads()`; backward must be called in the same order as forward per
/// parameter for bitwise reproducibility (both GPipe and 1F1B do).
public final class Stage {
    public let config: ModelConfig
    public let spec: StageSpec
    public let rows: Int, seqLen: Int
    public var n: Int { rows * seqLen }

    let embed: Parameter?
    let blocks: [BlockWeights]
    let finalNorm: Parameter?
    let head: Parameter?
    /// In canonical model order.
    public let parameters: [Parameter]
    let rope: RoPETable
    let attnShape: AttentionShape

    // Scratch shared by all micro-batches (backward runs one micro-batch at a time).
    private let dResid, dNorm, dQKV, dAttn, dGateUp, dAct, dProbs, effectiveMask: Tensor
    /// The gradient buffers this stage owns (fused ones once, not through their views).
    private let gradStorage: [Tensor]
    private var pool: [StageActivations] = []

    public init(config c: ModelConfig, spec: StageSpec, rows: Int, seqLen: Int) throws {
        try c.validate()
        guard spec.firstLayer >= 0, spec.endLayer <= c.nLayers, spec.firstLayer <= spec.endLayer else {
            throw ModelError("stage layers \(spec.firstLayer)..<\(spec.endLayer) outside a model of \(c.nLayers) layers")
        }
        guard seqLen <= c.maxSeqLen else { throw ModelError("sequence length \(seqLen) exceeds model.max_seq_len \(c.maxSeqLen)") }
        config = c; self.spec = spec; self.rows = rows; self.seqLen = seqLen
        let d = c.dModel, V = c.vocabSize
        embed = spec.hasEmbedding ? Parameter(name: "model.embed_tokens.weight", value: Tensor([V, d]), grad: Tensor([V, d])) : nil
        blocks = spec.layers.map { BlockWeights(c, layer: $0) }
        finalNorm = spec.hasHead ? Parameter(name: "model.norm.weight", value: Tensor([d]), grad: Tensor([d])) : nil
        head = spec.hasHead ? Parameter(name: "lm_head.weight", value: Tensor([V, d]), grad: Tensor([V, d])) : nil
        parameters = [embed].compactMap { $0 } + blocks.flatMap(\.parameters) + [finalNorm, head].compactMap { $0 }
        rope = RoPETable(headDim: c.headDim, maxLen: c.maxSeqLen, theta: c.ropeTheta)
        attnShape = AttentionShape(batch: rows, seqLen: seqLen, heads: c.nHeads, kvHeads: c.nKVHeads, headDim: c.headDim)
        let n = rows * seqLen
        dResid = Tensor([n, d]); dNorm = Tensor([n, d]); dQKV = Tensor([n, c.qkvWidth])
        dAttn = Tensor([n, c.nHeads * c.headDim]); dGateUp = Tensor([n, 2 * c.ffnHidden]); dAct = Tensor([n, c.ffnHidden])
        dProbs = Tensor([rows * seqLen * seqLen]); effectiveMask = Tensor([n])
        gradStorage = [embed?.grad].compactMap { $0 }
            + blocks.flatMap { [$0.attnNorm.grad, $0.qkvGrad, $0.o.grad, $0.mlpNorm.grad, $0.gateUpGrad, $0.down.grad] }
            + [finalNorm?.grad, head?.grad].compactMap { $0 }
    }

    /// The mask the last `loss` call used: the batch's mask with inactive-id targets zeroed.
    public var lastEffectiveMask: Tensor { effectiveMask }

    /// The parameter with a HuggingFace name, if this stage holds it.
    public func parameter(named name: String) -> Parameter? { parameters.first { $0.name == name } }

    /// Seeded initial weights (depend on seed and name only).
    public func initialize(seed: UInt64) {
        for p in parameters { Initializer.initialize(p, seed: seed, nLayers: config.nLayers) }
    }

    public func zeroGrads() { for g in gradStorage { g.zero() } }

    /// Activation slot `i` (slots are created on first use and kept).
    public func activations(_ i: Int) -> StageActivations {
        while pool.count <= i { pool.append(StageActivations(config, spec, rows: rows, seqLen: seqLen)) }
        return pool[i]
    }

    // MARK: Forward

    /// Runs the stage's layers on one micro-batch. The first stage reads `tokens` (n ids), mapping each
    /// through `tokenMap` when given (inactive visual ids → `<unk_img>`); other stages read `a.input`.
    public func forward(_ a: StageActivations, tokens: UnsafePointer<Int32>? = nil, tokenMap: UnsafePointer<Int32>? = nil) {
        let c = config, d = c.dModel
        if let embed {
            guard let tokens else { preconditionFailure("the first stage needs token ids") }
            for r in 0..<n {
                let t = tokens[r]
                precondition(t >= 0 && Int(t) < c.vocabSize, "token id \(t) outside the vocabulary")
                a.tokens[r] = tokenMap?[Int(t)] ?? t
            }
            Embedding.forward(out: a.residual[0].data, tokens: a.tokens, w: embed.value.data, n: n, d: d)
        }
        for (i, w) in blocks.enumerated() {
            blockForward(w, a.layers[i], x: a.residual[i].data, out: a.residual[i + 1].data)
        }
        if let finalNorm, let head {
            RMSNorm.forward(y: a.finalNorm!.data, rstd: a.finalRstd!.data, x: a.output.data, w: finalNorm.value.data,
                            n: n, d: d, eps: Float(c.rmsEps))
            Linear.forward(out: a.logits!.data, x: a.finalNorm!.data, w: head.value.data, n: n, inF: d, outF: c.vocabSize)
        }
    }

    private func blockForward(_ w: BlockWeights, _ s: BlockActivations, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let c = config, d = c.dModel, f = c.ffnHidden, C = c.qkvWidth, A = c.nHeads * c.headDim
        let eps = Float(c.rmsEps)
        // h = x + o_proj(Attn(RMSNorm₁(x)))
        RMSNorm.forward(y: s.norm1.data, rstd: s.rstd1.data, x: x, w: w.attnNorm.value.data, n: n, d: d, eps: eps)
        Linear.forward(out: s.qkv.data, x: s.norm1.data, w: w.qkv.data, n: n, inF: d, outF: C)
        RoPE.apply(s.qkv.data, rows: n, seqLen: seqLen, ld: C, col: 0, heads: c.nHeads + c.nKVHeads, table: rope)
        Attention.forward(out: s.attn.data, probs: s.probs.data, qkv: s.qkv.data, shape: attnShape)
        Linear.forward(out: s.mid.data, x: s.attn.data, w: w.o.value.data, n: n, inF: A, outF: d)
        addInPlace(s.mid.data, x, count: n * d)
        // out = h + down_proj(silu(gate_proj(m)) · up_proj(m)), m = RMSNorm₂(h)
        RMSNorm.forward(y: s.norm2.data, rstd: s.rstd2.data, x: s.mid.data, w: w.mlpNorm.value.data, n: n, d: d, eps: eps)
        Linear.forward(out: s.gateUp.data, x: s.norm2.data, w: w.gateUp.data, n: n, inF: d, outF: 2 * f)
        SwiGLU.forward(act: s.act.data, gateUp: s.gateUp.data, n: n, f: f)
        Linear.forward(out: out, x: s.act.data, w: w.down.value.data, n: n, inF: f, outF: d)
        addInPlace(out, s.mid.data, count: n * d)
    }

    // MARK: Loss (last stage)

    /// Masked mean cross-entropy's contribution of this micro-batch: returns Σ mask·loss (the caller
    /// divides by the global batch's mask sum) and leaves d(loss)/d(logits), already scaled by
    /// `gradScale` = 1 / global mask sum, for `backward`. `inactive` (V bytes, 1 = inactive) removes
    /// ids from the softmax; a position whose target is inactive carries no loss. `logitsOut`
    /// receives the (masked) logits when given.
    @discardableResult
    public func loss(_ a: StageActivations, targets: UnsafePointer<Int32>, mask: UnsafePointer<Float>,
                     inactive: UnsafePointer<UInt8>? = nil, gradScale: Float,
                     logitsOut: UnsafeMutablePointer<Float>? = nil) -> Double {
        guard spec.hasHead, let logits = a.logits, let tokenLoss = a.tokenLoss else { preconditionFailure("loss on a stage without the head") }
        let effective = effectiveMask
        for r in 0..<n {
            let t = Int(targets[r])
            precondition(t >= 0 && t < config.vocabSize, "target id \(t) outside the vocabulary")
            effective[r] = (inactive.map { $0[t] != 0 } ?? false) ? 0 : mask[r]
        }
        CrossEntropy.forwardBackward(logits: logits.data, tokenLoss: tokenLoss.data, targets: targets, mask: effective.data,
                                     inactive: inactive, gradScale: gradScale, n: n, v: config.vocabSize, logitsOut: logitsOut)
        var sum = 0.0
        for r in 0..<n where effective[r] != 0 { sum += Double(effective[r]) * Double(tokenLoss[r]) }
        return sum
    }

    // MARK: Backward

    /// Backward for one micro-batch: accumulates every parameter's gradient and returns d(loss)/d(input)
    /// (a scratch tensor valid until the next call), or nil on the first stage. The last stage starts
    /// from the gradient `loss` left; others from `gradOutput`.
    @discardableResult
    public func backward(_ a: StageActivations, gradOutput: Tensor? = nil) -> Tensor? {
        let c = config, d = c.dModel
        if let finalNorm, let head {
            Linear.backward(dx: dNorm.data, dw: head.grad.data, dout: a.logits!.data, x: a.finalNorm!.data,
                            w: head.value.data, n: n, inF: d, outF: c.vocabSize)
            dResid.zero()
            RMSNorm.backward(dx: dResid.data, dw: finalNorm.grad.data, dy: dNorm.data, x: a.output.data,
                             w: finalNorm.value.data, rstd: a.finalRstd!.data, n: n, d: d)
        } else {
            guard let gradOutput else { preconditionFailure("backward on a middle stage needs gradOutput") }
            dResid.copy(from: gradOutput)
        }
        for i in stride(from: blocks.count - 1, through: 0, by: -1) {
            blockBackward(blocks[i], a.layers[i], x: a.residual[i].data)
        }
        if let embed {
            Embedding.backward(dw: embed.grad.data, dout: dResid.data, tokens: a.tokens, n: n, d: d)
            return nil
        }
        return dResid
    }

    /// dResid holds d(out) on entry and d(x) on exit.
    private func blockBackward(_ w: BlockWeights, _ s: BlockActivations, x: UnsafePointer<Float>) {
        let c = config, d = c.dModel, f = c.ffnHidden, C = c.qkvWidth, A = c.nHeads * c.headDim
        // MLP branch: out = h + down(act)
        Linear.backward(dx: dAct.data, dw: w.down.grad.data, dout: dResid.data, x: s.act.data, w: w.down.value.data,
                        n: n, inF: f, outF: d)
        SwiGLU.backward(dGateUp: dGateUp.data, dAct: dAct.data, gateUp: s.gateUp.data, n: n, f: f)
        Linear.backward(dx: dNorm.data, dw: w.gateUpGrad.data, dout: dGateUp.data, x: s.norm2.data, w: w.gateUp.data,
                        n: n, inF: d, outF: 2 * f)
        RMSNorm.backward(dx: dResid.data, dw: w.mlpNorm.grad.data, dy: dNorm.data, x: s.mid.data, w: w.mlpNorm.value.data,
                         rstd: s.rstd2.data, n: n, d: d)  // dResid is now d(h)
        // Attention branch: h = x + o(attn)
        Linear.backward(dx: dAttn.data, dw: w.o.grad.data, dout: dResid.data, x: s.attn.data, w: w.o.value.data,
                        n: n, inF: A, outF: d)
        Attention.backward(dqkv: dQKV.data, dout: dAttn.data, qkv: s.qkv.data, probs: s.probs.data,
                           scratch: dProbs.data, shape: attnShape)
        RoPE.apply(dQKV.data, rows: n, seqLen: seqLen, ld: C, col: 0, heads: c.nHeads + c.nKVHeads, table: rope, inverse: true)
        Linear.backward(dx: dNorm.data, dw: w.qkvGrad.data, dout: dQKV.data, x: s.norm1.data, w: w.qkv.data,
                        n: n, inF: d, outF: C)
        RMSNorm.backward(dx: dResid.data, dw: w.attnNorm.grad.data, dy: dNorm.data, x: x, w: w.attnNorm.value.data,
                         rstd: s.rstd1.data, n: n, d: d)  // dResid is now d(x)
    }

    // MARK: Optimizer support

    /// Σ grad² per parameter (double, index order), in canonical order: the pieces of the global norm.
    /// Summed in this order across stages, the global norm does not depend on the partition.
    public func gradSquares() -> [Double] { parameters.map { $0.grad.sumOfSquares() } }
}
