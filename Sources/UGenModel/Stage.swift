import Foundation
import UGenKernels

/// One residual block's weights: a layer's attention half or its MLP half.
enum BlockWeights {
    case attention(AttentionWeights), mlp(MLPWeights)
    var parameters: [Parameter] {
        switch self {
        case .attention(let w): w.parameters;
        case .mlp(let w): w.parameters
        }
    }
    var gradStorage: [Tensor] {
        switch self {
        case .attention(let w): w.gradStorage;
        case .mlp(let w): w.gradStorage
        }
    }
    var normGrad: Tensor {
        switch self {
        case .attention(let w): w.norm.grad;
        case .mlp(let w): w.norm.grad
        }
    }
}

/// A cut of the model's chain — `[embedding] + blocks[a..<b] + [final norm + LM head]` — with
/// `forward` and `backward`. The single process runs the whole chain as one stage; the cluster runs
/// the cuts in different processes and passes `output` / `gradInput` between them.
///
/// Backward comes in two halves, as in zero-bubble pipeline schedules: `backwardInput` carries the
/// gradient down the chain (every product `dX = dY · W`, and the cheap norm gains) and returns the
/// gradient of the stage's input; `backwardWeights` then runs the weight products `dW += dYᵀ · X` from
/// what the first half saved. `backward` is both at once.
///
/// Micro-batches have a fixed shape (rows × seqLen). Parameter gradients accumulate across the
/// micro-batches after `zeroGrads(microBatches:)`, summed in the canonical tree (`GradientTree`); each
/// half must run in micro-batch order (every schedule does). The first half writes only the norm gains'
/// gradients and the second only the other parameters', so each set has its own tree and the result does
/// not depend on how far apart the halves run.
public final class Stage {
    public let config: ModelConfig
    public let spec: StageSpec
    public let rows: Int, seqLen: Int
    public var n: Int { rows * seqLen }
    /// How the stage's matrix products multiply. In bf16 the weights keep their fp32 values (what the
    /// optimizer updates and checkpoints hold) and a bf16 copy that the products read, made by
    /// `refreshLowPrecisionWeights()` whenever the values change: once per optimizer step.
    public let precision: Precision

    let embed: Parameter?
    let blocks: [BlockWeights]
    let finalNorm: Parameter?
    let head: Parameter?
    /// In canonical model order.
    public let parameters: [Parameter]
    let rope: RoPETable
    let attnShape: AttentionShape

    // Scratch shared by all micro-batches (each backward half runs one micro-batch at a time).
    private let dNorm, dAttn, dAct, dProbs, effectiveMask: Tensor
    /// The gradients in buckets, each with its summation tree, in the order the weight products finish
    /// them: the head, each block from the last to the first, the embedding, and last the norm gains
    /// (written by the input-gradient half, complete only when it has passed every block). A data-parallel
    /// reduce sends the buckets in this order, each as soon as it is final (`onBucketFinal`), while the
    /// backward pass goes on with the rest.
    public let gradientBuckets: [[Tensor]]
    private let trees: [GradientTree]
    /// Bucket indices: the head's (if any), the last block's (blocks follow from the last to the first),
    /// the embedding's (if any) and the norm gains'.
    private let headBucket: Int, lastBlockBucket: Int, embedBucket: Int, normBucket: Int
    /// Called (on the training thread) with a bucket's index as soon as the step's last micro-batch
    /// has been summed into it.
    public var onBucketFinal: ((Int) -> Void)?
    /// The matrices the products read as weights (the fused ones once): what has a bf16 copy.
    private let productWeights: [Tensor]
    private var pool: [StageActivations] = []

