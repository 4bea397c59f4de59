import Foundation
import UGenData
import UGenKernels
import UGenModel
import UGenStore

/// The masks a step trains under: V bytes of inactive flags and the V-long input id map.
public struct StepVocab: Sendable {
    public var activeVisual: Int
    public var inactive: [UInt8]?
    public var tokenMap: [Int32]?
    public init(activeVisual: Int, inactive: [UInt8]?, tokenMap: [Int32]?) {
        self.activeVisual = activeVisual; self.inactive = inactive; self.tokenMap = tokenMap
    }
    public static func allActive(codebook: Int) -> StepVocab { StepVocab(activeVisual: codebook, inactive: nil, tokenMap: nil) }
}

/// The mask that actually carries loss: the batch's mask, zero where the target is an inactive id.
/// Its sum over the global batch is the loss's denominator everywhere (single process and cluster).
public func effectiveMaskSum(targets: [Int32], mask: [Float], inactive: [UInt8]?) -> Double {
    var s = 0.0
    for i in 0..<mask.count where mask[i] != 0 {
        if let inactive, inactive[Int(targets[i])] != 0 { continue }
        s += Double(mask[i])
    }
    return s
}

public struct StepResult: Sendable {
    public var step: Int
    public var loss: Double
    public var taskLosses: TaskLosses
    public var lr: Double
    public var gradNorm: Double
    public var tokens: Int
    /// "loss" or "gradient norm" when that was NaN or infinite: the update was not applied.
    public var nonFinite: String? = nil
}

/// A step whose loss or gradient norm is not finite: never applied, so it never reaches the weights or a
/// checkpoint. `train.on_nonfinite` decides what follows: `stop` (the default) ends the run at once,
/// `skip` drops the step and goes on, ending the run after `train.max_nonfinite_skips` skips in a row.
public struct NonFiniteGuard: Sendable {
    public let skip: Bool
    public let maxInARow: Int
    public private(set) var inARow = 0
    public init(_ config: RunConfig) { skip = config.onNonfinite == "skip"; maxInARow = config.maxNonfiniteSkips }

    /// nil when `loss` and `norm` are finite; else what was not finite ("loss" or "gradient norm").
    public static func problem(loss: Double, norm: Double) -> String? {
        !loss.isFinite ? "loss" : !norm.isFinite ? "gradient norm" : nil
    }

    /// Step `step` (0-based) had `loss` and `norm`: returns true when it must be skipped (not applied);
    /// throws `NonFiniteStep` when the run must stop. `stage` names who produced the value.
    public mutating func check(step: Int, loss: Double, norm: Double, stage: String) throws -> Bool {
        guard let what = Self.problem(loss: loss, norm: norm) else { inARow = 0; return false }
        let value = what == "loss" ? loss : norm
        inARow += 1
        if skip && inARow <= maxInARow { return true }
        throw NonFiniteStep(step: step, quantity: what, value: value, stage: stage, skippedInARow: skip ? inARow : 0)
    }
}

/// The run stopped on a non-finite loss or gradient norm (one line; the update was not applied).
public struct NonFiniteStep: Error, CustomStringConvertible, Equatable {
    public var step: Int, quantity: String, value: Double, stage: String, skippedInARow: Int
    public var description: String {
        "step \(step + 1): non-finite \(quantity) (\(value)) from \(stage); the update was not applied"
            + (skippedInARow > 0
                ? " (\(skippedInARow) such steps in a row, more than train.max_nonfinite_skips)" : " (train.on_nonfinite: stop)")
    }
}

/// The single-process trainer: the whole model as one stage, each global batch split into the same
/// micro-batches the pipeline uses, gradients summed in the canonical tree over micro-batch indices
/// (`Stage.zeroGrads(microBatches:)`), one AdamW step.
/// This is the reference every parallel layout must match.
public final class Trainer {
    public let config: RunConfig
    public let model: ModelConfig
    public let stage: Stage
    public let optimizer: AdamWState
    public let microBatches: Int
    /// Completed optimizer steps.
    public var step = 0

