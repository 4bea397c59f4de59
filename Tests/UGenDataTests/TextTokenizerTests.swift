import XCTest

@testable import UGenData

final class TextTokenizerTests: XCTestCase {
    nonisolated(unsafe) static let tokenizer = BPETokenizer.train(documents: [Array(englishProse.utf8)], vocabSize: 400)

    func testRoundTripIsExactForArbitraryUTF8() {
        let bpe = Self.tokenizer
        let samples = [
            "", " ", "\n\n\n", "plain words, and punctuation!?", "naïve café — “quotes” and ‘single’ ones",
            "emoji 🙂👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵", "combining: e\u{301} a\u{308}\u{323} Z\u{335}\u{31B}\u{34D}",
            "日本語のテキスト、中文，한국어", "tabs\tand  double  spaces   here", "don't won't they're we've I'll I'd",
            "numbers 1234567890 3.14159", "\u{0}\u{1}\u{7F} control bytes",
        ]
        for s in samples {
            let ids = bpe.encode(s)
            XCTAssertEqual(bpe.decodeText(ids), s, "round trip of \(s.debugDescription)")
            XCTAssert(ids.allSatisfy { $0 >= 0 && Int($0) < bpe.vocabSize })
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let scalars = (0..<Int.random(in: 0...40, using: &rng)).compactMap { _ in
                Unicode.Scalar(UInt32.random(in: 0...0x1F9FF, using: &rng))
            }
            let s = String(String.UnicodeScalarView(scalars))
            XCTAssertEqual(bpe.decodeText(bpe.encode(s)), s)
            let bytes = (0..<50).map { _ in UInt8.random(in: 0...255, using: &rng) }
            XCTAssertEqual(bpe.decode(bpe.encode(bytes)), bytes, "arbitrary bytes (not UTF-8) round trip too")
        }
    }

    func testCompressesEnglishItWasNotTrainedOn() {
        let held = "The woman sealed the letter and the man folded the newspaper when the train came into the city."
        let ids = Self.tokenizer.encode(held)
        XCTAssertLessThan(Double(ids.count), 0.6 * Double(held.utf8.count), "\(ids.count) tokens for \(held.utf8.count) bytes")
    }

    func testTrainingIsDeterministicAndReachesTheVocabSize() {
        let again = BPETokenizer.train(documents: [Array(englishProse.utf8)], vocabSize: 400)
        XCTAssertEqual(again.merges, Self.tokenizer.merges)
        XCTAssertEqual(Self.tokenizer.vocabSize, 400)
        // Token 256 stands for the bytes of the first merge's two parts.
        let first = Self.tokenizer.merges[0]
        XCTAssertEqual(Self.tokenizer.bytes(of: 256), Self.tokenizer.bytes(of: first.left) + Self.tokenizer.bytes(of: first.right))
    }

    func testMergesNeverCrossWordBoundaries() {
        for id in 256..<Int32(Self.tokenizer.vocabSize) {
            let bytes = Self.tokenizer.bytes(of: id)
            // A space may only lead a token (" the"), never sit inside or at the end of a word token.
            if let space = bytes.lastIndex(of: 0x20), bytes.contains(where: { $0 != 0x20 }) {
                XCTAssertEqual(space, 0, "token \(String(decoding: bytes, as: UTF8.self).debugDescription) crosses a word")
            }
        }
    }

    func testPretokenizerPiecesCoverTheInput() {
        let text = Array("  Hello, world!  It's 2025\n\nnew paragraph 🙂 ok".utf8)
        var pieces: [String] = []
        text.withUnsafeBufferPointer { buf in Pretokenizer.forEachPiece(buf) { pieces.append(String(decoding: buf[$0], as: UTF8.self)) } }
        XCTAssertEqual(pieces.joined(), String(decoding: text, as: UTF8.self))
        XCTAssertEqual(pieces, [" ", " Hello", ",", " world", "!", " ", " It", "'s", " 2025", "\n\n", "new", " paragraph", " 🙂", " ok"])
    }

    func testRejectsMergesThatUseUndefinedIds() {
        XCTAssertThrowsError(try BPETokenizer(merges: [.init(104, 300)]))
        XCTAssertNoThrow(try BPETokenizer(flatMerges: Self.tokenizer.flatMerges))
    }
}
