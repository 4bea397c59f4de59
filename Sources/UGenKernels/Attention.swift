import Foundation

/// Causal multi-head attention with grouped-query heads, on a fused q/k/v buffer.
///
/// `qkv` is [N = B·T, C] with C = (H + 2·Hkv)·hd: query head h at column h·hd, key head g at
/// (H + g)·hd, value head g at (H + Hkv + g)·hd. Query head h reads kv head h / (H / Hkv). Every
/// product is a few `BLAS.gemm` calls on a head's strided slice, cut into row blocks so that the zero
/// upper triangle is not multiplied; the softmax is a plain loop.
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
    /// Where batch row b's query head h, and the key and value heads it reads, start in `qkv` (and in
    /// d(qkv), which has the same layout): element offsets, with row stride `qkvWidth`.
    @inline(__always) func columns(batch b: Int, head h: Int) -> (q: Int, k: Int, v: Int) {
        let row = b * seqLen * qkvWidth, g = kvHead(h)
        return (row + h * headDim, row + (heads + g) * headDim, row + (heads + kvHeads + g) * headDim)
    }
}

public enum Attention {
    /// out[N, H·hd] = softmax(q·kᵀ/√hd + causal) · v; saves the probabilities in `probs` [B,H,T,T] (T = seqLen).
    public static func forward(
        out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
        qkv: UnsafePointer<Float>, shape s: AttentionShape, precision: Precision = .fp32
    ) {
        let seq = s.seqLen, hd = s.headDim, qkvW = s.qkvWidth, outW = s.outWidth
        let scale = 1 / Float(hd).squareRoot()
        // In bf16, q, k and v are rounded once here: every row block's products read k and v.
        let qkvLow = precision == .bf16 ? OneDNN.thread.qkv.round(qkv, ld: qkvW, rows: s.batch * seq, cols: qkvW) : nil
        Parallel.items(s.batch) { b in
            for h in 0..<s.heads {
                let (qAt, kAt, vAt) = s.columns(batch: b, head: h)
                let p = probs + (b * s.heads + h) * seq * seq
                // Row block r0..<r1 needs keys 0..<r1 only (causal): the rest of its scores are never read.
                for r in causalBlocks(seq) {
                    let rowAt = qAt + r.lowerBound * qkvW
                    BLAS.gemm(
                        transB: true, m: r.count, n: r.upperBound, k: hd, alpha: scale, a: qkv + rowAt, lda: qkvW,
                        aBF16: qkvLow.map { $0 + rowAt }, b: qkv + kAt, ldb: qkvW, bBF16: qkvLow.map { $0 + kAt },
                        c: p + r.lowerBound * seq, ldc: seq, precision: precision)
                }
                causalSoftmaxRows(p, seq)
                for r in causalBlocks(seq) {
                    BLAS.gemm(
                        m: r.count, n: hd, k: r.upperBound, a: p + r.lowerBound * seq, lda: seq, b: qkv + vAt, ldb: qkvW,
                        bBF16: qkvLow.map { $0 + vAt }, c: out + b * seq * outW + r.lowerBound * outW + h * hd, ldc: outW,
                        precision: precision)
                }
            }
        }
    }

    /// dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place of dP (the softmax backward; zero above the diagonal), and in
    /// bf16 its rounded copy, made while each row is in cache.
    @inline(__always)
    static func causalSoftmaxBackwardRows(
        _ p: UnsafePointer<Float>, _ dp: UnsafeMutablePointer<Float>, _ seq: Int, bf16Copy: UnsafeMutablePointer<UInt16>?
    ) {
        for i in 0..<seq {
            let pr = p + i * seq, dr = dp + i * seq
            let dot = Float(Reduce.dot(pr, dr, i + 1))
            for j in 0...i { dr[j] = pr[j] * (dr[j] - dot) }
            for j in (i + 1)..<seq { dr[j] = 0 }
            if let bf16Copy { BF16.convertRow(dr, bf16Copy + i * seq, seq) }
        }
    }

