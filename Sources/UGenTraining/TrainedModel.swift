import Foundation
import UGenData
import UGenKernels
import UGenModel
import UGenStore

/// A checkpoint opened for use: its weights, the tokenizers it was trained with, and which visual ids it
/// may emit. What `ugen generate` and `ugen eval` start from.
///
/// The active visual ids are the checkpoint's progressive-vocabulary state: a checkpoint saved while the
/// visual vocabulary was still growing only knows its active ids, so generation only samples those and
/// (as in training) reads an inactive id in its input as `<unk_img>`.
public final class TrainedModel {
    public let checkpointPath: String
    public let model: ModelConfig
    public let progress: TrainingProgress
    public let tokenizers: Tokenizers
    public let tokenizerPath: String
    public var layout: VocabLayout { tokenizers.layout }
    /// The run configuration stored in the checkpoint, when it parses.
    public let runConfig: RunConfig?
    /// The visual ids the model may emit, sorted; nil when all K are active.
    public let activeVisual: [Int32]?
    /// The weights under their HuggingFace names.
    public let params: [NamedTensor]
    /// How the stages this model builds multiply (`--precision`): the checkpoint's fp32 weights serve both.
    public var precision: Precision = .fp32

    /// Opens `checkpoint` (a file, `RUN/checkpoints/latest`, or a run folder) and its tokenizer
    /// (`tokenizer`, or `data.dir/tokenizer.h5` of the config the checkpoint was trained with). Errors are
    /// one line naming the file at fault.
    public init(checkpoint: String, tokenizer: String? = nil) throws {
        let (path, ck) = try CheckpointFile.load(checkpoint)  // the one verifier: as strict as resume and `ugen inspect`
        checkpointPath = path
        model = ck.model
        progress = ck.progress
        params = ck.params
        runConfig = try? RunConfig.parse(yaml: ck.progress.configYAML, source: path)
        if let tokenizer {
            tokenizerPath = tokenizer
        } else if let runConfig {
            tokenizerPath = runConfig.dataDir + "/tokenizer.h5"
        } else {
            throw GenerationError.noDataDir(checkpoint: path)
        }
        guard FileManager.default.fileExists(atPath: tokenizerPath) else {
            throw GenerationError.noTokenizer(path: tokenizerPath, fromConfig: tokenizer == nil)
        }
        tokenizers = try Tokenizers(path: tokenizerPath)
        let l = tokenizers.layout
        let t = ck.vocabLayout["text_vocab"] ?? l.textVocab, k = ck.vocabLayout["codebook"] ?? l.codebookSize
        guard ck.model.vocabSize == l.vocabSize, t == l.textVocab, k == l.codebookSize else {
            throw GenerationError.vocabularyMismatch(
                tokenizer: tokenizerPath, t: l.textVocab, k: l.codebookSize, v: l.vocabSize,
                checkpoint: path, ckT: t, ckK: k, ckV: ck.model.vocabSize)
        }
        let recorded = ck.progress.tokenizerHash
        guard recorded.isEmpty || recorded == tokenizers.hash else {  // same layout, other merges or codebook: other ids
            throw GenerationError.otherTokenizer(path: tokenizerPath, hash: tokenizers.hash, checkpoint: path, recorded: recorded)
        }
        activeVisual = try Self.activeIds(ck.progress, layout: l, path: path)
    }

    /// `PATH` → itself; `RUN/checkpoints/latest` or a run folder → the checkpoint `latest` names.
    public static func resolve(_ spec: String) throws -> String { try CheckpointFile.locate(spec).path }

    /// The active visual ids recorded in a checkpoint: nil when all are active. `vocab_order` holds the
    /// activation order as visual ids (the cluster) or as codes 0..<K; both are accepted.
    static func activeIds(_ p: TrainingProgress, layout l: VocabLayout, path: String) throws -> [Int32]? {
        let k = l.codebookSize
        if p.vocabKind == "vanilla" || p.vocabActive >= k || p.vocabOrder.isEmpty { return nil }
        let first = Int32(l.visualRange.lowerBound)
        let order: [Int32]
        if p.vocabOrder.count == k, Set(p.vocabOrder) == Set((0..<Int32(k)).map { $0 + first }) {
            order = p.vocabOrder
        } else if p.vocabOrder.count == k, Set(p.vocabOrder) == Set(0..<Int32(k)) {
            order = p.vocabOrder.map { $0 + first }
        } else {
            throw GenerationError.badVocabOrder(checkpoint: path, visualIds: k)
        }
        return Array(order.prefix(max(0, p.vocabActive))).sorted()
    }

    /// A whole-model stage of the given shape holding the checkpoint's weights.
    public func stage(rows: Int, seqLen: Int) throws -> Stage {
        let s = try Stage(config: model, spec: .whole(model), rows: rows, seqLen: seqLen, precision: precision)
        try s.importTensors(params: params)
        return s
    }

    /// A generator over this model (KV cache, legal ids only).
    public func generator() throws -> Generator {
        try Generator(stage: try stage(rows: 1, seqLen: 1), layout: layout, activeVisual: activeVisual)
    }

    /// The training masks of the checkpoint's vocabulary state (nil tables when every id is active):
    /// inactive ids leave the softmax and become `<unk_img>` in the input.
    public var stepVocab: StepVocab {
        guard let activeVisual else { return .allActive(codebook: layout.codebookSize) }
        var inactive = [UInt8](repeating: 0, count: layout.vocabSize), map = (0..<Int32(layout.vocabSize)).map { $0 }
        let live = Set(activeVisual)
        for id in layout.visualRange where !live.contains(Int32(id)) {
            inactive[id] = 1
            map[id] = layout.unkImage
        }
        return StepVocab(activeVisual: activeVisual.count, inactive: inactive, tokenMap: map)
    }

    /// Visual tokens per image.
    public var tokensPerImage: Int { tokenizers.tokensPerImage }

    /// The image tokenizer, or an error naming the tokenizer file when it has none.
    public func imageTokenizer() throws -> VQTokenizer {
        guard let vq = tokenizers.image else {
            throw GenerationError.noImageCodebook(tokenizer: tokenizerPath)
        }
        return vq
    }
}
