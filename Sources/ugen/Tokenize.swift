import ArgumentParser
import Foundation
import UGenData

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Learn the text and image tokenizers and write DIR/tokenizer.h5, DIR/train.h5 and DIR/val.h5.",
        discussion: """
            Text files: documents are blocks separated by blank lines or '%' lines; .jsonl files have one \
            {"text": ...} per line. Pairs files (JSONL): {"image": "path.png", "caption": ...} (path relative to \
            the file), or {"image_ids": [...], "caption": ...} with --external-codebook K. See Documentation/data.md.
            """)

    @Option(parsing: .upToNextOption, help: "Text files (plain or .jsonl).") var text: [String] = []
    @Option(parsing: .upToNextOption, help: "Image–caption JSONL files.") var pairs: [String] = []
    @Option(help: "Output directory.") var out: String
    @Option(help: "Text vocabulary size T (256 bytes + merges).") var textVocab = 2048
    @Option(help: "Codebook size K of the learned image tokenizer.") var codebook = 256
    @Option(help: "Patch size P (each P×P patch is one visual token).") var patch = 2
    @Option(help: "Fraction of documents and pairs held out for val.h5.") var valFraction = 0.05
    @Option(help: "Seed of the validation split and the k-means initialisation.") var seed: UInt64 = 1
    @Option(help: "Codebook size of an external image tokenizer whose ids the pairs carry as image_ids.")
    var externalCodebook: Int?
    @Option(help: "k-means iterations.") var kmeansIterations = 20

    func run() throws {
        var options = TokenizeOptions(textFiles: text, pairFiles: pairs, outDir: out)
        options.textVocab = textVocab
        options.codebookSize = codebook
        options.patch = patch
        options.valFraction = valFraction
        options.seed = seed
        options.externalCodebook = externalCodebook
        options.kMeansIterations = kmeansIterations
        let summary: TokenizeSummary
        do {
            summary = try TokenizeJob.run(options) { FileHandle.standardError.write(("  " + $0 + "\n").data(using: .utf8)!) }
        } catch {
            fail("\(error)")
        }
        print("wrote \(out)/tokenizer.h5, \(out)/train.h5, \(out)/val.h5")
        print(summary)
    }
}

struct PrepareDigitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare-digits",
        abstract: "Turn scikit-learn's digits.csv(.gz) into DIR/images/*.png and DIR/pairs.jsonl with varied captions.")

    @Option(help: "digits.csv or digits.csv.gz (64 values 0–16 then the label, per line).") var csv: String
    @Option(help: "Output directory.") var out: String
    @Option(help: "Seed of the caption wording.") var seed: UInt64 = 1

    func run() throws {
        do {
            let pairs = try Digits.prepare(csv: csv, out: out, seed: seed)
            print("wrote \(pairs)")
        } catch {
            fail("\(error)")
        }
    }
}
