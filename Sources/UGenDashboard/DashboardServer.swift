import Foundation
import UGenRecords

/// The dashboard on the web: `GET /` the page (with the current state inlined, so it draws at once),
/// `GET /api/state` the state as JSON (for polling and scripts), `GET /events` a Server-Sent Events stream.
///
/// The stream starts with `{"type":"state", curves, status}` and then sends, after each poll that found
/// something, `{"type":"update", records, events, status}`: the new metrics records (the page appends their
/// points) and the small rest of the state (replaced whole). When a log was reset, or a slow client fell
/// behind the last `kept` messages, it sends a full state again.
public final class DashboardServer: @unchecked Sendable {
    public let dashboard: Dashboard
    private let http: HTTPServer
    private let cond = NSCondition()
    private var messages: [(seq: Int, json: String)] = []
    private var lastSeq = 0
    private var stopped = false
    private let kept = 64

    /// Binds `host:port` (port 0 picks a free one, see `port`). Call `start()` to serve.
    public init(dashboard: Dashboard, host: String = "127.0.0.1", port: Int) throws {
        self.dashboard = dashboard
        let box = WeakBox()
        http = try HTTPServer(host: host, port: port) { request in
            box.server?.respond(request) ?? .body(status: 503, contentType: "text/plain", bytes: Data("stopping\n".utf8))
        }
        box.server = self
    }

    public var port: Int { http.port }

    public func start() { http.start() }

    public func stop() {
        http.stop()
        cond.withLock {
            stopped = true; cond.broadcast()
        }
    }

    /// Hands what a `Dashboard.poll()` found to the open event streams.
    public func publish(_ update: Dashboard.Update) {
        guard !update.isEmpty else { return }
        let message = UpdateMessage(
            records: update.records.map(PageRecord.init), events: update.events.map(PageEvent.init),
            status: dashboard.state.status)
        let json = update.reset ? stateMessage() : Self.encode(message)
        cond.withLock {
            lastSeq += 1
            messages.append((lastSeq, json))
            if messages.count > kept { messages.removeFirst(messages.count - kept) }
            cond.broadcast()
        }
    }

    private func respond(_ request: HTTPServer.Request) -> HTTPServer.Response {
        switch request.path {
        case "/", "/index.html":
            return .body(status: 200, contentType: "text/html; charset=utf-8", bytes: Data(WebPage.html(initialState: stateMessage()).utf8))
        case "/api/state":
            return .body(status: 200, contentType: "application/json", bytes: Data(stateMessage().utf8))
        case "/events":
            return .stream(contentType: "text/event-stream") { [self] conn in stream(to: conn) }
        default:
            return .body(status: 404, contentType: "text/plain; charset=utf-8", bytes: Data("not found: \(request.path)\n".utf8))
        }
    }

    /// Sends the state, then every new message, until the client leaves or the server stops. A comment line
    /// every 15 s keeps proxies from closing an idle stream and tells us when the client has gone.
    private func stream(to conn: HTTPServer.Connection) {
        var cursor = cond.withLock { lastSeq }
        guard conn.write("retry: 2000\ndata: \(stateMessage())\n\n") else { return }
        while true {
            let (pending, resync, done) = cond.withLock { () -> ([String], Bool, Bool) in
                if lastSeq == cursor && !stopped { _ = cond.wait(until: Date().addingTimeInterval(15)) }
                let behind = (messages.first?.seq ?? lastSeq + 1) > cursor + 1
                let new = messages.filter { $0.seq > cursor }.map(\.json)
                cursor = lastSeq
                return (new, behind && !new.isEmpty, stopped)
            }
            if done { return }
            let payload = resync ? ["data: \(stateMessage())\n\n"] : pending.map { "data: \($0)\n\n" }
            guard conn.write(payload.isEmpty ? ": keep-alive\n\n" : payload.joined()) else { return }
        }
    }

    private func stateMessage() -> String {
        let s = dashboard.state
        return Self.encode(StateMessage(curves: s.curves, status: s.status))
    }

    private struct StateMessage: Encodable {
        let type = "state"
        let curves: DashboardState.Curves, status: DashboardState.Status
    }

    private struct UpdateMessage: Encodable {
        let type = "update"
        let records: [PageRecord], events: [PageEvent], status: DashboardState.Status
    }

    /// JSON with NaN/±Infinity as strings (a diverged loss must not break the page), and "</" escaped so the
    /// text can sit inside the page's <script> element.
    static func encode<T: Encodable>(_ value: T) -> String {
        let e = JSONEncoder()
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let text = (try? e.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return text.replacingOccurrences(of: "</", with: "<\\/")
    }
}

/// Lets the HTTP handler reach the server without the server and its HTTPServer keeping each other alive.
private final class WeakBox: @unchecked Sendable {
    weak var server: DashboardServer?
}
