import Foundation
import UGenModel
import UGenRecords
import UGenTraining

/// What the workers' reports of one step add up to, combined in the single process's order: losses by
/// global micro-batch, squared norms by stage (replica 0's: the replicas hold the same reduced gradients).
struct StepTotals {
    var lossSum = 0.0
    var tasks = TaskLosses()
    var squares: [Double] = []
    /// The first stage (in pipeline order) whose squared norms are not all finite: the one a non-finite
    /// norm is blamed on.
    var nonFiniteStage: Int?
    var timings: [StageTiming] = []
}

extension Coordinator {
    /// Combines the step's `stepDone` reports, slot by slot. A report that does not decode loses its worker.
    func combine(_ done: [Int: Inbound], microBatches m: Int, parameterCounts: [Int]) throws -> StepTotals {
        var totals = StepTotals()
        for (slot, id) in slots.enumerated() {
            let msg = done[id!]!.message, stage = slot % stages, r = slot / stages
            do {
                guard let body = done[id!]!.stepDone else { throw ProtocolError.malformedBody(.stepDone) }
                let count = parameterCounts[stage]
                let out = try StepOutputs(msg, microBatches: m, head: stage == stages - 1, parameters: count)
                if let losses = out.losses {
                    for v in losses.sums { totals.lossSum += v }
                    totals.tasks.add(losses.tasks)
                }
                if r == 0 {
                    totals.squares += out.gradSquares
                    if totals.nonFiniteStage == nil && out.gradSquares.contains(where: { !$0.isFinite }) {
                        totals.nonFiniteStage = stage
                    }
                }
                let who = members[id!]!
                totals.timings.append(
                    StageTiming(
                        stage: stage, replica: r, worker: who.name, host: who.host, forwardMs: body.forwardMs,
                        backwardMs: body.backwardMs, waitMs: body.waitMs, commMs: body.commMs,
                        reduceBytesSent: body.reduceBytesSent, reduceBytesReceived: body.reduceBytesReceived,
                        reduceMs: body.reduceMs, reduceWaitMs: body.reduceWaitMs, reduceIdleMs: body.reduceIdleMs,
                        reduceWindowMs: body.reduceWindowMs))
            } catch {
                // A worker that answers with nonsense is treated like one that failed: the step is dropped.
                throw WorkerLost(workerId: id!, reason: "malformed stepDone: \(error)")
            }
        }
        return totals
    }

    /// A step whose loss or norm (`what`) is not finite, never applied: names the stage that produced it,
    /// and either skips the step (`train.on_nonfinite: skip`) or throws `NonFiniteStep`; an event either way.
    func skip(_ what: String, _ totals: StepTotals, loss: Double, norm: Double, _ nonFinite: inout NonFiniteGuard) throws {
        let stage = what == "loss" ? stages - 1 : totals.nonFiniteStage ?? 0
        let who = members[slots[stage]!]
        let producer = "pipeline stage \(stage + 1)/\(stages) (worker \(who?.name ?? "?") on \(who?.host ?? "?"))"
        func event(_ action: String, inARow: Int) {
            runLog.event(
                "nonfinite",
                [
                    ("step", .int(step + 1)), ("quantity", .string(what)), ("stage", .int(stage)),
                    ("worker", .string(who?.name ?? "?")), ("action", .string(action)), ("in_a_row", .int(inARow)),
                ])
        }
        do { _ = try nonFinite.check(step: step, loss: loss, norm: norm, stage: producer) } catch {
            event("stopped", inARow: nonFinite.inARow)
            throw error
        }
        event("skipped", inARow: nonFinite.inARow)
        log.warning("step \(step + 1): non-finite \(what) from \(producer): step skipped (\(nonFinite.inARow) in a row)")
        step += 1
        phaseEvents(after: step - 1)
        if config.checkpointEvery > 0 && step % config.checkpointEvery == 0 && step < config.steps { try checkpoint() }
    }

    /// An applied step's metrics record, the schedule's events and, every `train.log_every` steps, a log line.
    func record(_ totals: StepTotals, loss: Double, lr: Double, norm: Double, tokens: Int, vocab: StepVocab, seconds: Double) {
        let codebook = data.schedule.codebook, tasks = totals.tasks
        runLog.metric(
            MetricsRecord(
                step: step, loss: loss, precision: config.precision.rawValue, lossText: tasks.mean(0), lossImg2Txt: tasks.mean(1),
                lossTxt2Img: tasks.mean(2), lr: lr, gradNorm: norm, tokens: tokens,
                tokensPerS: Double(config.batchRows * config.seqLen) / seconds, activeVisualIds: vocab.activeVisual,
                visualCodebook: codebook, stepMs: seconds * 1000, time: Date().timeIntervalSince1970, stages: totals.timings))
        onStep?(step)
        phaseEvents(after: step - 1)
        if step % max(1, config.logEvery) == 0 || step == config.steps {
            let numbers = String(format: "loss %.4f  lr %.2e  grad norm %.3f", loss, lr, norm)
            let tokensPerS = Int(Double(config.batchRows * config.seqLen) / seconds)
            log.info("step \(step)/\(config.steps)  \(numbers)  \(tokensPerS) tok/s  visual ids \(vocab.activeVisual)/\(codebook)")
        }
    }
}
