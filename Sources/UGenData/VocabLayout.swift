import UGenStore

/// The one id space text and images share (Documentation/model.md), in this order:
///
///     0 ..< T          text: 256 byte tokens, then BPE merges
///     T ..< T+S        specials: <pad> <bos> <eos> <boi> <eoi> <unk_img>
///     T+S ..< T+S+K    visual: one id per code of the image codebook
///
/// Recorded in every dataset (root attributes) and checkpoint, and compared before training.
public struct VocabLayout: Codable, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The specials, in id order. Their ids are `T + index`.
    public static let specialNames = ["<pad>", "<bos>", "<eos>", "<boi>", "<eoi>", "<unk_img>"]

    /// T: byte tokens plus merges.
    public let textVocab: Int
    /// S: number of special ids.
    public let specialCount: Int
    /// K: codebook size of the image tokenizer (0 for a text-only dataset).
    public let codebookSize: Int

    public init(textVocab: Int, codebookSize: Int) {
        precondition(textVocab >= 256 && codebookSize >= 0, "invalid vocabulary layout")
        self.textVocab = textVocab
        self.specialCount = Self.specialNames.count
        self.codebookSize = codebookSize
    }

    /// V = T + S + K.
    public var vocabSize: Int { textVocab + specialCount + codebookSize }

    public var pad: Int32 { Int32(textVocab) }
    public var bos: Int32 { Int32(textVocab + 1) }
    public var eos: Int32 { Int32(textVocab + 2) }
    public var boi: Int32 { Int32(textVocab + 3) }
    public var eoi: Int32 { Int32(textVocab + 4) }
    public var unkImage: Int32 { Int32(textVocab + 5) }

    public var textRange: Range<Int> { 0..<textVocab }
    public var specialRange: Range<Int> { textVocab..<textVocab + specialCount }
    public var visualRange: Range<Int> { textVocab + specialCount..<vocabSize }

    public func isText(_ id: Int32) -> Bool { id >= 0 && Int(id) < textVocab }
    public func isSpecial(_ id: Int32) -> Bool { specialRange.contains(Int(id)) }
    public func isVisual(_ id: Int32) -> Bool { visualRange.contains(Int(id)) }

    /// The id of codebook entry `code` (0 ..< K).
    public func visualId(code: Int) -> Int32 {
        precondition(code >= 0 && code < codebookSize, "visual code \(code) outside 0..<\(codebookSize)")
        return Int32(textVocab + specialCount + code)
    }

    /// The codebook entry of a visual id.
    public func code(of id: Int32) -> Int {
        precondition(isVisual(id), "id \(id) is not visual")
        return Int(id) - textVocab - specialCount
    }

    public var description: String {
        "V=\(vocabSize): text 0..<\(textVocab), specials \(textVocab)..<\(textVocab + specialCount) "
            + Self.specialNames.joined(separator: " ") + ", visual \(visualRange.lowerBound)..<\(vocabSize) (K=\(codebookSize))"
    }

    // MARK: Attributes

    /// Attribute names for the special ids: `pad_id`, `bos_id`, … `unk_img_id`.
    static let specialAttributes = specialNames.map { String($0.dropFirst().dropLast()) + "_id" }

    /// The layout's integer attributes, in the order datasets write them: `text_vocab`, `n_specials`,
    /// `codebook`, `vocab_size`, then one `<name>_id` per special. Datasets store them on their root,
    /// checkpoints as the `vocab_layout` table (Documentation/formats.md).
    public var integerAttributes: [(name: String, value: Int)] {
        [("text_vocab", textVocab), ("n_specials", specialCount), ("codebook", codebookSize), ("vocab_size", vocabSize)]
            + Self.specialAttributes.enumerated().map { ($1, textVocab + $0) }
    }

    /// `integerAttributes` as the table a checkpoint stores.
    public var attributes: [String: Int] { Dictionary(uniqueKeysWithValues: integerAttributes.map { ($0.name, $0.value) }) }

    /// Writes the layout as attributes of `object`: `integerAttributes` and `specials` (the names, space
    /// separated).
    public func write(to file: H5File, at object: String = "/") throws {
        for (name, value) in integerAttributes { try file.setAttribute(name, value, at: object) }
        try file.setAttribute("specials", Self.specialNames.joined(separator: " "), at: object)
    }

    /// Reads and checks a layout written by `write`: every attribute present and consistent, one-line
    /// errors naming the file and the attribute.
    public init(from file: H5File, at object: String = "/") throws {
        func int(_ name: String) throws -> Int {
            guard file.hasAttribute(name, at: object) else {
                throw DataError.missingAttribute(path: file.path, name: name, ofLayout: true)
            }
            return try file.intAttribute(name, at: object)
        }
        let t = try int("text_vocab"), s = try int("n_specials"), k = try int("codebook"), v = try int("vocab_size")
        guard t >= 256, k >= 0 else { throw DataError.invalidLayout(path: file.path, textVocab: t, codebook: k) }
        guard s == Self.specialNames.count else {
            throw DataError.specialCount(path: file.path, found: s, expected: Self.specialNames.count)
        }
        guard v == t + s + k else { throw DataError.vocabSizeAttribute(path: file.path, found: v, expected: t + s + k) }
        for (i, name) in Self.specialAttributes.enumerated() {
            let id = try int(name)
            guard id == t + i else { throw DataError.specialId(path: file.path, name: name, found: id, expected: t + i) }
        }
        self.init(textVocab: t, codebookSize: k)
    }
}
