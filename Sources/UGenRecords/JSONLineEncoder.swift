import Foundation

/// Encodes a record as one JSON line with its keys in the order its `encode(to:)` writes them
/// (Foundation's JSONEncoder orders them by hash): the run files document their key order.
public enum JSONLine {
    /// The record as a line of JSON, without the newline.
    public static func encode<T: Encodable>(_ record: T) throws -> String { try value(of: record).json }

    /// The record as a `JSONValue` tree.
    public static func value<T: Encodable>(of record: T) throws -> JSONValue {
        let node = Node()
        try record.encode(to: NodeEncoder(node: node, codingPath: []))
        return node.value
    }

    /// Reads one line as `T`; the error says briefly why not (bad JSON, not an object, a missing key).
    public static func decode<T: Decodable>(_ type: T.Type, from line: Data, offset: Int = 0) -> Result<T, RecordError> {
        do { return .success(try JSONDecoder().decode(T.self, from: line)) } catch {
            let text = String(decoding: line.prefix(80), as: UTF8.self)
            switch error as? DecodingError {
            case .dataCorrupted(let c)? where c.codingPath.isEmpty: return .failure(.notJSON(offset: offset, line: text))
            case .typeMismatch(_, let c)? where c.codingPath.isEmpty: return .failure(.notAnObject(offset: offset, line: text))
            case .keyNotFound(let k, _)?: return .failure(.missingKey(k.stringValue, offset: offset, line: text))
            case .typeMismatch(_, let c)?, .valueNotFound(_, let c)?, .dataCorrupted(let c)?:
                return .failure(.badValue(c.codingPath.map(\.stringValue).joined(separator: "."), offset: offset, line: text))
            default: return .failure(.undecodable(offset: offset, reason: "\(error)"))
            }
        }
    }
}

/// Why a line of a run file could not be read: what was wrong, at which byte offset of the file, and the
/// line's first 80 bytes.
public enum RecordError: Error, Sendable, CustomStringConvertible, Equatable {
    case notJSON(offset: Int, line: String)
    case notAnObject(offset: Int, line: String)
    case missingKey(String, offset: Int, line: String)
    /// The value at this key path has the wrong type.
    case badValue(String, offset: Int, line: String)
    /// Any other decoding failure, as the decoder told it.
    case undecodable(offset: Int, reason: String)

    public var description: String {
        switch self {
        case .notJSON(let offset, let line): "byte \(offset): not valid JSON: \(line)"
        case .notAnObject(let offset, let line): "byte \(offset): not a JSON object: \(line)"
        case .missingKey(let key, let offset, let line): "byte \(offset): no \"\(key)\": \(line)"
        case .badValue(let path, let offset, let line): "byte \(offset): bad \"\(path)\": \(line)"
        case .undecodable(let offset, let reason): "byte \(offset): \(reason)"
        }
    }
}

/// One value being encoded: a leaf, or an object or array filled in as its containers are used.
private final class Node {
    enum Kind { case unset, leaf(JSONValue), object([(String, Node)]), array([Node]) }
    var kind = Kind.unset
    var value: JSONValue {
        switch kind {
        case .unset: return .null
        case .leaf(let v): return v
        case .object(let fields): return .object(fields.map { ($0.0, $0.1.value) })
        case .array(let items): return .array(items.map(\.value))
        }
    }

    /// Stores `v`: numbers, strings and booleans as leaves, anything else through its own `encode(to:)`.
    func store<T: Encodable>(_ v: T, codingPath: [CodingKey]) throws {
        switch v {
        case let x as JSONValue: kind = .leaf(x)
        case let x as Int: kind = .leaf(.int(x))
        case let x as Double: kind = .leaf(.double(x))
        case let x as Float: kind = .leaf(.double(Double(x)))
        case let x as String: kind = .leaf(.string(x))
        case let x as Bool: kind = .leaf(.bool(x))
        case let x as any BinaryInteger: kind = .leaf(.int(Int(x)))
        default: try v.encode(to: NodeEncoder(node: self, codingPath: codingPath))
        }
    }
}

private struct NodeEncoder: Encoder {
    let node: Node
    var codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = node.kind {} else { node.kind = .object([]) }
        return KeyedEncodingContainer(Keyed<Key>(node: node, codingPath: codingPath))
    }
    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if case .array = node.kind {} else { node.kind = .array([]) }
        return Unkeyed(node: node, codingPath: codingPath)
    }
    func singleValueContainer() -> SingleValueEncodingContainer { Single(node: node, codingPath: codingPath) }
}

private struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: Node
    var codingPath: [CodingKey]

    func child(_ key: CodingKey) -> Node {
        let c = Node()
        if case .object(var fields) = node.kind { fields.append((key.stringValue, c)); node.kind = .object(fields) }
        return c
    }
    mutating func encodeNil(forKey key: Key) throws { child(key).kind = .leaf(.null) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try child(key).store(value, codingPath: codingPath + [key])
    }
    mutating func nestedContainer<N: CodingKey>(keyedBy: N.Type, forKey key: Key) -> KeyedEncodingContainer<N> {
        NodeEncoder(node: child(key), codingPath: codingPath + [key]).container(keyedBy: N.self)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        NodeEncoder(node: child(key), codingPath: codingPath + [key]).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder { NodeEncoder(node: child(AnyKey("super")), codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> Encoder { NodeEncoder(node: child(key), codingPath: codingPath + [key]) }
}

private struct Unkeyed: UnkeyedEncodingContainer {
    let node: Node
    var codingPath: [CodingKey]
    var count: Int { if case .array(let items) = node.kind { items.count } else { 0 } }

    func next() -> Node {
        let c = Node()
        if case .array(var items) = node.kind { items.append(c); node.kind = .array(items) }
        return c
    }
    mutating func encodeNil() throws { next().kind = .leaf(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws { try next().store(value, codingPath: codingPath) }
    mutating func nestedContainer<N: CodingKey>(keyedBy: N.Type) -> KeyedEncodingContainer<N> {
        NodeEncoder(node: next(), codingPath: codingPath).container(keyedBy: N.self)
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        NodeEncoder(node: next(), codingPath: codingPath).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder { NodeEncoder(node: next(), codingPath: codingPath) }
}

private struct Single: SingleValueEncodingContainer {
    let node: Node
    var codingPath: [CodingKey]
    mutating func encodeNil() throws { node.kind = .leaf(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws { try node.store(value, codingPath: codingPath) }
}
