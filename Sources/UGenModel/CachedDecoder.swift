import Foundation
import UGenKernels

/// Incremental decoding with a key/value cache: each new token costs one position (its own q/k/v, one
/// attention row against the cached keys and values), not a pass over the whole prefix.
///
/// Uses the training kernels with a single row; the cache holds every layer's rotated keys and values
/// for positions 0..<length.
public final class CachedDecoder {
    public let model: ModelConfig
    let stage: Stage
    /// Each layer's two halves, looked up once (not per token).
    private let layers: [(attention: AttentionWeights, mlp: MLPWeights)]
    public private(set) var length = 0
    private let keys: [Tensor], values: [Tensor]  // per layer [maxLen, Hkv·hd]
    private let x, norm, qkv, attn, mid, gateUp, act, rstd, scores: Tensor
    /// Logits of the next token after the last `append` (V floats).
    public let logits: Tensor

    /// `stage` must hold the whole model (embedding, every layer, head).
    public init(stage: Stage) {
        precondition(
            stage.spec.hasEmbedding && stage.spec.hasHead && stage.spec.blocks == 0..<2 * stage.config.nLayers,
            "the decoder needs the whole model")
        self.stage = stage
        layers = stage.layerWeights
        model = stage.config
        let c = model, kv = c.nKVHeads * c.headDim
        keys = (0..<c.nLayers).map { _ in Tensor([c.maxSeqLen, kv]) }
        values = (0..<c.nLayers).map { _ in Tensor([c.maxSeqLen, kv]) }
        x = Tensor([c.dModel]); norm = Tensor([c.dModel]); qkv = Tensor([c.qkvWidth]); attn = Tensor([c.nHeads * c.headDim])
        mid = Tensor([c.dModel]); gateUp = Tensor([2 * c.ffnHidden]); act = Tensor([c.ffnHidden]); rstd = Tensor([1])
        scores = Tensor([c.maxSeqLen]); logits = Tensor([c.vocabSize])
    }

    /// Forgets the prefix.
    public func reset() { length = 0 }

    /// Feeds one token at position `length` and leaves the next token's logits in `logits`.
    public func append(_ token: Int32) {
        let c = model, d = c.dModel, f = c.ffnHidden, qkvW = c.qkvWidth, hd = c.headDim, kvW = c.nKVHeads * hd
        precondition(length < c.maxSeqLen, "sequence longer than model.max_seq_len \(c.maxSeqLen)")
        precondition(token >= 0 && Int(token) < c.vocabSize, "token id \(token) outside the vocabulary")
        let p = length, eps = Float(c.rmsEps)
        (x.data).update(from: stage.embed!.value.data + Int(token) * d, count: d)
        for (l, (aw, mw)) in layers.enumerated() {
            RMSNorm.forward(y: norm.data, rstd: rstd.data, x: x.data, w: aw.norm.value.data, n: 1, d: d, eps: eps)
            Linear.forward(
                out: qkv.data, x: norm.data, w: aw.qkv.data, wBF16: aw.qkv.bf16, n: 1, inF: d, outF: qkvW,
                precision: stage.precision)
            RoPE.apply(qkv.data, rows: 1, seqLen: 1, ld: qkvW, col: 0, heads: c.nHeads + c.nKVHeads, table: stage.rope, startPosition: p)
            (keys[l].data + p * kvW).update(from: qkv.data + c.nHeads * hd, count: kvW)
            (values[l].data + p * kvW).update(from: qkv.data + (c.nHeads + c.nKVHeads) * hd, count: kvW)
            attend(layer: l, position: p)
            Linear.forward(
                out: mid.data, x: attn.data, w: aw.o.value.data, wBF16: aw.o.value.bf16, n: 1, inF: c.nHeads * hd, outF: d,
                precision: stage.precision)
            addInPlace(mid.data, x.data, count: d)
            RMSNorm.forward(y: norm.data, rstd: rstd.data, x: mid.data, w: mw.norm.value.data, n: 1, d: d, eps: eps)
            Linear.forward(
                out: gateUp.data, x: norm.data, w: mw.gateUp.data, wBF16: mw.gateUp.bf16, n: 1, inF: d, outF: 2 * f,
                precision: stage.precision)
            SwiGLU.forward(act: act.data, gateUp: gateUp.data, n: 1, f: f)
            Linear.forward(
                out: x.data, x: act.data, w: mw.down.value.data, wBF16: mw.down.value.bf16, n: 1, inF: f, outF: d,
                precision: stage.precision)
            addInPlace(x.data, mid.data, count: d)
        }
        RMSNorm.forward(y: norm.data, rstd: rstd.data, x: x.data, w: stage.finalNorm!.value.data, n: 1, d: d, eps: eps)
        Linear.forward(
            out: logits.data, x: norm.data, w: stage.head!.value.data, wBF16: stage.head!.value.bf16, n: 1, inF: d, outF: c.vocabSize,
            precision: stage.precision)
        length += 1
    }

    /// One query row per head against the cached keys/values of positions 0...p.
    private func attend(layer l: Int, position p: Int) {
        let c = model, hd = c.headDim, kvW = c.nKVHeads * hd, group = c.nHeads / c.nKVHeads
        let scale = 1 / Float(hd).squareRoot()
        for h in 0..<c.nHeads {
            let g = h / group
            BLAS.gemm(
                transB: true, m: 1, n: p + 1, k: hd, alpha: scale, a: qkv.data + h * hd, lda: hd,
                b: keys[l].data + g * hd, ldb: kvW, c: scores.data, ldc: p + 1, precision: stage.precision)
            Attention.softmaxRow(scores.data, count: p + 1)
            BLAS.gemm(
                m: 1, n: hd, k: p + 1, a: scores.data, lda: p + 1, b: values[l].data + g * hd, ldb: kvW,
                c: attn.data + h * hd, ldc: hd, precision: stage.precision)
        }
    }

    /// The next-token logits after `tokens` computed without the cache: the full causal forward pass over
    /// the prefix (the reference the cache must agree with). Needs a stage built with rows 1.
    public static func uncachedLogits(stage: Stage, tokens: [Int32]) -> [Float] {
        precondition(stage.rows == 1 && tokens.count <= stage.seqLen)
        // Pad to the stage's length: causal attention makes position k independent of later positions.
        var padded = tokens
        padded += [Int32](repeating: 0, count: stage.seqLen - tokens.count)
        let a = stage.activations(0)
        padded.withUnsafeBufferPointer { stage.forward(a, tokens: $0.baseAddress!) }
        let vocabSize = stage.config.vocabSize
        return Array(UnsafeBufferPointer(start: a.logits!.data + (tokens.count - 1) * vocabSize, count: vocabSize))
    }
}
