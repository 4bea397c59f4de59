import Foundation

/// The tokenizer as stored (Documentation/formats.md): the text BPE merges and the image codebook with its patch geometry,
/// in one HDF5 file that datasets and checkpoints name by its content hash.
///
/// Layout: `/text/merges` int32 [M, 2] (merge i makes text id 256+i from the pair), `/image/codebook`
/// float32 [K, P·P·C] (pixel values scaled to 0…1, patch pixels row-major then channel), attributes on
/// `/image`: `codebook_size`, `patch`, `channels`, `image_width`, `image_height`, `kind`
/// ("kmeans", "external" — ids made elsewhere, no codebook stored — or "none").
public struct TokenizerFile: Equatable, Sendable {
    public static let format = "ugen-tokenizer"
    public static let version = 1

    /// Flattened [M, 2] merge pairs.
    public var merges: [Int32]
    /// Flattened [K, patch·patch·channels]; empty unless `kind == "kmeans"`.
    public var codebook: [Float]
    public var codebookSize: Int
    public var patch: Int
    public var channels: Int
    public var imageWidth: Int
    public var imageHeight: Int
    public var kind: String

    public init(
        merges: [Int32], codebook: [Float], codebookSize: Int, patch: Int, channels: Int,
        imageWidth: Int, imageHeight: Int, kind: String
    ) {
        self.merges = merges; self.codebook = codebook; self.codebookSize = codebookSize; self.patch = patch
        self.channels = channels; self.imageWidth = imageWidth; self.imageHeight = imageHeight; self.kind = kind
    }

    /// FNV-1a 64 over everything that decides the token ids, as 16 hex digits: equal hashes mean a dataset
    /// and a tokenizer (or a checkpoint) agree on what every id means.
    public var contentHash: String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        func add(_ bytes: UnsafeRawBufferPointer) { for b in bytes { h ^= UInt64(b); h = h &* 0x100_0000_01B3 } }
        func add(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { add($0) } }
        add(merges.count); merges.withUnsafeBytes { add($0) }
        add(codebook.count); codebook.withUnsafeBytes { add($0) }
        for v in [codebookSize, patch, channels, imageWidth, imageHeight] { add(v) }
        Array(kind.utf8).withUnsafeBytes { add($0) }
        return String(format: "%016llx", h)
    }

    /// Writes under a temporary name, then renames into place.
    public func write(to path: String) throws {
        let partial = path + ".partial"
        do {
            let f = try H5File.create(partial)
            try f.setAttribute("format", Self.format)
            try f.setAttribute("version", Self.version)
            try f.setAttribute("content_hash", contentHash)
            try f.write("/text/merges", merges, shape: [merges.count / 2, 2])
            try f.setAttribute("n_merges", merges.count / 2, at: "/text")
            try f.setAttribute("text_vocab", 256 + merges.count / 2, at: "/text")
            let dim = patch * patch * channels
            try f.ensureGroup("/image")
            if kind == "kmeans" { try f.write("/image/codebook", codebook, shape: [codebookSize, dim]) }
            for (k, v) in [
                ("codebook_size", codebookSize), ("patch", patch), ("channels", channels),
                ("image_width", imageWidth), ("image_height", imageHeight),
            ] {
                try f.setAttribute(k, v, at: "/image")
            }
            try f.setAttribute("kind", kind, at: "/image")
            try f.flush()
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        try? FileManager.default.removeItem(atPath: path)
        do { try FileManager.default.moveItem(atPath: partial, toPath: path) } catch {
            throw StoreError(path, .cannotRename(from: partial))
        }
    }

    /// Reads and validates a tokenizer file; the stored content hash must match the content.
    public static func read(_ path: String) throws -> TokenizerFile {
        let f = try H5File.open(path)
        let format = (try? f.stringAttribute("format")) ?? "(none)"
        guard format == Self.format else {
            throw StoreError(path, .wrongFormat(found: format, expected: Self.format))
        }
        let version = try f.intAttribute("version")
        guard version == Self.version else {
            throw StoreError(path, .wrongVersion(found: version, expected: Self.version))
        }
        let shape = try f.shape(of: "/text/merges")
        guard shape.count == 2, shape[1] == 2 else { throw StoreError(path, .mergesShape) }
        let kind = try f.stringAttribute("kind", at: "/image")
        let k = try f.intAttribute("codebook_size", at: "/image")
        let patch = try f.intAttribute("patch", at: "/image"), channels = try f.intAttribute("channels", at: "/image")
        let codebook: [Float] = kind == "kmeans" ? try f.read("/image/codebook") : []
        guard codebook.count == (kind == "kmeans" ? k * patch * patch * channels : 0) else {
            throw StoreError(path, .codebookShape(codes: k, patch: patch, channels: channels))
        }
        let t = TokenizerFile(
            merges: try f.read("/text/merges"), codebook: codebook, codebookSize: k, patch: patch,
            channels: channels, imageWidth: try f.intAttribute("image_width", at: "/image"),
            imageHeight: try f.intAttribute("image_height", at: "/image"), kind: kind)
        let stored = try f.stringAttribute("content_hash")
        guard stored == t.contentHash else {
            throw StoreError(path, .contentHash(stored: stored, actual: t.contentHash))
        }
        return t
    }
}
