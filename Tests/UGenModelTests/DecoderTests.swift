import UGenKernels
import XCTest

@testable import UGenModel

final class DecoderTests: XCTestCase {
    /// Greedy decoding with the cache gives the same tokens as recomputing the whole prefix each time,
    /// and the logits agree to float rounding (fp32), or to bf16's (the products round their operands the
    /// same way in both paths; only the float32 sums' order may differ with the product shapes).
    func testCachedGreedyEqualsUncached() throws {
        try checkCachedGreedyEqualsUncached(.fp32, tolerance: 1e-4)
    }

    func testCachedGreedyEqualsUncachedInBF16() throws {
        try checkCachedGreedyEqualsUncached(.bf16, tolerance: 1e-3)
    }

    func checkCachedGreedyEqualsUncached(_ precision: Precision, tolerance: Float) throws {
        let c = ModelConfig(vocabSize: 61, dModel: 32, nLayers: 3, nHeads: 4, nKVHeads: 2, ffnHidden: 48, maxSeqLen: 24)
        let stage = try Stage(config: c, spec: .whole(c), rows: 1, seqLen: 24, precision: precision)
        stage.initialize(seed: 4)
        // Larger weights than the init so the argmax is decisive and the test meaningful.
        for p in stage.parameters where p.decays { for i in 0..<p.value.count { p.value[i] *= 8 } }
        stage.refreshLowPrecisionWeights()
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
        XCTAssertLessThan(maxDiff, tolerance)
        XCTAssertGreaterThan(Set(cached).count, 3, "a non-degenerate sequence")
    }

    func argmax(_ v: [Float]) -> Int32 { Int32(v.indices.max { v[$0] < v[$1] }!) }
}
