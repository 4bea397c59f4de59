import Foundation
import UGenRecords

/// Everything the views show, built only from parsed records: no files, no clock, no terminal. Feed it
/// records in file order and it answers what to draw; the terminal and the web page render the same state.
public struct DashboardState: Sendable {
    /// The step series the charts draw.
    public var curves = Curves()
    /// Everything else: latest numbers, vocabulary, workers, events, config, problems.
    public var status: Status

    /// Events kept (the terminal shows the last few, the page more).
    public static let eventsKept = 100

    public init(runDirectory: String) { status = Status(runDirectory: runDirectory) }

    public struct Curves: Encodable, Sendable, Equatable {
        /// By key of `MetricsRecord.lossKeys`.
        public var losses: [String: Series] = Dictionary(uniqueKeysWithValues: MetricsRecord.lossKeys.map { ($0.key, Series()) })
        public var lr = Series(), gradNorm = Series(), tokensPerS = Series()

        enum CodingKeys: String, CodingKey { case losses, lr, gradNorm = "grad_norm", tokensPerS = "tokens_per_s" }
    }

    public struct Status: Encodable, Sendable, Equatable {
        public var runDirectory: String
        /// Which of the run's files exist yet.
        public var runDirectoryExists = false, metricsExists = false, eventsExists = false
        /// The newest metrics record, and how many were read since the file was (re)opened.
        public var latest: PageRecord?
        public var recordsRead = 0
        /// Visual codebook size K (from metrics' `visual_codebook`, else config.yaml) and planned steps.
        public var codebook: Int?
        public var totalSteps: Int?
        public var workers: [WorkerInfo] = []
        public var events: [PageEvent] = []
        /// A few lines of config.yaml worth seeing at a glance.
        public var config: [ConfigEntry] = []
        public var malformed: [MalformedReport] = []

        enum CodingKeys: String, CodingKey {
            case runDirectory = "run_directory", runDirectoryExists = "run_directory_exists"
            case metricsExists = "metrics_exists", eventsExists = "events_exists", latest
            case recordsRead = "records_read", codebook, totalSteps = "total_steps", workers, events, config, malformed
        }
    }

    /// A worker as last seen in metrics (its stage timings) and events (join, leave, lost).
    public struct WorkerInfo: Encodable, Sendable, Equatable {
        public var id: String
        public var host: String?
        public var stage: Int?, replica: Int?
        /// "up", "left", "lost", "expired", "quarantined" (from events), or an event kind that named it last.
        public var state = "up"
        /// Unix time of the newest record or event naming this worker.
        public var lastSeen: Double?
        public var forwardMs: Double?, backwardMs: Double?, waitMs: Double?

        enum CodingKeys: String, CodingKey {
            case id, host, stage, replica, state, lastSeen = "last_seen"
            case forwardMs = "forward_ms", backwardMs = "backward_ms", waitMs = "wait_ms"
        }
    }

    public struct ConfigEntry: Encodable, Sendable, Equatable {
        public var key: String, value: String
    }

    // MARK: feeding

    /// A step from metrics.jsonl.
    public mutating func apply(_ r: MetricsRecord) {
        addPoints(r)
        status.latest = PageRecord(r)
        status.recordsRead += 1
        if let k = r.visualCodebook { status.codebook = k }
        for s in r.stages {
            update(worker: s.worker, time: r.time) { w in
                w.stage = s.stage; w.replica = s.replica
                if let h = s.host { w.host = h }
                w.forwardMs = s.forwardMs; w.backwardMs = s.backwardMs; w.waitMs = s.waitMs
                w.state = "up"
            }
        }
    }

    /// A line sampled from the early part of a long file: only its points matter, and only when it moves
    /// the curve forward (a sample cannot tell a resume from a gap in sampling).
    public mutating func applySample(_ r: MetricsRecord) {
        if let last = curves.losses["loss"]?.last, r.step <= last.step { return }
        addPoints(r)
    }

