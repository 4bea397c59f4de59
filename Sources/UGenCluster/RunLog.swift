import Foundation
import UGenRecords

/// RUN/metrics.jsonl (one object per step) and RUN/events.jsonl (one object per event), appended and
/// flushed line by line so a follower never sees more than one half-written line.
public final class RunLog {
    public let directory: String
    private var metrics: FileHandle
    private let events: FileHandle

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func open(_ name: String) throws -> FileHandle {
            let path = directory + "/" + name
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            guard let h = FileHandle(forWritingAtPath: path) else { throw SetupError.cannotOpenForWriting(path: path) }
            h.seekToEndOfFile()
            return h
        }
        metrics = try open("metrics.jsonl")
        events = try open("events.jsonl")
    }

    public func metric(_ record: MetricsRecord) { write(record, to: metrics) }

    /// Writes an event happening now: `time`, `kind`, then the details.
    public func event(_ kind: String, _ details: [(String, JSONValue)] = []) { write(RunEvent(kind, details), to: events) }

    private func write<T: Encodable>(_ record: T, to file: FileHandle) {
        // The records hold numbers, strings and arrays of them only: encoding them cannot fail.
        file.write(((try! JSONLine.encode(record)) + "\n").data(using: .utf8)!)
    }

    /// Drops metrics of steps after `step` (a resume or a recovery goes back to a checkpoint, and the
    /// steps it repeats are logged again). The file is replaced whole, atomically.
    public func truncateMetrics(after step: Int) throws {
        let path = directory + "/metrics.jsonl"
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        var kept = ""
        var dropped = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if case .success(let r) = JSONLine.decode(MetricsRecord.self, from: Data(line.utf8)), r.step > step {
                dropped += 1
                continue
            }
            kept += line + "\n"
        }
        guard dropped > 0 else { return }
        try metrics.close()
        try kept.write(toFile: path, atomically: true, encoding: .utf8)
        guard let h = FileHandle(forWritingAtPath: path) else { throw SetupError.cannotOpenForWriting(path: path) }
        h.seekToEndOfFile()
        metrics = h
    }

    /// Writes the resolved configuration (RUN/config.yaml).
    public func writeConfig(_ yaml: String) throws {
        try yaml.write(toFile: directory + "/config.yaml", atomically: true, encoding: .utf8)
    }
}