    public init(config c: ModelConfig, spec: StageSpec, rows: Int, seqLen: Int, precision: Precision = .fp32) throws {
        try c.validate()
        guard spec.firstBlock >= 0, spec.endBlock <= 2 * c.nLayers, spec.firstBlock <= spec.endBlock else {
            throw ModelError.blocksOutside(first: spec.firstBlock, end: spec.endBlock, layers: c.nLayers)
        }
        guard seqLen <= c.maxSeqLen else { throw ModelError.sequenceTooLong(length: seqLen, maxSeqLen: c.maxSeqLen) }
        config = c; self.spec = spec; self.rows = rows; self.seqLen = seqLen; self.precision = precision
        let d = c.dModel, vocab = c.vocabSize
        embed =
            spec.hasEmbedding ? Parameter(name: "model.embed_tokens.weight", value: Tensor([vocab, d]), grad: Tensor([vocab, d])) : nil
        blocks = spec.blocks.map { $0 % 2 == 0 ? .attention(AttentionWeights(c, layer: $0 / 2)) : .mlp(MLPWeights(c, layer: $0 / 2)) }
        finalNorm = spec.hasHead ? Parameter(name: "model.norm.weight", value: Tensor([d]), grad: Tensor([d])) : nil
        head = spec.hasHead ? Parameter(name: "lm_head.weight", value: Tensor([vocab, d]), grad: Tensor([vocab, d])) : nil
        parameters = [embed].compactMap { $0 } + blocks.flatMap(\.parameters) + [finalNorm, head].compactMap { $0 }
        rope = RoPETable(headDim: c.headDim, maxLen: c.maxSeqLen, theta: c.ropeTheta)
        attnShape = AttentionShape(batch: rows, seqLen: seqLen, heads: c.nHeads, kvHeads: c.nKVHeads, headDim: c.headDim)
        let n = rows * seqLen
        dNorm = Tensor([n, d]); dAttn = Tensor([n, c.nHeads * c.headDim]); dAct = Tensor([n, c.ffnHidden])
        dProbs = Tensor([rows * seqLen * seqLen]); effectiveMask = Tensor([n])
        let normGrads = blocks.map(\.normGrad) + [finalNorm?.grad].compactMap { $0 }
        let blockWeights = blocks.reversed().map { $0.gradStorage.filter { g in !normGrads.contains { $0 === g } } }
        gradientBuckets =
            [head?.grad].compactMap { $0 }.map { [$0] } + blockWeights + [embed?.grad].compactMap { $0 }.map { [$0] } + [normGrads]
        headBucket = 0; lastBlockBucket = head == nil ? 0 : 1
        embedBucket = lastBlockBucket + blocks.count; normBucket = gradientBuckets.count - 1
        trees = gradientBuckets.map(GradientTree.init)
        productWeights =
            blocks.flatMap { b -> [Tensor] in
                switch b {
                case .attention(let w): [w.qkv, w.o.value];
                case .mlp(let w): [w.gateUp, w.down.value]
                }
            } + [head?.value].compactMap { $0 }
    }

    /// The mask the last `loss` call used: the batch's mask with inactive-id targets zeroed.
    public var lastEffectiveMask: Tensor { effectiveMask }

    /// The parameter with a HuggingFace name, if this stage holds it.
    public func parameter(named name: String) -> Parameter? { parameters.first { $0.name == name } }

    /// Each layer's two halves, for a stage that holds whole layers (the cached decoder's view).
    var layerWeights: [(attention: AttentionWeights, mlp: MLPWeights)] {
        stride(from: 0, to: blocks.count - 1, by: 2).compactMap { i in
            if case .attention(let a) = blocks[i], case .mlp(let m) = blocks[i + 1] { return (a, m) }
            return nil
        }
    }

    /// Seeded initial weights (depend on seed and name only).
    public func initialize(seed: UInt64) {
        for p in parameters { Initializer.initialize(p, seed: seed, nLayers: config.nLayers) }
        refreshLowPrecisionWeights()
    }

    /// One AdamW update of this stage's parameters, then their bf16 copies (in bf16): the one place a
    /// training step changes the weights.
    public func update(with optimizer: AdamWState, lr: Double, hyper: AdamWHyper, clipScale: Float) {
        optimizer.update(parameters, lr: lr, hyper: hyper, clipScale: clipScale)
        refreshLowPrecisionWeights()
    }

    /// In bf16, rounds every weight matrix into its bf16 copy; call after the weights change (optimizer
    /// step, checkpoint load). Nothing in fp32.
    public func refreshLowPrecisionWeights() {
        guard precision == .bf16 else { return }
        for w in productWeights { w.refreshBF16() }
    }

