import Foundation
import UGenKernels
import UGenModel
import XCTest

/// The model cut into two stages at any residual-block boundary — between layers or between a layer's
/// attention and MLP halves — computes the same bits as the whole model, whether each micro-batch's
/// weight-gradient half runs right after its input half or after every micro-batch's input half.
final class HalfLayerCutTests: XCTestCase {
    let config = ModelConfig(vocabSize: 41, dModel: 16, nLayers: 3, nHeads: 4, nKVHeads: 2, ffnHidden: 24, maxSeqLen: 8)
    let rows = 2, seqLen = 8, microBatches = 3

    struct Batch { var tokens: [Int32], targets: [Int32], mask: [Float] }

    func batches() -> [Batch] {
        var rng = SplitMix64(seed: 4)
        let n = rows * seqLen
        return (0..<microBatches).map { _ in
            Batch(
                tokens: (0..<n).map { _ in Int32(rng.nextInt(below: config.vocabSize)) },
                targets: (0..<n).map { _ in Int32(rng.nextInt(below: config.vocabSize)) },
                mask: (0..<n).map { _ in rng.nextInt(below: 5) == 0 ? 0 : 1 })
        }
    }

    /// Losses and every gradient (by name) of the whole model; `rowByRow` as in `split`.
    func whole(rowByRow: Bool = false) throws -> (losses: [Double], grads: [String: [Float]]) {
        let stage = try Stage(config: config, spec: .whole(config), rows: rows, seqLen: seqLen)
        stage.initialize(seed: 3)
        stage.zeroGrads()
        var losses: [Double] = []
        for b in batches() {
            let a = stage.activations(0)
            for r in rowByRow ? Array(0..<rows) : [] {
                b.tokens.withUnsafeBufferPointer { stage.forward(a, tokens: $0.baseAddress!, rows: r..<(r + 1)) }
                b.targets.withUnsafeBufferPointer { t in
                    b.mask.withUnsafeBufferPointer { m in
                        stage.crossEntropy(a, targets: t.baseAddress!, mask: m.baseAddress!, gradScale: 0.01, rows: r..<(r + 1))
                    }
                }
            }
            if rowByRow {
                losses.append(stage.lossSum(a))
            } else {
                b.tokens.withUnsafeBufferPointer { stage.forward(a, tokens: $0.baseAddress!) }
                losses.append(
                    b.targets.withUnsafeBufferPointer { t in
                        b.mask.withUnsafeBufferPointer { m in
                            stage.loss(a, targets: t.baseAddress!, mask: m.baseAddress!, gradScale: 0.01)
                        }
                    })
            }
            stage.backward(a)
        }
        return (losses, Dictionary(uniqueKeysWithValues: stage.parameters.map { ($0.name, $0.grad.array) }))
    }

