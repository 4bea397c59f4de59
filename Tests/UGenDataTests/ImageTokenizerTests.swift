import XCTest

@testable import UGenData

final class ImageTokenizerTests: XCTestCase {
    func testPNGRoundTripGreyAndRGB() throws {
        let dir = try temporaryDirectory(self)
        let grey = PNGImage(width: 5, height: 3, channels: 1, pixels: (0..<15).map { UInt8($0 * 17) })
        let rgb = PNGImage(width: 4, height: 2, channels: 3, pixels: (0..<24).map { UInt8(($0 * 37) % 256) })
        for (name, image) in [("grey.png", grey), ("rgb.png", rgb)] {
            let path = dir.appendingPathComponent(name).path
            try image.write(path)
            XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: path)).prefix(4)), [0x89, 0x50, 0x4E, 0x47], "PNG signature")
            XCTAssertEqual(try PNGImage.read(path), image)
        }
        XCTAssertEqual(rgb.converted(toChannels: 1).converted(toChannels: 3).channels, 3)
        XCTAssertEqual(grey.converted(toChannels: 3).converted(toChannels: 1), grey)
    }

    func testNotAPNGIsAOneLineErrorNamingTheFile() throws {
        let path = try temporaryDirectory(self).appendingPathComponent("fake.png").path
        try "not an image".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PNGImage.read(path)) { error in
            XCTAssert("\(error)".hasPrefix("\(path): not a PNG image"), "\(error)")
            XCTAssertFalse("\(error)".contains("\n"))
        }
        XCTAssertThrowsError(try PNGImage.read(path + ".missing")) { XCTAssertEqual("\($0)", "\(path).missing: no such file") }
    }

    func testDigitsCSVGivesCaptionedImages() throws {
        let digits = try Digits.read(csv: digitsFixture)
        XCTAssertEqual(digits.count, 200)
        XCTAssertEqual(digits[0].label, 0)
        XCTAssertEqual(digits[0].image.width, 8)
        XCTAssertEqual(digits.map { $0.image.pixels.max()! }.max(), 255, "0…16 scaled to 0…255")
        XCTAssertEqual(Digits.caption(label: 7, variant: 0), "a handwritten seven")
        XCTAssertEqual(Digits.caption(label: 8, variant: 3), "an eight")
        XCTAssertEqual(Digits.caption(label: 1, variant: 3), "a one")
        XCTAssertEqual(Set((0..<12).map { Digits.caption(label: 3, variant: $0) }).count, 12, "varied wording")
    }

    /// Reconstruction error on real digits must fall as the codebook grows.
    func testReconstructionErrorFallsAsTheCodebookGrows() throws {
        let images = try Digits.read(csv: digitsFixture).map(\.image)
        var errors: [Double] = []
        for k in [2, 8, 32] {
            let vq = try VQTokenizer.train(images: images, codebookSize: k, patch: 2, iterations: 8, seed: 7)
            var mse = 0.0
            for image in images {
                let codes = vq.encode(image)
                XCTAssertEqual(codes.count, 16)
                mse += vq.decode(codes).meanSquaredError(to: image)
            }
            errors.append(mse / Double(images.count))
        }
        print("VQ reconstruction MSE (0…255 scale) on 200 digits, patch 2, K = 2, 8, 32:", errors.map { String(format: "%.1f", $0) })
        XCTAssertLessThan(errors[1], 0.8 * errors[0])
        XCTAssertLessThan(errors[2], 0.8 * errors[1])
    }

    func testVQIsSeededAndHandlesRGB() throws {
        let images = try Digits.read(csv: digitsFixture).prefix(40).map { $0.image.converted(toChannels: 3) }
        let a = try VQTokenizer.train(images: Array(images), codebookSize: 8, patch: 4, iterations: 3, seed: 1)
        let b = try VQTokenizer.train(images: Array(images), codebookSize: 8, patch: 4, iterations: 3, seed: 1)
        XCTAssertEqual(a.codebook, b.codebook)
        XCTAssertEqual(a.dim, 48)
        XCTAssertEqual(a.tokensPerImage, 4)
        let decoded = a.decode(a.encode(images[0]))
        XCTAssertEqual(decoded.channels, 3)
        XCTAssertEqual(decoded.width, 8)
    }
}