    /// Starts a step of `microBatches` backward passes (this process's share, in order): zeroes the
    /// gradients. With more passes than that, the extra ones simply accumulate.
    public func zeroGrads(microBatches: Int = 1) {
        for t in trees { t.begin(count: microBatches) }
    }

    /// Activation slot `i` (slots are created on first use and kept).
    public func activations(_ i: Int) -> StageActivations {
        while pool.count <= i { pool.append(StageActivations(config, spec, rows: rows, seqLen: seqLen)) }
        return pool[i]
    }

    // MARK: Forward

    /// Runs the stage's blocks on one micro-batch. The first stage reads `tokens` (n ids), mapping each
    /// through `tokenMap` when given (inactive visual ids → `<unk_img>`); other stages read `a.input`.
    public func forward(_ a: StageActivations, tokens: UnsafePointer<Int32>? = nil, tokenMap: UnsafePointer<Int32>? = nil) {
        forward(a, tokens: tokens, tokenMap: tokenMap, rows: 0..<rows)
    }

    /// The pieces (row ranges) global micro-batch `k` of a step's `count` (over all replicas) is
    /// forwarded in: the first of several a row at a time — the pipeline fill, so that the next stage
    /// starts on row 0 while this one computes row 1 — and the rest whole. Every layout, the single process included, forwards in
    /// these pieces: BLAS may round a product of fewer rows differently (its small-matrix kernels), so
    /// the same pieces everywhere are what keeps every layout the same bits.
    public func forwardPieces(microBatch k: Int, of count: Int) -> [Range<Int>] {
        k == 0 && count > 1 ? (0..<rows).map { $0..<($0 + 1) } : [0..<rows]
    }

    /// The forward pass of some of the micro-batch's rows (sequences), which depend on no other row
    /// (`tokens` and the activations still point at the micro-batch's start). With `crossEntropy` of
    /// the same rows, a micro-batch can be taken piece by piece (`forwardPieces`).
    public func forward(
        _ a: StageActivations, tokens: UnsafePointer<Int32>? = nil, tokenMap: UnsafePointer<Int32>? = nil,
        rows: Range<Int>
    ) {
        precondition(rows.lowerBound >= 0 && rows.upperBound <= self.rows, "rows \(rows) outside a micro-batch of \(self.rows)")
        let c = config, d = c.dModel, t0 = rows.lowerBound * seqLen, n = rows.count * seqLen
        if let embed {
            guard let tokens else { preconditionFailure("the first stage needs token ids") }
            for r in t0..<(t0 + n) {
                let t = tokens[r]
                precondition(t >= 0 && Int(t) < c.vocabSize, "token id \(t) outside the vocabulary")
                a.tokens[r] = tokenMap?[Int(t)] ?? t
            }
            Embedding.forward(out: a.residual[0].data + t0 * d, tokens: a.tokens + t0, w: embed.value.data, n: n, d: d)
        }
        for (i, w) in blocks.enumerated() {
            let x = a.residual[i].data + t0 * d, out = a.residual[i + 1].data + t0 * d
            switch (w, a.blocks[i]) {
            case (.attention(let w), .attention(let s)): attentionForward(w, s, x: x, out: out, rows: rows)
            case (.mlp(let w), .mlp(let s)): mlpForward(w, s, x: x, out: out, rows: rows)
            default: preconditionFailure("activation slot does not match the stage's blocks")
            }
        }
        if let finalNorm, let head {
            RMSNorm.forward(
                y: a.finalNorm!.data + t0 * d, rstd: a.finalRstd!.data + t0, x: a.output.data + t0 * d,
                w: finalNorm.value.data, n: n, d: d, eps: Float(c.rmsEps))
            Linear.forward(
                out: a.logits!.data + t0 * c.vocabSize, x: a.finalNorm!.data + t0 * d, w: head.value.data,
                wBF16: head.value.bf16, n: n, inF: d, outF: c.vocabSize, precision: precision)
        }
    }

