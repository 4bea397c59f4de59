/// A (step, value) curve with bounded memory, for runs of any length.
///
/// When it reaches `capacity` points, the older half is thinned by averaging neighbouring pairs (labelled
/// with the pair's first step, so the curve keeps starting at the run's first step): the recent past stays
/// at full resolution and the distant past gets coarser (roughly logarithmic in age).
/// Memory stays at `capacity` points however long the run; each thinning touches half the points and happens
/// every `capacity / 4` appends, so appending stays cheap on average.
public struct Series: Encodable, Sendable, Equatable {
    public private(set) var steps: [Int] = []
    public private(set) var values: [Double] = []
    public let capacity: Int

    public init(capacity: Int = 2048) { self.capacity = max(8, capacity) }

    enum CodingKeys: String, CodingKey { case steps, values }

    public var count: Int { steps.count }
    public var last: (step: Int, value: Double)? { steps.last.map { ($0, values[values.count - 1]) } }

    /// Appends a point. A step at or before the last one means the run went back (it resumed from a
    /// checkpoint), so the points from that step on are dropped first and the curve is redrawn from there.
    public mutating func append(step: Int, value: Double) {
        if let lastStep = steps.last, step <= lastStep {
            let keep = steps.firstIndex { $0 >= step } ?? steps.count
            steps.removeSubrange(keep...); values.removeSubrange(keep...)
        }
        steps.append(step); values.append(value)
        if steps.count >= capacity { thinOlderHalf() }
    }

    /// Largest and smallest finite value (nil when there is none).
    public var range: (lo: Double, hi: Double)? {
        var lo = Double.infinity, hi = -Double.infinity
        for v in values where v.isFinite { lo = min(lo, v); hi = max(hi, v) }
        return lo <= hi ? (lo, hi) : nil
    }

    private mutating func thinOlderHalf() {
        let half = steps.count / 2 & ~1
        var s: [Int] = [], v: [Double] = []
        s.reserveCapacity(capacity); v.reserveCapacity(capacity)
        for i in stride(from: 0, to: half, by: 2) {
            s.append(steps[i]); v.append((values[i] + values[i + 1]) / 2)
        }
        s.append(contentsOf: steps[half...]); v.append(contentsOf: values[half...])
        steps = s; values = v
    }
}
