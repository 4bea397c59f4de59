import Foundation
import XCTest

@testable import UGenData

/// A fresh temporary directory, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ugen-data-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    return dir
}

/// Tests/fixtures/digits-200.csv: the first 200 rows of scikit-learn's digits.csv (UCI, CC BY 4.0).
let digitsFixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("fixtures/digits-200.csv").path

/// English prose written for these tests (no licence attached to it).
let englishProse = """
    The train left the station a little after nine, and the passengers settled into their seats with the \
    quiet relief of people who had nearly missed it. Outside, the fields were still white with frost, and \
    the low sun made long shadows of the fences and the trees. A child near the window counted the cows \
    out loud until her father asked her, kindly, to count them in her head instead.

    In the next carriage a man was reading a newspaper that he had clearly read before. He turned the pages \
    slowly, as if he hoped the news might have changed since the morning. Across from him a woman wrote a \
    letter by hand, stopping now and then to look out of the window and think about what she wanted to say.

    By ten the frost had gone from the fields. The conductor walked through the train, checking tickets and \
    answering the same questions he answered every day: how long until the city, whether there was coffee, \
    and whether the train would be on time. It would be, he said, if the weather held and the signals \
    behaved. Nobody believed him entirely, but everyone was glad that he had said it.

    When the city finally came into view, the passengers began to gather their coats and their bags. The \
    child had fallen asleep, the man had folded his newspaper, and the woman had finished her letter. She \
    sealed it, wrote an address on the front, and held it on her lap until the train came to a stop.
    """

/// A small tokenized dataset (prose documents + 200 real digits with captions), built once per run
/// because the debug build's k-means is the slow part.
final class SmallDataset {
    nonisolated(unsafe) private static var built: SmallDataset?

    let dir: URL
    let summary: TokenizeSummary
    var outDir: URL { dir.appendingPathComponent("out") }
    var train: String { outDir.appendingPathComponent("train.h5").path }
    var val: String { outDir.appendingPathComponent("val.h5").path }
    var tokenizer: String { outDir.appendingPathComponent("tokenizer.h5").path }

    private static let root = FileManager.default.temporaryDirectory.appendingPathComponent("ugen-data-shared-\(getpid())")

    private init() throws {
        dir = Self.root
        try? FileManager.default.removeItem(at: dir)
        atexit { try? FileManager.default.removeItem(at: SmallDataset.root) }
        let raw = dir.appendingPathComponent("raw")
        try FileManager.default.createDirectory(at: raw, withIntermediateDirectories: true)
        let text = raw.appendingPathComponent("prose.txt").path
        try (englishProse + "\n%\nA fortune-style document after a % separator.\n%\n").write(
            toFile: text, atomically: true, encoding: .utf8)
        let pairs = try Digits.prepare(csv: digitsFixture, out: raw.appendingPathComponent("digits").path)
        var options = TokenizeOptions(textFiles: [text], pairFiles: [pairs], outDir: dir.appendingPathComponent("out").path)
        options.textVocab = 320
        options.codebookSize = 16
        options.kMeansIterations = 5
        options.valFraction = 0.1
        summary = try TokenizeJob.run(options)
    }

    static func shared() throws -> SmallDataset {
        if let built { return built }
        let d = try SmallDataset()
        built = d
        return d
    }
}
