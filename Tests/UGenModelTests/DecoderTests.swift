import XCTest
import UGenKernels
@testable import UGenModel

final class DecoderTests: XCTestCase {
    /// Greedy decoding with the cache gives the same tokens as recomputing the whole prefix each time,
    /// and the logits agree to float rounding.
    func testCachedGreedyEqualsUncached() throws {
        let c = ModelConfig(vocabSize: 61, dModel: 32, nLayers: 3, nHeads: 4, nKVHeads: 2, ffnHidden: 48, maxSeqLen: 24)
        let stage = try Stage(config: c, spec: .whole(c), rows: 1, seqLen: 24)
        stage.initialize(seed: 4)
        // Larger weights than the init so the argmax is decisive and the test meaningful.
        for p in stage.parameters where p.decays { for i in 0..<p.value.count { p.value[i] *= 8 } }
        let decoder = CachedDecoder(stage: stage)
        var cached: [Int32] = [5, 17], uncached: [Int32] = [5, 17]
        for t in cached { decoder.append(t) }
        var maxDiff: Float = 0
        while cached.count < 24 {
            let ref = CachedDecoder.uncachedLogits(stage: stage, tokens: uncached)
            for j in 0..<c.vocabSize { maxDiff = max(maxDiff, abs(ref[j] - decoder.logits[j])) }
            let a = argmax(decoder.logits.array), b = argmax(ref)
            cached.append(a); uncached.append(b)
            if cached.count < 24 { decoder.append(a) }
        }
        XCTAssertEqual(cached, uncached)
        XCTAssertLessThan(maxDiff, 1e-4)
        XCTAssertGreaterThan(Set(cached).count, 3, "a non-degenerate sequence")
    }

    func argmax(_ v: [Float]) -> Int32 { Int32(v.indices.max { v[$0] < v[$1] }!) }
}
