/// Splits bytes into the pieces BPE works within, GPT-2 style, so merges never cross a word boundary:
/// a contraction (`'s 't 're 've 'm 'll 'd`), or an optional single space followed by a run of letters,
/// a run of digits or a run of other symbols, or a run of whitespace. Of a whitespace run followed by a
/// word, the last space joins the word (" the"), as in GPT-2.
///
/// Works on bytes: every byte ≥ 0x80 counts as a letter, so a UTF-8 character (é, 🙂, a combining mark)
/// stays inside its word and any byte string splits — the pieces always concatenate back to the input.
enum Pretokenizer {
    private enum Kind: UInt8 { case other, letter, digit, space }

    private static let kinds: [Kind] = (0..<256).map { b in
        switch UInt8(b) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), 0x80...0xFF: .letter
        case UInt8(ascii: "0")...UInt8(ascii: "9"): .digit
        case 0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D: .space
        default: .other
        }
    }

    /// Calls `body` with the range of each piece of `bytes`, in order.
    static func forEachPiece(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void) {
        let n = bytes.count
        var i = 0
        while i < n {
            if let length = contractionLength(bytes, i) {
                body(i..<i + length)
                i += length
                continue
            }
            var j = i
            if bytes[i] == 0x20, i + 1 < n, kinds[Int(bytes[i + 1])] != .space { j += 1 }
            let kind = kinds[Int(bytes[j])]
            var end = j + 1
            while end < n, kinds[Int(bytes[end])] == kind { end += 1 }
            if kind == .space, end < n, end - i > 1, bytes[end - 1] == 0x20 { end -= 1 }
            body(i..<end)
            i = end
        }
    }

    private static func contractionLength(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int? {
        guard b[i] == UInt8(ascii: "'"), i + 1 < b.count else { return nil }
        switch b[i + 1] {
        case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"): return 2
        case UInt8(ascii: "r") where i + 2 < b.count && b[i + 2] == UInt8(ascii: "e"): return 3
        case UInt8(ascii: "v") where i + 2 < b.count && b[i + 2] == UInt8(ascii: "e"): return 3
        case UInt8(ascii: "l") where i + 2 < b.count && b[i + 2] == UInt8(ascii: "l"): return 3
        default: return nil
        }
    }
}
