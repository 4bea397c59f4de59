import Foundation
import UGenKernels
import UGenStore

/// What `ugen tokenize` was asked to do.
public struct TokenizeOptions: Sendable {
    public var textFiles: [String]
    public var pairFiles: [String]
    /// Pairs files that make the held-out split whole (e.g. emoji held out by emoji). When given, every pair of
    /// `pairFiles` trains and `valFraction` splits only the text documents.
    public var valPairFiles: [String] = []
    /// Every image is centred on a black canvas of this size (width, height) before tokenizing, so images of
    /// several sizes (32×32 emoji, 28×28 Fashion-MNIST) share one tokenizer; nil: all images must have one size.
    public var imageSize: (width: Int, height: Int)?
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
        var lines = [
            "vocabulary  \(layout)",
            "tokenizer   hash \(tokenizerHash), \(visualTokensPerImage) visual tokens per image",
            "split          text   img2txt   txt2img     tokens",
        ]
        for split in ["train", "val"] {
            let e = examples[split] ?? [0, 0, 0]
            lines.append(
                split.padding(toLength: 8, withPad: " ", startingAt: 0)
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
        try check(o)
        let input = try TokenizeInput(o, log: log)
        var rng = SplitMix64(seed: o.seed)
        let split = TokenizeSplit(input, o, &rng)

        log("bpe: learning \(o.textVocab - 256) merges")
        let bpe = BPETokenizer.train(
            documents: split.trainDocuments + split.trainPairs.map { Array($0.caption.utf8) },
            vocabSize: o.textVocab
        ) { done, total in log("bpe: \(done)/\(total) merges") }
        let images = try imageTokenizer(o, input, split, log: log)
        let layout = VocabLayout(textVocab: bpe.vocabSize, codebookSize: images.codebookSize)
        let png = input.geometry.png
        let tokenizer = TokenizerFile(
            merges: bpe.flatMerges, codebook: images.vq?.codebook ?? [], codebookSize: images.codebookSize,
            patch: png == nil ? 0 : o.patch, channels: png?.channels ?? 0,
            imageWidth: png?.width ?? 0, imageHeight: png?.height ?? 0, kind: images.kind)

        do {
            try FileManager.default.createDirectory(atPath: o.outDir, withIntermediateDirectories: true)
        } catch { throw DataError.cannotCreateDirectory(o.outDir) }
        let out = URL(fileURLWithPath: o.outDir)
        var summary = TokenizeSummary(
            layout: layout, tokenizerHash: tokenizer.contentHash, examples: [:], tokens: [:],
            visualTokensPerImage: input.geometry.tokensPerImage, seconds: 0)
        let encoder = SplitEncoder(layout: layout, bpe: bpe, vq: images.vq, log: log)
        let writers = try [
            ("train", split.trainDocuments, split.trainPairs), ("val", split.valDocuments, split.valPairs),
        ].map { name, documents, pairs in
            try encoder.write(name, documents: documents, pairs: pairs, to: out.appendingPathComponent("\(name).h5").path, &summary)
        }
        try tokenizer.write(to: out.appendingPathComponent("tokenizer.h5").path)
        for (writer, split) in zip(writers, ["train", "val"]) {
            try writer.finish { file in
                try layout.write(to: file)
                try file.setAttribute("tokenizer_hash", summary.tokenizerHash)
                try file.setAttribute("split", split)
                try file.setAttribute("visual_tokens_per_image", input.geometry.tokensPerImage)
                try file.setAttribute("tasks", "0 text, 1 image-to-text, 2 text-to-image")
            }
        }
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    private static func check(_ o: TokenizeOptions) throws {
        guard o.textVocab >= 256 else { throw DataError.textVocabTooSmall }
        guard o.codebookSize > 0, o.patch > 0 else { throw DataError.codebookOrPatchNotPositive }
        guard (0..<1).contains(o.valFraction) else { throw DataError.valFractionOutOfRange }
        guard !o.textFiles.isEmpty || !o.pairFiles.isEmpty else { throw DataError.nothingToTokenize }
    }

    /// The image tokenizer: none, visual ids made elsewhere (`externalCodebook`), or a codebook learned by
    /// k-means over the training split's images (the held-out ones when training has none).
    private static func imageTokenizer(
        _ o: TokenizeOptions, _ input: TokenizeInput, _ split: TokenizeSplit, log: @escaping (String) -> Void
    )
        throws -> (vq: VQTokenizer?, codebookSize: Int, kind: String)
    {
        if let k = o.externalCodebook, !input.pairs.isEmpty { return (nil, k, "external") }
        guard let (width, height, _) = input.geometry.png else { return (nil, 0, "none") }
        var images: [PNGImage] = [], groups: [Int] = [], files: [String: Int] = [:]
        for pair in split.trainPairs.isEmpty ? split.valPairs : split.trainPairs {
            guard case .png(let image) = pair.image else { continue }
            images.append(image)
            // Stratify the k-means sample by pairs file (the source's "file:line" up to the line).
            let file = String(pair.source[..<(pair.source.lastIndex(of: ":") ?? pair.source.endIndex)])
            if files[file] == nil { files[file] = files.count }
            groups.append(files[file]!)
        }
        log(
            "vq: k-means, \(o.codebookSize) codes over \(o.patch)×\(o.patch) patches of \(images.count) \(width)×\(height) images"
                + (files.count > 1 ? ", sample stratified over \(files.count) pairs files" : ""))
        let vq = try VQTokenizer.train(
            images: images, groups: groups, codebookSize: o.codebookSize, patch: o.patch,
            iterations: o.kMeansIterations, seed: o.seed
        ) { i, n in
            if i % 5 == 0 || i == n { log("vq: iteration \(i)/\(n)") }
        }
        return (vq, o.codebookSize, "kmeans")
    }

    /// Image size and channels of the PNG pairs and visual tokens per image. Without a canvas all images must
    /// share the first one's size; with one, each must fit in it. Channels: 3 when any image is RGB, else 1.
    static func imageGeometry(_ pairs: [ImageCaptionPair], patch: Int, canvas: (width: Int, height: Int)?)
        throws -> (png: (width: Int, height: Int, channels: Int)?, tokensPerImage: Int)
    {
        var png: (width: Int, height: Int, channels: Int)?
        var tokens: Int?
        if let c = canvas {
            guard c.width > 0, c.height > 0, c.width % patch == 0, c.height % patch == 0 else {
                throw DataError.canvasNotPatchMultiple(width: c.width, height: c.height, patch: patch)
            }
        }
        for pair in pairs {
            switch pair.image {
            case .png(let image):
                if let c = canvas {
                    guard image.width <= c.width, image.height <= c.height else {
                        throw DataError.imageLargerThanCanvas(
                            source: pair.source, width: image.width, height: image.height,
                            canvasWidth: c.width, canvasHeight: c.height)
                    }
                    if png == nil { png = (c.width, c.height, image.channels); tokens = (c.width / patch) * (c.height / patch) }
                    png!.channels = max(png!.channels, image.channels)
                    continue
                }
                if png == nil {
                    guard image.width % patch == 0, image.height % patch == 0 else {
                        throw DataError.imageNotPatchMultiple(source: pair.source, width: image.width, height: image.height, patch: patch)
                    }
                    png = (image.width, image.height, image.channels)
                    tokens = (image.width / patch) * (image.height / patch)
                }
                guard image.width == png!.width, image.height == png!.height else {
                    throw DataError.imageUnlikeFirst(
                        source: pair.source, width: image.width, height: image.height,
                        firstWidth: png!.width, firstHeight: png!.height)
                }
                png!.channels = max(png!.channels, image.channels)
            case .codes(let codes):
                if tokens == nil { tokens = codes.count }
                guard codes.count == tokens else {
                    throw DataError.imageIdCount(source: pair.source, count: codes.count, first: tokens!)
                }
            }
        }
        return (png, tokens ?? 0)
    }

    /// A seeded choice of round(fraction·n) indices (at least 1 and at most n−1 when n ≥ 2 and
    /// fraction > 0) for the validation split.
    static func validationIndices(_ n: Int, _ fraction: Double, _ rng: inout SplitMix64) -> Set<Int> {
        guard n >= 2, fraction > 0 else { return [] }
        let count = min(n - 1, max(1, Int((Double(n) * fraction).rounded())))
        var order = Array(0..<n)
        order.shuffle(using: &rng)
        return Set(order[..<count])
    }
}
