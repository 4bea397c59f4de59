import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One complete line of a followed file, without its newline, and the byte offset it started at
/// (for error messages: we rarely know line numbers, because we start reading near the end).
public struct LogLine: Sendable {
    public let offset: Int64
    public let bytes: Data
}

/// What one `LogFollower.poll()` found.
public struct LogBatch: Sendable {
    /// True when this batch starts a newly opened file (first open, truncation or replacement):
    /// whatever was built from the previous file should be dropped.
    public var reset = false
    /// A sparse sample of lines from the part of the file before `lines` (see `LogFollower.sampleLines`),
    /// in file order. Only on a reset, and only when the file was too long to read whole.
    public var sampled: [LogLine] = []
    /// New complete lines, in file order.
    public var lines: [LogLine] = []
}

/// Follows one growing file the way `tail -F` does and hands out complete lines only.
///
/// Why each rule:
/// - The trainer appends while we read, so a read may end in the middle of a line. That fragment is kept
///   until its newline arrives; it is never parsed half-written.
/// - A restarted run or log rotation may truncate the file (its size drops below what we have read) or
///   replace it (same path, different inode). Either way we finish the old file and start over on the new
///   one, and say so with `LogBatch.reset`.
/// - A file (or its run directory) that does not exist yet is looked for again on the next poll.
/// - Opening a long run's log must be quick, so an open reads only the last `tailLines` lines, found by
///   reading backwards from the end in blocks, plus `sampleLines` lines picked at even offsets through the
///   earlier part so a chart still shows the run's beginning. A 1 GB file costs a few megabytes of reads.
public final class LogFollower {
    public let path: String
    /// Lines read on open, counted from the end.
    public let tailLines: Int
    /// Lines sampled from the part of the file before the tail, on open.
    public let sampleLines: Int
    /// Bytes read in one poll at most, so catching up on a burst never stalls a refresh for long.
    public let maxBytesPerPoll: Int
    /// A line longer than this with no newline yet is dropped, so a corrupt file cannot eat memory.
    public let maxLineBytes: Int

    /// Bytes read from disk so far (tests use it to prove an open does not read the whole file).
    public private(set) var bytesRead: Int64 = 0
    /// Whether the file is open (it existed at some poll).
    public var isOpen: Bool { fd >= 0 }

    private var fd: Int32 = -1
    private var device: UInt64 = 0, inode: UInt64 = 0
    private var offset: Int64 = 0
    private var partial = Data()
    private var partialOffset: Int64 = 0
    private var dropping = false