    /// out = h + o_proj(attention(RoPE(qkv_proj(RMSNorm₁(h))))) for the micro-batch's `rows`
    /// (x and out already point at the first of them).
    private func attentionForward(
        _ w: AttentionWeights, _ s: AttentionActivations, x: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, rows: Range<Int>
    ) {
        let c = config, d = c.dModel, qkvW = c.qkvWidth, attnW = c.nHeads * c.headDim
        let t0 = rows.lowerBound * seqLen, n = rows.count * seqLen
        let norm = s.norm.data + t0 * d, qkv = s.qkv.data + t0 * qkvW, attn = s.attn.data + t0 * attnW
        let probs = s.probs.data + rows.lowerBound * c.nHeads * seqLen * seqLen
        let shape = AttentionShape(batch: rows.count, seqLen: seqLen, heads: c.nHeads, kvHeads: c.nKVHeads, headDim: c.headDim)
        RMSNorm.forward(y: norm, rstd: s.rstd.data + t0, x: x, w: w.norm.value.data, n: n, d: d, eps: Float(c.rmsEps))
        Linear.forward(out: qkv, x: norm, w: w.qkv.data, wBF16: w.qkv.bf16, n: n, inF: d, outF: qkvW, precision: precision)
        RoPE.apply(qkv, rows: n, seqLen: seqLen, ld: qkvW, col: 0, heads: c.nHeads + c.nKVHeads, table: rope)
        Attention.forward(out: attn, probs: probs, qkv: qkv, shape: shape, precision: precision)
        Linear.forward(out: out, x: attn, w: w.o.value.data, wBF16: w.o.value.bf16, n: n, inF: attnW, outF: d, precision: precision)
        addInPlace(out, x, count: n * d)
    }

    /// out = h + down_proj(silu(gate_proj(m)) · up_proj(m)), m = RMSNorm₂(h), for the micro-batch's
    /// `rows` (x and out already point at the first of them).
    private func mlpForward(
        _ w: MLPWeights, _ s: MLPActivations, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
        rows: Range<Int>
    ) {
        let c = config, d = c.dModel, f = c.ffnHidden, t0 = rows.lowerBound * seqLen, n = rows.count * seqLen
        let norm = s.norm.data + t0 * d, gateUp = s.gateUp.data + t0 * 2 * f, act = s.act.data + t0 * f
        RMSNorm.forward(y: norm, rstd: s.rstd.data + t0, x: x, w: w.norm.value.data, n: n, d: d, eps: Float(c.rmsEps))
        Linear.forward(out: gateUp, x: norm, w: w.gateUp.data, wBF16: w.gateUp.bf16, n: n, inF: d, outF: 2 * f, precision: precision)
        SwiGLU.forward(act: act, gateUp: gateUp, n: n, f: f)
        Linear.forward(out: out, x: act, w: w.down.value.data, wBF16: w.down.value.bf16, n: n, inF: f, outF: d, precision: precision)
        addInPlace(out, x, count: n * d)
    }

    // MARK: Loss (last stage)

    /// Masked mean cross-entropy's contribution of this micro-batch: returns Σ mask·loss (the caller
    /// divides by the global batch's mask sum) and leaves d(loss)/d(logits), already scaled by
    /// `gradScale` = 1 / global mask sum, for `backward`. `inactive` (V bytes, 1 = inactive) removes
    /// ids from the softmax; a position whose target is inactive carries no loss. `logitsOut`
    /// receives the (masked) logits when given.
    @discardableResult
    public func loss(
        _ a: StageActivations, targets: UnsafePointer<Int32>, mask: UnsafePointer<Float>,
        inactive: UnsafePointer<UInt8>? = nil, gradScale: Float,
        logitsOut: UnsafeMutablePointer<Float>? = nil
    ) -> Double {
        crossEntropy(a, targets: targets, mask: mask, inactive: inactive, gradScale: gradScale, logitsOut: logitsOut, rows: 0..<rows)
        return lossSum(a)
    }

