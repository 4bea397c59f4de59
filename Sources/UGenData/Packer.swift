import Foundation
import UGenKernels

/// How often each task is drawn when a row is filled (relative weights; tasks without examples are
/// never drawn).
public struct TaskWeights: Codable, Equatable, Sendable {
    public var text: Double
    public var imageToText: Double
    public var textToImage: Double

    public init(text: Double = 1, imageToText: Double = 1, textToImage: Double = 1) {
        self.text = text; self.imageToText = imageToText; self.textToImage = textToImage
    }

    public subscript(task: ExampleTask) -> Double {
        switch task {
        case .text: text
        case .imageToText: imageToText
        case .textToImage: textToImage
        }
    }
}

/// Where the data stream stands: all a checkpoint needs to continue it exactly. Per task (indexed by
/// `ExampleTask.rawValue`) the pass over that task's examples and how many of them it has used; the
/// order within a pass and the task draws of a batch are functions of (seed, pass) and (seed, batch).
public struct PackerState: Codable, Equatable, Sendable {
    public var seed: UInt64
    /// Batches produced so far.
    public var batches: Int
    public var epochs: [Int]
    public var cursors: [Int]

    public init(seed: UInt64) {
        self.seed = seed; batches = 0; epochs = [0, 0, 0]; cursors = [0, 0, 0]
    }
}

/// A batch of training rows, row-major [rows, seqLen]: position t of a row is trained to predict
/// `targets[t]` from `inputs[0...t]` with weight `mask[t]`; `tasks[t]` is the task of the example the
/// target belongs to (`Batch.paddingTask` for padding), for per-task losses.
public struct Batch: Equatable, Sendable {
    public static let paddingTask: UInt8 = 255
    public var rows: Int
    public var seqLen: Int
    public var inputs: [Int32]
    public var targets: [Int32]
    public var mask: [Float]
    public var tasks: [UInt8]

    public init(rows: Int, seqLen: Int, inputs: [Int32], targets: [Int32], mask: [Float], tasks: [UInt8]) {
        self.rows = rows; self.seqLen = seqLen; self.inputs = inputs; self.targets = targets; self.mask = mask; self.tasks = tasks
    }
}

/// Builds training rows from whole examples. A row holds seqLen+1 tokens (inputs are tokens 0..<seqLen,
/// targets 1...seqLen): examples are drawn by task weight and concatenated while they fit; the rest of
/// the row is `<pad>` with no loss. An example is never split across rows: one that does not fit waits
/// for the next row, and one longer than a whole row is truncated to it. Attention is not blocked between
/// examples of a row (as in GPT-2/nanoGPT); `<bos>` marks where a new one starts.
///
/// Each task's examples are visited in a seeded random order, reshuffled every pass. Everything is a
/// function of the state, so `restore(state)` continues the stream identically.
public final class Packer {
    public let readers: [DatasetReader]
    public let layout: VocabLayout
    public let rows: Int
    public let seqLen: Int
    public let weights: TaskWeights
    public private(set) var state: PackerState

    private struct Ref { var reader: Int32; var index: Int32 }
    /// Every example of each task, in file order.
    private let pools: [[Ref]]
    /// The visiting order of the current pass, per task, and which pass it was built for.
    private var orders: [[Int32]] = [[], [], []]
    private var orderEpochs = [-1, -1, -1]
    private var rowTokens: [Int32], rowMask: [UInt8], rowTasks: [UInt8]

    public init(readers: [DatasetReader], rows: Int, seqLen: Int, weights: TaskWeights = TaskWeights(), seed: UInt64) throws {
        guard let first = readers.first else { throw DataError.noDatasets }
        for r in readers.dropFirst() where r.layout != first.layout {
            throw DataError.layoutsDiffer(path: r.path, first: first.path, found: r.layout, expected: first.layout)
        }
        guard rows > 0, seqLen > 0 else { throw DataError.rowsOrSeqLenNotPositive }
        var pools: [[Ref]] = [[], [], []]
        for (ri, reader) in readers.enumerated() {
            for i in 0..<reader.count { pools[Int(reader.task(of: i).rawValue)].append(Ref(reader: Int32(ri), index: Int32(i))) }
        }
        guard ExampleTask.allCases.contains(where: { !pools[Int($0.rawValue)].isEmpty && weights[$0] > 0 }) else {
            throw DataError.noWeightedExamples(paths: readers.map(\.path))
        }
        self.readers = readers; self.layout = first.layout; self.rows = rows; self.seqLen = seqLen
        self.weights = weights; self.pools = pools; state = PackerState(seed: seed)
        rowTokens = [Int32](repeating: 0, count: seqLen + 1)
        rowMask = [UInt8](repeating: 0, count: seqLen + 1)
        rowTasks = [UInt8](repeating: 0, count: seqLen + 1)
    }

