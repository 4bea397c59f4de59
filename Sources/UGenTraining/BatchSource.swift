import Foundation
import UGenData
import UGenKernels

/// Where global batches come from. The coordinator (or the single-process run) asks for the batch of a
/// step; a source is deterministic in (its seed, step), so a resumed run sees the same batches.
public protocol BatchSource: AnyObject {
    /// The global batch for optimizer step `step` (0-based). `textOnly`: draw text examples only.
    func batch(step: Int, textOnly: Bool) throws -> Batch
    /// Where the stream stands (JSON text), recorded in checkpoints.
    var state: String { get }
    /// Continues from a recorded `state`.
    func restore(state: String) throws
}

/// Byte-level windows of a text corpus: token = byte value, loss on every position. Used by tests and
/// the benchmark where a tokenizer is beside the point; deterministic in (seed, step).
public final class ByteWindowSource: BatchSource {
    public let bytes: [UInt8]
    public let rows: Int, seqLen: Int, seed: UInt64

    public init(bytes: [UInt8], rows: Int, seqLen: Int, seed: UInt64) {
        precondition(bytes.count > seqLen + 1, "corpus shorter than one row")
        self.bytes = bytes; self.rows = rows; self.seqLen = seqLen; self.seed = seed
    }

    /// Stateless: every batch is a function of (seed, step).
    public var state: String { "{}" }
    public func restore(state: String) throws {}

    public func batch(step: Int, textOnly: Bool) throws -> Batch {
        var rng = SplitMix64(seed: seed &+ UInt64(step) &* 0x9E37_79B9)
        let n = rows * seqLen
        var inputs = [Int32](repeating: 0, count: n), targets = inputs
        for r in 0..<rows {
            let start = rng.nextInt(below: bytes.count - seqLen - 1)
            for t in 0..<seqLen {
                inputs[r * seqLen + t] = Int32(bytes[start + t])
                targets[r * seqLen + t] = Int32(bytes[start + t + 1])
            }
        }
        return Batch(
            rows: rows, seqLen: seqLen, inputs: inputs, targets: targets,
            mask: [Float](repeating: 1, count: n), tasks: [UInt8](repeating: 0, count: n))
    }
}