    /// `loss` for some rows (a pipeline takes it row by row as `forward(rows:)` delivers them): the
    /// positions' losses and logit gradients, which depend on no other row. All pointers point at the
    /// micro-batch's start. `lossSum` adds them up once every row is in.
    public func crossEntropy(
        _ a: StageActivations, targets: UnsafePointer<Int32>, mask: UnsafePointer<Float>,
        inactive: UnsafePointer<UInt8>? = nil, gradScale: Float,
        logitsOut: UnsafeMutablePointer<Float>? = nil, rows: Range<Int>
    ) {
        guard spec.hasHead, let logits = a.logits, let tokenLoss = a.tokenLoss else {
            preconditionFailure("loss on a stage without the head")
        }
        let effective = effectiveMask, vocab = config.vocabSize
        let t0 = rows.lowerBound * seqLen, n = rows.count * seqLen
        for r in t0..<(t0 + n) {
            let t = Int(targets[r])
            precondition(t >= 0 && t < vocab, "target id \(t) outside the vocabulary")
            effective[r] = (inactive.map { $0[t] != 0 } ?? false) ? 0 : mask[r]
        }
        CrossEntropy.forwardBackward(
            logits: logits.data + t0 * vocab, tokenLoss: tokenLoss.data + t0, targets: targets + t0,
            mask: effective.data + t0, inactive: inactive, gradScale: gradScale, n: n, v: vocab,
            logitsOut: logitsOut.map { $0 + t0 * vocab },
            gradBF16: precision == .bf16 ? logits.reserveBF16() + t0 * vocab : nil)
    }

    /// Σ mask·loss over the micro-batch, in position order, after `crossEntropy` of every row.
    public func lossSum(_ a: StageActivations) -> Double {
        guard let tokenLoss = a.tokenLoss else { preconditionFailure("loss on a stage without the head") }
        let effective = effectiveMask
        var sum = 0.0
        for r in 0..<n where effective[r] != 0 { sum += Double(effective[r]) * Double(tokenLoss[r]) }
        return sum
    }

    // MARK: Backward

    /// Both halves of the backward pass for one micro-batch, interleaved block by block: each block's
    /// weight products run right after its input gradient, so its gradient bucket is final (on the
    /// step's last micro-batch) while the blocks below are still to do, and a data-parallel reduce
    /// overlaps the rest of the backward pass. The same products on the same operands as
    /// `backwardInput` then `backwardWeights`, so the same bits. Returns d(loss)/d(input), or nil on
    /// the first stage. (A pipeline stage with a previous stage runs the halves apart instead, to send
    /// its input gradient upstream before the weight products.)
    @discardableResult
    public func backward(_ a: StageActivations, gradOutput: Tensor? = nil) -> Tensor? {
        backwardTop(a, gradOutput: gradOutput)
        headWeights(a)
        for i in stride(from: blocks.count - 1, through: 0, by: -1) {
            blockInput(i, a)
            blockWeights(i, a)
        }
        embeddingWeights(a)
        summed(bucket: normBucket)
        return embed == nil ? a.gradResidual[0] : nil
    }

    /// The first half: carries the gradient from the stage's output (the last stage: from the gradient
    /// `loss` left; others: `gradOutput`) down to its input, accumulating the norm gains' gradients.
    /// Returns d(loss)/d(input) (valid until this slot's next backward), or nil on the first stage.
    @discardableResult
    public func backwardInput(_ a: StageActivations, gradOutput: Tensor? = nil) -> Tensor? {
        backwardTop(a, gradOutput: gradOutput)
        for i in stride(from: blocks.count - 1, through: 0, by: -1) { blockInput(i, a) }
        summed(bucket: normBucket)
        return embed == nil ? a.gradResidual[0] : nil
    }

    /// The gradient at the top of the blocks: through the head and the final norm (last stage), or the
    /// next stage's `gradOutput`.
    private func backwardTop(_ a: StageActivations, gradOutput: Tensor?) {
        let c = config, d = c.dModel
        let top = a.gradResidual[blocks.count]
        if let finalNorm, let head {
            // dx only: the head's weight product waits for backwardWeights. In bf16 the loss has written
            // d(logits)'s bf16 copy already.
            Linear.inputGradient(
                dx: dNorm.data, dout: a.logits!.data, doutBF16: lowCopyMade(a.logits!), w: head.value.data, wBF16: head.value.bf16,
                n: n, inF: d, outF: c.vocabSize, precision: precision)
            top.zero()
            RMSNorm.backward(
                dx: top.data, dw: finalNorm.grad.data, dy: dNorm.data, x: a.output.data,
                w: finalNorm.value.data, rstd: a.finalRstd!.data, n: n, d: d)
        } else {
            guard let gradOutput else { preconditionFailure("backward on a middle stage needs gradOutput") }
            top.copy(from: gradOutput)
        }
    }

