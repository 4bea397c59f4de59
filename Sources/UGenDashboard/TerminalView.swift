import Foundation
import UGenRecords

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Renders a `DashboardState` as one terminal frame (a String, so tests and `--once` can look at it):
/// header and latest numbers, vocabulary progress, a chart per loss with lr / grad norm / tokens/s below,
/// the workers table, the last events, a few config keys, and any unreadable-line reports.
public enum TerminalView {
    public static let eventsShown = 8

    public static func render(_ state: DashboardState, width: Int, now: Double, ascii: Bool = false) -> String {
        let w = min(220, max(60, width))
        let st = state.status
        var out: [String] = []
        let step = st.latest.map { "step \($0.step)" + (st.totalSteps.map { " / \($0)" } ?? "") } ?? "no steps yet"
        let updated = st.latest?.time.map { "  ·  \(clock($0)) (\(age(now - $0)) ago)" } ?? ""
        out.append("UGen run \(st.runDirectory)  ·  \(step)\(updated)")

        if !st.runDirectoryExists {
            out.append("waiting for run directory \(st.runDirectory)")
        } else if !st.metricsExists {
            out.append("waiting for \(st.runDirectory)/metrics.jsonl")
        } else if let r = st.latest {
            out.append(numbersLine(r.record))
            out.append(vocabLine(active: r.activeVisualIds, codebook: st.codebook, width: w, ascii: ascii))
            out.append("")
            out += charts(state.curves, width: w, ascii: ascii)
        } else {
            out.append("waiting for the first step in \(st.runDirectory)/metrics.jsonl")
        }

        if !st.workers.isEmpty {
            out.append("")
            out.append("workers (\(st.workers.count))")
            out.append(
                "  " + pad("worker", 8) + pad("host", 14) + pad("stage", 6) + pad("replica", 8) + pad("state", 7)
                    + pad("seen", 7) + lpad("fwd ms", 8) + lpad("bwd ms", 8) + lpad("wait ms", 9))
            for wk in st.workers {
                out.append(
                    "  " + pad(wk.id, 8) + pad(wk.host ?? "-", 14) + pad(wk.stage.map(String.init) ?? "-", 6)
                        + pad(wk.replica.map(String.init) ?? "-", 8) + pad(wk.state, 7)
                        + pad(wk.lastSeen.map { age(now - $0) } ?? "-", 7)
                        + lpad(ms(wk.forwardMs), 8) + lpad(ms(wk.backwardMs), 8) + lpad(ms(wk.waitMs), 9))
            }
        }
        if !st.events.isEmpty {
            out.append("")
            out.append("events (last \(min(eventsShown, st.events.count)) of \(st.events.count))")
            for e in st.events.suffix(eventsShown) { out.append("  " + eventText(e.event)) }
        }
        if !st.config.isEmpty {
            out.append("")
            out.append("config  " + st.config.map { "\($0.key)=\($0.value)" }.joined(separator: "  "))
        }
        for m in st.malformed {
            out.append("! \(m.file): \(m.count) unreadable line\(m.count == 1 ? "" : "s") skipped; first at \(m.first)")
        }
        return out.map { clip($0, w) }.joined(separator: "\n") + "\n"
    }

    /// One line per step for output that is not a terminal (a log, a pipe): greppable, no escapes.
    public static func plainLine(_ r: MetricsRecord, codebook: Int?) -> String {
        var parts = ["step \(r.step)"]
        for (key, title) in MetricsRecord.lossKeys {
            if let v = r.losses[key] { parts.append("\(key == "loss" ? "loss" : title) \(fixed(v, 4))") }
        }
        if let v = r.lr { parts.append("lr \(sci(v))") }
        if let v = r.gradNorm { parts.append("grad_norm \(fixed(v, 3))") }
        if let v = r.tokensPerS { parts.append("tokens/s \(Int(v.isFinite ? v : 0))") }
        if let a = r.activeVisualIds { parts.append("vocab \(a)/\(codebook.map(String.init) ?? "?")") }
        return parts.joined(separator: "  ")
    }

    /// One line per event, in both the frame and plain output.
    public static func eventText(_ e: RunEvent) -> String {
        let details = e.details.map { "\($0.key)=\($0.value.text)" }.joined(separator: " ")
        return "\(e.time.map(clock) ?? "--:--:--")  \(pad(e.kind, 11))\(details)"
    }

    // MARK: parts

    private static func numbersLine(_ r: MetricsRecord) -> String {
        var p: [String] = []
        if let v = r.losses["loss"] { p.append("loss \(fixed(v, 4))") }
        if let v = r.lr { p.append("lr \(sci(v))") }
        if let v = r.gradNorm { p.append("grad norm \(fixed(v, 3))") }
        if let v = r.tokensPerS { p.append("tokens/s \(grouped(v))") }
        if let v = r.tokens { p.append("tokens \(grouped(Double(v)))") }
        return p.isEmpty ? "(no numbers in the latest step)" : p.joined(separator: "   ")
    }

