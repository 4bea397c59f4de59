import Foundation

/// One line of events.jsonl: when, what kind, then the details of that kind (Documentation/formats.md
/// lists each kind's keys). Written by the coordinator, read by the dashboard and the pipeline benchmark.
public struct RunEvent: Codable, Sendable, Equatable {
    public var time: Double?
    public var kind: String
    /// The other keys in the order written (read back: who and where first, then by name).
    public var details: [Detail]

    public struct Detail: Sendable, Equatable {
        public var key: String
        public var value: JSONValue
        public init(key: String, value: JSONValue) { self.key = key; self.value = value }
    }

    public init(time: Double?, kind: String, details: [Detail]) {
        self.time = time; self.kind = kind; self.details = details
    }

    /// An event happening now.
    public init(_ kind: String, _ details: [(String, JSONValue)]) {
        self.init(time: Date().timeIntervalSince1970, kind: kind, details: details.map { Detail(key: $0.0, value: $0.1) })
    }

    /// A detail's value as text (nil when absent).
    public func detail(_ key: String) -> String? { details.first { $0.key == key }?.value.text }

    /// A detail's value as a number (nil when absent or not a number).
    public func number(_ key: String) -> Double? {
        switch details.first(where: { $0.key == key })?.value {
        case .int(let i)?: Double(i)
        case .double(let d)?: d
        case .string(let s)?: Double(s)
        default: nil
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: AnyKey.self)
        if let time { try c.encode(JSONValue.double(time), forKey: AnyKey("time")) }
        try c.encode(kind, forKey: AnyKey("kind"))
        for d in details { try c.encode(d.value, forKey: AnyKey(d.key)) }
    }

    /// Details may sit at top level (formats.md) or inside a "details" object; both are flattened.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        guard let kind = try? c.decode(String.self, forKey: AnyKey("kind")) else {
            throw DecodingError.keyNotFound(AnyKey("kind"), .init(codingPath: [], debugDescription: "no string kind"))
        }
        var rest: [String: JSONValue] = [:]
        for key in c.allKeys where !["time", "kind"].contains(key.stringValue) {
            rest[key.stringValue] = try c.decode(JSONValue.self, forKey: key)
        }
        if case .object(let nested)? = rest["details"] {
            rest["details"] = nil
            for (k, v) in nested where rest[k] == nil { rest[k] = v }
        }
        let first = ["worker", "host", "stage", "replica", "step"].filter { rest[$0] != nil }
        let keys = first + rest.keys.filter { !first.contains($0) }.sorted()
        self.init(
            time: c.lenient(Double.self, AnyKey("time")), kind: kind,
            details: keys.map { Detail(key: $0, value: rest[$0]!) })
    }
}
