import UGenData
import UGenKernels
import UGenModel
import XCTest

@testable import UGenTraining

/// The three masking rules of Documentation/progressive-vocabulary.md, on the single-process trainer.
final class ProgressiveVocabTests: XCTestCase {
    // Vocabulary: 256 text + 6 specials (unk_img = 261) + 40 visual ids 262..<302.
    let vocabSize = 302, firstVisual = 262, unk: Int32 = 261

    func config() throws -> RunConfig {
        try RunConfig.parse(
            yaml: """
                model: {d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 16}
                data: {seq_len: 16, batch_rows: 4}
                train: {steps: 10, seed: 8}
                cluster: {micro_batches: 2}
                """)
    }

    /// A batch mixing text and visual ids in inputs and targets.
    func batch(seed: UInt64) -> Batch {
        var rng = SplitMix64(seed: seed)
        let n = 4 * 16
        let draw = { (r: inout SplitMix64) -> Int32 in
            r.nextInt(below: 2) == 0 ? Int32(r.nextInt(below: 256)) : Int32(262 + r.nextInt(below: 40))
        }
        let inputs = (0..<n).map { _ in draw(&rng) }, targets = (0..<n).map { _ in draw(&rng) }
        return Batch(
            rows: 4, seqLen: 16, inputs: inputs, targets: targets, mask: [Float](repeating: 1, count: n),
            tasks: [UInt8](repeating: 2, count: n))
    }

    func vocab(active: Int) -> StepVocab {
        let s = VocabSchedule(
            kind: .progressive, textOnlySteps: 0, start: active, every: 1, add: 1, seed: 3, codebook: 40,
            firstVisualId: firstVisual, unkImageId: Int(unk))
        var inactive = [UInt8](repeating: 0, count: vocabSize), map = [Int32](repeating: 0, count: vocabSize)
        s.masks(active: active, inactive: &inactive, tokenMap: &map)
        return StepVocab(activeVisual: active, inactive: inactive, tokenMap: map)
    }

    func testInactiveIdsGetNoGradientAndNeverEnterTheModel() throws {
        let c = try config()
        let t = try Trainer(config: c, model: c.modelConfig(vocabSize: vocabSize))
        let v = vocab(active: 10)
        let b = batch(seed: 1)
        // Gradients of the micro-batches, before the optimizer step changes anything: run forward/backward by hand.
        t.stage.zeroGrads()
        let a = t.stage.activations(0)
        let maskSum = effectiveMaskSum(targets: b.targets, mask: b.mask, inactive: v.inactive)
        XCTAssertLessThan(maskSum, Double(b.mask.count), "some targets are inactive and carry no loss")
        for mb in 0..<2 {
            let r0 = mb * 32
            b.inputs.withUnsafeBufferPointer { i in
                v.tokenMap!.withUnsafeBufferPointer { m in
                    t.stage.forward(a, tokens: i.baseAddress! + r0, tokenMap: m.baseAddress!)
                }
            }
            for r in 0..<32 { XCTAssertEqual(v.inactive![Int(a.tokens[r])], 0, "an inactive id reached the embedding") }
            XCTAssertTrue((0..<32).contains { a.tokens[$0] == unk }, "inactive inputs became <unk_img>")
            let logits = Tensor([32, vocabSize])
            b.targets.withUnsafeBufferPointer { tg in
                b.mask.withUnsafeBufferPointer { m in
                    v.inactive!.withUnsafeBufferPointer { ia in
                        _ = t.stage.loss(
                            a, targets: tg.baseAddress! + r0, mask: m.baseAddress! + r0, inactive: ia.baseAddress!,
                            gradScale: Float(1 / maskSum), logitsOut: logits.data)
                    }
                }
            }
            for r in 0..<32 {
                for id in 0..<vocabSize where v.inactive![id] != 0 { XCTAssertEqual(logits[r * vocabSize + id], -.infinity) }
            }
            t.stage.backward(a)
        }
        let head = t.stage.parameter(named: "lm_head.weight")!.grad, embed = t.stage.parameter(named: "model.embed_tokens.weight")!.grad
        var activeRowsTouched = 0
        for id in 0..<vocabSize {
            let headRow = (0..<32).map { head[id * 32 + $0] }, embRow = (0..<32).map { embed[id * 32 + $0] }
            if v.inactive![id] != 0 {
                XCTAssertEqual(headRow, [Float](repeating: 0, count: 32), "lm_head row of inactive id \(id)")
                XCTAssertEqual(embRow, [Float](repeating: 0, count: 32), "embedding row of inactive id \(id)")
            } else if headRow.contains(where: { $0 != 0 }) {
                activeRowsTouched += 1
            }
        }
        XCTAssertGreaterThan(activeRowsTouched, 200, "active ids do get gradient")
    }

    func testVanillaEqualsProgressiveWithEverythingActive() throws {
        let c = try config()
        let vanilla = try Trainer(config: c, model: c.modelConfig(vocabSize: vocabSize))
        let progressive = try Trainer(config: c, model: c.modelConfig(vocabSize: vocabSize))
        let all = vocab(active: 40)
        XCTAssertEqual(all.inactive!.reduce(0) { $0 + Int($1) }, 0)
        for s in 0..<4 {
            let b = batch(seed: UInt64(10 + s))
            XCTAssertEqual(vanilla.train(b, vocab: nil).loss, progressive.train(b, vocab: all).loss, "step \(s)")
        }
        // And a schedule that still hides ids gives a different run.
        let partial = try Trainer(config: c, model: c.modelConfig(vocabSize: vocabSize))
        XCTAssertNotEqual(
            partial.train(batch(seed: 10), vocab: vocab(active: 5)).loss,
            try Trainer(config: c, model: c.modelConfig(vocabSize: vocabSize)).train(batch(seed: 10), vocab: nil).loss)
    }
}
