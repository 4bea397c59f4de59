import Foundation
import UGenData

/// The training data of a run: the tokenized dataset in `data.dir`, its vocabulary layout, the packer
/// that turns it into global batches, and the progressive-vocabulary schedule over its codebook.
public struct RunData {
    public let source: BatchSource
    public let layout: VocabLayout
    public let schedule: VocabSchedule
    /// The model's vocabulary size (= the layout's V; `model.vocab_size` must agree when set).
    public var vocabSize: Int { layout.vocabSize }
    /// What the run trains on, as checkpoints record it: the content hash of the tokenizer the dataset was
    /// made with, and the dataset's identity (`DatasetReader.identityHash`).
    public var tokenizerHash = ""
    public var datasetHash = ""

    /// Opens `data.dir/train.h5`; errors are one line naming the file or key at fault.
    public static func open(_ config: RunConfig) throws -> RunData {
        let path = config.dataDir + "/train.h5"
        guard FileManager.default.fileExists(atPath: path) else {
            throw RunError.noDataset(path: path, dataDir: config.dataDir)
        }
        let reader = try DatasetReader(path: path)
        let layout = reader.layout
        if config.vocabSize != 0 && config.vocabSize != layout.vocabSize {
            throw RunError.vocabularyMismatch(configured: config.vocabSize, path: path, dataset: layout.vocabSize)
        }
        let packer = try Packer(
            readers: [reader], rows: config.batchRows, seqLen: config.seqLen,
            weights: TaskWeights(
                text: config.weightText, imageToText: config.weightImg2Txt,
                textToImage: config.weightTxt2Img),
            seed: UInt64(config.dataSeed))
        let counts = config.vocabOrder == "frequency" ? try visualCodeCounts(reader) : nil
        return RunData(
            source: PackerSource(packer), layout: layout, schedule: schedule(config, layout, codeCounts: counts),
            tokenizerHash: reader.tokenizerHash, datasetHash: reader.identityHash)
    }

    /// The run's vocabulary schedule over the layout's K visual codes; `codeCounts` (per code) orders the
    /// codes by frequency when `vocab_schedule.order` is `frequency`.
    public static func schedule(_ c: RunConfig, _ layout: VocabLayout, codeCounts: [Int]? = nil) -> VocabSchedule {
        VocabSchedule(
            kind: c.vocabKind == "vanilla" ? .vanilla : .progressive, textOnlySteps: c.textOnlySteps,
            start: c.vocabStart, every: c.vocabEvery, add: c.vocabAdd, seed: c.vocabSeed,
            codebook: layout.codebookSize, firstVisualId: layout.visualRange.lowerBound,
            unkImageId: Int(layout.unkImage), codeCounts: c.vocabOrder == "frequency" ? codeCounts : nil,
            masking: VocabSchedule.Masking(rawValue: c.vocabMasking) ?? .all)
    }

    /// How often each visual code occurs in the dataset's examples (one pass over its tokens).
    public static func visualCodeCounts(_ reader: DatasetReader) throws -> [Int] {
        let layout = reader.layout
        var counts = [Int](repeating: 0, count: layout.codebookSize)
        var i = 0
        while i < reader.count {
            let end = min(reader.count, i + 4096)
            for e in try reader.examples(i..<end) where e.task != .text {
                for t in e.tokens where layout.isVisual(t) { counts[layout.code(of: t)] += 1 }
            }
            i = end
        }
        return counts
    }
}

/// The packer as a `BatchSource`. The packer is sequential; asking for any step but the next one is a
/// programming error (a resumed run restores the packer's state first).
public final class PackerSource: BatchSource {
    public let packer: Packer
    public init(_ packer: Packer) { self.packer = packer }

    public func batch(step: Int, textOnly: Bool) throws -> Batch {
        guard step == packer.state.batches else {
            throw RunError.dataStreamAt(batch: packer.state.batches, asked: step)
        }
        return try packer.nextBatch(textOnly: textOnly)
    }

    public var state: String {
        String(data: try! JSONEncoder().encode(packer.state), encoding: .utf8)!
    }

    public func restore(state: String) throws {
        do { try packer.restore(try JSONDecoder().decode(PackerState.self, from: Data(state.utf8))) } catch {
            throw RunError.unrestorableDataState(state: state, reason: "\(error)")
        }
    }
}

extension StepVocab {
    /// The masks of `step` under `schedule` (nil tables when every visual id is active).
    public static func at(step: Int, schedule: VocabSchedule, vocabSize: Int) -> StepVocab {
        let active = schedule.activeCount(step: step)
        if active >= schedule.codebook { return .allActive(codebook: schedule.codebook) }
        var inactive = [UInt8](repeating: 0, count: vocabSize), map = [Int32](repeating: 0, count: vocabSize)
        schedule.masks(active: active, inactive: &inactive, tokenMap: &map)
        return StepVocab(activeVisual: active, inactive: inactive, tokenMap: map)
    }
}
