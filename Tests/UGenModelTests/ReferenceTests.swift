import XCTest
import UGenKernels
import UGenModel
import UGenStore
@testable import UGenTraining

/// The whole model and the optimizer against PyTorch autograd (float64) in ../shared/fixtures.
final class ReferenceTests: XCTestCase {
    func testGradCheckMatchesPyTorchFixture() throws {
        let rows = try GradCheck.run(path: fixturePath)
        XCTAssertEqual(rows.filter { $0.quantity == "loss" }.count, 2, "both the plain and the masked case ran")
        XCTAssertEqual(rows.count, 2 * (2 + 21), "loss, logits and 21 gradients per case")
        for r in rows { XCTAssertTrue(r.passed, "\(r.caseName) \(r.quantity): relative error \(r.relativeError) > \(r.tolerance)") }
    }

    func testGradCheckDetectsAWrongModel() throws {
        // Perturb one weight in a copy of the fixture: the check must fail on it.
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("perturbed-\(getpid()).h5").path
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: fixturePath, toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let f = try H5File.open(copy, writable: true)
        var w: [Float] = try f.read("/params/model.layers.1.mlp.up_proj.weight")
        w[0] += 0.5
        let shape = try f.shape(of: "/params/model.layers.1.mlp.up_proj.weight")
        // Overwrite in place through a fresh dataset in another group, then point the check at it.
        try f.write("/params_bad/model.layers.1.mlp.up_proj.weight", w, shape: shape)
        let c = try GradCheck.readConfig(f)
        let stage = try Stage(config: c, spec: .whole(c), rows: 3, seqLen: 32)
        try GradCheck.loadParameters(f, into: stage)
        XCTAssertThrowsError(try GradCheck.loadParameters(f, into: stage, group: "/nonexistent"))
        let good = stage.parameter(named: "model.layers.1.mlp.up_proj.weight")!.value[0]
        XCTAssertEqual(good + 0.5, w[0])
    }

    func testAdamWMatchesPyTorchTwoSteps() throws {
        let f = try H5File.open(fixturePath)
        let c = try GradCheck.readConfig(f)
        let stage = try Stage(config: c, spec: .whole(c), rows: 1, seqLen: 8)
        try GradCheck.loadParameters(f, into: stage, group: "/params64")
        let state = AdamWState(parameters: stage.parameters)
        let norms: [Double] = try f.read("/expected/adamw/grad_norm_before_clip")
        for (i, caseName) in ["plain", "masked"].enumerated() {
            for p in stage.parameters { try f.read("/expected/\(caseName)/grads/\(p.name)", into: p.grad.data, count: p.grad.count) }
            let norm = globalNorm(stage.gradSquares())
            XCTAssertEqual(norm, norms[i], accuracy: 1e-5 * norms[i])
            state.update(stage.parameters, lr: 1e-3, hyper: AdamWHyper(beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1),
                         clipScale: AdamW.clipScale(globalNorm: norm, maxNorm: 1.0))
        }
        var worst = 0.0
        for p in stage.parameters {
            let ref: [Double] = try f.read("/expected/adamw/params_after_2_steps/\(p.name)")
            for j in 0..<ref.count { worst = max(worst, abs(Double(p.value[j]) - ref[j])) }
        }
        XCTAssertLessThan(worst, 1e-6, "max absolute difference from PyTorch after two AdamW steps")
    }
}

/// A model cut into stages computes exactly what the whole chain computes.
final class StageCutTests: XCTestCase {
    func testCutsReproduceTheWholeChainBitForBit() throws {
        let c = ModelConfig(vocabSize: 50, dModel: 16, nLayers: 4, nHeads: 4, nKVHeads: 2, ffnHidden: 24, maxSeqLen: 16)
        let (rows, T) = (2, 8), n = 16
        var rng = SplitMix64(seed: 3)
        let tokens = (0..<n).map { _ in Int32(rng.nextInt(below: 50)) }
        let targets = (0..<n).map { _ in Int32(rng.nextInt(below: 50)) }
        let mask = (0..<n).map { _ in Float(rng.nextInt(below: 4) == 0 ? 0 : 1) }
        let scale = 1 / mask.reduce(0, +)

        func run(_ specs: [StageSpec]) throws -> (Double, [String: [Float]]) {
            let stages = try specs.map { try Stage(config: c, spec: $0, rows: rows, seqLen: T) }
            stages.forEach { $0.initialize(seed: 11) }
            let acts = stages.map { $0.activations(0) }
            for (i, s) in stages.enumerated() {
                if i == 0 { tokens.withUnsafeBufferPointer { s.forward(acts[0], tokens: $0.baseAddress!) } }
                else { acts[i].input.copy(from: acts[i - 1].output); s.forward(acts[i]) }
            }
            let loss = targets.withUnsafeBufferPointer { t in mask.withUnsafeBufferPointer { m in
                stages.last!.loss(acts.last!, targets: t.baseAddress!, mask: m.baseAddress!, gradScale: scale)
            } }
            var g: Tensor? = nil
            for i in stride(from: stages.count - 1, through: 0, by: -1) {
                g = stages[i].backward(acts[i], gradOutput: i == stages.count - 1 ? nil : g.map { t in let c = Tensor(t.shape); c.copy(from: t); return c })
            }
            var grads: [String: [Float]] = [:]
            for s in stages { for p in s.parameters { grads[p.name] = p.grad.array } }
            return (loss, grads)
        }
        let (wholeLoss, wholeGrads) = try run([.whole(c)])
        for k in 2...4 {
            let (loss, grads) = try run(try StageSpec.partition(c, stages: k, seqLen: T))
            XCTAssertEqual(loss, wholeLoss, "\(k) stages: loss")
            XCTAssertEqual(grads.count, wholeGrads.count)
            for (name, g) in wholeGrads { XCTAssertEqual(grads[name], g, "\(k) stages: \(name)") }
        }
    }

    func testPartitionBalancesAndRejectsTooManyStages() throws {
        let c = ModelConfig(vocabSize: 4096, dModel: 256, nLayers: 4, nHeads: 4, ffnHidden: 688, maxSeqLen: 256)
        // The head (V·d = 1.05M multiply-adds per token, plus the softmax) costs about 1.3 layers
        // (0.92M each with attention: 0.39M its attention half, 0.53M its MLP half). Whole layers could only
        // cut 2 | 2 + head (stage 2 heavier by 44%) or 3 | 1 + head (stage 1 by 30%); half layers give
        // 2½ | 1½ + head (stage 2 heavier by 19%).
        let two = try StageSpec.partition(c, stages: 2, seqLen: 256)
        XCTAssertEqual(two.map(\.blocks), [0..<5, 5..<8])
        XCTAssertEqual(two.map(\.description), ["embedding + layers 0–1 + layer 2 attention", "layer 2 MLP + layer 3 + head"])
        XCTAssertEqual(two[1].layers, 2..<4)
        let four = try StageSpec.partition(c, stages: 4, seqLen: 256)
        XCTAssertEqual(four.map(\.blocks), [0..<2, 2..<4, 4..<7, 7..<8])
        XCTAssertTrue(two[0].hasEmbedding && !two[0].hasHead && two[1].hasHead)
        XCTAssertThrowsError(try StageSpec.partition(c, stages: 5, seqLen: 256)) { e in
            XCTAssertTrue("\(e)".contains("cluster.stages (5) exceeds model.n_layers (4)"), "\(e)")
        }
    }
}
