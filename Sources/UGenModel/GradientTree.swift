import UGenKernels

/// Sums a step's per-micro-batch gradient contributions in one canonical order: a binary tree over the
/// micro-batch indices, where each pair of siblings is added lower index + higher index. Every layout
/// sums this way, the single process and every worker alike, which is what makes them the same bits.
///
/// With a power-of-two count the tree is the perfect balanced tree, so an aligned block of 2ʲ
/// micro-batches (one replica's share) sums to one of its nodes: the replicas' partial sums, combined
/// pairwise at distance 1, 2, 4, … (recursive halving), give the single process's root. For other counts
/// the stored partial sums (one per set bit of the count, largest block first) are added from the
/// smallest up at the end.
///
/// It works as a binary counter: micro-batch k's contribution is written into `targets` (zero before),
/// then added to the stored partial sums of the trailing one bits of k (the completed left siblings), and
/// the result stored at the next level (or left in `targets` after the last micro-batch). The partial
/// sums are allocated at the first step of a given count (warm-up) and reused.
final class GradientTree {
    /// The buffers the kernels accumulate one micro-batch into (the parameters' gradients).
    private let targets: [Tensor]
    /// levels[l][i]: the stored sum of 2ˡ micro-batches for targets[i].
    private var levels: [[Tensor]] = []
    private var count = 1, next = 0

    init(_ targets: [Tensor]) { self.targets = targets }

    /// Starts a step of `count` micro-batches: zeroes the targets.
    func begin(count: Int) {
        self.count = max(count, 1); next = 0
        let needed = self.count > 1 ? Int.bitWidth - (self.count - 1).leadingZeroBitCount : 0
        while levels.count < needed { levels.append(targets.map { Tensor($0.shape) }) }
        for t in targets { t.zero() }
    }

    /// The next micro-batch's contribution is in the targets: fold it into the tree. Past the count
    /// (a caller that never said how many), contributions just accumulate.
    func leafDone() {
        let k = next
        next += 1
        guard count > 1, k < count else { return }
        var level = 0
        while (k >> level) & 1 == 1 { addLevel(level); level += 1 }
        if k == count - 1 {
            var l = level + 1
            while k >> l != 0 { if (k >> l) & 1 == 1 { addLevel(l) }; l += 1 }
        } else {
            for (t, s) in zip(targets, levels[level]) { s.copy(from: t); t.zero() }
        }
    }

    /// True right after the step's last micro-batch was folded: the targets hold the step's sum.
    var justCompleted: Bool { next == count }

    private func addLevel(_ l: Int) { for (t, s) in zip(targets, levels[l]) { t.add(s) } }
}
