extension BPETokenizer {
    /// Learns merges from `documents` until the text vocabulary has `vocabSize` ids (256 bytes plus
    /// merges), or no pair occurs twice. Deterministic: ties go to the smaller (left, right) pair.
    ///
    /// Counts are kept incrementally, as in fast BPE trainers: each distinct piece is stored once with its
    /// frequency, every pair knows the pieces it occurs in, and a merge only revisits those pieces. A
    /// max-heap with lazy deletion finds the most frequent pair. `progress(done, total)` is called now and
    /// then.
    public static func train(
        documents: [[UInt8]], vocabSize: Int,
        progress: ((Int, Int) -> Void)? = nil
    ) -> BPETokenizer {
        let target = max(0, vocabSize - 256)
        var (words, freq, counts, occurs) = pairCounts(documents)
        var heap = PairHeap()
        for (k, c) in counts { heap.push(count: c, key: k) }

        var merges: [Merge] = []
        var stamp = [Int](repeating: -1, count: words.count)  // last merge that visited each word
        var delta: [UInt64: Int] = [:]
        while merges.count < target, let top = heap.pop() {
            guard counts[top.key] == top.count else { continue }  // stale entry
            if top.count < 2 { break }
            let a = Int32(truncatingIfNeeded: top.key >> 32), b = Int32(truncatingIfNeeded: top.key)
            let merged = Int32(256 + merges.count)
            merges.append(Merge(a, b))
            delta.removeAll(keepingCapacity: true)
            for w in occurs.removeValue(forKey: top.key) ?? [] where stamp[Int(w)] != merges.count {
                stamp[Int(w)] = merges.count
                let old = words[Int(w)], f = freq[Int(w)]
                let new = replacing(a, b, with: merged, in: old)
                if new.count == old.count { continue }
                for i in 0..<old.count - 1 { delta[key(old[i], old[i + 1]), default: 0] -= f }
                for i in 0..<max(new.count - 1, 0) {
                    let k = key(new[i], new[i + 1])
                    delta[k, default: 0] += f
                    if new[i] == merged || new[i + 1] == merged { occurs[k, default: []].append(w) }
                }
                words[Int(w)] = new
            }
            for (k, d) in delta where d != 0 {
                let c = counts[k, default: 0] + d
                if c > 0 {
                    counts[k] = c
                    heap.push(count: c, key: k)
                } else {
                    counts.removeValue(forKey: k)
                }
            }
            if merges.count % 256 == 0 { progress?(merges.count, target) }
        }
        if merges.count % 256 != 0 { progress?(merges.count, target) }
        return try! BPETokenizer(merges: merges)  // valid by construction: each merge uses earlier ids
    }

    /// The documents' pieces (pretokenized), each distinct one of two or more bytes once as a word of byte
    /// ids with its frequency; every adjacent pair's count, and the words it occurs in.
    private static func pairCounts(_ documents: [[UInt8]])
        -> (words: [[Int32]], freq: [Int], counts: [UInt64: Int], occurs: [UInt64: [Int32]])
    {
        var pieceCounts: [[UInt8]: Int] = [:]
        for doc in documents {
            doc.withUnsafeBufferPointer { buf in
                Pretokenizer.forEachPiece(buf) { pieceCounts[Array(buf[$0]), default: 0] += 1 }
            }
        }
        var words: [[Int32]] = [], freq: [Int] = []
        var counts: [UInt64: Int] = [:]
        var occurs: [UInt64: [Int32]] = [:]
        for (piece, f) in pieceCounts where piece.count > 1 {
            let w = Int32(words.count)
            let ids = piece.map { Int32($0) }
            for i in 0..<ids.count - 1 {
                let k = key(ids[i], ids[i + 1])
                counts[k, default: 0] += f
                occurs[k, default: []].append(w)
            }
            words.append(ids)
            freq.append(f)
        }
        return (words, freq, counts, occurs)
    }

    /// `old` with every non-overlapping (a, b), left to right, replaced by `merged`.
    private static func replacing(_ a: Int32, _ b: Int32, with merged: Int32, in old: [Int32]) -> [Int32] {
        var new: [Int32] = []
        new.reserveCapacity(old.count)
        var i = 0
        while i < old.count {
            if i + 1 < old.count, old[i] == a, old[i + 1] == b {
                new.append(merged)
                i += 2
            } else {
                new.append(old[i])
                i += 1
            }
        }
        return new
    }
}

/// A binary max-heap of (count, pair) entries: larger count first, then the smaller pair key. Entries
/// are never updated in place; a changed count is pushed again and stale entries are skipped on pop.
struct PairHeap {
    private var items: [(count: Int, key: UInt64)] = []

    private func before(_ i: Int, _ j: Int) -> Bool {
        items[i].count != items[j].count ? items[i].count > items[j].count : items[i].key < items[j].key
    }

    mutating func push(count: Int, key: UInt64) {
        items.append((count, key))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard before(i, parent) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (count: Int, key: UInt64)? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if items.isEmpty { return top }
        items[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var best = i
            if l < items.count, before(l, best) { best = l }
            if r < items.count, before(r, best) { best = r }
            if best == i { break }
            items.swapAt(i, best)
            i = best
        }
        return top
    }
}
