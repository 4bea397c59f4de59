import CHDF5
import Foundation

/// The on-disk schema of one tokenized split (Documentation/formats.md), shared by the writer (`ugen tokenize`) and the
/// reader (training). The vocabulary-layout attributes are written and checked one level up, in UGenData.
public enum DatasetSchema {
    public static let format = "ugen-dataset"
    public static let version = 1
    /// Elements per chunk of /tokens and /loss_mask: small enough that reading one random example
    /// decompresses little (32 KB of uint16), large enough that compression still works.
    public static let chunk = 16_384
}

/// Writes one split as it is produced, so a corpus larger than memory can be tokenized: /tokens and
/// /loss_mask grow chunk by chunk; /offsets and /task (8+1 bytes per example) are kept and written at the
/// end. The file lives under `path + ".partial"` until `finish` renames it, so a failed run never leaves
/// a file that looks complete.
public final class DatasetFileWriter {
    public let path: String
    public let partialPath: String
    private var file: H5File?
    private var tokens: AppendableDataset?
    private var mask: AppendableDataset?
    private var tokenBuffer: [Int32] = []
    private var maskBuffer: [UInt8] = []
    private var offsets: [Int64] = [0]
    private var tasks: [UInt8] = []

    /// `wideTokens`: store ids as uint32 (vocabulary above 65,536), else uint16.
    public init(path: String, wideTokens: Bool) throws {
        self.path = path
        self.partialPath = path + ".partial"
        let file = try H5File.create(partialPath)
        self.file = file
        tokens = try AppendableDataset(
            file, "/tokens", stored: wideTokens ? ugen_h5t_uint32() : ugen_h5t_uint16(),
            chunk: DatasetSchema.chunk)
        mask = try AppendableDataset(file, "/loss_mask", stored: ugen_h5t_uint8(), chunk: DatasetSchema.chunk)
    }

    deinit { if file != nil { abandon() } }

    public var exampleCount: Int { tasks.count }
    public var tokenCount: Int { Int(offsets.last!) }

    /// Appends one example: its tokens, its per-token loss mask (same length) and its task code.
    public func append(tokens t: [Int32], mask m: [UInt8], task: UInt8) throws {
        precondition(t.count == m.count, "tokens and mask differ in length")
        tokenBuffer += t
        maskBuffer += m
        offsets.append(offsets.last! + Int64(t.count))
        tasks.append(task)
        if tokenBuffer.count >= 1 << 20 { try drain() }
    }

    private func drain() throws {
        try tokens!.append(tokenBuffer)
        try mask!.append(maskBuffer)
        tokenBuffer.removeAll(keepingCapacity: true)
        maskBuffer.removeAll(keepingCapacity: true)
    }

    /// Writes /offsets, /task, the format attributes and whatever `attributes` adds to the root, flushes,
    /// closes and renames the file to its final name.
    public func finish(attributes: (H5File) throws -> Void) throws {
        guard let file else { throw StoreError(path, .writerFinished) }
        try drain()
        tokens = nil
        mask = nil
        try file.write("/offsets", offsets, chunk: DatasetSchema.chunk)
        try file.write("/task", tasks, chunk: DatasetSchema.chunk)
        try file.setAttribute("format", DatasetSchema.format)
        try file.setAttribute("version", DatasetSchema.version)
        try file.setAttribute("n_examples", tasks.count)
        try file.setAttribute("n_tokens", tokenCount)
        try attributes(file)
        try file.flush()
        self.file = nil  // closes the file before the rename
        try? FileManager.default.removeItem(atPath: path)
        do { try FileManager.default.moveItem(atPath: partialPath, toPath: path) } catch {
            throw StoreError(path, .cannotRename(from: partialPath))
        }
    }

    /// Closes and deletes the partial file (after an error).
    public func abandon() {
        tokens = nil
        mask = nil
        file = nil
        try? FileManager.default.removeItem(atPath: partialPath)
    }
}

/// A chunked, deflate-compressed 1-D dataset of unlimited length that grows by appends.
final class AppendableDataset {
    let file: H5File
    let name: String
    let id: hid_t
    private(set) var count = 0

    init(_ file: H5File, _ name: String, stored: hid_t, chunk: Int) throws {
        self.file = file
        self.name = name
        var dims: hsize_t = 0, maxDims = ugen_h5s_unlimited(), chunkDims = hsize_t(chunk)
        let space = H5Screate_simple(1, &dims, &maxDims)
        defer { H5Sclose(space) }
        let dcpl = H5Pcreate(ugen_h5p_dataset_create())
        defer { H5Pclose(dcpl) }
        H5Pset_chunk(dcpl, 1, &chunkDims)
        H5Pset_deflate(dcpl, 4)
        id = H5Dcreate2(file.id, name, stored, space, ugen_h5p_default(), dcpl, ugen_h5p_default())
        guard id >= 0 else { throw StoreError(file.path, .cannotCreateDataset(name)) }
    }

    deinit { H5Dclose(id) }

    func append<T: H5Element>(_ values: [T]) throws {
        if values.isEmpty { return }
        var newSize = hsize_t(count + values.count)
        guard H5Dset_extent(id, &newSize) >= 0 else { throw StoreError(file.path, .cannotExtend(name)) }
        let fileSpace = H5Dget_space(id)
        defer { H5Sclose(fileSpace) }
        var start = hsize_t(count), n = hsize_t(values.count)
        H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &start, nil, &n, nil)
        let memSpace = H5Screate_simple(1, &n, nil)
        defer { H5Sclose(memSpace) }
        let status = values.withUnsafeBufferPointer {
            H5Dwrite(id, T.h5Type, memSpace, fileSpace, ugen_h5p_default(), $0.baseAddress!)
        }
        guard status >= 0 else { throw StoreError(file.path, .cannotWrite(name, diskFull: true)) }
        count += values.count
    }
}

