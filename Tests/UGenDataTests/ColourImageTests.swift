import UGenKernels
import UGenStore
import XCTest

@testable import UGenData

/// The colour image path: RGB 4×4 patches, images of several sizes on one canvas, held-out pairs files,
/// a k-means sample stratified by source, and the tokenizer report (PSNR, perplexity, dead codes).
final class ColourImageTests: XCTestCase {
    /// `count` 32×32 RGB images: two or three coloured discs and squares on white, like a small emoji.
    static func shapes(_ count: Int, seed: UInt64, size: Int = 32) -> [PNGImage] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            var pixels = [UInt8](repeating: 255, count: size * size * 3)
            for _ in 0..<2 + rng.nextInt(below: 2) {
                let colour = (0..<3).map { _ in UInt8(rng.nextInt(below: 256)) }
                let (cx, cy, r) = (rng.nextInt(below: size), rng.nextInt(below: size), 4 + rng.nextInt(below: size / 3))
                let disc = rng.nextInt(below: 2) == 0
                for y in 0..<size {
                    for x in 0..<size {
                        let (dx, dy) = (x - cx, y - cy)
                        guard disc ? dx * dx + dy * dy <= r * r : abs(dx) <= r && abs(dy) <= r else { continue }
                        for c in 0..<3 { pixels[(y * size + x) * 3 + c] = colour[c] }
                    }
                }
            }
            return PNGImage(width: size, height: size, channels: 3, pixels: pixels)
        }
    }

    /// RGB in → 64 tokens → RGB out, on held-out images, through the stored tokenizer file; the PSNR the
    /// report states is what the round trip gives, and it is far above a blank guess.
    func testRGBRoundTripOnHeldOutImagesMatchesTheReportedPSNR() throws {
        let train = Self.shapes(48, seed: 1), heldOut = Self.shapes(12, seed: 2)
        let vq = try VQTokenizer.train(images: train, codebookSize: 64, patch: 4, iterations: 6, seed: 3)
        XCTAssertEqual(vq.dim, 48)
        XCTAssertEqual(vq.tokensPerImage, 64)

        // Through tokenizer.h5 and back, as generation loads it.
        let dir = try temporaryDirectory(self)
        let path = dir.appendingPathComponent("tokenizer.h5").path
        try TokenizerFile(
            merges: [], codebook: vq.codebook, codebookSize: 64, patch: 4, channels: 3, imageWidth: 32,
            imageHeight: 32, kind: "kmeans"
        ).write(to: path)
        let loaded = try XCTUnwrap(try Tokenizers(path: path).image)
        XCTAssertEqual(loaded.codebook, vq.codebook)

        let report = ImageTokenizerReport.measure(loaded, images: heldOut)
        var squared = 0.0
        for (image, codes) in zip(heldOut, report.codes) {
            XCTAssertEqual(codes.count, 64)
            XCTAssert(codes.allSatisfy { (0..<64).contains($0) })
            let back = loaded.decode(codes)
            XCTAssertEqual([back.width, back.height, back.channels], [32, 32, 3])
            squared += back.meanSquaredError(to: image)
        }
        let psnr = 10 * log10(255 * 255 / (squared / Double(heldOut.count)))
        XCTAssertEqual(report.psnr, psnr, accuracy: 1e-9, "the reported PSNR is the round trip's")
        let blank = heldOut.map {
            $0.meanSquaredError(
                to: PNGImage(
                    width: 32, height: 32, channels: 3,
                    pixels: [UInt8](repeating: 255, count: 3072)))
        }
        let blankPSNR = 10 * log10(255 * 255 / (blank.reduce(0, +) / Double(blank.count)))
        print(
            String(
                format: "held-out synthetic RGB: PSNR %.2f dB (all-white guess %.2f dB), perplexity %.1f, %d dead of 64",
                report.psnr, blankPSNR, report.perplexity, report.deadCodes))
        XCTAssertGreaterThan(report.psnr, 18)
        XCTAssertGreaterThan(report.psnr, blankPSNR + 6)
        XCTAssertGreaterThan(report.perplexity, 8)

        // Codebook patches come back exactly: decode then encode is the identity on the codes.
        let codes = (0..<64).map { ($0 * 37) % 64 }
        XCTAssertEqual(loaded.encode(loaded.decode(codes)), codes)
    }

    func testReportCountsUsageAndDeadCodes() throws {
        // K = 5 grey 1×1 codes; a 2×2 image using codes 0…3 once each: perplexity 4, one dead code, exact.
        let vq = try VQTokenizer(codebook: [0, 0.25, 0.5, 1, 0.75], codebookSize: 5, patch: 1, channels: 1, imageWidth: 2, imageHeight: 2)
        let image = vq.decode([0, 1, 2, 3])
        let r = ImageTokenizerReport.measure(vq, images: [image])
        XCTAssertEqual(r.codes, [[0, 1, 2, 3]])
        XCTAssertEqual(r.perplexity, 4, accuracy: 1e-9)
        XCTAssertEqual(r.usedCodes, 4)
        XCTAssertEqual(r.deadCodes, 1)
        XCTAssertEqual(r.psnr, .infinity)
        XCTAssertEqual(r.tokensPerImage, 4)
        let grid = ImageTokenizerReport.grid(originals: [image], reconstructions: [image], columns: 1, scale: 2)
        XCTAssertEqual(grid.channels, 3)
        XCTAssertEqual(grid.width, 8 + 2 * 4 + 2 + 8)
    }

    func testCentredOnACanvasAndMeasuredOnTheImagesOwnPixels() throws {
        // A 2×2 image on a 4×4 canvas, K = 1 black code: the error counts the 4 own pixels, not the margin.
        let own = PNGImage(width: 2, height: 2, channels: 1, pixels: [100, 100, 100, 100])
        let vq = try VQTokenizer(codebook: [0], codebookSize: 1, patch: 1, channels: 1, imageWidth: 4, imageHeight: 4)
        let canvas = own.centred(inWidth: 4, height: 4)
        XCTAssertEqual(ImageTokenizerReport.measure(vq, images: [canvas], sizes: [(2, 2)]).mse, 10_000)
        XCTAssertEqual(ImageTokenizerReport.measure(vq, images: [canvas]).mse, 2_500, "without sizes, the whole canvas")

        let grey = PNGImage(width: 2, height: 1, channels: 1, pixels: [10, 20])
        let c = grey.centred(inWidth: 4, height: 3)
        XCTAssertEqual(
            c.pixels,
            [
                0, 0, 0, 0,
                0, 10, 20, 0,
                0, 0, 0, 0,
            ])
        XCTAssertEqual(grey.centred(inWidth: 2, height: 1), grey)
    }

    /// 3 red images among 60 grey ones: with the sample stratified by source the red ones get codes of their
    /// own; drawn uniformly from the pooled patches they would be a 5% minority.
    func testStratifiedSampleServesTheSmallSource() throws {
        let grey = Self.shapes(60, seed: 5).map { $0.converted(toChannels: 1).converted(toChannels: 3) }
        let red = (0..<3).map { (i: Int) -> PNGImage in
            var pixels = [UInt8](repeating: 0, count: 3072)
            for p in 0..<1024 {
                pixels[3 * p] = UInt8(128 + (p * 7 + i * 13) % 128)
                pixels[3 * p + 1] = UInt8((p / 32) * 2)
            }
            return PNGImage(width: 32, height: 32, channels: 3, pixels: pixels)
        }
        let images = grey + red, groups = [Int](repeating: 0, count: 60) + [1, 1, 1]
        func redError(_ groups: [Int]?) throws -> Double {
            let vq = try VQTokenizer.train(
                images: images, groups: groups, codebookSize: 16, patch: 4, iterations: 5,
                seed: 1, maxPatches: 1000)
            return red.map { vq.decode(vq.encode($0)).meanSquaredError(to: $0) }.reduce(0, +)
        }
        let (pooled, stratified) = (try redError(nil), try redError(groups))
        print(String(format: "red minority MSE: pooled sample %.1f, stratified %.1f", pooled / 3, stratified / 3))
        XCTAssertLessThan(stratified, 0.7 * pooled)
    }

    /// The extraction script's parsing (emoji-test.txt lines, skin-tone keys, split shares, Fashion IDX) on a
    /// made-up excerpt; the counts on the real packages are `make check-data-images`.
    func testExtractionScriptSelfTest() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", root.appendingPathComponent("cluster/data/images.py").path, "--self-test"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, text)
        XCTAssert(text.contains("self-test: ok"), text)
    }

    private func writePairs(_ dir: URL, _ name: String, _ images: [PNGImage], caption: String) throws -> String {
        let folder = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var lines = ""
        for (i, image) in images.enumerated() {
            try image.write(folder.appendingPathComponent("\(i).png").path)
            lines += "{\"image\": \"\(name)/\(i).png\", \"caption\": \"\(caption) \(i % 3)\"}\n"
        }
        let path = dir.appendingPathComponent("\(name).jsonl").path
        try lines.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// 32×32 RGB and 28×28 grey pairs in one dataset: grey repeated to RGB, centred on the 32×32 canvas, and
    /// the held-out pairs files make val.h5 whole.
    func testTwoSizesOnOneCanvasWithHeldOutFiles() throws {
        let dir = try temporaryDirectory(self)
        let greySmall = Self.shapes(20, seed: 9, size: 28).map { $0.converted(toChannels: 1) }
        let fashion = try writePairs(dir, "fashion", Array(greySmall[..<16]), caption: "a grey thing")
        let fashionVal = try writePairs(dir, "fashion-val", Array(greySmall[16...]), caption: "a grey thing")
        let emoji = try writePairs(dir, "emoji", Self.shapes(10, seed: 10), caption: "a colour thing")
        let emojiVal = try writePairs(dir, "emoji-val", Self.shapes(3, seed: 11), caption: "a colour thing")
        var o = TokenizeOptions(pairFiles: [fashion, emoji], outDir: dir.appendingPathComponent("out").path)
        o.valPairFiles = [fashionVal, emojiVal]
        o.imageSize = (32, 32)
        o.patch = 4
        o.codebookSize = 16
        o.kMeansIterations = 3
        o.textVocab = 260
        let summary = try TokenizeJob.run(o)
        XCTAssertEqual(summary.visualTokensPerImage, 64)
        XCTAssertEqual(summary.examples["train"], [0, 26, 26])
        XCTAssertEqual(summary.examples["val"], [0, 7, 7], "exactly the held-out files")
        let t = try TokenizerFile.read(dir.appendingPathComponent("out/tokenizer.h5").path)
        XCTAssertEqual([t.channels, t.imageWidth, t.imageHeight, t.patch], [3, 32, 32, 4])

        // Without a canvas two sizes are refused, naming the file and line; with one too small, likewise.
        o.imageSize = nil
        XCTAssertThrowsError(try TokenizeJob.run(o)) {
            XCTAssert("\($0)".hasPrefix("\(emoji):1: image is 32×32, the first image is 28×28"), "\($0)")
        }
        o.imageSize = (28, 28)
        XCTAssertThrowsError(try TokenizeJob.run(o)) {
            XCTAssertEqual("\($0)", "\(emoji):1: image is 32×32, larger than --image-size 28x28")
        }
        o.imageSize = (30, 30)
        XCTAssertThrowsError(try TokenizeJob.run(o)) { XCTAssert("\($0)".hasPrefix("--image-size 30x30 is not"), "\($0)") }

        // A broken image in a held-out file is named with its line.
        try "not a png".write(toFile: dir.appendingPathComponent("emoji-val/1.png").path, atomically: true, encoding: .utf8)
        o.imageSize = (32, 32)
        XCTAssertThrowsError(try TokenizeJob.run(o)) {
            XCTAssert("\($0)".hasPrefix("\(emojiVal):2: \(dir.appendingPathComponent("emoji-val/1.png").path): not a PNG image"), "\($0)")
        }
    }
}
