import Foundation
import UGenRecords
import Yams

/// How many lines of one file could not be read, and what was wrong with the first. The views show this
/// once instead of stopping or repeating it for every bad line.
public struct MalformedReport: Encodable, Sendable, Equatable {
    public var file: String
    public var count: Int
    public var first: String
}

/// A metrics record as the web page receives it: the losses grouped under `losses` (the page draws one
/// chart per key), non-finite numbers as "NaN"/"Infinity" strings (see `DashboardServer.encode`).
@dynamicMemberLookup
public struct PageRecord: Encodable, Sendable, Equatable {
    public let record: MetricsRecord
    public init(_ record: MetricsRecord) { self.record = record }
    public subscript<T>(dynamicMember path: KeyPath<MetricsRecord, T>) -> T { record[keyPath: path] }

    enum CodingKeys: String, CodingKey {
        case step, losses, lr, gradNorm = "grad_norm", tokens, tokensPerS = "tokens_per_s"
        case activeVisualIds = "active_visual_ids", visualCodebook = "visual_codebook", time, stages
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(record.step, forKey: .step)
        try c.encode(record.losses, forKey: .losses)
        try c.encodeIfPresent(record.lr, forKey: .lr)
        try c.encodeIfPresent(record.gradNorm, forKey: .gradNorm)
        try c.encodeIfPresent(record.tokens, forKey: .tokens)
        try c.encodeIfPresent(record.tokensPerS, forKey: .tokensPerS)
        try c.encodeIfPresent(record.activeVisualIds, forKey: .activeVisualIds)
        try c.encodeIfPresent(record.visualCodebook, forKey: .visualCodebook)
        try c.encodeIfPresent(record.time, forKey: .time)
        try c.encode(record.stages, forKey: .stages)
    }
}

/// An event as the web page receives it: `details` a list of key and text (in the reader's order: who and
/// where first, then by name), which the page prints as "key=value".
@dynamicMemberLookup
public struct PageEvent: Encodable, Sendable, Equatable {
    public let event: RunEvent
    public init(_ event: RunEvent) { self.event = event }
    public subscript<T>(dynamicMember path: KeyPath<RunEvent, T>) -> T { event[keyPath: path] }

    struct Detail: Encodable { let key: String, value: String }
    enum CodingKeys: String, CodingKey { case time, kind, details }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(event.time, forKey: .time)
        try c.encode(event.kind, forKey: .kind)
        try c.encode(event.details.map { Detail(key: $0.key, value: $0.value.text) }, forKey: .details)
    }
}

/// The `group.key: value` pairs of a run's config.yaml (two levels: Documentation/formats.md), values as
/// text; nothing when the text is not such YAML (a file being written, or another file).
public func readConfigEntries(_ text: String) -> [DashboardState.ConfigEntry] {
    guard let top = (try? Yams.load(yaml: text)) as? [String: Any] else { return [] }
    var entries: [DashboardState.ConfigEntry] = []
    for (group, value) in top.sorted(by: { $0.key < $1.key }) {
        guard let inner = value as? [String: Any] else { entries.append(.init(key: group, value: "\(value)")); continue }
        for (key, v) in inner.sorted(by: { $0.key < $1.key }) { entries.append(.init(key: "\(group).\(key)", value: "\(v)")) }
    }
    return entries
}
