import Foundation
import UGenKernels
import UGenStore

/// What `ugen tokenize` was asked to do.
public struct TokenizeOptions: Sendable {
    public var textFiles: [String]
    public var pairFiles: [String]
    public var outDir: String
    /// T: text ids, 256 bytes plus merges.
    public var textVocab = 2048
    /// K for the learned codebook.
    public var codebookSize = 256
    public var patch = 2
    public var valFraction = 0.05
    public var seed: UInt64 = 1
    /// K of visual ids made elsewhere (pairs lines with `image_ids`); no codebook is learned.
    public var externalCodebook: Int?
    public var kMeansIterations = 20

    public init(textFiles: [String] = [], pairFiles: [String] = [], outDir: String) {
        self.textFiles = textFiles; self.pairFiles = pairFiles; self.outDir = outDir
    }
}

/// What `ugen tokenize` wrote.
public struct TokenizeSummary: Sendable, CustomStringConvertible {
    public var layout: VocabLayout
    public var tokenizerHash: String
    /// Per split ("train", "val"): examples per task (indexed by `ExampleTask.rawValue`) and tokens.
    public var examples: [String: [Int]]
    public var tokens: [String: Int]
    public var visualTokensPerImage: Int
    public var seconds: Double

    public var description: String {
        var lines = ["vocabulary  \(layout)",
                     "tokenizer   hash \(tokenizerHash), \(visualTokensPerImage) visual tokens per image",
                     "split          text   img2txt   txt2img     tokens"]
        for split in ["train", "val"] {
            let e = examples[split] ?? [0, 0, 0]
            lines.append(split.padding(toLength: 8, withPad: " ", startingAt: 0)
                + String(format: "%10d%10d%10d%11d", e[0], e[1], e[2], tokens[split] ?? 0))
        }
        lines.append(String(format: "time        %.1f s", seconds))
        return lines.joined(separator: "\n")
    }
}

