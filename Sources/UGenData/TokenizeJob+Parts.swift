import Foundation
import UGenKernels
import UGenStore

/// What `ugen tokenize` reads: the text documents and the image–caption pairs (those of the held-out
/// pairs files apart), every PNG already in the one shape the tokenizer takes.
struct TokenizeInput {
    let documents: [[UInt8]]
    let pairs: [ImageCaptionPair], heldOut: [ImageCaptionPair]
    let geometry: (png: (width: Int, height: Int, channels: Int)?, tokensPerImage: Int)

    init(_ o: TokenizeOptions, log: (String) -> Void) throws {
        documents = try o.textFiles.flatMap { try TextCorpus.documents(inFile: $0) }
        if !documents.isEmpty {
            let bytes = documents.reduce(0) { $0 + $1.count }
            log(String(format: "text: %d documents, %.2f MB from %d file(s)", documents.count, Double(bytes) / 1e6, o.textFiles.count))
        }
        let read = { (files: [String]) in try files.flatMap { try ImageCaptionPairs.read($0, externalCodebook: o.externalCodebook) } }
        var (givenPairs, heldOutPairs) = (try read(o.pairFiles), try read(o.valPairFiles))
        if !givenPairs.isEmpty || !heldOutPairs.isEmpty {
            log(
                "pairs: \(givenPairs.count) image–caption pairs from \(o.pairFiles.count) file(s)"
                    + (o.valPairFiles.isEmpty ? "" : ", \(heldOutPairs.count) held out from \(o.valPairFiles.count)"))
        }
        let geometry = try TokenizeJob.imageGeometry(givenPairs + heldOutPairs, patch: o.patch, canvas: o.imageSize)
        // One shape for every image: the tokenizer's channels (RGB when any image is RGB; grey is repeated),
        // centred on the canvas.
        let normalise = { (pairs: [ImageCaptionPair]) -> [ImageCaptionPair] in
            guard let g = geometry.png else { return pairs }
            return pairs.map { pair in
                guard case .png(let image) = pair.image else { return pair }
                var p = pair
                p.image = .png(image.converted(toChannels: g.channels).centred(inWidth: g.width, height: g.height))
                return p
            }
        }
        givenPairs = normalise(givenPairs)  // in place: the unconverted images are freed
        heldOutPairs = normalise(heldOutPairs)
        (pairs, heldOut, self.geometry) = (givenPairs, heldOutPairs, geometry)
    }
}

/// The seeded split: `valFraction` of the documents, and of the pairs unless held-out pairs files were given.
struct TokenizeSplit {
    let trainDocuments: [[UInt8]], valDocuments: [[UInt8]]
    let trainPairs: [ImageCaptionPair], valPairs: [ImageCaptionPair]

    init(_ input: TokenizeInput, _ o: TokenizeOptions, _ rng: inout SplitMix64) {
        let documents = input.documents, pairs = input.pairs
        let valIndices = TokenizeJob.validationIndices(documents.count, o.valFraction, &rng)
        trainDocuments = documents.indices.filter { !valIndices.contains($0) }.map { documents[$0] }
        valDocuments = valIndices.sorted().map { documents[$0] }
        if o.valPairFiles.isEmpty {
            let valPairIndices = TokenizeJob.validationIndices(pairs.count, o.valFraction, &rng)
            trainPairs = pairs.indices.filter { !valPairIndices.contains($0) }.map { pairs[$0] }
            valPairs = valPairIndices.sorted().map { pairs[$0] }
        } else {
            (trainPairs, valPairs) = (pairs, input.heldOut)
        }
    }
}

/// Encodes one split into a dataset file: each document as a text example, each pair as its image→text
/// and text→image examples; logs progress every 10 % of a split of 1,000 items or more.
struct SplitEncoder {
    let layout: VocabLayout
    let bpe: BPETokenizer
    let vq: VQTokenizer?
    let log: (String) -> Void

    /// Writes the split's examples to `path` (finished by the caller) and its counts into `summary`.
    func write(_ split: String, documents: [[UInt8]], pairs: [ImageCaptionPair], to path: String, _ summary: inout TokenizeSummary)
        throws -> DatasetFileWriter
    {
        let writer = try DatasetFileWriter(path: path, wideTokens: layout.vocabSize > 65536)
        var counts = [0, 0, 0]
        func append(_ e: Example) throws {
            try writer.append(tokens: e.tokens, mask: e.mask, task: e.task.rawValue)
            counts[Int(e.task.rawValue)] += 1
        }
        let total = documents.count + pairs.count
        var nextReport = 1
        func report(_ done: Int) {
            guard total >= 1000, done * 10 >= nextReport * total else { return }
            log("encode \(split): \(nextReport * 10)%")
            nextReport += 1
        }
        for (i, doc) in documents.enumerated() {
            try append(layout.textExample(bpe.encode(doc)))
            report(i + 1)
        }
        for (i, pair) in pairs.enumerated() {
            let codes: [Int]
            switch pair.image {
            case .png(let image): codes = vq!.encode(image)
            case .codes(let c): codes = c
            }
            let caption = bpe.encode(pair.caption)
            try append(layout.imageToTextExample(codes: codes, caption: caption))
            try append(layout.textToImageExample(caption: caption, codes: codes))
            report(documents.count + i + 1)
        }
        summary.examples[split] = counts
        summary.tokens[split] = writer.tokenCount
        return writer
    }
}
