import UGenKernels
import UGenModel
import UGenStore
import XCTest

@testable import UGenTraining

/// The whole model and the optimizer against PyTorch autograd (float64) in the committed fixtures
/// `Tests/fixtures/tiny-llama-{a,b}.h5` (made by `Tests/python/make_fixture.py`, checked there against
/// HuggingFace's LlamaForCausalLM). Every check runs on both shapes: a bug that one shape hides (a grouping
/// ratio, a head_dim, a width that is no multiple of 8, a RoPE theta or RMSNorm eps) shows in the other.
final class ReferenceTests: XCTestCase {
    func testGradCheckMatchesPyTorchFixtureA() throws { try checkGradients(referenceFixtures[0]) }
    func testGradCheckMatchesPyTorchFixtureB() throws { try checkGradients(referenceFixtures[1]) }
    /// bf16 products (train.precision bf16) against the same float64 reference, at GradCheck's bf16 tolerances.
    func testGradCheckBF16MatchesPyTorchFixtureA() throws { try checkGradients(referenceFixtures[0], precision: .bf16) }
    func testGradCheckBF16MatchesPyTorchFixtureB() throws { try checkGradients(referenceFixtures[1], precision: .bf16) }
    func testGradCheckDetectsAWrongModelA() throws { try checkDetection(referenceFixtures[0], other: referenceFixtures[1]) }
    func testGradCheckDetectsAWrongModelB() throws { try checkDetection(referenceFixtures[1], other: referenceFixtures[0]) }
    func testAdamWMatchesPyTorchTwoStepsA() throws { try checkAdamW(referenceFixtures[0]) }
    func testAdamWMatchesPyTorchTwoStepsB() throws { try checkAdamW(referenceFixtures[1]) }

    /// The two shapes must keep differing in everything the model branches on (whoever remakes them), and
    /// stay small enough to live in the repository.
    func testFixturesDifferInEverythingTheModelBranchesOn() throws {
        let (a, b) = (try config(referenceFixtures[0]), try config(referenceFixtures[1]))
        XCTAssertNotEqual(a.vocabSize, b.vocabSize)
        XCTAssertNotEqual(a.dModel, b.dModel)
        XCTAssertNotEqual(a.nLayers, b.nLayers)
        XCTAssertNotEqual(a.nHeads, b.nHeads)
        XCTAssertNotEqual(a.nKVHeads, b.nKVHeads)
        XCTAssertNotEqual(a.headDim, b.headDim)
        XCTAssertNotEqual(a.ffnHidden, b.ffnHidden)
        XCTAssertNotEqual(a.ropeTheta, b.ropeTheta)
        XCTAssertNotEqual(a.rmsEps, b.rmsEps)
        let groups = [a, b].map { $0.nHeads / $0.nKVHeads }
        XCTAssertNotEqual(groups[0], groups[1])
        XCTAssertFalse(groups.contains(1) || groups.contains(2), "grouping ratios \(groups): 2 (or none) hides index bugs")
        XCTAssertTrue(
            [a, b].contains { $0.nKVHeads > 1 && $0.nHeads / $0.nKVHeads > 2 },
            "one shape maps several query heads onto each of several KV heads (h / group, not h % n_kv_heads)")
        let batches = try referenceFixtures.map { try H5File.open($0).shape(of: "/batch/inputs") }
        XCTAssertNotEqual(batches[0][0], batches[1][0], "batch size")
        XCTAssertNotEqual(batches[0][1], batches[1][1], "sequence length")
        for path in referenceFixtures {
            let bytes = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
            XCTAssertLessThan(bytes, 400 * 1024, "\(path) should stay small: it lives in the repository")
        }
    }

    private func config(_ path: String) throws -> ModelConfig { try GradCheck.readConfig(try H5File.open(path)) }

    private func checkGradients(_ path: String, precision: Precision = .fp32) throws {
        let c = try config(path)
        let rows = try GradCheck.run(path: path, precision: precision)
        let perCase = 2 + c.parameterShapes.count
        XCTAssertEqual(rows.filter { $0.quantity == "loss" }.count, 2, "both the plain and the masked case ran")
        XCTAssertEqual(rows.count, 2 * perCase, "loss, logits and \(perCase - 2) gradients per case")
        for r in rows {
            XCTAssertTrue(r.passed, "\(path) \(precision): \(r.caseName) \(r.quantity): relative error \(r.relativeError) > \(r.tolerance)")
        }
    }

