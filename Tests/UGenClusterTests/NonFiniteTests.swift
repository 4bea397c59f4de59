import Foundation
import UGenCluster
import UGenKernels
import UGenModel
import UGenStore
import UGenTraining
import XCTest

/// A non-finite loss or gradient norm never reaches the weights or a checkpoint.
/// The runs diverge for real: a learning rate of 1e30 makes the weights huge after the first update,
/// and the forward pass of the next steps overflows.
final class NonFiniteTests: XCTestCase {
    let diverging = [
        "train.steps=12", "train.lr=1e30", "train.min_lr=1e30", "train.warmup_steps=0", "train.checkpoint_every=1",
        "train.keep_checkpoints=50", "cluster.stages=2",
    ]

    func checkpoints(_ dir: String) -> [String] { CheckpointFile.list(runDirectory: dir) }

    /// Every loss logged is a number; every checkpoint written verifies (finite values).
    func assertNothingNonFiniteWasKept(_ dir: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for m in try metrics(dir) {
            XCTAssertTrue((m["loss"] as? Double)?.isFinite == true, "metrics line \(m)", file: file, line: line)
        }
        for c in checkpoints(dir) {
            XCTAssertNil(CheckpointVerifier.verify(c).error, "\(c)", file: file, line: line)
        }
    }

    func testStopLeavesLatestOnTheLastFiniteCheckpointAndNamesStepAndStage() throws {
        let dir = try temporaryDirectory(self) + "/run"
        var message = ""
        XCTAssertThrowsError(try clusterRun(try tinyConfig(diverging), run: dir)) { message = "\($0)" }
        try assertNothingNonFiniteWasKept(dir)
        let events = try events(dir)
        let bad = try XCTUnwrap(events.first { $0["kind"] as? String == "nonfinite" }, "a nonfinite event")
        let step = try XCTUnwrap(bad["step"] as? Int)
        XCTAssertEqual(bad["action"] as? String, "stopped")
        XCTAssertNotNil(bad["stage"] as? Int)
        XCTAssertTrue(["loss", "gradient norm"].contains(bad["quantity"] as? String ?? ""), "\(bad)")
        XCTAssertGreaterThan(step, 1)
        XCTAssertEqual(try metrics(dir).count, step - 1, "no metrics line for the step that was not applied")
        let latest = try CheckpointFile.resolve("latest", runDirectory: dir)
        XCTAssertEqual(
            (latest as NSString).lastPathComponent, CheckpointFile.fileName(step: step - 1), "latest stays on the last finite step")
        XCTAssertEqual(checkpoints(dir).last, latest, "nothing saved after it")
        XCTAssertTrue(
            message.contains("step \(step): non-finite") && message.contains("pipeline stage")
                && message.contains("latest stays at \(latest)") && !message.contains("\n"), message)
        XCTAssertEqual(events.last?["kind"] as? String, "error")
        XCTAssertEqual(events.last?["message"] as? String, message)
    }

    func testSkipDropsTheStepsAndStopsAfterTooManyInARow() throws {
        let dir = try temporaryDirectory(self) + "/run"
        let config = try tinyConfig(diverging + ["train.on_nonfinite=skip", "train.max_nonfinite_skips=3"])
        var message = ""
        XCTAssertThrowsError(try clusterRun(config, run: dir)) { message = "\($0)" }
        try assertNothingNonFiniteWasKept(dir)
        let bad = try events(dir).filter { $0["kind"] as? String == "nonfinite" }
        XCTAssertEqual(bad.map { $0["action"] as? String }, ["skipped", "skipped", "skipped", "stopped"])
        XCTAssertEqual(bad.map { $0["in_a_row"] as? Int }, [1, 2, 3, 4])
        let first = try XCTUnwrap(bad.first?["step"] as? Int)
        XCTAssertEqual(bad.map { $0["step"] as? Int }, [first, first + 1, first + 2, first + 3])
        XCTAssertTrue(message.contains("4 such steps in a row") && message.contains("step \(first + 3): non-finite"), message)
        // The skipped steps were never applied: the checkpoints saved after them hold the weights of the last good step.
        let before = try CheckpointFile.read(checkpoints(dir).first { $0.hasSuffix(CheckpointFile.fileName(step: first - 1)) }!)
        let after = try CheckpointFile.read(try CheckpointFile.resolve("latest", runDirectory: dir))
        XCTAssertEqual(after.progress.step, first + 2, "checkpoints continue through skipped steps")
        XCTAssertEqual(after.params, before.params)
        XCTAssertEqual(after.optimizerStep, before.optimizerStep, "no optimizer step for a skipped step")
    }