    /// The row blocks of a causal product: query rows r0..<r1 meet keys 0..<r1, so a block skips the
    /// keys after it — in four blocks, 10/16 of the full T×T products are computed (in two, 3/4). The
    /// skipped part is exactly the zero upper triangle, so the result is the same product; blocks of
    /// fewer than 32 rows would cost more in calls than they save.
    @inline(__always)
    static func causalBlocks(_ seq: Int) -> LazyMapSequence<StrideTo<Int>, Range<Int>> {
        let count = max(1, min(4, seq / 32)), size = (seq + count - 1) / count
        return stride(from: 0, to: seq, by: size).lazy.map { $0..<min($0 + size, seq) }  // lazy: nothing allocated
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
        let bf16 = precision == .bf16
        // In bf16, q, k, v and d(out) are rounded once here, not once per row block and product.
        let qkvLow = bf16 ? OneDNN.thread.qkv.round(qkv, ld: qkvW, rows: s.batch * seq, cols: qkvW) : nil
        let doutLow = bf16 ? OneDNN.thread.dout.round(dout, ld: outW, rows: s.batch * seq, cols: outW) : nil
        Parallel.items(s.batch) { b in
            let dp = scratch + b * seq * seq
            // This thread's bf16 copy of one head's dS, which both dq's and dk's products read.
            let dsLow = bf16 ? OneDNN.thread.scores.reserve(seq * seq) : nil
            for h in 0..<s.heads {
                let first = h % groupSize == 0  // first query head of its group overwrites dk/dv, the rest add
                let (qAt, kAt, vAt) = s.columns(batch: b, head: h)
                let dq = dqkv + qAt, dk = dqkv + kAt, dv = dqkv + vAt
                let p = probs + (b * s.heads + h) * seq * seq
                let oAt = b * seq * outW + h * hd
                // dP = dO · vᵀ (row block r0..<r1: keys 0..<r1) ;  dv (+)= Pᵀ · dO (key block c0..<c1: the
                // queries c0..<T that see it)
                let blocks = causalBlocks(seq)
                for r in blocks {
                    let rowAt = oAt + r.lowerBound * outW
                    BLAS.gemm(
                        transB: true, m: r.count, n: r.upperBound, k: hd, a: dout + rowAt, lda: outW,
                        aBF16: doutLow.map { $0 + rowAt }, b: qkv + vAt, ldb: qkvW, bBF16: qkvLow.map { $0 + vAt },
                        c: dp + r.lowerBound * seq, ldc: seq, precision: precision)
                }
                for c in blocks {
                    let c0 = c.lowerBound, rowAt = oAt + c0 * outW
                    BLAS.gemm(
                        transA: true, m: c.count, n: hd, k: seq - c0, a: p + c0 * seq + c0, lda: seq, b: dout + rowAt,
                        ldb: outW, bBF16: doutLow.map { $0 + rowAt }, beta: first ? 0 : 1, c: dv + c0 * qkvW, ldc: qkvW,
                        precision: precision)
                }
                causalSoftmaxBackwardRows(p, dp, seq, bf16Copy: dsLow)
                // dq = scale · dS · k ;  dk (+)= scale · dSᵀ · q   (the same blocks: dS is zero above the diagonal)
                for r in blocks {
                    let at = r.lowerBound * seq
                    BLAS.gemm(
                        m: r.count, n: hd, k: r.upperBound, alpha: scale, a: dp + at, lda: seq,
                        aBF16: dsLow.map { UnsafePointer($0 + at) }, b: qkv + kAt, ldb: qkvW, bBF16: qkvLow.map { $0 + kAt },
                        c: dq + r.lowerBound * qkvW, ldc: qkvW, precision: precision)
                }
                for c in blocks {
                    let c0 = c.lowerBound, at = c0 * seq + c0, rowAt = qAt + c0 * qkvW
                    BLAS.gemm(
                        transA: true, m: c.count, n: hd, k: seq - c0, alpha: scale, a: dp + at, lda: seq,
                        aBF16: dsLow.map { UnsafePointer($0 + at) }, b: qkv + rowAt, ldb: qkvW, bBF16: qkvLow.map { $0 + rowAt },
                        beta: first ? 0 : 1, c: dk + c0 * qkvW, ldc: qkvW, precision: precision)
                }
            }
        }
    }
}