    public init(config: RunConfig, model: ModelConfig) throws {
        self.config = config
        self.model = model
        microBatches = config.replicas * config.microBatches
        stage = try Stage(
            config: model, spec: .whole(model), rows: config.batchRows / microBatches, seqLen: config.seqLen,
            precision: config.precision)
        stage.initialize(seed: UInt64(config.seed))
        optimizer = AdamWState(parameters: stage.parameters)
    }

    /// One optimizer step on a global batch.
    public func train(_ batch: Batch, vocab: StepVocab? = nil) -> StepResult {
        precondition(batch.rows == config.batchRows && batch.seqLen == config.seqLen, "batch shape does not match the config")
        let maskSum = effectiveMaskSum(targets: batch.targets, mask: batch.mask, inactive: vocab?.inactive)
        let gradScale = Float(1 / max(maskSum, 1))
        stage.zeroGrads(microBatches: microBatches)
        var losses = StepLosses(microBatches: microBatches)
        var micro = MicroBatch(
            tokens: batch.inputs, targets: batch.targets, mask: batch.mask, tasks: batch.tasks, tokenMap: vocab?.tokenMap,
            inactive: vocab?.inactive)
        let a = stage.activations(0)
        for mb in 0..<microBatches {
            micro.index = mb
            for rows in stage.forwardPieces(microBatch: mb, of: microBatches) {
                stage.forward(a, micro, rows: rows)
                stage.crossEntropy(a, micro, gradScale: gradScale, rows: rows, into: &losses)
            }
            stage.backward(a)
        }
        let norm = globalNorm(stage.gradSquares())
        let lr = config.lrSchedule.lr(at: step)
        let loss = losses.total / max(maskSum, 1), tasks = losses.tasks
        if let what = NonFiniteGuard.problem(loss: loss, norm: norm) {  // never applied
            return StepResult(step: step + 1, loss: loss, taskLosses: tasks, lr: lr, gradNorm: norm, tokens: Int(maskSum), nonFinite: what)
        }
        stage.update(
            with: optimizer, lr: lr, hyper: config.adam,
            clipScale: AdamW.clipScale(globalNorm: norm, maxNorm: config.gradClip))
        step += 1
        return StepResult(step: step, loss: loss, taskLosses: tasks, lr: lr, gradNorm: norm, tokens: Int(maskSum))
    }
}

extension Trainer {
    /// One step under `train.on_nonfinite` (`guard` carries the skips in a row): a non-finite step is never
    /// applied; when skipped the step count moves on (the batch is consumed), otherwise this throws.
    public func step(_ batch: Batch, vocab: StepVocab? = nil, guard g: inout NonFiniteGuard) throws -> StepResult {
        let r = train(batch, vocab: vocab)
        if try g.check(step: step, loss: r.loss, norm: r.gradNorm, stage: "the whole model (single process)") { step += 1 }
        return r
    }

    /// A checkpoint of the whole model, its optimizer and `progress`.
    public func checkpoint(progress: TrainingProgress, vocabLayout: [String: Int]) -> Checkpoint {
        let (m, v) = stage.exportMoments(optimizer)
        return Checkpoint(
            model: model, vocabLayout: vocabLayout, params: stage.exportParameters(), adamM: m, adamV: v,
            optimizerStep: optimizer.step, progress: progress)
    }

    /// Continues from a checkpoint: parameters, moments and the step count.
    public func restore(_ ckpt: Checkpoint) throws {
        if let d = ckpt.model.firstDifference(from: model) { throw RunError.otherModel(path: nil, difference: d) }
        try stage.importTensors(params: ckpt.params, m: ckpt.adamM, v: ckpt.adamV, into: optimizer, optimizerStep: ckpt.optimizerStep)
        step = ckpt.progress.step
    }
}
