import UGenData
import UGenKernels
import XCTest

@testable import UGenTraining

/// What the colour-image experiment relies on: the frequency activation order and the masking ablations,
/// the Fashion-MNIST class reader, the judge on real Fashion-MNIST images, and captioned sample PNGs.
final class ImageExperimentTests: XCTestCase {
    func schedule(counts: [Int]?, masking: VocabSchedule.Masking = .all) -> VocabSchedule {
        VocabSchedule(
            kind: .progressive, textOnlySteps: 0, start: 2, every: 1, add: 1, seed: 7, codebook: counts?.count ?? 6,
            firstVisualId: 100, unkImageId: 99, codeCounts: counts, masking: masking)
    }

    func testFrequencyOrderPutsTheMostFrequentCodesFirstAndBreaksTiesByTheSeededOrder() {
        let counts = [5, 90, 0, 90, 12, 0]
        let s = schedule(counts: counts), random = schedule(counts: nil)
        XCTAssertEqual(Set(s.order), Set(0..<6))
        XCTAssertEqual(s.order.map { counts[$0] }, [90, 90, 12, 5, 0, 0], "descending counts")
        for (a, b) in [(1, 3), (2, 5)] {
            let first = random.order.firstIndex(of: a)! < random.order.firstIndex(of: b)! ? a : b
            XCTAssertEqual(
                s.order.firstIndex(of: first)! < s.order.firstIndex(of: first == a ? b : a)!, true,
                "a tie keeps the seeded random order")
        }
    }

    func testMaskingAblationsLeaveOneTableAsIfAllWereActive() {
        for masking in [VocabSchedule.Masking.all, .softmaxAndLoss, .inputsOnly] {
            let s = schedule(counts: nil, masking: masking)
            var inactive = [UInt8](repeating: 0, count: 106), map = [Int32](repeating: 0, count: 106)
            s.masks(active: 2, inactive: &inactive, tokenMap: &map)
            let dropped = (100..<106).filter { inactive[$0] == 1 }.count, mapped = (100..<106).filter { map[$0] == 99 }.count
            XCTAssertEqual(dropped, masking == .inputsOnly ? 0 : 4, "\(masking): rules 1 and 3 (softmax, loss)")
            XCTAssertEqual(mapped, masking == .softmaxAndLoss ? 0 : 4, "\(masking): rule 2 (inputs)")
        }
        XCTAssertThrowsError(try RunConfig.parse(yaml: "vocab_schedule: {order: alphabetical}"))
        XCTAssertEqual(try RunConfig.parse(yaml: "vocab_schedule: {order: frequency, masking: inputs-only}").vocabMasking, "inputs-only")
    }

    /// Counts over a real tokenized dataset: every visual token of every image example, nothing else.
    func testVisualCodeCountsCoverEveryImageTokenOfARealDataset() throws {
        let w = try EvalWorld.shared()
        let reader = try DatasetReader(path: w.train)
        let counts = try RunData.visualCodeCounts(reader)
        let images = reader.countsByTask[1] + reader.countsByTask[2]
        XCTAssertEqual(counts.reduce(0, +), images * w.summary.visualTokensPerImage)
        var c = w.config
        c.vocabOrder = "frequency"
        let order = RunData.schedule(c, reader.layout, codeCounts: counts).order
        XCTAssertEqual(counts[order[0]], counts.max())
        XCTAssertEqual(order.map { counts[$0] }, order.map { counts[$0] }.sorted(by: >))
    }

    /// A learning-curve point: the same teacher-forced losses as the full report, and nothing generated.
    func testLossesOnlyMeasuresTheSameLossesAndGeneratesNothing() throws {
        let w = try EvalWorld.shared()
        let m = try TrainedModel(checkpoint: w.trained, tokenizer: w.tokenizer)
        var o = EvaluationOptions()
        o.rankExamples = 0
        let full = try Evaluator(model: m).run(valPath: w.val, options: o)
        o.lossesOnly = true
        let curve = try Evaluator(model: m).run(valPath: w.val, options: o)
        XCTAssertEqual(curve.text?.loss, full.text?.loss)
        XCTAssertEqual(curve.img2txt?.loss, full.img2txt?.loss)
        XCTAssertEqual(curve.txt2img?.loss, full.txt2img?.loss)
        XCTAssertNotNil(full.img2txt?.captionAccuracy); XCTAssertNotNil(full.judge)
        XCTAssertNil(curve.img2txt?.captionAccuracy); XCTAssertNil(curve.txt2img?.judgeAccuracy); XCTAssertNil(curve.judge)
        let ten = (0..<10).map { Example(tokens: [Int32($0)], mask: [0], task: .text) }
        XCTAssertEqual(Evaluator.spread(ten, 4).map { $0.tokens[0] }, [0, 2, 5, 7], "evenly spaced, not the first four")
        XCTAssertEqual(Evaluator.spread(ten, nil).count, 10); XCTAssertEqual(Evaluator.spread(ten, 20).count, 10)
    }

