/// The order in which a pipeline stage runs its micro-batches' forward and backward passes.
///
/// GPipe: every forward, then every backward. 1F1B: stage s of p first runs `p − s − 1` warm-up
/// forwards, then alternates one forward and one backward, then drains the remaining backwards — so at
/// most `p − s` micro-batches are in flight and the last stage turns each forward straight around.
/// Both run a stage's backwards in micro-batch order, so every gradient accumulates in the same order
/// as in the single process.
public enum PipelineSchedule: String, Sendable {
    case gpipe, oneFOneB = "1f1b"

    public enum Op: Equatable, Sendable { case forward(Int), backward(Int) }

    public func ops(stage s: Int, stages p: Int, microBatches m: Int) -> [Op] {
        switch self {
        case .gpipe:
            return (0..<m).map { .forward($0) } + (0..<m).map { .backward($0) }
        case .oneFOneB:
            let warmup = min(p - s - 1, m)
            var ops: [Op] = (0..<warmup).map { .forward($0) }
            for i in 0..<(m - warmup) { ops += [.forward(warmup + i), .backward(i)] }
            ops += ((m - warmup)..<m).map { .backward($0) }
            return ops
        }
    }

    /// How many activation slots stage s needs (micro-batch k uses slot k % slots).
    public func slots(stage s: Int, stages p: Int, microBatches m: Int) -> Int {
        self == .gpipe ? m : min(m, p - s)
    }
}
