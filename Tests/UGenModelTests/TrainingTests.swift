import UGenKernels
import UGenModel
import XCTest

@testable import UGenTraining

/// Single-process training on real English text (Debian's fortunes, byte-level tokens).
final class TrainingTests: XCTestCase {
    func tinyConfig(steps: Int) throws -> RunConfig {
        try RunConfig.parse(
            yaml: """
                model: {d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 172, max_seq_len: 64}
                data: {seq_len: 64, batch_rows: 8}
                train: {steps: \(steps), lr: 0.003, min_lr: 0.0003, warmup_steps: 20, seed: 5}
                cluster: {micro_batches: 2}
                """)
    }

    func losses(_ config: RunConfig, text: [UInt8], steps: Int) throws -> [Double] {
        let trainer = try Trainer(config: config, model: config.modelConfig(vocabSize: 256))
        let source = ByteWindowSource(bytes: text, rows: config.batchRows, seqLen: config.seqLen, seed: 99)
        return try (0..<steps).map { trainer.train(try source.batch(step: $0, textOnly: true)).loss }
    }

    func testLossFallsOnRealEnglishText() throws {
        let text = try fortunesText()
        XCTAssertGreaterThan(text.count, 1_000_000, "fortunes corpus")
        let l = try losses(try tinyConfig(steps: 300), text: text, steps: 300)
        let first = l[0], lastTen = l.suffix(10).reduce(0, +) / 10
        XCTAssertEqual(first, log(256), accuracy: 0.3, "an untrained model is near uniform over 256 bytes")
        XCTAssertLessThan(lastTen, 0.6 * first, "loss after 300 steps: \(lastTen), first: \(first)")
    }

    func testSameSeedSameLossesToTheBit() throws {
        let text = try fortunesText()
        let a = try losses(try tinyConfig(steps: 12), text: text, steps: 12)
        let b = try losses(try tinyConfig(steps: 12), text: text, steps: 12)
        XCTAssertEqual(a, b)
        var other = try tinyConfig(steps: 12); other.seed = 6
        XCTAssertNotEqual(try losses(other, text: text, steps: 12), a, "a different seed changes the run")
    }

    func testLRScheduleWarmsUpThenDecaysToTheFloor() {
        let s = LRSchedule(peak: 1.0, floor: 0.1, warmup: 10, total: 110)
        XCTAssertEqual(s.lr(at: 0), 0.1, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 9), 1.0, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 10), 1.0, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 60), 0.55, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 110), 0.1, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 500), 0.1, accuracy: 1e-12)
    }
}

final class RunConfigTests: XCTestCase {
    func testUnknownKeyIsNamed() {
        XCTAssertThrowsError(try RunConfig.parse(yaml: "model: {d_model: 64, widht: 3}", source: "x.yaml")) { e in
            XCTAssertEqual("\(e)", "x.yaml: unknown config key 'model.widht'")
        }
        XCTAssertThrowsError(try RunConfig.parse(yaml: "", overrides: ["train.stepz=3"])) { e in
            XCTAssertEqual("\(e)", "--set: unknown config key 'train.stepz'")
        }
    }

    func testOverridesAndRoundTrip() throws {
        let c = try RunConfig.parse(
            yaml: "train: {steps: 7}\ncluster: {stages: 2}", overrides: ["train.lr=0.01", "cluster.schedule=gpipe"])
        XCTAssertEqual(c.steps, 7); XCTAssertEqual(c.lr, 0.01); XCTAssertEqual(c.stages, 2); XCTAssertEqual(c.schedule, "gpipe")
        XCTAssertEqual(try RunConfig.parse(yaml: c.yaml), c, "the resolved YAML reads back equal")
    }

    func testImpossibleLayoutsAreRefused() {
        XCTAssertThrowsError(try RunConfig.parse(yaml: "model: {n_layers: 2}\ncluster: {stages: 3}")) { e in
            XCTAssertTrue("\(e)".contains("cluster.stages (3)"), "\(e)")
        }
        XCTAssertThrowsError(try RunConfig.parse(yaml: "cluster: {schedule: zigzag}"))
        XCTAssertThrowsError(try RunConfig.parse(yaml: "data: {batch_rows: 6}\ncluster: {micro_batches: 4}"))
    }
}

