import Foundation
import UGenRecords

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The dashboard's main loop: poll the run, hand news to the web server, and show it — a frame redrawn in
/// place on a terminal, or plain lines (one per new step or event) when stdout is a pipe or a file, so the
/// output stays useful in logs and under `grep`.
public enum LiveView {
    /// Polls every `refresh` seconds until the process is stopped. `note` (e.g. the web address) is shown
    /// under each frame.
    public static func run(_ dashboard: Dashboard, server: DashboardServer?, refresh: Double, ascii: Bool, note: String?) -> Never {
        let tty = isatty(STDOUT_FILENO) == 1
        if tty {
            // Hide the cursor while redrawing; show it again on Ctrl-C or kill.
            print("\u{1B}[2J\u{1B}[?25l", terminator: "")
            for sig in [SIGINT, SIGTERM] {
                signal(sig) { s in
                    let show = "\u{1B}[?25h\n"
                    _ = show.withCString { write(STDOUT_FILENO, $0, strlen($0)) }
                    _exit(128 + s)
                }
            }
        } else if let note {
            print(note)
        }
        var first = true
        while true {
            let update = dashboard.poll()
            server?.publish(update)
            if tty {
                var frame = dashboard.renderFrame(width: terminalWidth(), ascii: ascii)
                if let note { frame += note + "\n" }
                let lines = frame.split(separator: "\n", omittingEmptySubsequences: false).map { $0 + "\u{1B}[K" }
                print("\u{1B}[H" + lines.joined(separator: "\n") + "\u{1B}[J", terminator: "")
            } else {
                printPlain(update, dashboard.state, first: first)
            }
            fflush(nil)  // nil: all streams (the C global `stdout` is off limits in Swift 6 mode)
            first = false
            Thread.sleep(forTimeInterval: max(0.05, refresh))
        }
    }

    /// Plain output: on the first poll the latest step and the last events (not the whole history), then
    /// every new step and event, and each file's first unreadable line once.
    static func printPlain(_ u: Dashboard.Update, _ s: DashboardState, first: Bool) {
        let st = s.status
        if first {
            print("following \(st.runDirectory)")
            if !st.metricsExists { print("waiting for \(st.runDirectory)/metrics.jsonl") }
        } else if u.reset {
            print("log file opened (new, truncated or replaced): following it from its start")
        }
        let records = first ? Array(u.records.suffix(1)) : u.records
        let events = first ? Array(u.events.suffix(TerminalView.eventsShown)) : u.events
        for r in records { print(TerminalView.plainLine(r, codebook: st.codebook)) }
        for e in events { print("event  " + TerminalView.eventText(e)) }
        for m in u.problems { print("warning: \(m.file): unreadable line skipped (\(m.first)); further ones are counted, not shown") }
    }

    /// Columns of the terminal on stdout, or 100 when it cannot say.
    public static func terminalWidth() -> Int {
        var ws = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0 { return Int(ws.ws_col) }
        return Int(ProcessInfo.processInfo.environment["COLUMNS"] ?? "") ?? 100
    }
}
