import Foundation

/// One pipeline stage's timings in one step: who ran it and how long forward, backward, waiting and
/// handing data to and from ZeroMQ took. An object of `stages` in metrics.jsonl (Documentation/formats.md).
public struct StageTiming: Codable, Sendable, Equatable {
    public var stage: Int
    public var replica: Int
    public var worker: String
    public var host: String?
    public var forwardMs: Double?, backwardMs: Double?, waitMs: Double?, commMs: Double?
    /// With replicas only: the gradient all-reduce's traffic and time (absent without replicas).
    public var reduceBytesSent: Int?, reduceBytesReceived: Int?, reduceMs: Double?, reduceWaitMs: Double?
    /// With replicas only: where the reduce's time went (the reduce thread idle for want of a final bucket;
    /// the backward time from the first bucket final to the last, which is all a reduce can hide behind).
    public var reduceIdleMs: Double?, reduceWindowMs: Double?

    enum CodingKeys: String, CodingKey {
        case stage, replica, worker, host, forwardMs = "forward_ms", backwardMs = "backward_ms", waitMs = "wait_ms", commMs = "comm_ms"
        case reduceBytesSent = "reduce_bytes_sent", reduceBytesReceived = "reduce_bytes_received", reduceMs = "reduce_ms"
        case reduceWaitMs = "reduce_wait_ms", reduceIdleMs = "reduce_idle_ms", reduceWindowMs = "reduce_window_ms"
    }

    public init(
        stage: Int, replica: Int, worker: String, host: String?, forwardMs: Double?, backwardMs: Double?,
        waitMs: Double?, commMs: Double?, reduceBytesSent: Int? = nil, reduceBytesReceived: Int? = nil,
        reduceMs: Double? = nil, reduceWaitMs: Double? = nil, reduceIdleMs: Double? = nil, reduceWindowMs: Double? = nil
    ) {
        self.stage = stage; self.replica = replica; self.worker = worker; self.host = host
        self.forwardMs = forwardMs; self.backwardMs = backwardMs; self.waitMs = waitMs; self.commMs = commMs
        self.reduceBytesSent = reduceBytesSent; self.reduceBytesReceived = reduceBytesReceived
        self.reduceMs = reduceMs; self.reduceWaitMs = reduceWaitMs
        self.reduceIdleMs = reduceIdleMs; self.reduceWindowMs = reduceWindowMs
    }

    /// Lenient like every reader of run files: a number written as text still counts, a worker named by
    /// a number is that number's text, and only `stage` is required.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stage = try c.decode(Int.self, forKey: .stage)
        replica = c.lenient(Int.self, .replica) ?? 0
        worker = c.text(.worker) ?? "?"
        host = c.text(.host)
        forwardMs = c.lenient(Double.self, .forwardMs); backwardMs = c.lenient(Double.self, .backwardMs)
        waitMs = c.lenient(Double.self, .waitMs); commMs = c.lenient(Double.self, .commMs)
        reduceBytesSent = c.lenient(Int.self, .reduceBytesSent); reduceBytesReceived = c.lenient(Int.self, .reduceBytesReceived)
        reduceMs = c.lenient(Double.self, .reduceMs); reduceWaitMs = c.lenient(Double.self, .reduceWaitMs)
        reduceIdleMs = c.lenient(Double.self, .reduceIdleMs); reduceWindowMs = c.lenient(Double.self, .reduceWindowMs)
    }
}

