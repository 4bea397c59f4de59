import UGenKernels

/// What one micro-batch leaves behind in a stage for its backward passes. A stage keeps a pool of these
/// so a pipeline schedule can hold several micro-batches in flight; they are allocated once and reused.
///
/// The backward pass comes in two halves (`Stage.backwardInput`, then `Stage.backwardWeights`), which a
/// schedule may run far apart, so the first half leaves here everything the second needs: the gradient
/// of the residual stream at every block boundary and each block's gradient at its fused projection.
public final class StageActivations {
    /// Token ids as fed to the embedding (after any substitution), first stage only.
    public let tokens: UnsafeMutablePointer<Int32>
    /// residual[0] is the stage input; residual[i+1] the output of its i-th residual block.
    public let residual: [Tensor]
    /// gradResidual[i] = d(loss)/d(residual[i]), written by `backwardInput`.
    let gradResidual: [Tensor]
    let blocks: [BlockActivations]
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
        residual = (0...spec.blocks.count).map { _ in Tensor([n, d]) }
        gradResidual = (0...spec.blocks.count).map { _ in Tensor([n, d]) }
        blocks = spec.blocks.map {
            $0 % 2 == 0 ? .attention(AttentionActivations(c, rows: rows, seqLen: seqLen)) : .mlp(MLPActivations(c, n: n))
        }
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

enum BlockActivations {
    case attention(AttentionActivations), mlp(MLPActivations)
}

final class AttentionActivations {
    let rstd, norm, qkv, probs, attn: Tensor
    /// d(loss)/d(q, k, v) after RoPE's inverse: what the fused projection's weight gradient needs.
    let dQKV: Tensor
    init(_ c: ModelConfig, rows: Int, seqLen: Int) {
        let n = rows * seqLen
        rstd = Tensor([n]); norm = Tensor([n, c.dModel]); qkv = Tensor([n, c.qkvWidth])
        probs = Tensor([rows * c.nHeads * seqLen * seqLen]); attn = Tensor([n, c.nHeads * c.headDim])
        dQKV = Tensor([n, c.qkvWidth])
    }
}

final class MLPActivations {
    let rstd, norm, gateUp, act: Tensor
    /// d(loss)/d(gate, up): what the fused projection's weight gradient needs.
    let dGateUp: Tensor
    init(_ c: ModelConfig, n: Int) {
        rstd = Tensor([n]); norm = Tensor([n, c.dModel]); gateUp = Tensor([n, 2 * c.ffnHidden]); act = Tensor([n, c.ffnHidden])
        dGateUp = Tensor([n, 2 * c.ffnHidden])
    }
}
