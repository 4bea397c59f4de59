import Foundation

/// The loss keys of metrics.jsonl (Documentation/formats.md) and how the views name them. `loss` is the overall
/// loss; each task key is absent on steps that had no example of that task.
public let lossKeys: [(key: String, title: String)] = [
    ("loss", "all"), ("loss_text", "text"), ("loss_img2txt", "image→text"), ("loss_txt2img", "text→image"),
]

/// One pipeline stage's timings in one step: who ran it and how long forward, backward and waiting took.
public struct StageTiming: Encodable, Sendable, Equatable {
    public var stage: Int
    public var replica: Int
    public var worker: String
    public var host: String?
    public var forwardMs: Double?, backwardMs: Double?, waitMs: Double?

    enum CodingKeys: String, CodingKey {
        case stage, replica, worker, host, forwardMs = "forward_ms", backwardMs = "backward_ms", waitMs = "wait_ms"
    }
}

/// One line of metrics.jsonl. Only `step` is required; every other key may be missing, and keys we do not
/// know are ignored, so the trainer can add keys without breaking the dashboard.
public struct MetricsRecord: Encodable, Sendable, Equatable {
    public var step: Int
    /// Loss by key of `lossKeys`, only those present.
    public var losses: [String: Double]
    public var lr: Double?, gradNorm: Double?, tokens: Double?, tokensPerS: Double?
    public var activeVisualIds: Int?, visualCodebook: Int?
    public var time: Double?
    public var stages: [StageTiming]

    enum CodingKeys: String, CodingKey {
        case step, losses, lr, gradNorm = "grad_norm", tokens, tokensPerS = "tokens_per_s"
        case activeVisualIds = "active_visual_ids", visualCodebook = "visual_codebook", time, stages
    }

    /// Reads a parsed JSON object; nil with a reason when it is not a metrics record.
    public static func parse(_ o: [String: Any]) -> Result<MetricsRecord, RecordError> {
        guard let step = int(o["step"]) else { return .failure(RecordError("no integer \"step\"")) }
        var losses: [String: Double] = [:]
        for (key, _) in lossKeys { if let v = double(o[key]) { losses[key] = v } }
        // A worker's host may sit in its stage entry or in a top-level {"worker": "host"} map.
        let hosts = (o["hosts"] as? [String: Any])?.compactMapValues { $0 as? String } ?? [:]
        let stages: [StageTiming] = (o["stages"] as? [Any] ?? []).compactMap { item in
            guard let s = item as? [String: Any], let stage = int(s["stage"]) else { return nil }
            let worker = string(s["worker"]) ?? "?"
            return StageTiming(stage: stage, replica: int(s["replica"]) ?? 0, worker: worker,
                               host: s["host"] as? String ?? hosts[worker],
                               forwardMs: double(s["forward_ms"]), backwardMs: double(s["backward_ms"]),
                               waitMs: double(s["wait_ms"]))
        }
        return .success(MetricsRecord(
            step: step, losses: losses, lr: double(o["lr"]), gradNorm: double(o["grad_norm"]),
            tokens: double(o["tokens"]), tokensPerS: double(o["tokens_per_s"]),
            activeVisualIds: int(o["active_visual_ids"]), visualCodebook: int(o["visual_codebook"]),
            time: double(o["time"]), stages: stages))
    }
}

/// One line of events.jsonl: when, what kind, and every other key as text (worker, host, path, …).
public struct RunEvent: Encodable, Sendable, Equatable {
    public var time: Double?
    public var kind: String
    /// The remaining keys, values as text.
    public var details: [Detail]

    public struct Detail: Encodable, Sendable, Equatable {
        public var key: String, value: String
    }

    public func detail(_ key: String) -> String? { details.first { $0.key == key }?.value }

    public static func parse(_ o: [String: Any]) -> Result<RunEvent, RecordError> {
        guard let kind = o["kind"] as? String else { return .failure(RecordError("no string \"kind\"")) }
        // Details may sit at top level (formats.md) or inside a "details" object; both are flattened.
        var rest = o.filter { $0.key != "time" && $0.key != "kind" && $0.key != "details" }
        if let nested = o["details"] as? [String: Any] { rest.merge(nested) { a, _ in a } }
        else if let d = o["details"] { rest["details"] = d }
        // Who and where first, then the rest by name: "worker=3 host=b stage=1 message=…" reads best.
        let first = ["worker", "host", "stage", "replica", "step"].filter { rest[$0] != nil }
        let keys = first + rest.keys.filter { !first.contains($0) }.sorted()
        let details = keys.map { Detail(key: $0, value: string(rest[$0]) ?? "") }
        return .success(RunEvent(time: double(o["time"]), kind: kind, details: details))
    }
}

public struct RecordError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// How many lines of one file could not be read, and what was wrong with the first. The views show this
/// once instead of stopping or repeating it for every bad line.
public struct MalformedReport: Encodable, Sendable, Equatable {
    public var file: String
    public var count: Int
    public var first: String
}

/// Parses one JSON line into an object; the error text says why not, briefly.
func parseJSONObject(_ line: LogLine) -> Result<[String: Any], RecordError> {
    let text = String(decoding: line.bytes.prefix(80), as: UTF8.self)
    guard let any = try? JSONSerialization.jsonObject(with: line.bytes, options: [.fragmentsAllowed]) else {
        return .failure(RecordError("byte \(line.offset): not valid JSON: \(text)"))
    }
    guard let o = any as? [String: Any] else {
        return .failure(RecordError("byte \(line.offset): not a JSON object: \(text)"))
    }
    return .success(o)
}

// JSON numbers arrive as NSNumber (or Double/Int); strings are accepted where a number is expected,
// since "nan" or "1e-4" written as text should not sink a whole line.
func double(_ v: Any?) -> Double? {
    switch v {
    case let d as Double: return d
    case let i as Int: return Double(i)
    case let n as NSNumber: return n.doubleValue
    case let s as String: return Double(s)
    default: return nil
    }
}

func int(_ v: Any?) -> Int? {
    switch v {
    case let i as Int: return i
    case let d as Double: return d.isFinite && d == d.rounded() ? Int(d) : nil
    case let n as NSNumber: return n.intValue
    case let s as String: return Int(s)
    default: return nil
    }
}

func string(_ v: Any?) -> String? {
    switch v {
    case nil, is NSNull: return nil
    case let s as String: return s
    case let i as Int: return String(i)
    case let d as Double: return d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)
    case let n as NSNumber: return n.stringValue
    case let any?:
        if let data = try? JSONSerialization.data(withJSONObject: any, options: [.sortedKeys]) {
            return String(decoding: data, as: UTF8.self)
        }
        return String(describing: any)
    }
}
