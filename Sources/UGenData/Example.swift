/// The three kinds of training example (Documentation/model.md); the raw value is the `/task` code in a dataset.
public enum ExampleTask: UInt8, Codable, CaseIterable, Sendable {
    case text = 0
    case imageToText = 1
    case textToImage = 2

    public var name: String {
        switch self {
        case .text: "text"
        case .imageToText: "img2txt"
        case .textToImage: "txt2img"
        }
    }
}

/// One training example: a token sequence and its loss mask.
///
/// Mask convention: `mask[i] == 1` when token `i` is a *target* that carries loss, i.e. the model is
/// trained to predict `tokens[i]` from `tokens[0 ..< i]`. `mask[0]` is always 0 (`<bos>` is never
/// predicted). The packer shifts by one: input position t predicts row token t+1 with weight mask[t+1].
public struct Example: Equatable, Sendable {
    public var tokens: [Int32]
    public var mask: [UInt8]
    public var task: ExampleTask

    public init(tokens: [Int32], mask: [UInt8], task: ExampleTask) {
        precondition(tokens.count == mask.count, "tokens and mask differ in length")
        self.tokens = tokens; self.mask = mask; self.task = task
    }
}

extension VocabLayout {
    /// `<bos> text <eos>`: loss on every text token and `<eos>`.
    public func textExample(_ text: [Int32]) -> Example {
        Example(tokens: [bos] + text + [eos], mask: [0] + [UInt8](repeating: 1, count: text.count + 1), task: .text)
    }

    /// `<bos> <boi> v₁…vₙ <eoi> caption <eos>`: loss on the caption and `<eos>`. `codes` are codebook entries.
    public func imageToTextExample(codes: [Int], caption: [Int32]) -> Example {
        let visual = codes.map { visualId(code: $0) }
        let tokens = [bos, boi] + visual + [eoi] + caption + [eos]
        let mask = [UInt8](repeating: 0, count: visual.count + 3) + [UInt8](repeating: 1, count: caption.count + 1)
        return Example(tokens: tokens, mask: mask, task: .imageToText)
    }

    /// `<bos> caption <boi> v₁…vₙ <eoi> <eos>`: loss on `v₁…vₙ` and `<eoi>` (the model learns where the
    /// image ends; `<eos>` after `<eoi>` is fixed and carries none).
    public func textToImageExample(caption: [Int32], codes: [Int]) -> Example {
        let visual = codes.map { visualId(code: $0) }
        let tokens = [bos] + caption + [boi] + visual + [eoi, eos]
        let mask = [UInt8](repeating: 0, count: caption.count + 2) + [UInt8](repeating: 1, count: visual.count + 1) + [0]
        return Example(tokens: tokens, mask: mask, task: .textToImage)
    }
}