    /// The same on two stages cut at block `cut`; `deferWeights` runs every W half after every B half;
    /// `rowByRow` forwards (and takes the loss of) each micro-batch a row at a time, as a pipeline does
    /// its first one.
    func split(at cut: Int, deferWeights: Bool, rowByRow: Bool = false) throws -> (losses: [Double], grads: [String: [Float]]) {
        let n = 2 * config.nLayers
        let first = try Stage(
            config: config, spec: StageSpec(blocks: 0..<cut, hasEmbedding: true, hasHead: false), rows: rows, seqLen: seqLen)
        let last = try Stage(
            config: config, spec: StageSpec(blocks: cut..<n, hasEmbedding: false, hasHead: true), rows: rows, seqLen: seqLen)
        for s in [first, last] { s.initialize(seed: 3); s.zeroGrads() }
        var losses: [Double] = []
        let bs = batches()
        for (k, b) in bs.enumerated() {
            let a0 = first.activations(k), a1 = last.activations(k)
            if rowByRow {
                let width = seqLen * config.dModel
                for r in 0..<rows {
                    b.tokens.withUnsafeBufferPointer { first.forward(a0, tokens: $0.baseAddress!, rows: r..<(r + 1)) }
                    (a1.input.data + r * width).update(from: a0.output.data + r * width, count: width)
                    last.forward(a1, rows: r..<(r + 1))
                    b.targets.withUnsafeBufferPointer { t in
                        b.mask.withUnsafeBufferPointer { m in
                            last.crossEntropy(a1, targets: t.baseAddress!, mask: m.baseAddress!, gradScale: 0.01, rows: r..<(r + 1))
                        }
                    }
                }
                losses.append(last.lossSum(a1))
                continue
            }
            b.tokens.withUnsafeBufferPointer { first.forward(a0, tokens: $0.baseAddress!) }
            a1.input.copy(from: a0.output)
            last.forward(a1)
            losses.append(
                b.targets.withUnsafeBufferPointer { t in
                    b.mask.withUnsafeBufferPointer { m in
                        last.loss(a1, targets: t.baseAddress!, mask: m.baseAddress!, gradScale: 0.01)
                    }
                })
        }
        for k in 0..<bs.count {
            let g = last.backwardInput(last.activations(k))!
            XCTAssertNil(first.backwardInput(first.activations(k), gradOutput: g))
            if !deferWeights { last.backwardWeights(last.activations(k)); first.backwardWeights(first.activations(k)) }
        }
        if deferWeights {
            for k in 0..<bs.count { last.backwardWeights(last.activations(k)); first.backwardWeights(first.activations(k)) }
        }
        let params = first.parameters + last.parameters
        XCTAssertEqual(params.map(\.name), config.parameterShapes.map(\.name), "the two stages hold every parameter once, in order")
        XCTAssertEqual(first.parameters.map(\.name), config.parameterShapes(for: first.spec).map(\.name))
        return (losses, Dictionary(uniqueKeysWithValues: params.map { ($0.name, $0.grad.array) }))
    }

    func testEveryCutMatchesTheWholeModelToTheBit() throws {
        let reference = try whole(), referenceByRow = try whole(rowByRow: true)
        XCTAssertGreaterThan(reference.grads["model.layers.1.mlp.down_proj.weight"]!.map { abs($0) }.max()!, 0)
        for cut in 1..<(2 * config.nLayers) {
            for (deferWeights, rowByRow) in [(false, false), (true, false), (true, true)] {
                let r = try split(at: cut, deferWeights: deferWeights, rowByRow: rowByRow)
                let reference = rowByRow ? referenceByRow : reference
                XCTAssertEqual(r.losses, reference.losses, "cut at block \(cut)")
                for (name, g) in reference.grads {
                    XCTAssertEqual(
                        r.grads[name], g, "\(name), cut at block \(cut), weights deferred: \(deferWeights), row by row: \(rowByRow)")
                }
            }
        }
    }

    func testSpecsDescribeTheirBlocks() throws {
        let s = ModelConfig(vocabSize: 4096, dModel: 256, nLayers: 4, nHeads: 4, ffnHidden: 688, maxSeqLen: 256)
        for p in 1...4 {  // every partition covers the chain once, in order
            let specs = try StageSpec.partition(s, stages: p, seqLen: 256)
            XCTAssertEqual(specs.first?.firstBlock, 0); XCTAssertEqual(specs.last?.endBlock, 8)
            for (a, b) in zip(specs, specs.dropFirst()) { XCTAssertEqual(a.endBlock, b.firstBlock) }
            XCTAssertTrue(specs.allSatisfy { !$0.blocks.isEmpty })
        }
        XCTAssertEqual(StageSpec.whole(s).description, "embedding + layers 0–3 + head")
        XCTAssertEqual(StageSpec(blocks: 3..<4, hasEmbedding: false, hasHead: false).description, "layer 1 MLP")
        XCTAssertEqual(StageSpec(blocks: 2..<3, hasEmbedding: false, hasHead: true).description, "layer 1 attention + head")
    }
}
