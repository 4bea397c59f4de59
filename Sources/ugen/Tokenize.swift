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
    @Option(parsing: .upToNextOption, help: "Image–caption JSONL files held out whole (val.h5); then --pairs all train.")
    var valPairs: [String] = []
    @Option(help: "WxH: centre every image on a black canvas of this size (images of several sizes, one tokenizer).")
    var imageSize: ImageSize?
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
        options.valPairFiles = valPairs
        options.imageSize = imageSize.map { ($0.width, $0.height) }
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

/// `--image-size 32x32`.
struct ImageSize: ExpressibleByArgument {
    var width: Int, height: Int
    init?(argument: String) {
        let parts = argument.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, parts[0] > 0, parts[1] > 0 else { return nil }
        (width, height) = (parts[0], parts[1])
    }
}

struct ImageReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image-report",
        abstract: "Measure an image tokenizer on held-out images: PSNR, codebook usage, tokens per image, throughput.",
        discussion: """
            Reads DIR/tokenizer.h5 (a learned k-means codebook) and the images of each pairs file, encodes and \
            decodes them, and prints one line per file and one for all. Errors are measured on each image's own \
            pixels (not the margin of --image-size's canvas). --grid writes originals beside their \
            reconstructions (--grid-count images of each file, evenly spaced through it) as a PNG.
            """)

    @Option(help: "tokenizer.h5 written by ugen tokenize.") var tokenizer: String
    @Option(parsing: .upToNextOption, help: "Image–caption JSONL files (e.g. the held-out ones).") var pairs: [String]
    @Option(help: "WxH: centre smaller images on a black canvas of this size (as ugen tokenize --image-size).")
    var imageSize: ImageSize?
    @Option(help: "Write a grid PNG of originals beside reconstructions here.") var grid: String?
    @Option(help: "Images per pairs file in the grid.") var gridCount = 16
    @Option(help: "Pairs per grid row.") var gridColumns = 8
    @Option(help: "Pixel repetition in the grid.") var gridScale = 2

    func run() throws {
        do {
            let tokenizers = try Tokenizers(path: tokenizer)
            guard let vq = tokenizers.image else { throw DataError.noImageCodebook(tokenizer: tokenizer) }
            print(
                "tokenizer \(tokenizer): K = \(vq.codebookSize), \(vq.patch)×\(vq.patch) patches × \(vq.channels) channels "
                    + "(\(vq.dim) values), \(vq.imageWidth)×\(vq.imageHeight) images, \(vq.tokensPerImage) tokens per image")
            print("set                              images   PSNR dB  mean-img dB      MSE  perplexity  used  dead  images/s")
            var all: [PNGImage] = [], allSizes: [(width: Int, height: Int)] = []
            var originals: [PNGImage] = [], reconstructions: [PNGImage] = []
            func line(_ name: String, _ r: ImageTokenizerReport) {
                let numbers = String(
                    format: " %6d  %8.2f  %11.2f  %7.1f  %10.1f  %4d  %4d  %8.0f", r.images, r.psnr,
                    r.meanImagePSNR, r.mse, r.perplexity, r.usedCodes, r.deadCodes, r.imagesPerSecond)
                print(name.padding(toLength: 32, withPad: " ", startingAt: 0) + numbers)
            }
            for file in pairs {
                var sizes: [(width: Int, height: Int)] = []
                let images = try ImageCaptionPairs.read(file).map { pair -> PNGImage in
                    guard case .png(let image) = pair.image else { throw DataError.notPNGPair(source: pair.source) }
                    let (w, h) = imageSize.map { ($0.width, $0.height) } ?? (image.width, image.height)
                    guard image.width <= w, image.height <= h, w == vq.imageWidth, h == vq.imageHeight else {
                        throw DataError.imageUnlikeTokenizer(
                            source: pair.source, width: image.width, height: image.height,
                            tokenizerWidth: vq.imageWidth, tokenizerHeight: vq.imageHeight,
                            canvasGiven: imageSize != nil)
                    }
                    sizes.append((image.width, image.height))
                    return image.converted(toChannels: vq.channels).centred(inWidth: w, height: h)
                }
                let report = ImageTokenizerReport.measure(vq, images: images, sizes: sizes)
                line(file, report)
                all += images
                allSizes += sizes
                let shown = min(gridCount, images.count)  // evenly spaced through the file, so every group shows
                for i in (0..<shown).map({ $0 * images.count / shown }) {
                    originals.append(images[i]); reconstructions.append(vq.decode(report.codes[i]))
                }
            }
            if pairs.count > 1 { line("all", ImageTokenizerReport.measure(vq, images: all, sizes: allSizes)) }
            if let grid, !originals.isEmpty {
                try ImageTokenizerReport.grid(
                    originals: originals, reconstructions: reconstructions, columns: gridColumns,
                    scale: gridScale
                ).write(grid)
                print("wrote \(grid): \(originals.count) originals (left) beside their reconstructions (right)")
            }
        } catch {
            fail("\(error)")
        }
    }
}
