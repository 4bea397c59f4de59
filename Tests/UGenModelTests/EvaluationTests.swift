import UGenBench
import UGenData
import UGenKernels
import UGenModel
import UGenStore
import XCTest

@testable import UGenTraining

/// A real little world, built once: prose + the 200 committed digits tokenized into real HDF5 files
/// (tokenizer, train, val), and checkpoints of a tiny UGen trained on them with the single-process trainer
/// under a progressive vocabulary schedule — untrained (step 0), mid-growth (step 8) and trained.
final class EvalWorld {
    nonisolated(unsafe) private static var built: EvalWorld?
    static let root = FileManager.default.temporaryDirectory.appendingPathComponent("ugen-eval-\(getpid())")

    let data: String
    let pairs: String
    let summary: TokenizeSummary
    let config: RunConfig
    /// Step 0 (the initial weights, labelled vanilla so every id is live), step 2 (text-only phase),
    /// step 8 (6 of 16 visual ids active), and the end of training (all active).
    let untrained: String, textOnly: String, midGrowth: String, trained: String
    let trainedSteps = 80
    var tokenizer: String { data + "/tokenizer.h5" }
    var val: String { data + "/val.h5" }
    var train: String { data + "/train.h5" }

    static func shared() throws -> EvalWorld {
        if let built { return built }
        let w = try EvalWorld()
        built = w
        return w
    }

    private init() throws {
        let root = Self.root
        try? FileManager.default.removeItem(at: root)
        atexit { try? FileManager.default.removeItem(at: EvalWorld.root) }
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let prose = root.appendingPathComponent("prose.txt").path
        try Self.prose.write(toFile: prose, atomically: true, encoding: .utf8)
        pairs = try Digits.prepare(csv: Self.digitsFixture, out: root.appendingPathComponent("digits").path)
        data = root.appendingPathComponent("tokenized").path
        var o = TokenizeOptions(textFiles: [prose], pairFiles: [pairs], outDir: data)
        o.textVocab = 300; o.codebookSize = 16; o.kMeansIterations = 5; o.valFraction = 0.2
        summary = try TokenizeJob.run(o)

        config = try RunConfig.parse(
            yaml: """
                model: {d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 48}
                data: {dir: "\(data)", seq_len: 48, batch_rows: 8}
                train: {steps: \(trainedSteps), lr: 0.01, min_lr: 0.001, warmup_steps: 5, seed: 3}
                vocab_schedule: {kind: progressive, text_only_steps: 5, start: 4, every: 2, add: 2, seed: 7}
                cluster: {micro_batches: 1}
                """)
        let run = try RunData.open(config)
        let trainer = try Trainer(config: config, model: config.modelConfig(vocabSize: run.vocabSize))
        let layoutAttributes = [
            "text_vocab": run.layout.textVocab, "n_specials": run.layout.specialCount,
            "codebook": run.layout.codebookSize, "vocab_size": run.layout.vocabSize,
        ]
        var saved: [String] = []
        for step in 0...trainedSteps {
            if [0, 2, 8, trainedSteps].contains(step) {
                let s = run.schedule
                // The activation order as codes (the cluster writes ids; the loader takes both).
                let p = TrainingProgress(
                    step: step, tokensSeen: 0, dataSeed: config.dataSeed, dataState: run.source.state,
                    vocabKind: step == 0 ? "vanilla" : s.kind.rawValue,
                    vocabActive: step == 0 ? s.codebook : s.activeCount(step: step),
                    vocabOrder: s.order.map { Int32($0) }, rngStates: [:], configYAML: config.yaml)
                let path = root.appendingPathComponent("step-\(step).h5").path
                try CheckpointFile.write(trainer.checkpoint(progress: p, vocabLayout: layoutAttributes), to: path)
                saved.append(path)
            }
            if step == trainedSteps { break }
            let batch = try run.source.batch(step: step, textOnly: run.schedule.isTextOnly(step: step))
            _ = trainer.train(batch, vocab: .at(step: step, schedule: run.schedule, vocabSize: run.vocabSize))
        }
        (untrained, textOnly, midGrowth, trained) = (saved[0], saved[1], saved[2], saved[3])
    }

    static let digitsFixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures/digits-200.csv").path

