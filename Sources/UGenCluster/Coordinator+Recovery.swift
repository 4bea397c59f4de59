import CZeroMQ
import Foundation
import Logging
import UGenData
import UGenKernels
import UGenModel
import UGenRecords
import UGenStore
import UGenTraining

/// Checkpoints and recovery: saving the stages' tensors as one checkpoint, and going back to the last one
/// when a worker is lost (the training loop is in Coordinator.swift).
extension Coordinator {
    // MARK: Checkpoints

    /// Gathers replica 0's tensors stage by stage and writes them as one layout-independent checkpoint.
    func checkpoint() throws {
        let t0 = Date()
        let ids = (0..<stages).map { slots[$0]! }
        broadcast(.saveRequest, SaveRequest(step: step), to: ids)
        let replies = try collect(.saveReply, from: ids, deadline: 120)
        var params: [NamedTensor] = [], mm: [NamedTensor] = [], vv: [NamedTensor] = []
        var optimizerStep = 0
        for (stage, id) in ids.enumerated() {
            let msg = replies[id]!.message
            do {
                optimizerStep = try msg.decode(SaveReply.self).optimizerStep
                for (i, (name, shape)) in model.parameterShapes(for: specs[stage]).enumerated() {
                    let count = shape.reduce(1, *)
                    params.append(NamedTensor(name: name, shape: shape, values: try msg.array(3 * i, Float.self, count: count)))
                    mm.append(NamedTensor(name: name, shape: shape, values: try msg.array(3 * i + 1, Float.self, count: count)))
                    vv.append(NamedTensor(name: name, shape: shape, values: try msg.array(3 * i + 2, Float.self, count: count)))
                }
            } catch { throw WorkerLost(workerId: id, reason: "malformed saveReply: \(error)") }
        }
        let sched = data.schedule
        let progress = TrainingProgress(
            step: step, tokensSeen: tokensSeen, dataSeed: config.dataSeed, dataState: data.source.state,
            vocabKind: sched.kind.rawValue, vocabActive: sched.activeCount(step: step),
            vocabOrder: sched.order.map { Int32(sched.firstVisualId + $0) },
            rngStates: ["init_seed": UInt64(config.seed), "vocab_seed": UInt64(config.vocabSeed)],
            configYAML: config.yaml, tokenizerHash: data.tokenizerHash, datasetHash: data.datasetHash)
        let ckpt = Checkpoint(
            model: model, vocabLayout: data.layout.attributes, params: params, adamM: mm, adamV: vv,
            optimizerStep: optimizerStep, progress: progress)
        let path = try CheckpointFile.save(ckpt, runDirectory: options.runDirectory, keep: config.keepCheckpoints)
        lastCheckpointPath = path
        let ms = Date().timeIntervalSince(t0) * 1000
        runLog.event("checkpoint", [("step", .int(step)), ("path", .string(path)), ("ms", .double(ms))])
        log.info("checkpoint \(path) (\(String(format: "%.0f", ms)) ms)")
    }

    // MARK: Failures

    /// A worker stopped answering or reported a failure: the current step is abandoned whole, the run
    /// goes back to its last checkpoint (or its start) and waits for enough workers.
    func recover(from lost: WorkerLost) throws {
        recovering = true
        assigned = false
        if let m = members[lost.workerId] {
            log.error("worker \(m.name) lost: \(lost.reason)")
            runLog.event(
                "lost",
                [
                    ("worker", .string(m.name)), ("host", .string(m.host)), ("reason", .string(lost.reason)),
                    ("step", .int(step)),
                ])
            // The fault is this worker's: a strike against its key; from the second one it is quarantined.
            strike(m.principal, name: m.name, reason: lost.reason)
            // If it is still alive (a hung step, a stalled link) it is told so, and joins again afresh.
            socket.sendNow([m.identity] + WireMessage(.reset, Reset(reason: "declared lost: \(lost.reason)", rejoin: true)).frames)
            identities[m.identity] = nil
            members[lost.workerId] = nil
            heartbeatIdentity[lost.workerId] = nil
        } else {
            log.error("step \(step) abandoned: \(lost.reason)")
            runLog.event("abandoned", [("reason", .string(lost.reason)), ("step", .int(step))])
        }
        // Everyone else drops what they were doing; they keep their place and get a new assignment.
        broadcast(.reset, Reset(reason: "worker \(lost.workerId) lost"), to: Array(members.keys))
        try rewind(to: try lastCheckpointPath.map(CheckpointFile.read))
        log.info("continuing from step \(step) once \(stages * config.replicas) workers are present")
    }

    /// A checkpoint keeps fp32 master weights whatever the run's precision, so it resumes in either; when
    /// the precision changes, an event says so (the losses from here on are not the other precision's).
    func notePrecisionChange() {
        guard let saved = checkpointPrecision, saved != config.precision else { return }
        runLog.event(
            "precision",
            [
                ("from", .string(saved.rawValue)), ("to", .string(config.precision.rawValue)),
                ("step", .int(step)), ("checkpoint", .string(lastCheckpointPath ?? "")),
            ])
        log.info("checkpoint trained in \(saved.rawValue) resumes in \(config.precision.rawValue) (master weights are fp32 either way)")
    }

    /// Puts the run back where `ckpt` left it (nil: its start): step, tokens seen, the data stream, and
    /// metrics.jsonl cut after that step; the next assignment sends the checkpoint's tensors.
    func rewind(to ckpt: Checkpoint?) throws {
        restorePoint = ckpt
        step = ckpt?.progress.step ?? 0
        tokensSeen = ckpt?.progress.tokensSeen ?? 0
        try data.source.restore(state: ckpt?.progress.dataState ?? initialDataState)
        try runLog.truncateMetrics(after: step)
        runLog.event("resume", [("step", .int(step)), ("checkpoint", .string(lastCheckpointPath ?? "initial weights"))])
    }
}