    /// Block `i`'s input gradient: d(residual i) from d(residual i+1), and its norm gain's gradient.
    private func blockInput(_ i: Int, _ a: StageActivations) {
        let dOut = a.gradResidual[i + 1], dIn = a.gradResidual[i]
        dIn.copy(from: dOut)  // the residual path; each branch adds its part below
        let dOutLow = lowCopy(dOut)
        switch (blocks[i], a.blocks[i]) {
        case (.attention(let w), .attention(let s)):
            attentionBackwardInput(w, s, x: a.residual[i].data, dOut: dOut.data, dOutLow: dOutLow, dIn: dIn.data)
        case (.mlp(let w), .mlp(let s)): mlpBackwardInput(w, s, x: a.residual[i].data, dOut: dOut.data, dOutLow: dOutLow, dIn: dIn.data)
        default: preconditionFailure("activation slot does not match the stage's blocks")
        }
    }

    /// The second half: every weight product dW += dYᵀ · X of one micro-batch, from what
    /// `backwardInput` saved, and the embedding's scatter-add.
    public func backwardWeights(_ a: StageActivations) {
        headWeights(a)
        for i in stride(from: blocks.count - 1, through: 0, by: -1) { blockWeights(i, a) }
        embeddingWeights(a)
    }

    private func headWeights(_ a: StageActivations) {
        guard let head else { return }
        Linear.weightGradient(
            dw: head.grad.data, dout: a.logits!.data, doutBF16: lowCopyMade(a.logits!), x: a.finalNorm!.data, n: n,
            inF: config.dModel, outF: config.vocabSize, precision: precision)
        summed(bucket: headBucket)
    }

    /// Block `i`'s weight products, from what its input-gradient half saved.
    private func blockWeights(_ i: Int, _ a: StageActivations) {
        let c = config, d = c.dModel, f = c.ffnHidden, qkvW = c.qkvWidth, attnW = c.nHeads * c.headDim
        let dOut = a.gradResidual[i + 1].data, dOutLow = lowCopyMade(a.gradResidual[i + 1])
        switch (blocks[i], a.blocks[i]) {
        case (.attention(let w), .attention(let s)):
            Linear.weightGradient(
                dw: w.o.grad.data, dout: dOut, doutBF16: dOutLow, x: s.attn.data, n: n, inF: attnW, outF: d, precision: precision)
            Linear.weightGradient(
                dw: w.qkvGrad.data, dout: s.dQKV.data, doutBF16: lowCopyMade(s.dQKV), x: s.norm.data, n: n, inF: d, outF: qkvW,
                precision: precision)
        case (.mlp(let w), .mlp(let s)):
            Linear.weightGradient(
                dw: w.down.grad.data, dout: dOut, doutBF16: dOutLow, x: s.act.data, n: n, inF: f, outF: d, precision: precision)
            Linear.weightGradient(
                dw: w.gateUpGrad.data, dout: s.dGateUp.data, doutBF16: lowCopyMade(s.dGateUp), x: s.norm.data, n: n, inF: d,
                outF: 2 * f, precision: precision)
        default: preconditionFailure("activation slot does not match the stage's blocks")
        }
        summed(bucket: lastBlockBucket + blocks.count - 1 - i)
    }

    private func embeddingWeights(_ a: StageActivations) {
        guard let embed else { return }
        Embedding.backward(dw: embed.grad.data, dout: a.gradResidual[0].data, tokens: a.tokens, n: n, d: config.dModel)
        summed(bucket: embedBucket)
    }

    /// In bf16, rounds a gradient that two products read (the input half's, then the weight half's) into
    /// its bf16 copy once, in the input half; nil in fp32. The copy lives in the micro-batch's
    /// activation slot, so it is still there when a pipeline schedule runs the weight half later.
    private func lowCopy(_ t: Tensor) -> UnsafePointer<UInt16>? {
        if precision == .bf16 { t.refreshBF16() }
        return lowCopyMade(t)
    }