    /// English prose written for these tests.
    static let prose = """
        The lighthouse keeper climbed the stairs every evening at six, carrying a lamp, a flask of tea and a small \
        notebook in which he wrote down the weather. Most nights the entries were short: wind from the west, a little \
        rain, a ship far out on the horizon. On calm nights he wrote longer notes about the birds that rested on the rail.

        %
        In the village below, the baker opened her shop before dawn. The smell of bread reached the harbour, where the \
        fishermen were untangling their nets and arguing, as they did every morning, about whether the sea would be kind.
        %
        A traveller once asked the keeper whether he was lonely. He thought about it for a while and said that the light \
        kept him company, and that the ships, even when they did not stop, were a kind of conversation.
        %
        When the storm came in the autumn, the whole village watched the light from their windows. It turned all night, \
        steady and patient, and in the morning the boats were safe in the harbour and the keeper was asleep in his chair.
        %
        The children of the village liked to count the seconds between the flashes. Some of them said it was nine, some \
        said ten, and the keeper, when they asked him, told them that it depended on how fast they counted.
        %
        Years later the light was automated and the keeper moved into a cottage near the bakery. He still wrote down the \
        weather every evening, out of habit, and sometimes he walked to the end of the pier to watch the beam go round.
        """
}

final class EvaluationTests: XCTestCase {
    func world() throws -> EvalWorld { try EvalWorld.shared() }

    // MARK: The judge and the caption reader

    func testCaptionClassReadsEveryTemplateAndRefusesAmbiguity() {
        for label in 0..<10 {
            for variant in 0..<12 {
                let c = Digits.caption(label: label, variant: variant)
                XCTAssertEqual(CaptionClass.parse(c), label, c)
            }
        }
        XCTAssertNil(CaptionClass.parse(""))
        XCTAssertNil(CaptionClass.parse("a lighthouse by the sea"))
        XCTAssertNil(CaptionClass.parse("a one or a seven"), "two classes named: not a lucky guess")
        XCTAssertNil(CaptionClass.parse("the digit 17"), "17 is not a digit class")
        XCTAssertEqual(CaptionClass.parse("Seven, handwritten 7"), 7)
        XCTAssertNil(CaptionClass.parse("someone"), "words inside words do not count")
    }

    /// The judge learns real digits: well above chance on held-out ones, and at chance when the training
    /// labels are scrambled (so the held-out number is not leakage).
    func testJudgeIsAccurateOnHeldOutRealDigits() throws {
        let digits = try Digits.read(csv: EvalWorld.digitsFixture)
        let train = Array(digits[..<150]), held = Array(digits[150...])
        let x = EvaluationTests.pixels(train.map(\.image)), hx = EvaluationTests.pixels(held.map(\.image))
        let judge = PixelClassifier(x: x, labels: train.map(\.label), features: 64, classes: 10)
        let acc = judge.accuracy(hx, labels: held.map(\.label))
        XCTAssertGreaterThan(acc, 0.8, "held-out accuracy on \(held.count) real digits")
        XCTAssertGreaterThan(judge.accuracy(x, labels: train.map(\.label)), acc - 0.01)

        var rng = SplitMix64(seed: 3)
        var scrambled = train.map(\.label)
        for i in stride(from: scrambled.count - 1, to: 0, by: -1) { scrambled.swapAt(i, rng.nextInt(below: i + 1)) }
        let fooled = PixelClassifier(x: x, labels: scrambled, features: 64, classes: 10)
        XCTAssertLessThan(fooled.accuracy(hx, labels: held.map(\.label)), 0.4, "scrambled labels must not predict held-out digits")
        XCTAssertEqual(
            judge.predict(hx), PixelClassifier(x: x, labels: train.map(\.label), features: 64, classes: 10).predict(hx),
            "deterministic")
    }

    static func pixels(_ images: [PNGImage]) -> [Float] { images.flatMap { $0.pixels.map { Float($0) / 255 } } }

    // MARK: Loading

    func testCheckpointPathsAndActiveIdsAreResolved() throws {
        let w = try world()
        let dir = EvalWorld.root.appendingPathComponent("run/checkpoints").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: dir + "/step-00000008.h5")
        try FileManager.default.copyItem(atPath: w.midGrowth, toPath: dir + "/step-00000008.h5")
        try "step-00000008.h5\n".write(toFile: dir + "/latest", atomically: true, encoding: .utf8)
        for spec in [dir + "/latest", EvalWorld.root.appendingPathComponent("run").path] {
            XCTAssertEqual(try TrainedModel.resolve(spec), dir + "/step-00000008.h5")
        }

