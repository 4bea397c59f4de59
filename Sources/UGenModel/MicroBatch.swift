/// One micro-batch as a stage reads it: the step's arrays (row-major, `rows`·`seqLen` positions per
/// micro-batch) with the micro-batch's index into them, and the vocabulary's two optional tables. It is a
/// view: holding the arrays shares their storage, so making one per micro-batch copies and allocates
/// nothing. A stage reads only its part: the first stage the tokens and the input map, the last stage
/// the targets, mask, tasks and inactive flags; the arrays a stage does not read may be empty.
public struct MicroBatch {
    /// Token ids fed to the embedding (first stage).
    public var tokens: [Int32]
    /// Next-token targets, the loss mask and each position's task (`TaskLosses` numbers them) (last stage).
    public var targets: [Int32], mask: [Float], tasks: [UInt8]
    /// V ids: the id each input id enters the embedding as (inactive visual ids → `<unk_img>`); nil: itself.
    public var tokenMap: [Int32]?
    /// V flags, 1 = inactive: such ids leave the softmax, and a target among them carries no loss; nil: none.
    public var inactive: [UInt8]?
    /// Which micro-batch of the arrays: its positions are `index`·n ..< (`index` + 1)·n, n = rows·seqLen.
    public var index: Int

    public init(
        tokens: [Int32] = [], targets: [Int32] = [], mask: [Float] = [], tasks: [UInt8] = [], tokenMap: [Int32]? = nil,
        inactive: [UInt8]? = nil, index: Int = 0
    ) {
        self.tokens = tokens; self.targets = targets; self.mask = mask; self.tasks = tasks
        self.tokenMap = tokenMap; self.inactive = inactive; self.index = index
    }
}

/// Loss sums by task: index 0 text, 1 image→text, 2 text→image.
public struct TaskLosses: Sendable, Equatable {
    public var sum = [Double](repeating: 0, count: 3)
    public var weight = [Double](repeating: 0, count: 3)
    public init() {}

    /// Adds n positions' losses (`mask` weighs them; 0 leaves a position out) to their tasks' sums.
    public mutating func add(tokenLoss: UnsafePointer<Float>, mask: UnsafePointer<Float>, tasks: UnsafePointer<UInt8>, n: Int) {
        for i in 0..<n where mask[i] != 0 && tasks[i] < 3 {
            sum[Int(tasks[i])] += Double(mask[i]) * Double(tokenLoss[i])
            weight[Int(tasks[i])] += Double(mask[i])
        }
    }
    public mutating func add(_ o: TaskLosses) { for i in 0..<3 { sum[i] += o.sum[i]; weight[i] += o.weight[i] } }
    /// Mean loss of a task, nil when the step had no such target.
    public func mean(_ task: Int) -> Double? { weight[task] > 0 ? sum[task] / weight[task] : nil }
}

/// A last stage's losses over a step, as the stage records them when each micro-batch's loss is complete
/// (`Stage.crossEntropy(_:_:gradScale:rows:into:)`): Σ mask·loss of each micro-batch, and the losses by
/// task. The task sums run position by position through the step's micro-batches in order (one running
/// sum, not a sum of per-micro-batch sums), which is how they were always summed: the same bits.
public struct StepLosses {
    /// Σ mask·loss of each micro-batch, by index.
    public var sums: [Double]
    public var tasks = TaskLosses()

    public init(microBatches: Int) { sums = [Double](repeating: 0, count: microBatches) }

    /// Σ of `sums` in micro-batch order (the loss before it is divided by the global mask sum).
    public var total: Double { sums.reduce(0, +) }
}