    /// The copy `lowCopy` made in the input half, or that the loss wrote for the logits' gradient (nil in
    /// fp32; nil too if none was made, and then the product rounds the fp32 values itself).
    private func lowCopyMade(_ t: Tensor) -> UnsafePointer<UInt16>? {
        precision == .bf16 ? t.bf16.map { UnsafePointer($0) } : nil
    }

    /// A micro-batch's contribution to a bucket is written: folds it into the bucket's tree.
    private func summed(bucket b: Int) {
        trees[b].leafDone()
        if trees[b].justCompleted { onBucketFinal?(b) }
    }

    /// h = x + o(attn): from d(h) adds the attention branch's d(x) into `dIn` (which holds d(h) on entry).
    private func attentionBackwardInput(
        _ w: AttentionWeights, _ s: AttentionActivations, x: UnsafePointer<Float>,
        dOut: UnsafePointer<Float>, dOutLow: UnsafePointer<UInt16>?, dIn: UnsafeMutablePointer<Float>
    ) {
        let c = config, d = c.dModel, qkvW = c.qkvWidth, attnW = c.nHeads * c.headDim
        Linear.inputGradient(
            dx: dAttn.data, dout: dOut, doutBF16: dOutLow, w: w.o.value.data, wBF16: w.o.value.bf16, n: n, inF: attnW, outF: d,
            precision: precision)
        Attention.backward(
            dqkv: s.dQKV.data, dout: dAttn.data, qkv: s.qkv.data, probs: s.probs.data,
            scratch: dProbs.data, shape: attnShape, precision: precision)
        RoPE.apply(s.dQKV.data, rows: n, seqLen: seqLen, ld: qkvW, col: 0, heads: c.nHeads + c.nKVHeads, table: rope, inverse: true)
        Linear.inputGradient(
            dx: dNorm.data, dout: s.dQKV.data, doutBF16: lowCopy(s.dQKV), w: w.qkv.data, wBF16: w.qkv.bf16, n: n, inF: d,
            outF: qkvW, precision: precision)
        RMSNorm.backward(dx: dIn, dw: w.norm.grad.data, dy: dNorm.data, x: x, w: w.norm.value.data, rstd: s.rstd.data, n: n, d: d)
    }

    /// out = h + down(act): from d(out) adds the MLP branch's d(h) into `dIn` (which holds d(out) on entry).
    private func mlpBackwardInput(
        _ w: MLPWeights, _ s: MLPActivations, x: UnsafePointer<Float>,
        dOut: UnsafePointer<Float>, dOutLow: UnsafePointer<UInt16>?, dIn: UnsafeMutablePointer<Float>
    ) {
        let c = config, d = c.dModel, f = c.ffnHidden
        Linear.inputGradient(
            dx: dAct.data, dout: dOut, doutBF16: dOutLow, w: w.down.value.data, wBF16: w.down.value.bf16, n: n, inF: f, outF: d,
            precision: precision)
        SwiGLU.backward(dGateUp: s.dGateUp.data, dAct: dAct.data, gateUp: s.gateUp.data, n: n, f: f)
        Linear.inputGradient(
            dx: dNorm.data, dout: s.dGateUp.data, doutBF16: lowCopy(s.dGateUp), w: w.gateUp.data, wBF16: w.gateUp.bf16, n: n,
            inF: d, outF: 2 * f, precision: precision)
        RMSNorm.backward(dx: dIn, dw: w.norm.grad.data, dy: dNorm.data, x: x, w: w.norm.value.data, rstd: s.rstd.data, n: n, d: d)
    }

    // MARK: Optimizer support

    /// Σ grad² per parameter (double, index order), in canonical order: the pieces of the global norm.
    /// Summed in this order across stages, the global norm does not depend on the partition.
    /// Each parameter's sum is taken by one thread in index order, so it does not depend on the threads.
    public func gradSquares() -> [Double] {
        let parameters = parameters
        let squares = UnsafeMutableBufferPointer<Double>.allocate(capacity: parameters.count)
        defer { squares.deallocate() }
        Parallel.items(parameters.count) { squares[$0] = parameters[$0].grad.sumOfSquares() }
        return Array(squares)
    }
}
