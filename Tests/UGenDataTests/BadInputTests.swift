import UGenStore
import XCTest

@testable import UGenData

/// Bad input gets one line naming the file (and line), and leaves no output that looks complete.
final class BadInputTests: XCTestCase {
    private func assertFails(_ options: TokenizeOptions, message prefix: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try TokenizeJob.run(options), file: file, line: line) { error in
            XCTAssert("\(error)".hasPrefix(prefix), "\(error)", file: file, line: line)
            XCTAssertFalse("\(error)".contains("\n"), "one line", file: file, line: line)
        }
        let left = (try? FileManager.default.contentsOfDirectory(atPath: options.outDir)) ?? []
        XCTAssertEqual(left, [], "no output left behind", file: file, line: line)
    }

    func testEachBadInputNamesTheFile() throws {
        let dir = try temporaryDirectory(self)
        let out = dir.appendingPathComponent("out").path
        func write(_ name: String, _ text: String) throws -> String {
            let path = dir.appendingPathComponent(name).path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let good = try write("good.txt", englishProse)

        let missing = dir.appendingPathComponent("missing.txt").path
        assertFails(TokenizeOptions(textFiles: [missing], outDir: out), message: "\(missing): no such file")

        let empty = try write("empty.txt", "\n\n%\n\n")
        assertFails(TokenizeOptions(textFiles: [empty], outDir: out), message: "\(empty): no documents (empty corpus)")

        let jsonl = try write("docs.jsonl", "{\"text\": \"fine\"}\n{\"text\": broken\n")
        assertFails(TokenizeOptions(textFiles: [jsonl], outDir: out), message: "\(jsonl):2: not a JSON object")

        let fake = try write("fake.png", "GIF89a, not a PNG")
        let pairs = try write("pairs.jsonl", "{\"image\": \"fake.png\", \"caption\": \"a fake\"}\n")
        assertFails(
            TokenizeOptions(textFiles: [good], pairFiles: [pairs], outDir: out),
            message: "\(pairs):1: \(fake): not a PNG image")

        let noCaption = try write("nocaption.jsonl", "\n{\"image\": \"fake.png\"}\n")
        assertFails(TokenizeOptions(pairFiles: [noCaption], outDir: out), message: "\(noCaption):2: missing \"caption\" string")

        let ids = try write("ids.jsonl", "{\"image_ids\": [1, 2, 3], \"caption\": \"three ids\"}\n")
        assertFails(TokenizeOptions(pairFiles: [ids], outDir: out), message: "\(ids):1: \"image_ids\" needs --external-codebook")
        var outOfRange = TokenizeOptions(pairFiles: [ids], outDir: out)
        outOfRange.externalCodebook = 3
        assertFails(outOfRange, message: "\(ids):1: \"image_ids\" must be a non-empty list of integers in 0..<3")

        assertFails(TokenizeOptions(outDir: out), message: "nothing to tokenize")
    }

    func testExternalVisualIds() throws {
        let dir = try temporaryDirectory(self)
        let pairs = dir.appendingPathComponent("ids.jsonl").path
        let lines = (0..<30).map { "{\"image_ids\": [\($0 % 7), \($0 % 5), 6, 0], \"caption\": \"code \($0)\"}" }
        try lines.joined(separator: "\n").write(toFile: pairs, atomically: true, encoding: .utf8)
        var options = TokenizeOptions(pairFiles: [pairs], outDir: dir.appendingPathComponent("out").path)
        options.externalCodebook = 7
        options.textVocab = 260
        let summary = try TokenizeJob.run(options)
        XCTAssertEqual(summary.layout.codebookSize, 7)
        XCTAssertEqual(summary.visualTokensPerImage, 4)
        let reader = try DatasetReader(path: dir.appendingPathComponent("out/train.h5").path)
        let e = try (0..<reader.count).map { try reader.example($0) }.first { $0.task == .imageToText }!
        XCTAssert(e.tokens[2..<6].allSatisfy { reader.layout.isVisual($0) })
        XCTAssertEqual(try UGenStore.TokenizerFile.read(dir.appendingPathComponent("out/tokenizer.h5").path).kind, "external")
    }
}

/// The same mistakes as cases a caller can match.
final class DataErrorCaseTests: XCTestCase {
    func testCorpusMistakesAreCases() throws {
        let dir = try temporaryDirectory(self)
        let jsonl = dir.appendingPathComponent("c.jsonl").path
        try "{\"text\": \"fine\"}\n{\"title\": \"no text\"}\n".write(toFile: jsonl, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TextCorpus.documents(inFile: jsonl)) {
            XCTAssertEqual($0 as? DataError, .missingText(path: jsonl, line: 2))
        }
        let missing = dir.appendingPathComponent("none.txt").path
        XCTAssertThrowsError(try TextCorpus.documents(inFile: missing)) { XCTAssertEqual($0 as? DataError, .noSuchFile(missing)) }
        XCTAssertThrowsError(try TokenizeJob.run(TokenizeOptions(textFiles: [], pairFiles: [], outDir: dir.path + "/o"))) {
            XCTAssertEqual($0 as? DataError, .nothingToTokenize)
        }
    }
}