    /// An event from events.jsonl.
    public mutating func apply(_ e: RunEvent) {
        status.events.append(PageEvent(e))
        if status.events.count > Self.eventsKept { status.events.removeFirst(status.events.count - Self.eventsKept) }
        guard let id = e.detail("worker") else { return }
        // The host is a fact about the worker, whenever it was said; the rest is only as new as the event.
        if let h = e.detail("host") { update(worker: id, time: nil) { $0.host = h } }
        update(worker: id, time: e.time) { w in
            if let s = e.detail("stage").flatMap(Int.init) { w.stage = s }
            if let r = e.detail("replica").flatMap(Int.init) { w.replica = r }
            switch e.kind {
            case "join", "resume": w.state = "up"
            case "leave": w.state = "left"
            case "lost": w.state = "lost"
            case "expired": w.state = "expired"  // a spare silent for lost_after_s: the coordinator dropped it
            case "quarantine": w.state = "quarantined"
            case "error": w.state = "error"
            default: break
            }
        }
    }

    /// metrics.jsonl was opened anew (first open, truncated, replaced): its curves and workers start over.
    public mutating func resetMetrics() {
        curves = Curves()
        status.latest = nil; status.recordsRead = 0; status.workers = []
        status.malformed.removeAll { $0.file == "metrics.jsonl" }
    }

    /// events.jsonl was opened anew.
    public mutating func resetEvents() {
        status.events = []
        status.malformed.removeAll { $0.file == "events.jsonl" }
    }

    /// A line that could not be read: counted, and the first one's reason kept.
    public mutating func noteMalformed(file: String, reason: String) {
        if let i = status.malformed.firstIndex(where: { $0.file == file }) {
            status.malformed[i].count += 1
        } else {
            status.malformed.append(MalformedReport(file: file, count: 1, first: reason))
        }
    }

    /// config.yaml was read: keeps the keys worth showing, and K / planned steps when it has them.
    public mutating func applyConfig(_ entries: [ConfigEntry]) {
        let shown = [
            "model.d_model", "model.n_layers", "train.steps", "train.precision", "vocab_schedule.kind",
            "vocab_schedule.text_only_steps", "cluster.stages", "cluster.replicas", "cluster.schedule",
        ]
        status.config = shown.compactMap { k in entries.first { $0.key == k } }
        status.totalSteps = entries.first { $0.key == "train.steps" }.flatMap { Int($0.value) }
        if status.latest?.visualCodebook == nil,
            let k = entries.first(where: { $0.key.hasSuffix("codebook") }).flatMap({ Int($0.value) })
        {
            status.codebook = k
        }
    }

    private mutating func addPoints(_ r: MetricsRecord) {
        for (key, v) in r.losses { curves.losses[key, default: Series()].append(step: r.step, value: v) }
        if let v = r.lr { curves.lr.append(step: r.step, value: v) }
        if let v = r.gradNorm { curves.gradNorm.append(step: r.step, value: v) }
        if let v = r.tokensPerS { curves.tokensPerS.append(step: r.step, value: v) }
    }

    /// Applies `change` to worker `id` (added if new) when `time` is not older than what we know of it:
    /// metrics and events are separate files read in separate batches, and the newest word wins.
    private mutating func update(worker id: String, time: Double?, _ change: (inout WorkerInfo) -> Void) {
        var i = status.workers.firstIndex { $0.id == id }
        if i == nil {
            status.workers.append(WorkerInfo(id: id))
            i = status.workers.count - 1
        }
        let k = i!
        if let t = time, let seen = status.workers[k].lastSeen, t < seen { return }
        change(&status.workers[k])
        if let t = time { status.workers[k].lastSeen = t }
        status.workers.sort { ($0.stage ?? .max, $0.replica ?? .max, $0.id) < ($1.stage ?? .max, $1.replica ?? .max, $1.id) }
    }
}
