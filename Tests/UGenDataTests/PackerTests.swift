import UGenBench
import XCTest

@testable import UGenData

final class PackerTests: XCTestCase {
    func testBatchesAreShiftedRowsOfWholeExamples() throws {
        let reader = try DatasetReader(path: try SmallDataset.shared().train)
        let layout = reader.layout
        let packer = try Packer(readers: [reader], rows: 4, seqLen: 64, seed: 3)
        let b = try packer.nextBatch()
        XCTAssertEqual(b.inputs.count, 4 * 64)
        XCTAssertEqual([b.targets.count, b.mask.count, b.tasks.count], [256, 256, 256])
        for r in 0..<4 {
            let row = r * 64
            XCTAssertEqual(b.inputs[row], layout.bos, "every row starts with an example")
            for t in 0..<63 { XCTAssertEqual(b.inputs[row + t + 1], b.targets[row + t], "targets are inputs shifted by one") }
            for t in 0..<64 {
                if b.tasks[row + t] == Batch.paddingTask {
                    XCTAssertEqual(b.targets[row + t], layout.pad)
                    XCTAssertEqual(b.mask[row + t], 0)
                }
                if b.targets[row + t] == layout.bos { XCTAssertEqual(b.mask[row + t], 0, "<bos> is never a target") }
                if b.mask[row + t] == 1, b.tasks[row + t] == ExampleTask.textToImage.rawValue {
                    XCTAssert(layout.isVisual(b.targets[row + t]) || b.targets[row + t] == layout.eoi)
                }
            }
        }
        XCTAssertEqual(Set(b.tasks.filter { $0 != Batch.paddingTask }), [0, 1, 2], "all three tasks mixed")
    }

    func testDeterministicAndResumableFromASavedState() throws {
        let reader = try DatasetReader(path: try SmallDataset.shared().train)
        let weights = TaskWeights(text: 1, imageToText: 2, textToImage: 2)
        let a = try Packer(readers: [reader], rows: 3, seqLen: 48, weights: weights, seed: 11)
        let b = try Packer(readers: [reader], rows: 3, seqLen: 48, weights: weights, seed: 11)
        var saved: PackerState?
        var continuation: [Batch] = []
        for step in 0..<40 {  // several passes over the 5 text examples
            if step == 17 { saved = try JSONDecoder().decode(PackerState.self, from: JSONEncoder().encode(a.state)) }
            let x = try a.nextBatch(textOnly: step < 5), y = try b.nextBatch(textOnly: step < 5)
            XCTAssertEqual(x, y, "same seed, same batches")
            if step >= 17 { continuation.append(x) }
        }
        let resumed = try Packer(readers: [reader], rows: 3, seqLen: 48, weights: weights, seed: 999)
        try resumed.restore(saved!)
        for x in continuation { XCTAssertEqual(try resumed.nextBatch(), x, "restored state continues identically") }
        XCTAssertGreaterThan(a.state.epochs[0], 1, "text examples were reshuffled for new passes")

        let other = try Packer(readers: [reader], rows: 3, seqLen: 48, weights: weights, seed: 12)
        XCTAssertNotEqual(try other.nextBatch(), try Packer(readers: [reader], rows: 3, seqLen: 48, weights: weights, seed: 11).nextBatch())
    }

    func testTextOnlyStepsDrawOnlyText() throws {
        let reader = try DatasetReader(path: try SmallDataset.shared().train)
        let packer = try Packer(readers: [reader], rows: 4, seqLen: 32, seed: 5)
        for _ in 0..<5 {
            let b = try packer.nextBatch(textOnly: true)
            XCTAssert(b.tasks.allSatisfy { $0 == ExampleTask.text.rawValue || $0 == Batch.paddingTask })
            XCTAssertFalse(b.inputs.contains { reader.layout.isVisual($0) })
        }
    }

    func testTooLongExamplesAreTruncatedToARow() throws {
        let reader = try DatasetReader(path: try SmallDataset.shared().train)
        let packer = try Packer(
            readers: [reader], rows: 2, seqLen: 8, weights: TaskWeights(text: 1, imageToText: 0, textToImage: 0), seed: 1)
        let b = try packer.nextBatch()
        XCTAssertFalse(b.tasks.contains(Batch.paddingTask), "a paragraph fills an 8-token row by itself")
        XCTAssertEqual(b.inputs[0], reader.layout.bos)
        XCTAssertEqual(b.inputs[8], reader.layout.bos)
    }

    /// The benchmark's figure is the time of the batches it says it packed: no more than the wall clock
    /// around the call, and of exactly the 20 batches a packer of the same seed makes after its 10 warm-up
    /// batches (the same trained targets, counted again here).
    func testBenchmarkReportsMillisecondsPerBatch() throws {
        let reader = try DatasetReader(path: try SmallDataset.shared().train)
        let outside = Date()
        let report = try PackerBenchmark.run(readers: [reader], rows: 8, seqLen: 256, batches: 20, seed: 5)
        let wall = Date().timeIntervalSince(outside)
        print(String(format: "packer: %.3f ms per 8×256 batch (this build)", report.msPerBatch))
        XCTAssertEqual(report.batches, 20)
        XCTAssertGreaterThan(report.seconds, 0)
        XCTAssertLessThanOrEqual(report.seconds, wall, "timed more than the call took")
        XCTAssertEqual(report.msPerBatch * Double(report.batches), report.seconds * 1000, accuracy: 1e-9)
        let again = try Packer(readers: [reader], rows: 8, seqLen: 256, seed: 5)
        for _ in 0..<10 { _ = try again.nextBatch() }
        var trained = 0
        for _ in 0..<20 { trained += Int(try again.nextBatch().mask.reduce(0, +)) }
        XCTAssertGreaterThan(trained, 0)
        XCTAssertEqual(report.trainedTokens, trained, "the timed batches are the 20 after the warm-up")
    }
}
