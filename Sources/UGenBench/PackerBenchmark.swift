import Foundation
import UGenData

/// The data cost of a training step: how long the packer takes to make a batch.
public enum PackerBenchmark {
    /// What `run` measured: the batches it timed and the wall-clock seconds they took.
    public struct BenchmarkReport: Sendable {
        public let batches: Int
        /// Target positions that count in the loss (mask 1) over the timed batches: the work really done.
        public let trainedTokens: Int
        public let seconds: Double
        public var msPerBatch: Double { seconds * 1000 / Double(batches) }
    }

    /// Times `batches` batches of `rows`×`seqLen` from `readers` (all tasks, weight 1), after a warm-up of
    /// 10: the data cost of a training step.
    public static func run(
        readers: [DatasetReader], rows: Int = 8, seqLen: Int = 256, batches: Int = 200,
        seed: UInt64 = 1
    ) throws -> BenchmarkReport {
        let packer = try Packer(readers: readers, rows: rows, seqLen: seqLen, seed: seed)
        for _ in 0..<10 { _ = try packer.nextBatch() }
        var packed: [Batch] = []
        packed.reserveCapacity(batches)
        let start = Date()
        for _ in 0..<batches { packed.append(try packer.nextBatch()) }
        let seconds = Date().timeIntervalSince(start)
        let trained = packed.reduce(0) { $0 + Int($1.mask.reduce(0, +)) }
        return BenchmarkReport(batches: batches, trainedTokens: trained, seconds: seconds)
    }
}
