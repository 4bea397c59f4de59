import Foundation

/// Causal multi-head attention with grouped-query heads, on a fused q/k/v buffer.
///
/// `qkv` is [N = B·T, C] with C = (H + 2·Hkv)·hd: query head h at column h·hd, key head g at
/// (H + g)·hd, value head g at (H + Hkv + g)·hd. Query head h reads kv head h / (H / Hkv). Every
/// product is one sgemm on a head's strided slice; the softmax is a plain loop.
public struct AttentionShape {
    public let batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int
    public init(batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int) {
        self.batch = batch; self.seqLen = seqLen; self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
    }
    public var qkvWidth: Int { (heads + 2 * kvHeads) * headDim }
    public var outWidth: Int { heads * headDim }
    /// Elements of the saved probabilities [B, H, T, T].
    public var probsCount: Int { batch * heads * seqLen * seqLen }
    @inline(__always) func kvHead(_ h: Int) -> Int { h / (heads / kvHeads) }
}

public enum Attention {
    /// out[N, H·hd] = softmax(q·kᵀ/√hd + causal) · v; saves the probabilities in `probs` [B,H,T,T] (T = seqLen).
    public static func forward(
        out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, shape s: AttentionShape, precision: Precision = .fp32
    ) {
        let seq = s.seqLen, hd = s.headDim, qkvW = s.qkvWidth, outW = s.outWidth
        let scale = 1 / Float(hd).squareRoot()
        Parallel.items(s.batch) { b in
            for h in 0..<s.heads {
                let g = s.kvHead(h)
                let q = qkv + b * seq * qkvW + h * hd
                let k = qkv + b * seq * qkvW + (s.heads + g) * hd
                let v = qkv + b * seq * qkvW + (s.heads + s.kvHeads + g) * hd
                let p = probs + (b * s.heads + h) * seq * seq
                BLAS.gemm(
                    transB: true, m: seq, n: seq, k: hd, alpha: scale, a: q, lda: qkvW, b: k, ldb: qkvW, c: p, ldc: seq,
                    precision: precision)
                causalSoftmaxRows(p, seq)
                BLAS.gemm(
                    m: seq, n: hd, k: seq, a: p, lda: seq, b: v, ldb: qkvW, c: out + b * seq * outW + h * hd, ldc: outW,
                    precision: precision)
            }
        }
    }

    /// Row i keeps columns 0...i (softmax over them) and zeroes the rest.
    @inline(__always)
    static func causalSoftmaxRows(_ p: UnsafeMutablePointer<Float>, _ seq: Int) {
        for i in 0..<seq {
            let row = p + i * seq
            softmaxRow(row, count: i + 1)
            for j in (i + 1)..<seq { row[j] = 0 }
        }
    }

    /// Softmax of one row of scores in place (also the cached decoder's, so both compute the same bits).
    @inline(__always)
    public static func softmaxRow(_ row: UnsafeMutablePointer<Float>, count: Int) {
        let shift = Reduce.max(row, count)
        FastExp.applyInPlace(row, count: count) { FastExp.exp($0 - shift) }
        let inv = Float(1 / Reduce.sum(row, count))
        for j in 0..<count { row[j] *= inv }
    }

    /// From d(out) writes d(q), d(k), d(v) into `dqkv` (same layout as `qkv`; fully overwritten).
    /// `scratch` holds B·T·T floats (one T·T block per batch row, so rows can run in parallel).
    public static func backward(
        dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>,
        scratch: UnsafeMutablePointer<Float>, shape s: AttentionShape, precision: Precision = .fp32
    ) {
        let seq = s.seqLen, hd = s.headDim, qkvW = s.qkvWidth, outW = s.outWidth
        let scale = 1 / Float(hd).squareRoot()
        let groupSize = s.heads / s.kvHeads
        Parallel.items(s.batch) { b in
            let dp = scratch + b * seq * seq
            for h in 0..<s.heads {
                let g = s.kvHead(h)
                let first = h % groupSize == 0  // first query head of its group overwrites dk/dv, the rest add
                let q = qkv + b * seq * qkvW + h * hd
                let k = qkv + b * seq * qkvW + (s.heads + g) * hd
                let v = qkv + b * seq * qkvW + (s.heads + s.kvHeads + g) * hd
                let dq = dqkv + b * seq * qkvW + h * hd
                let dk = dqkv + b * seq * qkvW + (s.heads + g) * hd
                let dv = dqkv + b * seq * qkvW + (s.heads + s.kvHeads + g) * hd
                let p = probs + (b * s.heads + h) * seq * seq
                let dO = dout + b * seq * outW + h * hd
                // dP = dO · vᵀ ;  dv (+)= Pᵀ · dO
                BLAS.gemm(transB: true, m: seq, n: seq, k: hd, a: dO, lda: outW, b: v, ldb: qkvW, c: dp, ldc: seq, precision: precision)
                BLAS.gemm(
                    transA: true, m: seq, n: hd, k: seq, a: p, lda: seq, b: dO, ldb: outW, beta: first ? 0 : 1, c: dv, ldc: qkvW,
                    precision: precision)
                // dS = P ⊙ (dP − rowsum(dP ⊙ P))   (the softmax backward; zero above the diagonal)
                for i in 0..<seq {
                    let pr = p + i * seq, dr = dp + i * seq
                    var dot: Float = 0
                    for j in 0...i { dot += pr[j] * dr[j] }
                    for j in 0...i { dr[j] = pr[j] * (dr[j] - dot) }
                    for j in (i + 1)..<seq { dr[j] = 0 }
                }
                // dq = scale · dS · k ;  dk (+)= scale · dSᵀ · q
                BLAS.gemm(m: seq, n: hd, k: seq, alpha: scale, a: dp, lda: seq, b: k, ldb: qkvW, c: dq, ldc: qkvW, precision: precision)
                BLAS.gemm(
                    transA: true, m: seq, n: hd, k: seq, alpha: scale, a: dp, lda: seq, b: q, ldb: qkvW,
                    beta: first ? 0 : 1, c: dk, ldc: qkvW, precision: precision)
            }
        }
    }
}
