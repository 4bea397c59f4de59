import UGenData
import UGenKernels
import UGenModel
import UGenStore
import XCTest

@testable import UGenTraining

/// The ranking metrics on a model whose answer is known: trained to memorise three image–caption pairs, it
/// must rank each true caption first given its image, and each true image first given its caption.
final class RankingTests: XCTestCase {
    /// Over 60 lines on purpose: one scenario (train, rank, check every number) that reads in order.
    func testAModelThatMemorisedThreePairsRanksThemFirst() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ugen-rank-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }

        // Three 8×8 grey images (a bright row, a bright column, a diagonal) and three captions.
        let drawings: [(String, (Int, Int) -> Bool)] = [
            ("a red apple on a table", { y, _ in y == 3 }), ("a blue whale in the sea", { _, x in x == 5 }),
            ("a green frog", { y, x in y == x }),
        ]
        var lines = ""
        for (i, (caption, lit)) in drawings.enumerated() {
            let pixels = (0..<64).map { lit($0 / 8, $0 % 8) ? UInt8(255) : UInt8(0) }
            try PNGImage(width: 8, height: 8, channels: 1, pixels: pixels).write(root.appendingPathComponent("\(i).png").path)
            lines += "{\"image\": \"\(i).png\", \"caption\": \"\(caption)\"}\n"
        }
        let pairs = root.appendingPathComponent("pairs.jsonl").path
        try lines.write(toFile: pairs, atomically: true, encoding: .utf8)
        let data = root.appendingPathComponent("tokenized").path
        var o = TokenizeOptions(pairFiles: [pairs], outDir: data)
        o.valPairFiles = [pairs]  // held out = the memorised pairs
        o.textVocab = 270; o.codebookSize = 8; o.patch = 2; o.kMeansIterations = 5
        _ = try TokenizeJob.run(o)

        let steps = 150
        let config = try RunConfig.parse(
            yaml: """
                model: {d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 48}
                data: {dir: "\(data)", seq_len: 48, batch_rows: 4}
                train: {steps: \(steps), lr: 0.01, min_lr: 0.001, warmup_steps: 5, seed: 3}
                vocab_schedule: {kind: vanilla}
                cluster: {micro_batches: 1}
                """)
        let run = try RunData.open(config)
        let trainer = try Trainer(config: config, model: config.modelConfig(vocabSize: run.vocabSize))
        for step in 0..<steps {
            let batch = try run.source.batch(step: step, textOnly: false)
            _ = trainer.train(batch, vocab: .at(step: step, schedule: run.schedule, vocabSize: run.vocabSize))
        }
        let s = run.schedule
        let progress = TrainingProgress(
            step: steps, tokensSeen: 0, dataSeed: config.dataSeed, dataState: run.source.state,
            vocabKind: "vanilla", vocabActive: s.codebook, vocabOrder: s.order.map { Int32($0) },
            rngStates: [:], configYAML: config.yaml)
        let layout = [
            "text_vocab": run.layout.textVocab, "n_specials": run.layout.specialCount,
            "codebook": run.layout.codebookSize, "vocab_size": run.layout.vocabSize,
        ]
        let checkpoint = root.appendingPathComponent("step-\(steps).h5").path
        try CheckpointFile.write(trainer.checkpoint(progress: progress, vocabLayout: layout), to: checkpoint)

        var options = EvaluationOptions()
        options.rankExamples = 3
        options.rankCandidates = 10
        let report = try Evaluator(model: try TrainedModel(checkpoint: checkpoint)).run(valPath: data + "/val.h5", options: options)
        let captions = try XCTUnwrap(report.img2txtRanking), images = try XCTUnwrap(report.txt2imgRanking)
        print(report.table)
        XCTAssertEqual(captions.examples, 3)
        XCTAssertEqual(captions.candidates, 3, "only three distinct captions exist")
        XCTAssertEqual(captions.top1Accuracy, 1)
        XCTAssertEqual(captions.meanRank, 1)
        XCTAssertEqual(images.examples, 3)
        XCTAssertEqual(images.candidates, 3)
        XCTAssertEqual(images.top1Accuracy, 1)
        XCTAssert(report.table.contains("true caption first among 3"), report.table)
        // Control: the same model with the pairings rotated (each image given another's caption) ranks none first.
        let model = try TrainedModel(checkpoint: checkpoint)
        let evaluator = Evaluator(model: model)
        let val = try DatasetReader(path: data + "/val.h5")
        let held = try (0..<val.count).map { try val.example($0) }.filter { $0.task == .imageToText }.map(evaluator.parts)
        XCTAssertEqual(held.count, 3)
        let l = model.layout
        let rotated = held.indices.map { i in
            l.imageToTextExample(codes: held[i].image.map(l.code(of:)), caption: held[(i + 1) % 3].caption)
        }
        let stage = try model.stage(rows: 8, seqLen: model.model.maxSeqLen)
        let wrong = evaluator.ranking(rotated, task: .imageToText, stage: stage, vocab: model.stepVocab, options: options)
        XCTAssertEqual(wrong.top1Accuracy, 0)
        XCTAssertEqual(wrong.meanRank, 3, accuracy: 1, "the memorised caption wins, the rotated one trails")

        let json = String(decoding: try report.json(), as: UTF8.self)
        XCTAssert(json.contains("\"img2txt_ranking\"") && json.contains("\"top1_accuracy\""), json)
    }
}
