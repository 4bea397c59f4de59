import Foundation
import UGenRecords

/// A run directory being followed: two `LogFollower`s (metrics.jsonl, events.jsonl), config.yaml when it
/// changes, and the `DashboardState` built from them.
///
/// `poll()` is meant to be called from one loop; the state may be read from any thread (the web server's
/// connections do), so both go through one lock.
public final class Dashboard: @unchecked Sendable {
    public let runDirectory: String
    private let lock = NSLock()
    private var current: DashboardState
    private let metrics: LogFollower
    private let events: LogFollower
    private var configStamp = ""

    /// What one poll added, for plain-line output and the web page's live stream.
    public struct Update: Sendable {
        /// A file was opened anew, so earlier records no longer apply (the page reloads the whole state).
        public var reset = false
        public var records: [MetricsRecord] = []
        public var events: [RunEvent] = []
        /// Reports of files whose first unreadable line was just met (each file reported once).
        public var problems: [MalformedReport] = []
        public var isEmpty: Bool { !reset && records.isEmpty && events.isEmpty && problems.isEmpty }
    }

    /// `tailLines`: metrics lines read from the end on open; `sampleLines`: lines sampled from the part
    /// before, so the charts show the whole run at once without reading it all.
    public init(runDirectory: String, tailLines: Int = 4096, sampleLines: Int = 512) {
        self.runDirectory = runDirectory
        current = DashboardState(runDirectory: runDirectory)
        metrics = LogFollower(path: runDirectory + "/metrics.jsonl", tailLines: tailLines, sampleLines: sampleLines)
        events = LogFollower(path: runDirectory + "/events.jsonl", tailLines: DashboardState.eventsKept)
    }

    /// A copy of the current state.
    public var state: DashboardState { lock.withLock { current } }

    /// Bytes the metrics follower has read from disk (to check that starting on a long log is cheap).
    public var metricsBytesRead: Int64 { lock.withLock { metrics.bytesRead } }

    /// Reads what is new in the run directory and folds it into the state.
    @discardableResult
    public func poll() -> Update {
        lock.withLock {
            var update = Update()
            var isDir: ObjCBool = false
            current.status.runDirectoryExists = FileManager.default.fileExists(atPath: runDirectory, isDirectory: &isDir) && isDir.boolValue
            readConfig()

            let m = metrics.poll()
            current.status.metricsExists = metrics.isOpen
            if m.reset { current.resetMetrics(); update.reset = true }
            for line in m.sampled {
                if case .success(let r) = JSONLine.decode(MetricsRecord.self, from: line.bytes, offset: Int(line.offset)) {
                    current.applySample(r)
                }
            }
            for line in m.lines {
                switch JSONLine.decode(MetricsRecord.self, from: line.bytes, offset: Int(line.offset)) {
                case .success(let r): current.apply(r); update.records.append(r)
                case .failure(let e): malformed("metrics.jsonl", e, &update)
                }
            }

            let e = events.poll()
            current.status.eventsExists = events.isOpen
            if e.reset { current.resetEvents(); update.reset = true }
            for line in e.lines {
                switch JSONLine.decode(RunEvent.self, from: line.bytes, offset: Int(line.offset)) {
                case .success(let ev): current.apply(ev); update.events.append(ev)
                case .failure(let err): malformed("events.jsonl", err, &update)
                }
            }
            return update
        }
    }

    /// The terminal frame for the current state.
    public func renderFrame(width: Int = 100, now: Double = Date().timeIntervalSince1970, ascii: Bool = false) -> String {
        TerminalView.render(state, width: width, now: now, ascii: ascii)
    }

    private func malformed(_ file: String, _ error: RecordError, _ update: inout Update) {
        current.noteMalformed(file: file, reason: error.description)
        if let r = current.status.malformed.first(where: { $0.file == file }), r.count == 1 { update.problems.append(r) }
    }

    /// Re-reads config.yaml when its size or modification time changed (it is small, and rarely changes).
    private func readConfig() {
        let path = runDirectory + "/config.yaml"
        guard let attrs = try? FileManager.default.attributesOfItem(atPath: path) else { return }
        let stamp = "\(attrs[.size] ?? 0) \(attrs[.modificationDate] ?? 0)"
        guard stamp != configStamp else { return }
        configStamp = stamp
        guard let data = FileManager.default.contents(atPath: path), data.count < 1 << 20 else { return }
        current.applyConfig(readConfigEntries(String(decoding: data, as: UTF8.self)))
    }
}