        // Tokenizer found through the checkpoint's data.dir; the mid-growth checkpoint knows 4 + 2·1 = 6 ids.
        let m = try TrainedModel(checkpoint: dir + "/latest")
        XCTAssertEqual(m.tokenizerPath, w.tokenizer)
        let schedule = RunData.schedule(w.config, m.layout)
        XCTAssertEqual(schedule.activeCount(step: 8), 6)
        let expected = schedule.order.prefix(6).map { Int32(m.layout.visualRange.lowerBound + $0) }.sorted()
        XCTAssertEqual(m.activeVisual, expected)
        XCTAssertNil(try TrainedModel(checkpoint: w.trained).activeVisual, "all 16 active after step 17")

        // The order stored as ids (as the cluster writes it) gives the same set; a broken order is named.
        var p = try CheckpointFile.read(w.midGrowth).progress
        p.vocabOrder = schedule.order.map { Int32(m.layout.visualRange.lowerBound + $0) }
        XCTAssertEqual(try TrainedModel.activeIds(p, layout: m.layout, path: "x.h5"), expected)
        p.vocabOrder[0] = 3
        XCTAssertThrowsError(try TrainedModel.activeIds(p, layout: m.layout, path: "x.h5")) { e in
            XCTAssertEqual("\(e)", "x.h5: /train/vocab_order is not an ordering of the 16 visual ids")
        }