    /// A copy of the fixture with one thing wrong must fail the check: one weight moved, or the RoPE theta
    /// or RMSNorm eps read as the other shape's (what a model that ignored the attribute would use). An
    /// unchanged copy written the same way passes, so it is the change that fails it.
    private func checkDetection(_ path: String, other: String) throws {
        let (c, o) = (try config(path), try config(other))
        let last = c.nLayers - 1
        let weight = "/params/model.layers.\(last).mlp.up_proj.weight"
        let cases: [(what: String, attribute: (name: String, value: Double)?)] = [
            ("unchanged", ("rope_theta", c.ropeTheta)),
            ("\(weight)[0] + 0.5", nil),
            ("rope_theta \(o.ropeTheta)", ("rope_theta", o.ropeTheta)),
            ("rms_eps \(o.rmsEps)", ("rms_eps", o.rmsEps)),
        ]
        for (what, attribute) in cases {
            let copy = FileManager.default.temporaryDirectory.appendingPathComponent("wrong-model-\(getpid()).h5").path
            try? FileManager.default.removeItem(atPath: copy)
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            defer { try? FileManager.default.removeItem(atPath: copy) }
            if let attribute {
                try H5File.open(copy, writable: true).setAttribute(attribute.name, attribute.value, at: "/config")
            } else {
                // The weight's float32 bytes are changed in place (after HDF5 has closed the file).
                let (offset, value): (Int, Float) = try {
                    let f = try H5File.open(copy)
                    let w: [Float] = try f.read(weight)
                    return (try f.dataOffset(of: weight), w[0] + 0.5)
                }()
                let h = try FileHandle(forWritingTo: URL(fileURLWithPath: copy))
                try h.seek(toOffset: UInt64(offset))
                try h.write(contentsOf: withUnsafeBytes(of: value) { Data($0) })
                try h.close()
                let back: [Float] = try H5File.open(copy).read(weight)
                XCTAssertEqual(back[0], value, "the changed weight reads back")
            }
            let failed = try GradCheck.run(path: copy).filter { !$0.passed }.map { "\($0.caseName) \($0.quantity)" }
            if what == "unchanged" {
                XCTAssertEqual(failed, [], "\(path): an unchanged copy must pass")
            } else {
                XCTAssertFalse(failed.isEmpty, "\(path) with \(what): the check must fail")
            }
        }
    }

    /// Two AdamW steps with clipping from the fixture's float32 weights (PyTorch started from the same
    /// values), step 1 on the plain gradients and step 2 on the masked ones, as stored.
    private func checkAdamW(_ path: String) throws {
        let f = try H5File.open(path)
        let c = try GradCheck.readConfig(f)
        let stage = try Stage(config: c, spec: .whole(c), rows: 1, seqLen: 8)
        try GradCheck.loadParameters(f, into: stage)
        let state = AdamWState(parameters: stage.parameters)
        let norms: [Double] = try f.read("/expected/adamw/grad_norm_before_clip")
        XCTAssertTrue(norms.allSatisfy { $0 > 1 }, "the gradients' norms \(norms) exceed 1.0, so clipping is exercised")
        for (i, caseName) in ["plain", "masked"].enumerated() {
            for p in stage.parameters { try f.read("/expected/\(caseName)/grads/\(p.name)", into: p.grad.data, count: p.grad.count) }
            let norm = globalNorm(stage.gradSquares())
            XCTAssertEqual(norm, norms[i], accuracy: 1e-5 * norms[i])
            state.update(
                stage.parameters, lr: 1e-3, hyper: AdamWHyper(beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1),
                clipScale: AdamW.clipScale(globalNorm: norm, maxNorm: 1.0))
        }
        var worst = 0.0
        for p in stage.parameters {
            let ref: [Double] = try f.read("/expected/adamw/params_after_2_steps/\(p.name)")
            XCTAssertEqual(ref.count, p.value.count, p.name)
            for j in 0..<ref.count { worst = max(worst, abs(Double(p.value[j]) - ref[j])) }
        }
        XCTAssertLessThan(worst, 1e-6, "\(path): max absolute difference from PyTorch after two AdamW steps")
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
            for s in stages { s.initialize(seed: 11) }
            let acts = stages.map { $0.activations(0) }
            for (i, s) in stages.enumerated() {
                if i == 0 {
                    tokens.withUnsafeBufferPointer { s.forward(acts[0], tokens: $0.baseAddress!) }
                } else {
                    acts[i].input.copy(from: acts[i - 1].output); s.forward(acts[i])
                }
            }
            let loss = targets.withUnsafeBufferPointer { t in
                mask.withUnsafeBufferPointer { m in
                    stages.last!.loss(acts.last!, targets: t.baseAddress!, mask: m.baseAddress!, gradScale: scale)
                }
            }
            var g: Tensor? = nil
            for i in stride(from: stages.count - 1, through: 0, by: -1) {
                g = stages[i].backward(
                    acts[i],
                    gradOutput: i == stages.count - 1
                        ? nil
                        : g.map { t in
                            let c = Tensor(t.shape); c.copy(from: t); return c
                        })
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
