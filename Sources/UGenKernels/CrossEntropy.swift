import Foundation

/// Masked next-token cross-entropy over logits [N, V], fused with its backward.
///
/// Ids flagged in `inactive` (a V-long 0/1 table, or nil) are removed from the softmax: their logit
/// becomes −∞, so they get no probability and no gradient. A position contributes
/// `mask[r] · (logsumexp − logit[target])` to the loss; its gradient is `(softmax − onehot) · mask[r] · gradScale`,
/// where `gradScale` is 1 / (the loss mask's sum over the whole global batch), so that micro-batches,
/// pipeline replicas and the single process all produce the same mean.
public enum CrossEntropy {
    /// Overwrites `logits` with d(loss)/d(logits) and writes each position's unweighted loss to
    /// `tokenLoss` (0 where the mask is 0). `logitsOut`, when given, receives the logits first.
    /// `gradBF16`, when given ([n, v]), receives d(logits) rounded to bf16 as each row is finished, while
    /// the row is still in cache: a bf16 run's head products read only that copy, so a second pass over
    /// the whole [n, v] gradient to round it is spared (the same bits as rounding afterwards).
    public static func forwardBackward(
        logits: UnsafeMutablePointer<Float>, tokenLoss: UnsafeMutablePointer<Float>,
        targets: UnsafePointer<Int32>, mask: UnsafePointer<Float>,
        inactive: UnsafePointer<UInt8>?, gradScale: Float,
        n: Int, v: Int, logitsOut: UnsafeMutablePointer<Float>? = nil, gradBF16: UnsafeMutablePointer<UInt16>? = nil
    ) {
        Parallel.rows(n) { range in
            for r in range {
                let row = logits + r * v
                defer { if let gradBF16 { BF16.convertRow(row, gradBF16 + r * v, v) } }
                if let inactive { for j in 0..<v where inactive[j] != 0 { row[j] = -.infinity } }
                if let logitsOut { (logitsOut + r * v).update(from: row, count: v) }
                let m = mask[r]
                if m == 0 {
                    tokenLoss[r] = 0
                    row.update(repeating: 0, count: v)
                    continue
                }
                let mx = Reduce.max(row, v)
                let t = Int(targets[r])
                // loss = log Σ exp(z − max) − (z_t − max), from the logit itself: e^(z_t − max) underflows
                // to 0 once the target trails the best logit by more than 87, and log(0) would be −∞.
                let shiftedTarget = row[t] - mx
                FastExp.applyInPlace(row, count: v) { FastExp.exp($0 - mx) }
                let sum = Reduce.sum(row, v)
                let logSum = Float(log(sum))
                tokenLoss[r] = logSum - shiftedTarget
                let inv = Float(1 / sum)
                let g = m * gradScale
                for j in 0..<v { row[j] = row[j] * inv * g }
                row[t] -= g
            }
        }
    }
}