final class VocabScheduleTests: XCTestCase {
    func schedule(_ kind: VocabSchedule.Kind, seed: Int = 7) -> VocabSchedule {
        VocabSchedule(
            kind: kind, textOnlySteps: 10, start: 4, every: 3, add: 2, seed: seed, codebook: 16, firstVisualId: 100, unkImageId: 99)
    }

    func testProgressiveGrowth() {
        let s = schedule(.progressive)
        XCTAssertTrue(s.isTextOnly(step: 9)); XCTAssertFalse(s.isTextOnly(step: 10))
        XCTAssertEqual(
            (0..<30).map { s.activeCount(step: $0) },
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 6, 6, 6, 8, 8, 8, 10, 10, 10, 12, 12, 12, 14, 14, 14, 16, 16])
        XCTAssertEqual(s.allActiveStep, 28)
        XCTAssertEqual(s.order, schedule(.progressive).order, "same seed, same order")
        XCTAssertNotEqual(s.order, schedule(.progressive, seed: 8).order)
        XCTAssertEqual(Set(s.order), Set(0..<16))
    }

    func testMasksAndVanilla() {
        let s = schedule(.progressive)
        var inactive = [UInt8](repeating: 0, count: 116), map = [Int32](repeating: 0, count: 116)
        s.masks(active: 4, inactive: &inactive, tokenMap: &map)
        XCTAssertEqual(inactive[0..<100].reduce(0) { $0 + Int($1) }, 0, "text and specials always active")
        XCTAssertEqual(inactive.reduce(0) { $0 + Int($1) }, 12)
        for rank in 0..<4 { XCTAssertEqual(inactive[100 + s.order[rank]], 0) }
        for id in 100..<116 { XCTAssertEqual(map[id], inactive[id] == 1 ? 99 : Int32(id)) }
        let v = schedule(.vanilla)
        XCTAssertFalse(v.isTextOnly(step: 0)); XCTAssertEqual(v.activeCount(step: 0), 16)
    }
}

/// RUN/config.yaml and the workers' copy: any string survives the trip (quotes, backslashes, newlines).
final class ConfigYAMLTests: XCTestCase {
    func testAnyStringRoundTripsThroughTheYAML() throws {
        var c = try RunConfig.parse(yaml: "")
        c.dataDir = "a \"quoted\" dir\\with\nnewline: and # hash"
        let back = try RunConfig.parse(yaml: c.yaml)
        XCTAssertEqual(back.dataDir, c.dataDir)
        XCTAssertEqual(back.yaml, c.yaml)
        XCTAssertTrue(c.yaml.hasPrefix("model:\n  "), c.yaml)
    }

    func testConfigMistakesAreCases() {
        XCTAssertThrowsError(try RunConfig.parse(yaml: "train: {steps: x}", source: "c.yaml")) {
            XCTAssertEqual($0 as? ConfigError, .inSource("c.yaml", .badValue(key: "train.steps", expected: "an integer", got: "x")))
            XCTAssertEqual("\($0)", "c.yaml: train.steps: expected an integer, got x")
        }
        XCTAssertThrowsError(try RunConfig.parse(yaml: "", overrides: ["train.steps"])) {
            XCTAssertEqual($0 as? ConfigError, .badOverride("train.steps"))
        }
    }
}

/// A model and a stage cut that do not fit are cases, with the text users see.
final class ModelErrorTests: XCTestCase {
    func testStageCutsThatDoNotFitAreCases() {
        let c = ModelConfig(vocabSize: 61, dModel: 32, nLayers: 3, nHeads: 4, nKVHeads: 2, ffnHidden: 48, maxSeqLen: 24)
        XCTAssertThrowsError(try StageSpec.partition(c, stages: 4, seqLen: 24)) {
            XCTAssertEqual($0 as? ModelError, .moreStagesThanLayers(stages: 4, layers: 3))
            XCTAssertEqual("\($0)", "cluster.stages (4) exceeds model.n_layers (3): every stage needs a layer")
        }
        let whole = try! StageSpec.partition(c, stages: 1, seqLen: 24)[0]
        XCTAssertThrowsError(try Stage(config: c, spec: whole, rows: 1, seqLen: 25)) {
            XCTAssertEqual($0 as? ModelError, .sequenceTooLong(length: 25, maxSeqLen: 24))
        }
    }
}