    /// The single-process trainer: a non-finite step is not applied; stop throws, skip moves the step on.
    func testTrainerNeverAppliesANonFiniteStep() throws {
        for mode in ["stop", "skip"] {
            let config = try tinyConfig([
                "train.steps=12", "train.lr=1e30", "train.min_lr=1e30", "train.warmup_steps=0",
                "train.on_nonfinite=\(mode)", "train.max_nonfinite_skips=2",
            ])
            let data = try RunData.open(config)
            let trainer = try Trainer(config: config, model: config.modelConfig(vocabSize: data.vocabSize))
            var g = NonFiniteGuard(config)
            var stopped: NonFiniteStep?
            var lastGood: [NamedTensor] = []
            var skipped = 0
            for s in 0..<config.steps {
                let batch = try data.source.batch(step: s, textOnly: data.schedule.isTextOnly(step: s))
                let before = trainer.stage.exportParameters(), optimizerStep = trainer.optimizer.step
                do {
                    let r = try trainer.step(
                        batch, vocab: StepVocab.at(step: s, schedule: data.schedule, vocabSize: data.vocabSize), guard: &g)
                    if r.nonFinite != nil {
                        skipped += 1
                        XCTAssertEqual(trainer.stage.exportParameters(), before, "\(mode): a skipped step leaves the weights")
                        XCTAssertEqual(trainer.optimizer.step, optimizerStep)
                    } else {
                        lastGood = trainer.stage.exportParameters()
                    }
                } catch let e as NonFiniteStep { stopped = e; break }
            }
            let e = try XCTUnwrap(stopped, "\(mode): the run stops")
            XCTAssertEqual(skipped, mode == "stop" ? 0 : 2)
            XCTAssertEqual(trainer.stage.exportParameters(), lastGood, "\(mode): the weights are those of the last finite step")
            XCTAssertTrue(trainer.stage.exportParameters().allSatisfy { $0.values.allSatisfy(\.isFinite) })
            XCTAssertEqual(e.stage, "the whole model (single process)")
        }
    }

    /// Skip is exact: a run that skips a non-finite step continues as a run that consumed the batch
    /// without training on it (same losses, same final weights, to the bit). The NaN is injected by
    /// making one weight infinite for that step only.
    func testASkippedStepIsAsIfItsBatchWereNeverTrainedOn() throws {
        let config = try tinyConfig(["train.steps=8", "train.on_nonfinite=skip"])
        BLAS.setThreads(1)
        defer { BLAS.setThreads(ProcessInfo.processInfo.activeProcessorCount) }
        let dataA = try RunData.open(config), dataB = try RunData.open(config)
        let a = try Trainer(config: config, model: config.modelConfig(vocabSize: dataA.vocabSize))
        let b = try Trainer(config: config, model: config.modelConfig(vocabSize: dataB.vocabSize))
        var g = NonFiniteGuard(config)
        var lossesA: [Double] = [], lossesB: [Double] = []
        for s in 0..<config.steps {
            let vocab = StepVocab.at(step: s, schedule: dataA.schedule, vocabSize: dataA.vocabSize)
            let batchA = try dataA.source.batch(step: s, textOnly: dataA.schedule.isTextOnly(step: s))
            let batchB = try dataB.source.batch(step: s, textOnly: dataB.schedule.isTextOnly(step: s))
            if s == 3 {
                let w = a.stage.parameters[1].value.data, saved = w[0]
                w[0] = .infinity
                let r = try a.step(batchA, vocab: vocab, guard: &g)
                w[0] = saved
                XCTAssertNotNil(r.nonFinite)
                b.step += 1  // the reference consumes the batch and trains on nothing
                continue
            }
            lossesA.append(try a.step(batchA, vocab: vocab, guard: &g).loss)
            lossesB.append(b.train(batchB, vocab: vocab).loss)
        }
        XCTAssertEqual(lossesA, lossesB)
        XCTAssertEqual(a.stage.exportParameters(), b.stage.exportParameters())
        XCTAssertEqual(a.optimizer.step, 7)
    }
}