    func testFashionCaptionsNameTheirClassAndOnlyIt() {
        let classes = CaptionClasses.fashion
        let nouns = [
            ("a", "t-shirt"), ("a pair of", "trousers"), ("a", "pullover"), ("a", "dress"), ("a", "coat"),
            ("a", "sandal"), ("a", "shirt"), ("a", "sneaker"), ("a", "bag"), ("an", "ankle boot"),
        ]
        let templates = [
            "{a} {c}", "a photo of {a} {c}", "{a} {c} on a black background", "{c}", "a product photo: {c}",
            "{a} {c}, in greyscale", "{c}, seen from the front",
        ]
        for (label, (article, noun)) in nouns.enumerated() {
            for t in templates {
                let caption = t.replacingOccurrences(of: "{a}", with: article).replacingOccurrences(of: "{c}", with: noun)
                XCTAssertEqual(classes.parse(caption), label, caption)
            }
        }
        XCTAssertEqual(classes.parse("a T-Shirt"), 0, "a t-shirt is not a shirt")
        XCTAssertNil(classes.parse("a shirt and a coat"), "two classes")
        XCTAssertNil(classes.parse("an ankle"), "half of a name")
        XCTAssertNil(classes.parse("a handbag"), "words inside words do not count")
        XCTAssertEqual(CaptionClasses.detect(["a coat", "a photo of a bag", "grinning face"])?.name, "Fashion-MNIST")
        XCTAssertEqual(CaptionClasses.detect(["a handwritten seven", "the digit 3 written by hand"])?.name, "digits")
        XCTAssertNil(CaptionClasses.detect(["grinning face", "goose", "flag: Germany"]))
    }

    /// Real Fashion-MNIST (Tests/fixtures/fashion-400.png: the first 300 training and first 100 test images of
    /// the Debian package, MIT): the judge, trained on the 300, is well above chance on the 100 held-out
    /// ones, and at chance when its training labels are scrambled.
    func testJudgeIsAccurateOnHeldOutRealFashionImages() throws {
        let (images, labels) = try Self.fashionFixture()
        let x = Evaluator.pixels(Array(images[..<300])), hx = Evaluator.pixels(Array(images[300...]))
        let train = Array(labels[..<300]), held = Array(labels[300...])
        let judge = PixelClassifier(x: x, labels: train, features: 28 * 28, classes: 10)
        let accuracy = judge.accuracy(hx, labels: held)
        XCTAssertGreaterThan(accuracy, 0.6, "held-out accuracy on \(held.count) real Fashion-MNIST images")
        var rng = SplitMix64(seed: 5), scrambled = train
        for i in stride(from: scrambled.count - 1, to: 0, by: -1) { scrambled.swapAt(i, rng.nextInt(below: i + 1)) }
        let fooled = PixelClassifier(x: x, labels: scrambled, features: 28 * 28, classes: 10)
        XCTAssertLessThan(fooled.accuracy(hx, labels: held), 0.3, "scrambled labels must not predict held-out items")
    }

    static func fashionFixture() throws -> (images: [PNGImage], labels: [Int]) {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fixtures")
        let sheet = try PNGImage.read(dir.appendingPathComponent("fashion-400.png").path)
        let labels = try String(contentsOf: dir.appendingPathComponent("fashion-400-labels.txt"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines).map { Int(String($0))! }
        let columns = sheet.width / 28
        var images: [PNGImage] = []
        for i in labels.indices {
            let x0 = (i % columns) * 28, y0 = (i / columns) * 28
            var pixels: [UInt8] = []
            for y in 0..<28 {
                let start: Int = (y0 + y) * sheet.width + x0
                pixels += sheet.pixels[start..<(start + 28)]
            }
            images.append(PNGImage(width: 28, height: 28, channels: 1, pixels: pixels))
        }
        return (images, labels)
    }

    func testLabelledSheetKeepsTheImagesAndWritesTheCaptionBesideThem() throws {
        let image = PNGImage(width: 8, height: 4, channels: 3, pixels: (0..<96).map { UInt8(($0 * 7) % 256) })
        let out = image.labelled("red apple", scale: 2)
        XCTAssertEqual(out.height, max(4, BitmapFont.height * 2 + 16))
        let strip = out.width - 8, y0 = (out.height - 4) / 2
        for y in 0..<4 {
            let row = ((y0 + y) * out.width + strip) * 3
            XCTAssertEqual(Array(out.pixels[row..<(row + 24)]), Array(image.pixels[(y * 24)..<(y * 24 + 24)]), "row \(y) copied")
        }
        let ink = (0..<out.height).flatMap { y in (0..<strip).map { (y * out.width + $0) * 3 } }.filter { out.pixels[$0] == 0 }.count
        XCTAssertGreaterThan(ink, 8 * 4, "the caption is drawn")
        XCTAssertEqual(image.labelled("").width, 8 + 8, "an empty caption is just the margin")
        XCTAssertEqual(
            PNGImage.wrap("a very long caption about a red apple", columns: 12), ["a very long", "caption", "about a red", "apple"])
        XCTAssertTrue(BitmapFont.ink("A", x: 3, y: 5) || BitmapFont.ink("A", x: 2, y: 5), "glyphs have ink")
        XCTAssertFalse((0..<BitmapFont.height).contains { y in (0..<BitmapFont.width).contains { BitmapFont.ink(" ", x: $0, y: y) } })
    }
}
