import UGenKernels

/// The stage's entry points over a `MicroBatch`. The pointer plumbing lives here once, for the trainer,
/// the worker, the evaluator and the gradient check; none of it copies or allocates.
extension Stage {
    /// The forward pass of the micro-batch's `rows` (all of them when nil). The first stage reads its
    /// tokens through the token map; other stages read `a.input`, which the caller filled.
    public func forward(_ a: StageActivations, _ batch: MicroBatch, rows: Range<Int>? = nil) {
        let rows = rows ?? 0..<self.rows
        guard spec.hasEmbedding else { return forward(a, tokens: nil, tokenMap: nil, rows: rows) }
        batch.tokens.withUnsafeBufferPointer { tk in
            withOptionalPointer(batch.tokenMap) { map in forward(a, tokens: tk.baseAddress! + batch.index * n, tokenMap: map, rows: rows) }
        }
    }

    /// The loss of the micro-batch's `rows` (all of them when nil; `crossEntropy(_:targets:mask:…)`):
    /// returns Σ mask·loss over the micro-batch once `rows` reaches its end, nil before.
    @discardableResult
    public func crossEntropy(
        _ a: StageActivations, _ batch: MicroBatch, gradScale: Float, logitsOut: UnsafeMutablePointer<Float>? = nil,
        rows: Range<Int>? = nil
    ) -> Double? {
        let rows = rows ?? 0..<self.rows, start = batch.index * n
        batch.targets.withUnsafeBufferPointer { t in
            batch.mask.withUnsafeBufferPointer { m in
                withOptionalPointer(batch.inactive) { ia in
                    crossEntropy(
                        a, targets: t.baseAddress! + start, mask: m.baseAddress! + start, inactive: ia, gradScale: gradScale,
                        logitsOut: logitsOut, rows: rows)
                }
            }
        }
        return rows.upperBound == self.rows ? lossSum(a) : nil
    }

    /// `crossEntropy` of the micro-batch's `rows` in a training step: once its last rows are in, records
    /// its loss sum and its positions' losses by task (the micro-batch's `tasks`) in `losses` together.
    public func crossEntropy(
        _ a: StageActivations, _ batch: MicroBatch, gradScale: Float, rows: Range<Int>? = nil, into losses: inout StepLosses
    ) {
        guard let sum = crossEntropy(a, batch, gradScale: gradScale, rows: rows) else { return }
        losses.sums[batch.index] = sum
        batch.tasks.withUnsafeBufferPointer { tk in
            losses.tasks.add(tokenLoss: a.tokenLoss!.data, mask: lastEffectiveMask.data, tasks: tk.baseAddress! + batch.index * n, n: n)
        }
    }
}

/// Calls `body` with a pointer to the array's storage, or nil.
@inline(__always)
private func withOptionalPointer<T, R>(_ a: [T]?, _ body: (UnsafePointer<T>?) throws -> R) rethrows -> R {
    if let a { return try a.withUnsafeBufferPointer { try body($0.baseAddress!) } }
    return try body(nil)
}
