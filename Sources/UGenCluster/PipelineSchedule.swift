/// The order in which a pipeline stage runs its micro-batches' forward and backward passes.
///
/// - GPipe: every forward, then every backward.
/// - 1F1B: stage s of p first runs `p − s − 1` warm-up forwards, then alternates one forward and one
///   backward, then drains the remaining backwards — so at most `p − s` micro-batches are in flight and
///   the last stage turns each forward straight around.
/// - Zero bubble (`zb`, after Qi et al., "Zero Bubble Pipeline Parallelism", 2023): the backward is split
///   into its input half B (what the previous stage waits for) and its weight half W (what nobody waits
///   for). Stage s runs `min(m, 2(p − s) − 1)` warm-up forwards; then for each micro-batch i in order: B(i),
///   the next forward if one is left, and the W passes of the oldest micro-batches until at most `s` are
///   held back (`s + 1` on the last stage, none on a lone stage); the held-back W passes close the step. B reaches the previous stage
///   sooner than a whole
///   backward would, the earlier stages get their next input sooner, and the held-back W passes fill
///   the time a stage would otherwise spend waiting at the end of the step. A B right before its own W
///   is one `.backward` (the same passes; a first stage then interleaves them).
///
/// Every schedule runs a stage's forwards, its B halves and its W halves each in micro-batch order, so
/// every gradient accumulates in the same order as in the single process: the schedule changes the
/// speed, never a bit of the result. No schedule can deadlock: a stage never runs fewer warm-up
/// forwards than the stage after it, sends never block, and W passes wait on nothing.
public enum PipelineSchedule: String, Sendable, CaseIterable {
    case gpipe, oneFOneB = "1f1b", zeroBubble = "zb"

    public enum Op: Equatable, Sendable {
        case forward(Int)
        /// Both halves of the backward pass.
        case backward(Int)
        /// B: the gradient of the stage's input (sent to the previous stage at once).
        case backwardInput(Int)
        /// W: the weight gradients.
        case backwardWeights(Int)
    }

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
        case .zeroBubble:
            // The last stage holds back one W more: its input halves are what every earlier stage's end
            // of step waits for, and B costs more than W (attention's backward is all B). A lone stage
            // has no pipeline and no bubble to fill: it holds nothing back, so each B meets its W (one
            // interleaved backward below) and the step's last one has every bucket of a replica's
            // reduce final during it, not after a W held back in between.
            let warmup = min(m, 2 * (p - s) - 1), holdBack = p == 1 ? 0 : s == p - 1 ? s + 1 : s
            var ops: [Op] = (0..<warmup).map { .forward($0) }
            var nextForward = warmup, nextWeights = 0
            for i in 0..<m {
                ops.append(.backwardInput(i))
                if nextForward < m { ops.append(.forward(nextForward)); nextForward += 1 }
                while i + 1 - nextWeights > holdBack { ops.append(.backwardWeights(nextWeights)); nextWeights += 1 }
            }
            ops += (nextWeights..<m).map { .backwardWeights($0) }
            return Self.joiningHalves(ops)
        }
    }

    /// B(k) right before W(k) (nothing to fit between them) becomes one `.backward(k)`: the same passes in
    /// the same order, but a first stage runs it with the halves interleaved block by block, so its
    /// gradient buckets become final during the pass and a data-parallel reduce overlaps the rest of it
    /// (split, the buckets would wait for the whole input half: on one stage, every step's last pair).
    private static func joiningHalves(_ ops: [Op]) -> [Op] {
        var joined: [Op] = []
        for op in ops {
            if case .backwardWeights(let k) = op, joined.last == .backwardInput(k) {
                joined[joined.count - 1] = .backward(k)
            } else {
                joined.append(op)
            }
        }
        return joined
    }

    /// How many activation slots stage s needs (micro-batch k uses slot k % slots): the most micro-batches
    /// between their forward and the end of their backward at any point of the stage's order. Those are
    /// always consecutive micro-batches, so k % slots never gives two of them one slot.
    public func slots(stage s: Int, stages p: Int, microBatches m: Int) -> Int {
        var live = 0, most = 0
        for op in ops(stage: s, stages: p, microBatches: m) {
            switch op {
            case .forward: live += 1; most = max(most, live)
            case .backward, .backwardWeights: live -= 1
            case .backwardInput: break
            }
        }
        return max(most, 1)
    }
}
