import XCTest

@testable import UGenTraining

final class SamplerTests: XCTestCase {
    let logits: [Float] = [2.0, 0.5, 3.0, -1.0, 1.0, 0.0]

    func testGreedyPicksTheBestLegalId() {
        var s = Sampler(greedy: true)
        XCTAssertEqual(s.sample(logits, allowed: [0..<6]), 2)
        XCTAssertEqual(s.sample(logits, allowed: [3..<6]), 4, "id 2 is illegal here")
        XCTAssertEqual(s.sample(logits, allowed: [0..<2, 4..<5]), 0)
    }

    func testSamplingStaysLegalAndFollowsTopK() {
        var s = Sampler(temperature: 1, topK: 2, seed: 3)
        var seen = Set<Int32>()
        for _ in 0..<300 { seen.insert(s.sample(logits, allowed: [0..<6])) }
        XCTAssertEqual(seen, [0, 2], "top-2 keeps ids 2 and 0 only")
        var legal = Sampler(temperature: 5, seed: 4)
        for _ in 0..<300 { XCTAssertTrue((3..<6).contains(Int(legal.sample(logits, allowed: [3..<6])))) }
    }

    func testTopPAndSeedReproducibility() {
        var s = Sampler(temperature: 1, topP: 0.5, seed: 1)
        for _ in 0..<100 { XCTAssertEqual(s.sample(logits, allowed: [0..<6]), 2, "id 2 alone holds over half the mass") }
        var a = Sampler(temperature: 1, seed: 9), b = Sampler(temperature: 1, seed: 9)
        let x = (0..<50).map { _ in a.sample(logits, allowed: [0..<6]) }
        XCTAssertEqual(x, (0..<50).map { _ in b.sample(logits, allowed: [0..<6]) })
        XCTAssertGreaterThan(Set(x).count, 2)
    }
}
