import UGenStore

/// One split (`train.h5`, `val.h5`) opened for training: the layout and the example index (offsets and
/// tasks, 9 bytes per example) in memory, the tokens on disk, read by slices through a bounded block cache
/// (`DatasetFileReader`). A dataset larger than memory trains.
///
/// Opening checks the format, version and vocabulary layout attributes and the index's consistency, and
/// fails with one line naming the file and what is wrong. Single-threaded (HDF5 is serial here).
public final class DatasetReader {
    public let path: String
    public let layout: VocabLayout
    /// The content hash of the tokenizer the tokens were made with (`TokenizerFile.contentHash`).
    public let tokenizerHash: String
    private let file: DatasetFileReader

    /// Opens `path`; with `expected`, the file's layout must equal it (e.g. the model's or another split's).
    public init(path: String, expecting expected: VocabLayout? = nil) throws {
        self.path = path
        file = try DatasetFileReader(path: path)
        layout = try VocabLayout(from: file.file)
        guard file.file.hasAttribute("tokenizer_hash") else {
            throw DataError.missingAttribute(path: path, name: "tokenizer_hash", ofLayout: false)
        }
        tokenizerHash = try file.file.stringAttribute("tokenizer_hash")
        if let expected, expected != layout {
            throw DataError.layoutMismatch(path: path, found: layout, expected: expected)
        }
        let offsets = file.offsets, n = file.tasks.count
        guard offsets.count == n + 1, offsets.first == 0, offsets.last == Int64(file.tokenCount) else {
            throw DataError.offsetsShape(path: path, entries: n + 1, tokens: Int(file.tokenCount))
        }
        for i in 0..<n where offsets[i + 1] <= offsets[i] {
            throw DataError.offsetsNotIncreasing(path: path, example: i)
        }
        if let bad = file.tasks.firstIndex(where: { ExampleTask(rawValue: $0) == nil }) {
            throw DataError.badTask(path: path, index: bad, value: file.tasks[bad])
        }
    }

    /// The dataset's identity: FNV-1a 64 (16 hex digits) over the tokenizer hash, the token count and
    /// the example index (offsets and tasks). Cheap (the index is in memory); equal for the same split
    /// tokenized again the same way, different when examples are added, removed or re-cut.
    public var identityHash: String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        func add(_ bytes: UnsafeRawBufferPointer) { for b in bytes { h ^= UInt64(b); h = h &* 0x100_0000_01B3 } }
        Array(tokenizerHash.utf8).withUnsafeBytes { add($0) }
        withUnsafeBytes(of: Int64(file.tokenCount).littleEndian) { add($0) }
        file.offsets.withUnsafeBytes { add($0) }
        file.tasks.withUnsafeBytes { add($0) }
        return String(format: "%016llx", h)
    }

    /// Number of examples.
    public var count: Int { file.tasks.count }
    /// Number of tokens over all examples.
    public var tokenCount: Int { file.tokenCount }

    public func task(of i: Int) -> ExampleTask { ExampleTask(rawValue: file.tasks[i])! }
    public func length(of i: Int) -> Int { Int(file.offsets[i + 1] - file.offsets[i]) }

    /// Number of examples of each task, indexed by `ExampleTask.rawValue`.
    public var countsByTask: [Int] {
        var counts = [0, 0, 0]
        for t in file.tasks { counts[Int(t)] += 1 }
        return counts
    }

    /// Example `i`, reading only its tokens and mask.
    public func example(_ i: Int) throws -> Example {
        try examples(i..<i + 1)[0]
    }

    /// Examples `range`, read with one slice of /tokens and one of /loss_mask.
    public func examples(_ range: Range<Int>) throws -> [Example] {
        guard range.lowerBound >= 0, range.upperBound <= count else {
            throw DataError.examplesOutside(path: path, range: range, count: count)
        }
        if range.isEmpty { return [] }
        let start = Int(file.offsets[range.lowerBound]), total = Int(file.offsets[range.upperBound]) - start
        var tokens = [Int32](repeating: 0, count: total), mask = [UInt8](repeating: 0, count: total)
        try tokens.withUnsafeMutableBufferPointer { t in
            try mask.withUnsafeMutableBufferPointer { m in
                try file.read(start: start, count: total, tokens: t.baseAddress!, mask: m.baseAddress!)
            }
        }
        return range.map { i in
            let a = Int(file.offsets[i]) - start, b = Int(file.offsets[i + 1]) - start
            return Example(tokens: Array(tokens[a..<b]), mask: Array(mask[a..<b]), task: task(of: i))
        }
    }

    /// Reads the first `count` tokens of example `i` (and their mask) into caller memory: the packer's
    /// allocation-free path.
    func read(_ i: Int, count: Int, tokens: UnsafeMutablePointer<Int32>, mask: UnsafeMutablePointer<UInt8>) throws {
        try file.read(start: Int(file.offsets[i]), count: count, tokens: tokens, mask: mask)
    }
}
