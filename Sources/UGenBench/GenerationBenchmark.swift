import Foundation
import UGenData
import UGenKernels
import UGenModel
import UGenStore
import UGenTraining

/// Generation speed with and without the key/value cache, on a real checkpoint: greedy decoding of
/// `newTokens` tokens after a prompt, both ways, timing only the decoding (not building stages).
///
/// Without the cache every new token re-runs the full causal forward pass over the whole prefix (padded up
/// to a multiple of 16 positions, the stage shapes being fixed); with it, each token costs one position.
/// Both must produce the same tokens.
public enum GenerationBenchmark {
    public struct Result: Codable, Sendable {
        public var promptTokens: Int
        public var newTokens: Int
        public var cachedTokensPerS: Double
        public var uncachedTokensPerS: Double
        public var speedup: Double
        public var sameTokens: Bool
        /// Largest difference between the cached and uncached next-token logits.
        public var maxLogitDifference: Double
        public var cachedTokens: [Int32]
        public var uncachedTokens: [Int32]
    }

    static let bucket = 16

    public static func run(_ model: TrainedModel, prompt: [Int32], newTokens: Int) throws -> Result {
        let maxLen = model.model.maxSeqLen
        guard !prompt.isEmpty, prompt.count + newTokens <= maxLen else {
            throw BenchError.promptTooLong(prompt: prompt.count, newTokens: newTokens, maxSeqLen: maxLen)
        }
        func argmax(_ p: UnsafePointer<Float>, _ n: Int) -> Int32 {
            var best = 0
            for i in 1..<n where p[i] > p[best] { best = i }
            return Int32(best)
        }
        let vocab = model.model.vocabSize

        // With the cache.
        let decoder = CachedDecoder(stage: try model.stage(rows: 1, seqLen: 1))
        var cached = prompt
        var cachedLogits: [[Float]] = []
        var t0 = Date()
        for t in prompt { decoder.append(t) }
        for i in 0..<newTokens {
            let next = argmax(decoder.logits.data, vocab)
            cachedLogits.append(decoder.logits.array)
            cached.append(next)
            if i + 1 < newTokens { decoder.append(next) }
        }
        let cachedSeconds = Date().timeIntervalSince(t0)

        // Without: the whole prefix every token.
        var uncached = prompt
        var seconds = 0.0, maxDiff: Float = 0
        var stage: Stage? = nil
        for i in 0..<newTokens {
            let len = min(maxLen, (uncached.count + bucket - 1) / bucket * bucket)
            if stage?.seqLen != len { stage = nil; stage = try model.stage(rows: 1, seqLen: len) }
            t0 = Date()
            let logits = CachedDecoder.uncachedLogits(stage: stage!, tokens: uncached)
            let next = logits.withUnsafeBufferPointer { argmax($0.baseAddress!, vocab) }
            seconds += Date().timeIntervalSince(t0)
            for j in 0..<vocab { maxDiff = max(maxDiff, abs(logits[j] - cachedLogits[i][j])) }
            uncached.append(next)
        }
        let c = Double(newTokens) / max(cachedSeconds, 1e-9), u = Double(newTokens) / max(seconds, 1e-9)
        return Result(
            promptTokens: prompt.count, newTokens: newTokens, cachedTokensPerS: c, uncachedTokensPerS: u,
            speedup: c / u, sameTokens: cached == uncached, maxLogitDifference: Double(maxDiff),
            cachedTokens: Array(cached.dropFirst(prompt.count)), uncachedTokens: Array(uncached.dropFirst(prompt.count)))
    }
}