/// Raw text and image–caption pairs → `tokenizer.h5`, `train.h5`, `val.h5` (Documentation/model.md, formats.md).
///
/// The split is drawn first (seeded), and the tokenizers learn from the training split only. Outputs are
/// written under temporary names and renamed at the end: a run that fails leaves no new file behind.
public enum TokenizeJob {
    public static func run(_ o: TokenizeOptions, log: @escaping (String) -> Void = { _ in }) throws -> TokenizeSummary {
        let started = Date()
        guard o.textVocab >= 256 else { throw DataError("--text-vocab must be at least 256 (the byte tokens)") }
        guard o.codebookSize > 0, o.patch > 0 else { throw DataError("--codebook and --patch must be positive") }
        guard (0 ..< 1).contains(o.valFraction) else { throw DataError("--val-fraction must be in [0, 1)") }
        guard !o.textFiles.isEmpty || !o.pairFiles.isEmpty else { throw DataError("nothing to tokenize: give --text and/or --pairs") }

        let documents = try o.textFiles.flatMap { try TextCorpus.documents(inFile: $0) }
        if !documents.isEmpty {
            let bytes = documents.reduce(0) { $0 + $1.count }
            log(String(format: "text: %d documents, %.2f MB from %d file(s)", documents.count, Double(bytes) / 1e6, o.textFiles.count))
        }
        let pairs = try o.pairFiles.flatMap { try ImageCaptionPairs.read($0, externalCodebook: o.externalCodebook) }
        if !pairs.isEmpty { log("pairs: \(pairs.count) image–caption pairs from \(o.pairFiles.count) file(s)") }
        let geometry = try imageGeometry(pairs, patch: o.patch)

        var rng = SplitMix64(seed: o.seed)
        let valDocuments = validationIndices(documents.count, o.valFraction, &rng)
        let valPairs = validationIndices(pairs.count, o.valFraction, &rng)
        let trainDocuments = documents.indices.filter { !valDocuments.contains($0) }.map { documents[$0] }
        let trainPairs = pairs.indices.filter { !valPairs.contains($0) }.map { pairs[$0] }

        log("bpe: learning \(o.textVocab - 256) merges")
        let bpe = BPETokenizer.train(documents: trainDocuments + trainPairs.map { Array($0.caption.utf8) },
                                     vocabSize: o.textVocab) { done, total in log("bpe: \(done)/\(total) merges") }

        var vq: VQTokenizer?
        var codebookSize = 0, kind = "none"
        if let k = o.externalCodebook, !pairs.isEmpty {
            codebookSize = k
            kind = "external"
        } else if let (width, height, channels) = geometry.png {
            let images = (trainPairs.isEmpty ? pairs : trainPairs).compactMap { pair -> PNGImage? in
                if case .png(let image) = pair.image { return image.converted(toChannels: channels) } else { return nil }
            }
            log("vq: k-means, \(o.codebookSize) codes over \(o.patch)×\(o.patch) patches of \(images.count) \(width)×\(height) images")
            vq = try VQTokenizer.train(images: images, codebookSize: o.codebookSize, patch: o.patch,
                                       iterations: o.kMeansIterations, seed: o.seed) { i, n in
                if i % 5 == 0 || i == n { log("vq: iteration \(i)/\(n)") }
            }
            codebookSize = o.codebookSize
            kind = "kmeans"
        }
        let layout = VocabLayout(textVocab: bpe.vocabSize, codebookSize: codebookSize)
        let png = geometry.png
        let tokenizer = TokenizerFile(merges: bpe.flatMerges, codebook: vq?.codebook ?? [], codebookSize: codebookSize,
                                      patch: png == nil ? 0 : o.patch, channels: png?.channels ?? 0,
                                      imageWidth: png?.width ?? 0, imageHeight: png?.height ?? 0, kind: kind)
        let hash = tokenizer.contentHash

        do {
            try FileManager.default.createDirectory(atPath: o.outDir, withIntermediateDirectories: true)
        } catch { throw DataError("\(o.outDir): cannot create directory") }
        let out = URL(fileURLWithPath: o.outDir)
        var summary = TokenizeSummary(layout: layout, tokenizerHash: hash, examples: [:], tokens: [:],
                                      visualTokensPerImage: geometry.tokensPerImage, seconds: 0)
        var writers: [DatasetFileWriter] = []
        for (split, docs, splitPairs) in [("train", trainDocuments, trainPairs),
                                          ("val", valDocuments.sorted().map { documents[$0] }, valPairs.sorted().map { pairs[$0] })] {
            let writer = try DatasetFileWriter(path: out.appendingPathComponent("\(split).h5").path,
                                               wideTokens: layout.vocabSize > 65536)
            writers.append(writer)
            var counts = [0, 0, 0]
            func append(_ e: Example) throws {
                try writer.append(tokens: e.tokens, mask: e.mask, task: e.task.rawValue)
                counts[Int(e.task.rawValue)] += 1
            }
            let total = docs.count + splitPairs.count
            var nextReport = 1
            func report(_ done: Int) {
                guard total >= 1000, done * 10 >= nextReport * total else { return }
                log("encode \(split): \(nextReport * 10)%")
                nextReport += 1
            }
            for (i, doc) in docs.enumerated() {
                try append(layout.textExample(bpe.encode(doc)))
                report(i + 1)
            }
            for (i, pair) in splitPairs.enumerated() {
                let codes: [Int]
                switch pair.image {
                case .png(let image): codes = vq!.encode(image)
                case .codes(let c): codes = c
                }
                let caption = bpe.encode(pair.caption)
                try append(layout.imageToTextExample(codes: codes, caption: caption))
                try append(layout.textToImageExample(caption: caption, codes: codes))
                report(docs.count + i + 1)
            }
            summary.examples[split] = counts
            summary.tokens[split] = writer.tokenCount
        }
        try tokenizer.write(to: out.appendingPathComponent("tokenizer.h5").path)
        for (writer, split) in zip(writers, ["train", "val"]) {
            try writer.finish { file in
                try layout.write(to: file)
                try file.setAttribute("tokenizer_hash", hash)
                try file.setAttribute("split", split)
                try file.setAttribute("visual_tokens_per_image", geometry.tokensPerImage)
                try file.setAttribute("tasks", "0 text, 1 image-to-text, 2 text-to-image")
            }
        }
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    /// Image size and channels of the PNG pairs (all must share the size; the first image's channels
    /// win, others are converted) and visual tokens per image.
    private static func imageGeometry(_ pairs: [ImageCaptionPair], patch: Int)
        throws -> (png: (width: Int, height: Int, channels: Int)?, tokensPerImage: Int) {
        var png: (width: Int, height: Int, channels: Int)?
        var tokens: Int?
        for pair in pairs {
            switch pair.image {
            case .png(let image):
                if png == nil {
                    guard image.width % patch == 0, image.height % patch == 0 else {
                        throw DataError("\(pair.source): image is \(image.width)×\(image.height), not a multiple of --patch \(patch)")
                    }
                    png = (image.width, image.height, image.channels)
                    tokens = (image.width / patch) * (image.height / patch)
                }
                guard image.width == png!.width, image.height == png!.height else {
                    throw DataError("\(pair.source): image is \(image.width)×\(image.height), the first image is \(png!.width)×\(png!.height)")
                }
            case .codes(let codes):
                if tokens == nil { tokens = codes.count }
                guard codes.count == tokens else {
                    throw DataError("\(pair.source): \(codes.count) image ids, the first line has \(tokens!)")
                }
            }
        }
        return (png, tokens ?? 0)
    }

    /// A seeded choice of round(fraction·n) indices (at least 1 and at most n−1 when n ≥ 2 and
    /// fraction > 0) for the validation split.
    private static func validationIndices(_ n: Int, _ fraction: Double, _ rng: inout SplitMix64) -> Set<Int> {
        guard n >= 2, fraction > 0 else { return [] }
        let count = min(n - 1, max(1, Int((Double(n) * fraction).rounded())))
        var order = Array(0 ..< n)
        order.shuffle(using: &rng)
        return Set(order[..<count])
    }
}
