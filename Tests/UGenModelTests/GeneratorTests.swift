import UGenData
import UGenModel
import XCTest

@testable import UGenTraining

final class GeneratorTests: XCTestCase {
    let layout = VocabLayout(textVocab: 260, codebookSize: 30)

    func generator(active: [Int32]? = nil) throws -> Generator {
        let c = ModelConfig(vocabSize: layout.vocabSize, dModel: 32, nLayers: 2, nHeads: 4, nKVHeads: 2, ffnHidden: 48, maxSeqLen: 64)
        let stage = try Stage(config: c, spec: .whole(c), rows: 1, seqLen: 64)
        stage.initialize(seed: 2)
        return try Generator(stage: stage, layout: layout, activeVisual: active)
    }

    func testEachTaskEmitsOnlyLegalIds() throws {
        let g = try generator()
        var s = Sampler(temperature: 1.5, seed: 1)
        for trial in 0..<5 {
            let img = try g.image(caption: [72, 105], count: 16, sampler: &s)
            XCTAssertEqual(img.count, 16, "an image has exactly the tokenizer's number of visual tokens")
            XCTAssertTrue(img.allSatisfy(layout.isVisual), "trial \(trial): \(img)")
            let cap = try g.caption(visualIds: img, maxNew: 10, sampler: &s)
            XCTAssertTrue(cap.allSatisfy(layout.isText), "\(cap)")
            let text = try g.continueText([72, 105], maxNew: 12, sampler: &s)
            XCTAssertTrue(text.allSatisfy(layout.isText))
            XCTAssertLessThanOrEqual(text.count, 12)
        }
    }

    func testOnlyActiveVisualIdsAreDrawnAndLimitsAreChecked() throws {
        let active: [Int32] = [layout.visualId(code: 3), layout.visualId(code: 17)]
        let g = try generator(active: active)
        var s = Sampler(temperature: 2, seed: 5)
        let img = try g.image(caption: [65], count: 40, sampler: &s)
        XCTAssertTrue(Set(img).isSubset(of: Set(active)))
        XCTAssertThrowsError(try g.image(caption: [65], count: 70, sampler: &s), "longer than max_seq_len")
        XCTAssertThrowsError(try g.caption(visualIds: [65], maxNew: 3, sampler: &s), "text is not an image")
    }
}