    /// Continues from a saved state (e.g. from a checkpoint).
    public func restore(_ saved: PackerState) throws {
        guard saved.epochs.count == 3, saved.cursors.count == 3, saved.batches >= 0,
            (0..<3).allSatisfy({ saved.epochs[$0] >= 0 && (0...pools[$0].count).contains(saved.cursors[$0]) })
        else { throw DataError.stateDoesNotFit("\(saved)") }
        state = saved
    }

    /// The next batch. `textOnly`: draw text examples only (the text-only phase of progressive
    /// vocabulary learning).
    public func nextBatch(textOnly: Bool = false) throws -> Batch {
        let active = ExampleTask.allCases.map { t -> Double in
            pools[Int(t.rawValue)].isEmpty || (textOnly && t != .text) ? 0 : weights[t]
        }
        let totalWeight = active.reduce(0, +)
        guard totalWeight > 0 else {
            throw textOnly ? DataError.noTextExamples : DataError.noExamples
        }
        var rng = SplitMix64(seed: state.seed ^ (UInt64(state.batches) &* 0xA24B_AED4_963E_E407))
        let n = rows * seqLen
        var batch = Batch(
            rows: rows, seqLen: seqLen, inputs: [Int32](repeating: 0, count: n),
            targets: [Int32](repeating: 0, count: n), mask: [Float](repeating: 0, count: n),
            tasks: [UInt8](repeating: 0, count: n))
        for r in 0..<rows {
            try fillRow(rng: &rng, weights: active, total: totalWeight)
            for t in 0..<seqLen {
                batch.inputs[r * seqLen + t] = rowTokens[t]
                batch.targets[r * seqLen + t] = rowTokens[t + 1]
                batch.mask[r * seqLen + t] = Float(rowMask[t + 1])
                batch.tasks[r * seqLen + t] = rowTasks[t + 1]
            }
        }
        state.batches += 1
        return batch
    }

    private func fillRow(rng: inout SplitMix64, weights: [Double], total: Double) throws {
        let width = seqLen + 1
        var filled = 0
        while filled < width {
            var u = rng.nextDouble() * total, task = weights.lastIndex(where: { $0 > 0 })!
            for t in 0..<3 where weights[t] > 0 {
                if u < weights[t] { task = t; break }
                u -= weights[t]
            }
            let ref = peek(task)
            let reader = readers[Int(ref.reader)], length = reader.length(of: Int(ref.index))
            if length > width - filled && filled > 0 { break }
            let count = min(length, width - filled)
            try rowTokens.withUnsafeMutableBufferPointer { t in
                try rowMask.withUnsafeMutableBufferPointer { m in
                    try reader.read(Int(ref.index), count: count, tokens: t.baseAddress! + filled, mask: m.baseAddress! + filled)
                }
            }
            for i in filled..<filled + count { rowTasks[i] = UInt8(task) }
            filled += count
            advance(task)
        }
        for i in filled..<width {
            rowTokens[i] = layout.pad
            rowMask[i] = 0
            rowTasks[i] = Batch.paddingTask
        }
    }

    /// The next example of `task` in the current pass.
    private func peek(_ task: Int) -> Ref {
        if orderEpochs[task] != state.epochs[task] {
            var order = (0..<Int32(pools[task].count)).map { $0 }
            var rng = SplitMix64(
                seed: state.seed ^ (UInt64(task + 1) &* 0x9E37_79B9_7F4A_7C15)
                    ^ (UInt64(state.epochs[task]) &* 0xD1B5_4A32_D192_ED03))
            order.shuffle(using: &rng)
            orders[task] = order
            orderEpochs[task] = state.epochs[task]
        }
        return pools[task][Int(orders[task][state.cursors[task]])]
    }

    private func advance(_ task: Int) {
        state.cursors[task] += 1
        if state.cursors[task] == pools[task].count {
            state.cursors[task] = 0
            state.epochs[task] += 1
        }
    }
}
