import ArgumentParser
import Foundation
import UGenDashboard

/// `ugen-coord dashboard --run DIR`: follows a run's metrics.jsonl and events.jsonl (Documentation/formats.md) in the
/// terminal, and with `--web PORT` in a browser. Documentation/dashboard.md describes the panels.
struct DashboardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Follow a training run's logs live, in the terminal and in a browser.")

    @Option(name: .customLong("run"), help: "Run directory (metrics.jsonl, events.jsonl, config.yaml); may not exist yet.")
    var runDirectory: String

    @Flag(help: "Print one frame and exit (also when the run has no metrics yet).")
    var once = false

    @Option(help: "Also serve the live page on this port.")
    var web: Int?

    @Option(help: "Address the web page binds to.")
    var host = "127.0.0.1"

    @Option(help: "Seconds between refreshes.")
    var refresh: Double = 1

    @Flag(help: "Plain-ASCII charts instead of unicode braille.")
    var ascii = false

    func validate() throws {
        guard refresh > 0 else { throw ValidationError("--refresh must be positive") }
        if let web, !(0...65535).contains(web) { throw ValidationError("--web needs a port between 0 and 65535") }
    }

    func run() throws {
        let dashboard = Dashboard(runDirectory: runDirectory)
        if once {
            dashboard.poll()
            print(dashboard.renderFrame(width: LiveView.terminalWidth(), ascii: ascii), terminator: "")
            return
        }
        var server: DashboardServer? = nil
        var note: String? = nil
        if let web {
            let s = try DashboardServer(dashboard: dashboard, host: host, port: web)
            s.start()
            server = s
            note = "web: http://\(host.contains(":") ? "[\(host)]" : host):\(s.port)/"
        }
        LiveView.run(dashboard, server: server, refresh: refresh, ascii: ascii, note: note)
    }
}