/// Reads one split by slices after checking its `format` and `version` attributes: /offsets and /task
/// are loaded (small); /tokens and /loss_mask stay on disk and are read in chunk-aligned blocks through a
/// bounded LRU cache, so fetching a training example is a copy, not an HDF5 call, while memory stays
/// under `cacheBlocks` blocks whatever the file's size.
public final class DatasetFileReader {
    public let file: H5File
    public let offsets: [Int64]
    public let tasks: [UInt8]
    public let tokenCount: Int
    private let tokens: hid_t
    private let mask: hid_t

    /// Elements per cached block (the writer's chunk, so a block read decompresses exactly one chunk).
    static let blockSize = DatasetSchema.chunk
    /// At most this many blocks are kept: 512 × 16,384 × 5 bytes = 40 MB.
    static let cacheBlocks = 512

    private struct Block {
        var tokens: [Int32]
        var mask: [UInt8]
        var lastUse: Int
    }
    private var blocks: [Int: Block] = [:]
    private var clock = 0

    public init(path: String) throws {
        file = try H5File.open(path)
        let format = (try? file.stringAttribute("format")) ?? "(none)"
        guard format == DatasetSchema.format else {
            throw StoreError(path, .wrongFormat(found: format, expected: DatasetSchema.format))
        }
        let version = (try? file.intAttribute("version")) ?? -1
        guard version == DatasetSchema.version else {
            throw StoreError(path, .wrongVersion(found: version, expected: DatasetSchema.version))
        }
        for name in ["/tokens", "/loss_mask", "/offsets", "/task"] where !file.isDataset(name) {
            throw StoreError(path, .missingDataset(name, notOurs: true))
        }
        offsets = try file.read("/offsets", as: Int64.self)
        tasks = try file.read("/task", as: UInt8.self)
        tokenCount = try file.shape(of: "/tokens").first ?? 0
        let maskCount = try file.shape(of: "/loss_mask").first ?? 0
        guard maskCount == tokenCount else {
            throw StoreError(path, .maskLength(mask: maskCount, tokens: tokenCount))
        }
        tokens = H5Dopen2(file.id, "/tokens", ugen_h5p_default())
        mask = H5Dopen2(file.id, "/loss_mask", ugen_h5p_default())
        guard tokens >= 0, mask >= 0 else { throw StoreError(path, .cannotOpenTokensAndMask) }
    }

    deinit {
        H5Dclose(tokens)
        H5Dclose(mask)
    }

    /// Reads tokens[start ..< start+count] (converted to Int32) and the matching loss-mask bytes.
    public func read(
        start: Int, count: Int, tokens tokenOut: UnsafeMutablePointer<Int32>,
        mask maskOut: UnsafeMutablePointer<UInt8>
    ) throws {
        guard start >= 0, count >= 0, start + count <= tokenCount else {
            throw StoreError(file.path, .sliceOutside("/tokens", start..<start + count, length: tokenCount))
        }
        var position = start
        while position < start + count {
            let index = position / Self.blockSize, offset = position - index * Self.blockSize
            let n = min(start + count - position, Self.blockSize - offset)
            clock += 1
            let block = try blocks[index] ?? load(index)
            blocks[index]!.lastUse = clock
            block.tokens.withUnsafeBufferPointer { (tokenOut + (position - start)).update(from: $0.baseAddress! + offset, count: n) }
            block.mask.withUnsafeBufferPointer { (maskOut + (position - start)).update(from: $0.baseAddress! + offset, count: n) }
            position += n
        }
    }

    private func load(_ index: Int) throws -> Block {
        if blocks.count >= Self.cacheBlocks, let oldest = blocks.min(by: { $0.value.lastUse < $1.value.lastUse })?.key {
            blocks.removeValue(forKey: oldest)
        }
        let start = index * Self.blockSize, n = min(Self.blockSize, tokenCount - start)
        var block = Block(tokens: [Int32](repeating: 0, count: n), mask: [UInt8](repeating: 0, count: n), lastUse: clock)
        try block.tokens.withUnsafeMutableBytes { try readSlice(tokens, "/tokens", start, n, Int32.h5Type, $0.baseAddress!) }
        try block.mask.withUnsafeMutableBytes { try readSlice(mask, "/loss_mask", start, n, UInt8.h5Type, $0.baseAddress!) }
        blocks[index] = block
        return block
    }

    private func readSlice(
        _ d: hid_t, _ name: String, _ start: Int, _ count: Int, _ memType: hid_t,
        _ out: UnsafeMutableRawPointer
    ) throws {
        let fileSpace = H5Dget_space(d)
        defer { H5Sclose(fileSpace) }
        var s = hsize_t(start), n = hsize_t(count)
        H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &s, nil, &n, nil)
        let memSpace = H5Screate_simple(1, &n, nil)
        defer { H5Sclose(memSpace) }
        guard H5Dread(d, memType, memSpace, fileSpace, ugen_h5p_default(), out) >= 0 else {
            throw StoreError(file.path, .cannotReadSlice(name, start..<start + count))
        }
    }
}
