import Foundation
import UGenData
import UGenTraining

/// One step's `step` orders, built once per step instead of once per worker: the order's head (its JSON)
/// and the arrays all workers of a kind share — the vocabulary's input id map and inactive table, V
/// entries each — are encoded once, and each worker's rows are copied once, straight from the batch.
/// With hundreds of workers, encoding the same body and copying the same tables per worker was a good
/// part of the coordinator's step.
struct StepMessages {
    let head: Data
    let tokenMap: Data?
    let inactive: Data?
    let batch: Batch
    /// Token positions per replica (its rows × seq_len).
    let perReplica: Int

    init(order: StepOrder, vocab: StepVocab, batch: Batch, perReplica: Int) {
        head = WireMessage(.step, order).frames[0]
        tokenMap = vocab.tokenMap.map(bytes)
        inactive = vocab.inactive.map(bytes)
        self.batch = batch
        self.perReplica = perReplica
    }

    /// The order's frames (no identity) for a worker of `stage` of `stages` in `replica`. Arrays, as
    /// `StepOrder` lists them: a first stage gets the token ids (and the id map), a last stage the
    /// targets, mask and tasks (and the inactive table).
    func frames(stage: Int, of stages: Int, replica: Int) -> [Data] {
        let rows = (replica * perReplica)..<((replica + 1) * perReplica)
        var frames = [head]
        if stage == 0 {
            frames.append(batch.inputs[rows].withUnsafeBytes { Data($0) })
            if let tokenMap { frames.append(tokenMap) }
        }
        if stage == stages - 1 {
            frames.append(batch.targets[rows].withUnsafeBytes { Data($0) })
            frames.append(batch.mask[rows].withUnsafeBytes { Data($0) })
            frames.append(batch.tasks[rows].withUnsafeBytes { Data($0) })
            if let inactive { frames.append(inactive) }
        }
        return frames
    }
}