    /// `vocab [█████░░░░░]  40 / 64 visual ids  62%`: how far progressive vocabulary learning has got.
    static func vocabLine(active: Int?, codebook: Int?, width: Int, ascii: Bool) -> String {
        guard let a = active else { return "vocab  (no active_visual_ids in metrics)" }
        guard let k = codebook, k > 0 else { return "vocab  \(a) visual ids active (codebook size K unknown)" }
        let bar = max(10, min(50, width - 40))
        let filled = min(bar, a * bar / k)
        let (on, off) = ascii ? ("#", ".") : ("█", "░")
        return "vocab  [" + String(repeating: on, count: filled) + String(repeating: off, count: bar - filled)
            + "]  \(a) / \(k) visual ids  \(a * 100 / k)%"
    }

    /// Chart rows: a gutter of name, current value and axis values, then the plot. All charts share the
    /// step axis so a spike lines up across tasks.
    private static func charts(_ c: DashboardState.Curves, width: Int, ascii: Bool) -> [String] {
        let gutter = 20, cols = width - gutter - 1
        let all = [c.lr, c.gradNorm, c.tokensPerS] + c.losses.values
        let first = all.compactMap { $0.steps.first }.min() ?? 0
        let last = all.compactMap { $0.steps.last }.max() ?? 0
        let x = first...max(first + 1, last)
        let (tick, edge) = ascii ? ("+", "|") : ("┤", "│")
        var out: [String] = []

        func chart(_ s: Series, title: String, rows: Int, format: (Double) -> String) {
            guard let range = s.range, let latest = s.last else {
                out.append(pad(title, gutter) + edge + " (no steps yet)")
                return
            }
            let lines = TextChart.draw(s, x: x, y: range, columns: cols, rows: rows, ascii: ascii)
            for (i, line) in lines.enumerated() {
                let label: String
                if rows == 1 {
                    label = pad(title, 11) + lpad(format(latest.value), 9)
                } else if i == 0 {
                    label = pad(title, 11) + lpad(format(range.hi), 9)
                } else if i == rows - 1 {
                    label = pad("", 11) + lpad(format(range.lo), 9)
                } else if i == 1 {
                    label = pad("  now " + format(latest.value), 20)
                } else {
                    label = pad("", 20)
                }
                out.append(label + (i == 0 || i == rows - 1 || rows == 1 ? tick : edge) + line)
            }
        }
        for (key, title) in MetricsRecord.lossKeys {
            chart(c.losses[key] ?? Series(), title: key == "loss" ? "loss" : title, rows: key == "loss" ? 4 : 3) { fixed($0, 3) }
        }
        chart(c.lr, title: "lr", rows: 1, format: sci)
        chart(c.gradNorm, title: "grad norm", rows: 1) { fixed($0, 3) }
        chart(c.tokensPerS, title: "tokens/s", rows: 1, format: grouped)
        let from = "step \(x.lowerBound)", to = "step \(last)"
        out.append(
            pad("", gutter) + (ascii ? "+" : "└") + from
                + String(repeating: " ", count: max(1, cols - from.count - to.count)) + to)
        return out
    }
}

// MARK: formatting shared by the views

func fixed(_ v: Double, _ digits: Int) -> String { v.isFinite ? String(format: "%.\(digits)f", v) : "\(v)" }
func sci(_ v: Double) -> String { v.isFinite ? String(format: "%.2e", v) : "\(v)" }
func ms(_ v: Double?) -> String { v.map { fixed($0, 1) } ?? "-" }

/// 12345678 → "12.3M", 12345 → "12,345": big counts readable at a glance.
func grouped(_ v: Double) -> String {
    guard v.isFinite else { return "\(v)" }
    if abs(v) >= 10_000_000 { return String(format: "%.1fM", v / 1e6) }
    let digits = String(Int(v.rounded()).magnitude)
    var s = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { s.append(",") }
        s.append(c)
    }
    return (v < 0 ? "-" : "") + s
}

/// Local wall-clock time of a unix timestamp, HH:MM:SS.
func clock(_ t: Double) -> String {
    var secs = time_t(t), tm = tm()
    localtime_r(&secs, &tm)
    return String(format: "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// A duration as its largest unit: "4s", "3m", "2h", "5d".
func age(_ seconds: Double) -> String {
    let s = Int(max(0, seconds))
    if s < 120 { return "\(s)s" }
    if s < 7200 { return "\(s / 60)m" }
    if s < 172_800 { return "\(s / 3600)h" }
    return "\(s / 86400)d"
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }
func clip(_ s: String, _ n: Int) -> String { s.count <= n ? s : String(s.prefix(n - 1)) + "…" }