    public init(
        path: String, tailLines: Int = 4096, sampleLines: Int = 0,
        maxBytesPerPoll: Int = 64 << 20, maxLineBytes: Int = 4 << 20
    ) {
        self.path = path; self.tailLines = tailLines; self.sampleLines = sampleLines
        self.maxBytesPerPoll = maxBytesPerPoll; self.maxLineBytes = maxLineBytes
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Reads whatever is new since the last poll.
    public func poll() -> LogBatch {
        var batch = LogBatch()
        if fd >= 0 {
            var st = stat()
            let replaced = stat(path, &st) == 0 && (UInt64(st.st_dev) != device || UInt64(st.st_ino) != inode)
            var own = stat()
            let truncated = fstat(fd, &own) == 0 && Int64(own.st_size) < offset
            if truncated {
                close(fd); fd = -1
            } else if replaced {
                // Finish the old file first, as tail -F does; the new one is opened on the next poll, so a
                // batch never mixes lines of two files around its reset.
                readForward(into: &batch)
                if offset >= Int64(own.st_size) { close(fd); fd = -1 }
                return batch
            }
        }
        if fd < 0 {
            guard openFile(into: &batch) else { return batch }
        }
        readForward(into: &batch)
        return batch
    }

    /// Opens the file if it exists and positions the reader `tailLines` lines before the end.
    private func openFile(into batch: inout LogBatch) -> Bool {
        let f = open(path, O_RDONLY | O_CLOEXEC)
        guard f >= 0 else { return false }
        var st = stat()
        guard fstat(f, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { close(f); return false }
        fd = f; device = UInt64(st.st_dev); inode = UInt64(st.st_ino)
        partial = Data(); dropping = false
        let start = tailStart(size: Int64(st.st_size))
        if start > 0 && sampleLines > 0 { batch.sampled = sample(before: start) }
        offset = start; partialOffset = start
        batch.reset = true
        return true
    }

    /// Offset where the last `tailLines` lines begin: scans backwards from the end in 64 KB blocks.
    private func tailStart(size: Int64) -> Int64 {
        let block = 64 << 10
        var buf = [UInt8](repeating: 0, count: block)
        var pos = size, newlines = 0
        while pos > 0 {
            let n = Int(min(Int64(block), pos))
            pos -= Int64(n)
            guard readFully(&buf, count: n, at: pos) == n else { return 0 }
            for i in stride(from: n - 1, through: 0, by: -1) where buf[i] == 0x0A {
                let at = pos + Int64(i)
                if at == size - 1 { continue }  // the newline ending the last line
                newlines += 1
                if newlines >= tailLines { return at + 1 }
            }
        }
        return 0
    }

    /// `sampleLines` complete lines starting at even offsets in [0, end): each read lands mid-line, so the
    /// sample is the first whole line after that point.
    private func sample(before end: Int64) -> [LogLine] {
        let window = 16 << 10
        var buf = [UInt8](repeating: 0, count: window)
        var lines: [LogLine] = []
        var lastStart: Int64 = -1
        for k in 0..<sampleLines {
            let at = end * Int64(k) / Int64(sampleLines)
            let n = readFully(&buf, count: Int(min(Int64(window), end - at)), at: at)
            guard n > 0 else { continue }
            var begin = 0
            if at > 0 {
                guard let nl = buf[0..<n].firstIndex(of: 0x0A) else { continue }
                begin = nl + 1
            }
            guard begin < n, let stop = buf[begin..<n].firstIndex(of: 0x0A), at + Int64(begin) > lastStart else { continue }
            lastStart = at + Int64(begin)
            lines.append(LogLine(offset: lastStart, bytes: Data(buf[begin..<stop])))
        }
        return lines
    }

    /// Reads from `offset` to the end of the file (at most `maxBytesPerPoll`), splitting complete lines off.
    private func readForward(into batch: inout LogBatch) {
        let chunk = 1 << 20
        var buf = [UInt8](repeating: 0, count: chunk)
        var budget = maxBytesPerPoll
        while budget > 0 {
            let want = min(chunk, budget)
            let n = readFully(&buf, count: want, at: offset)
            guard n > 0 else { break }
            offset += Int64(n); budget -= n
            var lineStart = 0
            for i in 0..<n where buf[i] == 0x0A {
                if dropping {
                    dropping = false
                } else {
                    var line = partial
                    line.append(contentsOf: buf[lineStart..<i])
                    batch.lines.append(LogLine(offset: partialOffset, bytes: line))
                }
                partial = Data()
                lineStart = i + 1
                partialOffset = offset - Int64(n) + Int64(lineStart)
            }
            if !dropping { partial.append(contentsOf: buf[lineStart..<n]) }
            if partial.count > maxLineBytes {
                // Keep a short prefix so the malformed-line report can show what it was.
                batch.lines.append(LogLine(offset: partialOffset, bytes: partial.prefix(200)))
                partial = Data(); dropping = true
            }
            if n < want { break }  // end of file
        }
    }

    private func readFully(_ buf: inout [UInt8], count: Int, at: Int64) -> Int {
        var done = 0
        while done < count {
            let r = buf.withUnsafeMutableBytes { p in pread(fd, p.baseAddress! + done, count - done, off_t(at + Int64(done))) }
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { break }
            done += r
        }
        bytesRead += Int64(done)
        return done
    }
}