        // Inactive ids: only active ones drawn; in the input they become <unk_img>.
        let g = try m.generator()
        var s = Sampler(temperature: 3, seed: 2)
        for _ in 0..<4 {
            let ids = try g.image(caption: m.tokenizers.text.encode("a handwritten three"), count: m.tokensPerImage, sampler: &s)
            XCTAssertEqual(ids.count, 16)
            XCTAssertTrue(Set(ids).isSubset(of: Set(expected)), "\(ids)")
        }
        let v = m.stepVocab
        XCTAssertEqual(v.activeVisual, 6)
        let inactiveId = m.layout.visualRange.first { !expected.contains(Int32($0)) }!
        XCTAssertEqual(v.tokenMap?[inactiveId], m.layout.unkImage)
        XCTAssertEqual(v.inactive?[inactiveId], 1)
        XCTAssertEqual(v.inactive?[Int(expected[0])], 0)
    }

    func testBadInputsAreOneLineNamingTheFile() throws {
        let w = try world()
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(message { try TrainedModel(checkpoint: "/no/such.h5") }, "/no/such.h5: no such checkpoint")
        let wrongTokenizer = message { try TrainedModel(checkpoint: w.trained, tokenizer: w.val) }
        XCTAssertTrue(wrongTokenizer.contains(w.val) && !wrongTokenizer.contains("\n"), wrongTokenizer)
        let missing = message { try TrainedModel(checkpoint: w.trained, tokenizer: "/no/tokenizer.h5") }
        XCTAssertTrue(missing.hasPrefix("/no/tokenizer.h5: "), missing)
        let m = try TrainedModel(checkpoint: w.trained)
        let notData = message { try Evaluator(model: m).run(valPath: w.tokenizer) }
        XCTAssertTrue(notData.contains(w.tokenizer) && !notData.contains("\n"), notData)
        let pointer = EvalWorld.root.appendingPathComponent("dangling-latest/latest").path
        try FileManager.default.createDirectory(atPath: (pointer as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try "step-00000099.h5\n".write(toFile: pointer, atomically: true, encoding: .utf8)
        XCTAssertEqual(
            message { try TrainedModel(checkpoint: pointer) },
            "\(pointer): names step-00000099.h5, which does not exist; no good checkpoint beside it")
    }

    // MARK: Generation

    func testImagesHaveExactlyTheTokenizersTokenCountAndDecodeToPNG() throws {
        let w = try world()
        let m = try TrainedModel(checkpoint: w.trained)
        let vq = try m.imageTokenizer()
        let g = try m.generator()
        var s = Sampler(temperature: 1, topK: 8, seed: 4)
        var images: [PNGImage] = []
        for _ in 0..<3 {
            let ids = try g.image(caption: m.tokenizers.text.encode("a handwritten five"), count: m.tokensPerImage, sampler: &s)
            XCTAssertEqual(ids.count, vq.tokensPerImage)
            XCTAssertTrue(ids.allSatisfy(m.layout.isVisual))
            images.append(vq.decode(ids.map(m.layout.code(of:))))
        }
        let path = EvalWorld.root.appendingPathComponent("grid.png").path
        try PNGImage.sideBySide(images, scale: 2).write(path)
        let back = try PNGImage.read(path)
        XCTAssertEqual([back.width, back.height, back.channels], [8 * 3 * 2, 8 * 2, 1])
        // The middle sample sits in the middle third, each pixel doubled.
        XCTAssertEqual(back.pixels[(2 * 3) * back.width + 16 + 2 * 5], images[1].pixels[3 * 8 + 5])
    }

    /// Greedy decoding with the cache gives the same tokens as recomputing the prefix, on a trained
    /// checkpoint, and is faster.
    func testCachedGreedyEqualsUncachedAndIsFaster() throws {
        let w = try world()
        let m = try TrainedModel(checkpoint: w.trained)
        let prompt = [m.layout.bos] + m.tokenizers.text.encode("The light")
        let n = m.model.maxSeqLen - prompt.count
        XCTAssertGreaterThan(n, 30)
        let r = try GenerationBenchmark.run(m, prompt: prompt, newTokens: n)
        XCTAssertTrue(r.sameTokens, "\(r.cachedTokens) vs \(r.uncachedTokens)")
        XCTAssertEqual(r.cachedTokens.count, n)
        XCTAssertGreaterThan(Set(r.cachedTokens).count, 3, "a non-degenerate continuation")
        XCTAssertThrowsError(try GenerationBenchmark.run(m, prompt: prompt, newTokens: n + 1), "longer than max_seq_len") {
            XCTAssertEqual($0 as? BenchError, .promptTooLong(prompt: prompt.count, newTokens: n + 1, maxSeqLen: m.model.maxSeqLen))
        }
        XCTAssertLessThan(r.maxLogitDifference, 1e-3)
        XCTAssertGreaterThan(r.cachedTokensPerS, r.uncachedTokensPerS)
    }

    // MARK: Evaluation

    /// The evaluator's text loss and bits per byte equal a hand computation through the cached decoder
    /// (a different code path: one position at a time, log-softmax written out here).
    func testTextMetricsMatchAHandComputation() throws {
        let w = try world()
        let m = try TrainedModel(checkpoint: w.trained)
        let report = try Evaluator(model: m).run(
            valPath: w.val,
            options: {
                var o = EvaluationOptions(); o.maxCaptions = 0; o.maxImages = 0; return o
            }())
        let reader = try DatasetReader(path: w.val)
        let texts = try reader.examples(0..<reader.count).filter { $0.task == .text }
        XCTAssertFalse(texts.isEmpty)
        let decoder = CachedDecoder(stage: try m.stage(rows: 1, seqLen: 1))
        var nats = 0.0, tokens = 0, bytes = 0
        for e in texts {
            decoder.reset()
            let length = min(e.tokens.count, m.model.maxSeqLen + 1)
            for j in 0..<(length - 1) {
                decoder.append(e.tokens[j])
                guard e.mask[j + 1] != 0 else { continue }
                let logits = decoder.logits.array.map(Double.init), mx = logits.max()!
                let lse = mx + log(logits.reduce(0) { $0 + exp($1 - mx) })
                nats += lse - logits[Int(e.tokens[j + 1])]
                tokens += 1
                if m.layout.isText(e.tokens[j + 1]) { bytes += m.tokenizers.text.bytes(of: e.tokens[j + 1]).count }
            }
        }
        let t = try XCTUnwrap(report.text)
        XCTAssertEqual(t.examples, texts.count)
        XCTAssertEqual(t.tokens, tokens)
        XCTAssertEqual(t.bytes, bytes)
        XCTAssertEqual(t.loss, nats / Double(tokens), accuracy: 1e-4 * t.loss)
        XCTAssertEqual(t.perplexity, exp(nats / Double(tokens)), accuracy: 1e-3 * t.perplexity)
        XCTAssertEqual(t.bitsPerByte, nats / log(2) / Double(bytes), accuracy: 1e-4 * t.bitsPerByte)
        XCTAssertNil(report.img2txt?.captionAccuracy)
    }

    /// The whole report on real files: every task measured, the judge measured before use, the raw-pixel
    /// numbers found through the pairs file, and training shows in every loss.
    func testFullReportAndTrainingShowsInEveryTask() throws {
        let w = try world()
        var o = EvaluationOptions()
        o.maxText = 8
        let trained = try Evaluator(model: try TrainedModel(checkpoint: w.trained)).run(valPath: w.val, rawPairs: w.pairs, options: o)
        let untrained = try Evaluator(model: try TrainedModel(checkpoint: w.untrained)).run(valPath: w.val, options: o)

        let valPairs = w.summary.examples["val"]![1]
        XCTAssertGreaterThan(valPairs, 20)
        let c = try XCTUnwrap(trained.img2txt), g = try XCTUnwrap(trained.txt2img), j = try XCTUnwrap(trained.judge)
        XCTAssertEqual(c.examples, valPairs); XCTAssertEqual(c.scored, valPairs)
        XCTAssertEqual(g.examples, valPairs); XCTAssertEqual(g.scored, valPairs)
        XCTAssertEqual(g.visualTokensPerImage, 16)
        for v in [c.captionAccuracy, c.namesAClass, g.judgeAccuracy, g.distinctImages] {
            XCTAssertTrue((0...1).contains(try XCTUnwrap(v)))
        }
        XCTAssertEqual(j.trainImages, w.summary.examples["train"]![2])
        XCTAssertEqual(j.heldoutImages, valPairs)
        XCTAssertGreaterThan(j.heldoutAccuracy, 0.6, "the judge must be good before it judges")
        XCTAssertGreaterThan(try XCTUnwrap(j.crossValidatedAccuracy), 0.6)
        XCTAssertEqual(j.rawHeldoutImages, valPairs, "every held-out original found in the pairs file")
        XCTAssertGreaterThan(try XCTUnwrap(j.rawHeldoutAccuracy), 0.6)
        XCTAssertTrue((1...3000).contains(try XCTUnwrap(j.vqReconstructionMse)), "\(j.vqReconstructionMse!)")

        // An untrained model is near uniform over V; training lowers the loss of every task.
        let vocab = Double(w.summary.layout.vocabSize)
        XCTAssertEqual(try XCTUnwrap(untrained.text?.loss), log(vocab), accuracy: 0.5)
        XCTAssertLessThan(try XCTUnwrap(trained.text?.loss), try XCTUnwrap(untrained.text?.loss) - 0.5)
        XCTAssertLessThan(try XCTUnwrap(c.loss), try XCTUnwrap(untrained.img2txt?.loss) - 0.5)
        XCTAssertLessThan(try XCTUnwrap(g.loss), try XCTUnwrap(untrained.txt2img?.loss) - 0.5)

        // JSON round trip and the table.
        let back = try EvaluationReport(json: try trained.json())
        XCTAssertEqual(back.txt2img?.judgeAccuracy, g.judgeAccuracy)
        XCTAssertEqual(back.judge?.heldoutAccuracy, j.heldoutAccuracy)
        XCTAssertEqual(trained.classes, "digits"); XCTAssertEqual(j.classes, "digits")
        for needle in ["bits per byte", "caption accuracy", "judged class accuracy", "held-out (VQ-reconstructed real images, digits)"] {
            XCTAssertTrue(trained.table.contains(needle), needle)
        }
        // A checkpoint still in the text-only phase: text and captions measured, no image drawn, and said so.
        let early = try Evaluator(model: try TrainedModel(checkpoint: w.textOnly)).run(valPath: w.val, options: o)
        XCTAssertEqual(early.activeVisualIds, 0)
        XCTAssertNotNil(early.text?.loss)
        XCTAssertNotNil(early.img2txt?.captionAccuracy)
        XCTAssertNil(early.txt2img?.judgeAccuracy)
        XCTAssertTrue(early.notes.contains { $0.contains("text-only phase") }, "\(early.notes)")

        // More samples per caption: that many images judged, the first of each the same as before.
        var o3 = o; o3.imagesPerCaption = 3
        let three = try Evaluator(model: try TrainedModel(checkpoint: w.trained)).run(valPath: w.val, options: o3)
        XCTAssertEqual(three.txt2img?.scored, 3 * valPairs)
        XCTAssertEqual(three.txt2img?.imagesPerCaption, 3)

        // Same checkpoint, same seed: the same numbers.
        let again = try Evaluator(model: try TrainedModel(checkpoint: w.trained)).run(valPath: w.val, rawPairs: w.pairs, options: o)
        XCTAssertEqual(again.txt2img?.judgeAccuracy, g.judgeAccuracy)
        XCTAssertEqual(again.img2txt?.captionAccuracy, c.captionAccuracy)
    }
}
