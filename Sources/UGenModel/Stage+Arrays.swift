import UGenKernels

/// The stage's entry points over a step's Swift arrays. A micro-batch's positions start at `offset` of
/// the arrays (row-major [rows·seqLen]); the optional tables (the input id map, the inactive flags, V
/// entries each) may be absent. The pointer plumbing lives here once, for the trainer, the worker, the
/// evaluator and the gradient check; none of it copies or allocates.
extension Stage {
    /// `forward(_:tokens:tokenMap:rows:)` on the micro-batch at `offset` of `tokens`.
    public func forward(_ a: StageActivations, tokens: [Int32], at offset: Int = 0, tokenMap: [Int32]?, rows: Range<Int>? = nil) {
        tokens.withUnsafeBufferPointer { tk in
            withOptionalPointer(tokenMap) { map in forward(a, tokens: tk.baseAddress! + offset, tokenMap: map, rows: rows ?? 0..<self.rows)
            }
        }
    }

    /// `crossEntropy(_:targets:mask:inactive:gradScale:logitsOut:rows:)` on the micro-batch at `offset`;
    /// returns the loss sum over all its rows once `rows` reaches its end (nil before).
    @discardableResult
    public func crossEntropy(
        _ a: StageActivations, targets: [Int32], mask: [Float], at offset: Int = 0, inactive: [UInt8]?,
        gradScale: Float, logitsOut: UnsafeMutablePointer<Float>? = nil, rows: Range<Int>? = nil
    ) -> Double? {
        let rows = rows ?? 0..<self.rows
        targets.withUnsafeBufferPointer { t in
            mask.withUnsafeBufferPointer { m in
                withOptionalPointer(inactive) { ia in
                    crossEntropy(
                        a, targets: t.baseAddress! + offset, mask: m.baseAddress! + offset, inactive: ia, gradScale: gradScale,
                        logitsOut: logitsOut, rows: rows)
                }
            }
        }
        return rows.upperBound == self.rows ? lossSum(a) : nil
    }
}

/// Calls `body` with a pointer to the array's storage, or nil.
@inline(__always)
public func withOptionalPointer<T, R>(_ a: [T]?, _ body: (UnsafePointer<T>?) throws -> R) rethrows -> R {
    if let a { return try a.withUnsafeBufferPointer { try body($0.baseAddress!) } }
    return try body(nil)
}
