import Foundation

/// A value in a log line. Numbers print in Swift's shortest round-trip form, so a loss read back from
/// `metrics.jsonl` is the exact double (and float32) that was computed.
public enum LogValue {
    case int(Int), double(Double), string(String), bool(Bool), array([LogValue]), object([(String, LogValue)])

    var json: String {
        switch self {
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? "\(d)" : "null"
        case .bool(let b): return b ? "true" : "false"
        case .string(let s): return Self.quote(s)
        case .array(let a): return "[" + a.map(\.json).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.map { Self.quote($0.0) + ":" + $0.1.json }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out += u.value < 0x20 ? String(format: "\\u%04x", u.value) : String(u)
            }
        }
        return out + "\""
    }
}

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
            guard let h = FileHandle(forWritingAtPath: path) else { throw ProtocolError("\(path): cannot open for writing") }
            h.seekToEndOfFile()
            return h
        }
        metrics = try open("metrics.jsonl")
        events = try open("events.jsonl")
    }

    public func metric(_ fields: [(String, LogValue)]) {
        metrics.write((LogValue.object(fields).json + "\n").data(using: .utf8)!)
    }

    /// Writes an event: `time`, `kind`, then the details.
    public func event(_ kind: String, _ details: [(String, LogValue)] = []) {
        let line = LogValue.object([("time", .double(Date().timeIntervalSince1970)), ("kind", .string(kind))] + details).json
        events.write((line + "\n").data(using: .utf8)!)
    }

    /// Drops metrics of steps after `step` (a resume or a recovery goes back to a checkpoint, and the
    /// steps it repeats are logged again). The file is replaced whole, atomically.
    public func truncateMetrics(after step: Int) throws {
        let path = directory + "/metrics.jsonl"
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        var kept = ""
        var dropped = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let s = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            if let n = s?["step"] as? Int, n > step { dropped += 1; continue }
            kept += line + "\n"
        }
        guard dropped > 0 else { return }
        try metrics.close()
        try kept.write(toFile: path, atomically: true, encoding: .utf8)
        guard let h = FileHandle(forWritingAtPath: path) else { throw ProtocolError("\(path): cannot open for writing") }
        h.seekToEndOfFile()
        metrics = h
    }

    /// Writes the resolved configuration (RUN/config.yaml).
    public func writeConfig(_ yaml: String) throws {
        try yaml.write(toFile: directory + "/config.yaml", atomically: true, encoding: .utf8)
    }
}
