import Foundation

/// A JSON value with its object keys in order: what a run file's line is made of. Numbers print in
/// Swift's shortest round-trip form, so a loss read back from `metrics.jsonl` is the exact double (and
/// float32) that was computed; a non-finite number prints as `null`.
public enum JSONValue: Sendable, Equatable {
    case null, int(Int), double(Double), string(String), bool(Bool), array([JSONValue]), object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.json == b.json }

    /// The value as one line of JSON.
    public var json: String {
        switch self {
        case .null: return "null"
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? "\(d)" : "null"
        case .bool(let b): return b ? "true" : "false"
        case .string(let s): return Self.quote(s)
        case .array(let a): return "[" + a.map(\.json).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.map { Self.quote($0.0) + ":" + $0.1.json }.joined(separator: ",") + "}"
        }
    }

    /// The value as a reader shows it: strings bare, whole numbers without a fraction, the rest as JSON.
    public var text: String {
        switch self {
        case .null: return ""
        case .string(let s): return s
        case .double(let d) where d == d.rounded() && abs(d) < 1e15: return String(Int(d))
        case .object(let o): return JSONValue.object(o.sorted { $0.0 < $1.0 }).json
        default: return json
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

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    public init(stringLiteral s: String) { self = .string(s) }
    public init(integerLiteral i: Int) { self = .int(i) }
}

/// Read from any JSON (an object's keys come back sorted: JSONDecoder does not keep their order).
extension JSONValue: Codable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int.self) {
            self = .int(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self).sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        }
    }

    public func encode(to encoder: Encoder) throws {
        if case .object(let o) = self {
            var k = encoder.container(keyedBy: AnyKey.self)
            for (key, v) in o { try k.encode(v, forKey: AnyKey(key)) }
            return
        }
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .int(let i): try c.encode(i)
        case .double(let d): if d.isFinite { try c.encode(d) } else { try c.encodeNil() }
        case .string(let s): try c.encode(s)
        case .bool(let b): try c.encode(b)
        case .array(let a): try c.encode(a)
        case .object: break
        }
    }
}

/// A coding key named at run time (event details, unknown keys).
public struct AnyKey: CodingKey {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(_ s: String) { stringValue = s }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}
