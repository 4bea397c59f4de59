import Foundation
import UGenData
import UGenModel

/// The three ways to use a trained UGen: continue text, caption an image, draw an image
/// for a caption. Runs on the KV-cache `CachedDecoder`, and only ever samples ids that are legal at that point:
/// text ids or `<eos>` outside an image, (active) visual ids inside one — so an image always has exactly
/// the tokenizer's number of visual tokens.
public final class Generator {
    public let layout: VocabLayout
    public let decoder: CachedDecoder
    /// Visual ids the model may emit (all of them, or the active ones of a progressive checkpoint).
    public let visualAllowed: [Range<Int>]
    let textAllowed: [Range<Int>]
    /// Inactive visual ids of a progressive checkpoint: in the input they become `<unk_img>`, as in training.
    let inactiveVisual: Set<Int32>

    public init(stage: Stage, layout: VocabLayout, activeVisual: [Int32]? = nil) throws {
        guard stage.config.vocabSize == layout.vocabSize else {
            throw GenerationError.layoutMismatch(model: stage.config.vocabSize, layout: layout.vocabSize)
        }
        self.layout = layout
        decoder = CachedDecoder(stage: stage)
        textAllowed = [layout.textRange, Int(layout.eos)..<Int(layout.eos) + 1]
        if let activeVisual {
            guard activeVisual.allSatisfy(layout.isVisual) else { throw GenerationError.activeIdsOutside("\(layout.visualRange)") }
            visualAllowed = activeVisual.sorted().map { Int($0)..<Int($0) + 1 }
            inactiveVisual = Set(layout.visualRange.map { Int32($0) }).subtracting(activeVisual)
        } else {
            visualAllowed = [layout.visualRange]
            inactiveVisual = []
        }
    }

    private func feed(_ tokens: [Int32]) throws {
        guard tokens.count <= decoder.model.maxSeqLen else {
            throw GenerationError.promptTooLong(tokens: tokens.count, maxSeqLen: decoder.model.maxSeqLen)
        }
        decoder.reset()
        for t in tokens { decoder.append(inactiveVisual.contains(t) ? layout.unkImage : t) }
    }

    /// Samples text ids until `<eos>` (not returned), `maxNew` tokens, or the model's length limit.
    private func sampleText(maxNew: Int, sampler: inout Sampler) -> [Int32] {
        var out: [Int32] = []
        while out.count < maxNew {
            let next = sampler.sample(decoder.logits.data, allowed: textAllowed)
            if next == layout.eos || decoder.length >= decoder.model.maxSeqLen { break }
            out.append(next)
            decoder.append(next)
        }
        return out
    }

    /// Continues `<bos> prompt` with text.
    public func continueText(_ prompt: [Int32], maxNew: Int, sampler: inout Sampler) throws -> [Int32] {
        try feed([layout.bos] + prompt)
        return sampleText(maxNew: maxNew, sampler: &sampler)
    }

    /// Captions an image given as visual ids: `<bos> <boi> v… <eoi>` → caption text.
    public func caption(visualIds: [Int32], maxNew: Int, sampler: inout Sampler) throws -> [Int32] {
        guard visualIds.allSatisfy(layout.isVisual) else { throw GenerationError.captionNotVisual }
        try feed([layout.bos, layout.boi] + visualIds + [layout.eoi])
        return sampleText(maxNew: maxNew, sampler: &sampler)
    }

    /// Draws an image for a caption: `<bos> caption <boi>` → exactly `count` visual ids.
    public func image(caption: [Int32], count: Int, sampler: inout Sampler) throws -> [Int32] {
        guard !visualAllowed.isEmpty else { throw GenerationError.noVisualActive }
        try feed([layout.bos] + caption + [layout.boi])
        guard decoder.length + count <= decoder.model.maxSeqLen else {
            throw GenerationError.captionTooLong(tokens: caption.count, imageTokens: count, maxSeqLen: decoder.model.maxSeqLen)
        }
        var out: [Int32] = []
        for i in 0..<count {
            let next = sampler.sample(decoder.logits.data, allowed: visualAllowed)
            out.append(next)
            if i + 1 < count { decoder.append(next) }
        }
        return out
    }
}