/// One line of metrics.jsonl: one completed step. Written by the coordinator, read by the dashboard,
/// the pipeline benchmark and the run log itself. Keys are written in the order of `CodingKeys` (the
/// order formats.md documents); an absent value is left out. A reader needs only `step`: every other key
/// may be missing, and keys it does not know are ignored, so the trainer can add keys without breaking
/// the dashboard.
public struct MetricsRecord: Codable, Sendable, Equatable {
    public var step: Int
    public var loss: Double?
    public var precision: String?
    public var lossText: Double?, lossImg2Txt: Double?, lossTxt2Img: Double?
    public var lr: Double?, gradNorm: Double?
    public var tokens: Int?
    public var tokensPerS: Double?
    public var activeVisualIds: Int?, visualCodebook: Int?
    public var stepMs: Double?
    public var time: Double?
    public var stages: [StageTiming]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case step, loss, precision, lossText = "loss_text", lossImg2Txt = "loss_img2txt", lossTxt2Img = "loss_txt2img"
        case lr, gradNorm = "grad_norm", tokens, tokensPerS = "tokens_per_s"
        case activeVisualIds = "active_visual_ids", visualCodebook = "visual_codebook", stepMs = "step_ms", time, stages
        /// Not written: older files named each worker's host in a {"worker": "host"} map.
        case hosts
    }

    public init(
        step: Int, loss: Double? = nil, precision: String? = nil, lossText: Double? = nil, lossImg2Txt: Double? = nil,
        lossTxt2Img: Double? = nil, lr: Double? = nil, gradNorm: Double? = nil, tokens: Int? = nil, tokensPerS: Double? = nil,
        activeVisualIds: Int? = nil, visualCodebook: Int? = nil, stepMs: Double? = nil, time: Double? = nil,
        stages: [StageTiming] = []
    ) {
        self.step = step; self.loss = loss; self.precision = precision
        self.lossText = lossText; self.lossImg2Txt = lossImg2Txt; self.lossTxt2Img = lossTxt2Img
        self.lr = lr; self.gradNorm = gradNorm; self.tokens = tokens; self.tokensPerS = tokensPerS
        self.activeVisualIds = activeVisualIds; self.visualCodebook = visualCodebook
        self.stepMs = stepMs; self.time = time; self.stages = stages
    }

    /// The loss keys and how the views name them: `loss` is the overall loss; each task's key is absent
    /// on steps that had no example of that task.
    public static let lossKeys: [(key: String, title: String)] = [
        ("loss", "all"), ("loss_text", "text"), ("loss_img2txt", "image→text"), ("loss_txt2img", "text→image"),
    ]

    /// The losses present, by key of `lossKeys`.
    public var losses: [String: Double] {
        var out: [String: Double] = [:]
        for (key, value) in zip(Self.lossKeys.map(\.key), [loss, lossText, lossImg2Txt, lossTxt2Img]) { out[key] = value }
        return out
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard let step = c.lenient(Int.self, .step) else {
            throw DecodingError.keyNotFound(CodingKeys.step, .init(codingPath: [], debugDescription: "no integer step"))
        }
        self.init(
            step: step, loss: c.lenient(Double.self, .loss), precision: c.text(.precision),
            lossText: c.lenient(Double.self, .lossText), lossImg2Txt: c.lenient(Double.self, .lossImg2Txt),
            lossTxt2Img: c.lenient(Double.self, .lossTxt2Img), lr: c.lenient(Double.self, .lr),
            gradNorm: c.lenient(Double.self, .gradNorm), tokens: c.lenient(Int.self, .tokens),
            tokensPerS: c.lenient(Double.self, .tokensPerS), activeVisualIds: c.lenient(Int.self, .activeVisualIds),
            visualCodebook: c.lenient(Int.self, .visualCodebook), stepMs: c.lenient(Double.self, .stepMs),
            time: c.lenient(Double.self, .time))
        // A stage entry that is not one is skipped, not the whole line.
        let entries = (try? c.decodeIfPresent([Skippable<StageTiming>].self, forKey: .stages)) ?? nil
        let hosts = ((try? c.decodeIfPresent([String: JSONValue].self, forKey: .hosts)) ?? nil) ?? [:]
        stages = (entries ?? []).compactMap { entry in
            guard var s = entry.value else { return nil }
            if s.host == nil { s.host = hosts[s.worker]?.text }
            return s
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(step, forKey: .step)
        try c.encodeNumber(loss, .loss)
        try c.encodeIfPresent(precision, forKey: .precision)
        try c.encodeNumber(lossText, .lossText); try c.encodeNumber(lossImg2Txt, .lossImg2Txt)
        try c.encodeNumber(lossTxt2Img, .lossTxt2Img)
        try c.encodeNumber(lr, .lr); try c.encodeNumber(gradNorm, .gradNorm)
        try c.encodeIfPresent(tokens, forKey: .tokens); try c.encodeNumber(tokensPerS, .tokensPerS)
        try c.encodeIfPresent(activeVisualIds, forKey: .activeVisualIds); try c.encodeIfPresent(visualCodebook, forKey: .visualCodebook)
        try c.encodeNumber(stepMs, .stepMs); try c.encodeNumber(time, .time)
        try c.encode(stages, forKey: .stages)
    }
}

extension StageTiming {
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(stage, forKey: .stage); try c.encode(replica, forKey: .replica); try c.encode(worker, forKey: .worker)
        try c.encodeIfPresent(host, forKey: .host)
        try c.encodeNumber(forwardMs, .forwardMs); try c.encodeNumber(backwardMs, .backwardMs)
        try c.encodeNumber(waitMs, .waitMs); try c.encodeNumber(commMs, .commMs)
        try c.encodeIfPresent(reduceBytesSent, forKey: .reduceBytesSent)
        try c.encodeIfPresent(reduceBytesReceived, forKey: .reduceBytesReceived)
        try c.encodeNumber(reduceMs, .reduceMs); try c.encodeNumber(reduceWaitMs, .reduceWaitMs)
        try c.encodeNumber(reduceIdleMs, .reduceIdleMs); try c.encodeNumber(reduceWindowMs, .reduceWindowMs)
    }
}

extension KeyedEncodingContainer {
    /// A present number, or `null` when it is not finite (NaN, ±∞); nothing when absent.
    mutating func encodeNumber(_ v: Double?, _ key: Key) throws {
        guard let v else { return }
        if v.isFinite { try encode(v, forKey: key) } else { try encodeNil(forKey: key) }
    }
}

extension KeyedDecodingContainer {
    /// The value, or the same written as text ("nan", "1e-4" should not sink a whole line); nil otherwise.
    func lenient<T: Decodable & LosslessStringConvertible>(_ type: T.Type, _ key: Key) -> T? {
        if let v = try? decodeIfPresent(T.self, forKey: key) { return v }
        if let s = try? decodeIfPresent(String.self, forKey: key) { return T(s) }
        if T.self == Int.self, let d = try? decodeIfPresent(Double.self, forKey: key), d == d.rounded(), abs(d) < 1e15 {
            return Int(d) as? T
        }
        return nil
    }

    /// A string, or any other value as its text (a worker named by a number).
    func text(_ key: Key) -> String? {
        guard let v = try? decodeIfPresent(JSONValue.self, forKey: key), v != .null else { return nil }
        return v.text
    }
}

/// An array element that is nil when it does not decode, so one bad element does not sink its array.
struct Skippable<T: Decodable>: Decodable {
    let value: T?
    init(from decoder: Decoder) throws { value = try? T(from: decoder) }
}
