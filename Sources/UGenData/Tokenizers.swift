import UGenStore

/// Both tokenizers of a `tokenizer.h5` and the vocabulary layout they imply: what generation and
/// evaluation need to turn text and images into ids and back.
public struct Tokenizers {
    public let text: BPETokenizer
    /// The learned image tokenizer; nil when the file has none (text only) or the ids came from an
    /// external tokenizer (then only `layout.codebookSize` is known).
    public let image: VQTokenizer?
    public let layout: VocabLayout
    /// The file's content hash, as recorded by the datasets made with it.
    public let hash: String
    /// Visual tokens per image (0 for text only).
    public let tokensPerImage: Int

    public init(path: String) throws {
        let file = try TokenizerFile.read(path)
        text = try BPETokenizer(flatMerges: file.merges)
        image =
            file.kind == "kmeans"
            ? try VQTokenizer(
                codebook: file.codebook, codebookSize: file.codebookSize, patch: file.patch, channels: file.channels,
                imageWidth: file.imageWidth, imageHeight: file.imageHeight)
            : nil
        layout = VocabLayout(textVocab: text.vocabSize, codebookSize: file.codebookSize)
        hash = file.contentHash
        tokensPerImage = file.patch > 0 ? (file.imageWidth / file.patch) * (file.imageHeight / file.patch) : 0
    }
}
