import Foundation
import UGenKernels

/// Picks the next token from logits, only ever among the ids that are legal at that point (visual ids
/// inside an image, text and `<eos>` outside). Greedy, or temperature → top-k → top-p (nucleus) sampling
/// with a seeded generator.
public struct Sampler {
    public var temperature: Double
    public var topK: Int
    public var topP: Double
    public var greedy: Bool
    private var rng: SplitMix64
    private var candidates: [(id: Int, logit: Float)] = []

    public init(temperature: Double = 1, topK: Int = 0, topP: Double = 1, greedy: Bool = false, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.greedy = greedy || temperature <= 0
        rng = SplitMix64(seed: seed)
    }

    /// The chosen id among `allowed` (ranges of ids).
    public mutating func sample(_ logits: UnsafePointer<Float>, allowed: [Range<Int>]) -> Int32 {
        candidates.removeAll(keepingCapacity: true)
        for r in allowed { for id in r where logits[id].isFinite { candidates.append((id, logits[id])) } }
        precondition(!candidates.isEmpty, "no legal token to sample")
        if greedy { return Int32(candidates.max { $0.logit < $1.logit }!.id) }
        candidates.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        if topK > 0 && candidates.count > topK { candidates.removeLast(candidates.count - topK) }
        let mx = Double(candidates[0].logit)
        var probs = candidates.map { exp((Double($0.logit) - mx) / temperature) }
        let total = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= total }
        if topP < 1 {  // keep the smallest prefix whose probability reaches topP
            var cum = 0.0, keep = probs.count
            for (i, p) in probs.enumerated() { cum += p; if cum >= topP { keep = i + 1; break } }
            probs.removeLast(probs.count - keep)
            let t = probs.reduce(0, +)
            for i in probs.indices { probs[i] /= t }
        }
        var u = rng.nextDouble()
        for (i, p) in probs.enumerated() { u -= p; if u < 0 { return Int32(candidates[i].id) } }
        return Int32(candidates[probs.count - 1].id)
    }
}
