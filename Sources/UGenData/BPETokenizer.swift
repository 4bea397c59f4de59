import Foundation

/// Byte-level BPE (as in GPT-2): ids 0..<256 are the bytes, id 256+i is merge i of two earlier ids.
/// Any byte string encodes, and decoding concatenates the ids' bytes, so the round trip is exact for
/// arbitrary UTF-8 (or not UTF-8 at all).
///
/// Encoding splits the input into pieces (`Pretokenizer`), then merges within each piece by rank; the
/// encoding of each distinct piece is cached because natural text repeats its words. The cache makes an
/// instance single-threaded: use one per thread.
public final class BPETokenizer {
    public struct Merge: Equatable, Sendable {
        public let left: Int32
        public let right: Int32
        public init(_ left: Int32, _ right: Int32) { self.left = left; self.right = right }
    }

    public let merges: [Merge]
    /// Rank (merge index) of each mergeable pair.
    private let ranks: [UInt64: Int32]
    /// The bytes each text id stands for.
    private let bytesOfId: [[UInt8]]
    private var cache: [[UInt8]: [Int32]] = [:]
    private static let cacheLimit = 1 << 17

    /// T: the number of text ids (256 + merges).
    public var vocabSize: Int { 256 + merges.count }

    /// Builds a tokenizer from merges; merge i may only use ids below 256+i.
    public init(merges: [Merge]) throws {
        var ranks: [UInt64: Int32] = [:]
        var bytesOfId = (0..<256).map { [UInt8($0)] }
        for (i, m) in merges.enumerated() {
            guard (0..<Int32(256 + i)).contains(m.left), (0..<Int32(256 + i)).contains(m.right) else {
                throw DataError.mergeUsesUndefinedId(merge: i, left: m.left, right: m.right)
            }
            ranks[Self.key(m.left, m.right)] = Int32(i)
            bytesOfId.append(bytesOfId[Int(m.left)] + bytesOfId[Int(m.right)])
        }
        self.merges = merges
        self.ranks = ranks
        self.bytesOfId = bytesOfId
    }

    /// From the flattened [M, 2] merges of a tokenizer file.
    public convenience init(flatMerges: [Int32]) throws {
        try self.init(merges: stride(from: 0, to: flatMerges.count - 1, by: 2).map { Merge(flatMerges[$0], flatMerges[$0 + 1]) })
    }

    public var flatMerges: [Int32] { merges.flatMap { [$0.left, $0.right] } }

    static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

    // MARK: Encode and decode

    public func encode(_ bytes: [UInt8]) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(bytes.count / 3)
        bytes.withUnsafeBufferPointer { buf in
            Pretokenizer.forEachPiece(buf) { range in
                let piece = Array(buf[range])
                if let ids = cache[piece] {
                    out += ids
                    return
                }
                let ids = encodePiece(piece)
                if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
                cache[piece] = ids
                out += ids
            }
        }
        return out
    }

    public func encode(_ text: String) -> [Int32] { encode(Array(text.utf8)) }

    /// Applies the merges to one piece: repeatedly merge every occurrence of the lowest-ranked pair
    /// present, which reproduces the order the merges were learned in.
    private func encodePiece(_ piece: [UInt8]) -> [Int32] {
        var ids = piece.map { Int32($0) }
        while ids.count > 1 {
            var best = Int32.max
            for i in 0..<ids.count - 1 {
                if let r = ranks[Self.key(ids[i], ids[i + 1])], r < best { best = r }
            }
            if best == .max { break }
            let m = merges[Int(best)], merged = Int32(256) + best
            var out: [Int32] = []
            out.reserveCapacity(ids.count)
            var i = 0
            while i < ids.count {
                if i + 1 < ids.count, ids[i] == m.left, ids[i + 1] == m.right {
                    out.append(merged)
                    i += 2
                } else {
                    out.append(ids[i])
                    i += 1
                }
            }
            ids = out
        }
        return ids
    }

    /// The bytes of the text ids in `ids`; ids outside 0..<T (specials, visual ids) are skipped.
    public func decode(_ ids: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        for id in ids where id >= 0 && Int(id) < bytesOfId.count { out += bytesOfId[Int(id)] }
        return out
    }

    /// `decode` as a String (invalid UTF-8, e.g. a cut-off character, becomes U+FFFD).
    public func decodeText(_ ids: [Int32]) -> String { String(decoding: decode(ids), as: UTF8.self) }

    /// The bytes one text id stands for.
    public func bytes(of id: Int32) -> [UInt8] { bytesOfId[Int(id)] }
}
