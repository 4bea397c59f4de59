/// A failure turning raw files into tokens or reading a dataset: one case per mistake. `description` is
/// one line that names the file (and line, for JSONL: `source` is "path:line"), so `ugen tokenize` can
/// print it as is.
public indirect enum DataError: Error, CustomStringConvertible, Equatable {
    // Files.
    case noSuchFile(String)
    case notReadable(String)
    case isDirectory(String)
    case cannotCreateDirectory(String)
    case cannotWrite(String)
    /// A corpus file without anything in it; `what`: "documents", "pairs", "digits".
    case empty(path: String, what: EmptyKind)
    case notPNG(path: String, libpng: String)
    case cannotDecodePNG(path: String, libpng: String)
    case cannotWritePNG(path: String, libpng: String)
    case gzipNotRunnable(String)
    case notGzip(String)

    // Lines of corpora.
    case missingText(path: String, line: Int)
    case notAJSONObject(path: String, line: Int)
    case digitsLineLength(path: String, line: Int)
    case digitsRange(path: String, line: Int)
    case missingCaption(source: String)
    case imageIdsNeedCodebook(source: String)
    case badImageIds(source: String, codebook: Int)
    case imageWithExternalCodebook(source: String)
    /// The pair's PNG could not be read (`error` names the file).
    case pairImage(source: String, DataError)
    case needsImage(source: String)
    case notPNGPair(source: String)

    // Images against the tokenizer and the options.
    case imageUnlikeTokenizer(source: String, width: Int, height: Int, tokenizerWidth: Int, tokenizerHeight: Int, canvasGiven: Bool)
    case imageLargerThanCanvas(source: String, width: Int, height: Int, canvasWidth: Int, canvasHeight: Int)
    case imageNotPatchMultiple(source: String, width: Int, height: Int, patch: Int)
    case imageUnlikeFirst(source: String, width: Int, height: Int, firstWidth: Int, firstHeight: Int)
    case imageIdCount(source: String, count: Int, first: Int)

    // Tokenizers and `ugen tokenize` options.
    case noImageCodebook(tokenizer: String)
    case vqImageSize(width: Int, height: Int, patch: Int)
    case codebookValues(count: Int, codes: Int, patch: Int, channels: Int)
    case noImages
    case codebookSizeNotPositive
    case mergeUsesUndefinedId(merge: Int, left: Int32, right: Int32)
    case textVocabTooSmall
    case codebookOrPatchNotPositive
    case valFractionOutOfRange
    case nothingToTokenize
    case canvasNotPatchMultiple(width: Int, height: Int, patch: Int)

    // Datasets and their vocabulary layout.
    /// `ofLayout`: one of the vocabulary layout's attributes.
    case missingAttribute(path: String, name: String, ofLayout: Bool)
    case invalidLayout(path: String, textVocab: Int, codebook: Int)
    case specialCount(path: String, found: Int, expected: Int)
    case vocabSizeAttribute(path: String, found: Int, expected: Int)
    case specialId(path: String, name: String, found: Int, expected: Int)
    case layoutMismatch(path: String, found: VocabLayout, expected: VocabLayout)
    case offsetsShape(path: String, entries: Int, tokens: Int)
    case offsetsNotIncreasing(path: String, example: Int)
    case badTask(path: String, index: Int, value: UInt8)
    case examplesOutside(path: String, range: Range<Int>, count: Int)

    // The packer.
    case noDatasets
    case layoutsDiffer(path: String, first: String, found: VocabLayout, expected: VocabLayout)
    case rowsOrSeqLenNotPositive
    case noWeightedExamples(paths: [String])
    case stateDoesNotFit(String)
    case noTextExamples
    case noExamples

    public enum EmptyKind: String, Sendable, Equatable {
        case documents = "no documents (empty corpus)", pairs = "no pairs (empty corpus)", digits = "no digits (empty file)"
    }

    // Over 60 lines on purpose: one line per case, so every message users can see reads as one list.
    public var description: String {
        switch self {
        case .noSuchFile(let p): "\(p): no such file"
        case .notReadable(let p): "\(p): not readable"
        case .isDirectory(let p): "\(p): is a directory, expected a file"
        case .cannotCreateDirectory(let p): "\(p): cannot create directory"
        case .cannotWrite(let p): "\(p): cannot write"
        case .empty(let p, let what): "\(p): \(what.rawValue)"
        case .notPNG(let p, let m): "\(p): not a PNG image (libpng: \(m))"
        case .cannotDecodePNG(let p, let m): "\(p): cannot decode PNG (libpng: \(m))"
        case .cannotWritePNG(let p, let m): "\(p): cannot write PNG (libpng: \(m))"
        case .gzipNotRunnable(let p): "\(p): cannot run gzip to decompress it"
        case .notGzip(let p): "\(p): not a valid gzip file"
        case .missingText(let p, let line): "\(p):\(line): missing \"text\" string"
        case .notAJSONObject(let p, let line): "\(p):\(line): not a JSON object"
        case .digitsLineLength(let p, let line): "\(p):\(line): expected 65 numbers (64 pixels and a label)"
        case .digitsRange(let p, let line): "\(p):\(line): pixels must be 0…16 and the label 0…9"
        case .missingCaption(let s): "\(s): missing \"caption\" string"
        case .imageIdsNeedCodebook(let s):
            "\(s): \"image_ids\" needs --external-codebook K (the codebook size of the tokenizer that made them)"
        case .badImageIds(let s, let k): "\(s): \"image_ids\" must be a non-empty list of integers in 0..<\(k)"
        case .imageWithExternalCodebook(let s): "\(s): \"image\" given but --external-codebook expects \"image_ids\" on every line"
        case .pairImage(let s, let e): "\(s): \(e)"
        case .needsImage(let s): "\(s): needs \"image\" (a PNG path) or \"image_ids\""
        case .notPNGPair(let s): "\(s): not a PNG pair"
        case .imageUnlikeTokenizer(let s, let w, let h, let tw, let th, let canvasGiven):
            "\(s): image is \(w)×\(h), the tokenizer takes \(tw)×\(th)" + (canvasGiven ? "" : " (--image-size WxH centres smaller ones)")
        case .imageLargerThanCanvas(let s, let w, let h, let cw, let ch): "\(s): image is \(w)×\(h), larger than --image-size \(cw)x\(ch)"
        case .imageNotPatchMultiple(let s, let w, let h, let patch): "\(s): image is \(w)×\(h), not a multiple of --patch \(patch)"
        case .imageUnlikeFirst(let s, let w, let h, let fw, let fh):
            "\(s): image is \(w)×\(h), the first image is \(fw)×\(fh) (--image-size WxH centres smaller images on a canvas)"
        case .imageIdCount(let s, let count, let first): "\(s): \(count) image ids, the first line has \(first)"
        case .noImageCodebook(let t): "\(t): holds no learned image codebook"
        case .vqImageSize(let w, let h, let patch): "image size \(w)×\(h) is not a multiple of the patch size \(patch)"
        case .codebookValues(let count, let codes, let patch, let channels):
            "codebook holds \(count) values, expected \(codes) codes of \(patch)×\(patch)×\(channels)"
        case .noImages: "no images to learn a codebook from"
        case .codebookSizeNotPositive: "codebook size must be positive"
        case .mergeUsesUndefinedId(let i, let l, let r): "BPE merge \(i) (\(l), \(r)) uses an id not defined before it"
        case .textVocabTooSmall: "--text-vocab must be at least 256 (the byte tokens)"
        case .codebookOrPatchNotPositive: "--codebook and --patch must be positive"
        case .valFractionOutOfRange: "--val-fraction must be in [0, 1)"
        case .nothingToTokenize: "nothing to tokenize: give --text and/or --pairs"
        case .canvasNotPatchMultiple(let w, let h, let patch): "--image-size \(w)x\(h) is not a positive multiple of --patch \(patch)"
        case .missingAttribute(let p, let name, let ofLayout): "\(p): missing attribute \(name)" + (ofLayout ? " (vocabulary layout)" : "")
        case .invalidLayout(let p, let t, let k): "\(p): attribute text_vocab=\(t) or codebook=\(k) is invalid"
        case .specialCount(let p, let s, let expected): "\(p): attribute n_specials is \(s), this build has \(expected) specials"
        case .vocabSizeAttribute(let p, let v, let expected): "\(p): attribute vocab_size is \(v), expected T+S+K = \(expected)"
        case .specialId(let p, let name, let id, let expected): "\(p): attribute \(name) is \(id), expected \(expected)"
        case .layoutMismatch(let p, let l, let e):
            "\(p): vocabulary layout T=\(l.textVocab) S=\(l.specialCount) K=\(l.codebookSize) "
                + "does not match the expected T=\(e.textVocab) S=\(e.specialCount) K=\(e.codebookSize)"
        case .offsetsShape(let p, let entries, let tokens):
            "\(p): /offsets must have \(entries) entries from 0 to \(tokens) (the length of /tokens)"
        case .offsetsNotIncreasing(let p, let i): "\(p): /offsets is not increasing at example \(i)"
        case .badTask(let p, let i, let v): "\(p): /task[\(i)] is \(v), expected 0, 1 or 2"
        case .examplesOutside(let p, let range, let count): "\(p): examples \(range) outside 0..<\(count)"
        case .noDatasets: "packer: no datasets given"
        case .layoutsDiffer(let p, let first, let l, let e): "\(p): vocabulary layout differs from \(first)'s (\(l) vs \(e))"
        case .rowsOrSeqLenNotPositive: "packer: rows and seqLen must be positive"
        case .noWeightedExamples(let paths):
            "packer: no examples of any task with a positive weight in \(paths.joined(separator: ", "))"
        case .stateDoesNotFit(let saved): "packer: saved state \(saved) does not fit these datasets"
        case .noTextExamples: "packer: no text examples for a text-only step"
        case .noExamples: "packer: no examples to draw"
        }
    }
}
