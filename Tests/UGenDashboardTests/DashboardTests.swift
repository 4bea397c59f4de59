import Foundation
import UGenRecords
import XCTest

@testable import UGenDashboard

final class DashboardTests: XCTestCase {
    func testFramesFollowAGrowingLog() {
        let dir = temporaryDirectory(self)
        let dash = Dashboard(runDirectory: dir)
        dash.poll()
        XCTAssertTrue(dash.renderFrame().contains("waiting for \(dir)/metrics.jsonl"))

        append((0..<5).map { metricsLine(step: $0) }.joined(), to: dir + "/metrics.jsonl")
        append(#"{"time": 1700000001, "kind": "join", "worker": 1, "host": "node-b", "stage": 1}"# + "\n", to: dir + "/events.jsonl")
        append("train:\n  steps: 500\n  precision: \"bf16\"\nvocab_schedule:\n  kind: progressive # comment\n", to: dir + "/config.yaml")
        var u = dash.poll()
        XCTAssertEqual(u.records.map(\.step), [0, 1, 2, 3, 4])
        var frame = dash.renderFrame(width: 100, now: 1_700_000_010)
        XCTAssertTrue(frame.contains("step 4 / 500"), frame)
        XCTAssertTrue(frame.contains("8 / 64 visual ids"), frame)
        XCTAssertTrue(frame.contains("node-b"), frame)  // host from the join event
        XCTAssertTrue(frame.contains("node-a"), frame)  // host from the stage entry
        XCTAssertTrue(frame.contains("join"), frame)
        XCTAssertTrue(frame.contains("vocab_schedule.kind=progressive"), frame)
        XCTAssertTrue(frame.contains("train.precision=bf16"), frame)

        append(metricsLine(step: 5, loss: 2.0, img2txt: 3.25, txt2img: 4.5, active: 32), to: dir + "/metrics.jsonl")
        u = dash.poll()
        XCTAssertEqual(u.records.map(\.step), [5])
        frame = dash.renderFrame(width: 100, now: 1_700_000_010)
        XCTAssertTrue(frame.contains("step 5 / 500"), frame)
        XCTAssertTrue(frame.contains("32 / 64 visual ids  50%"), frame)
        XCTAssertTrue(frame.contains("now 3.250"), frame)  // image→text's first point
        XCTAssertEqual(dash.state.curves.losses["loss_txt2img"]?.steps, [5])
        XCTAssertEqual(dash.state.curves.losses["loss_text"]?.count, 6)
        XCTAssertTrue(dash.poll().isEmpty)
    }

    func testMalformedLineIsReportedOnceAndSkipped() {
        let dir = temporaryDirectory(self), path = dir + "/metrics.jsonl"
        append(metricsLine(step: 1) + "this is not json\n" + "[1, 2]\n" + #"{"loss": 1}"# + "\n" + metricsLine(step: 2), to: path)
        let dash = Dashboard(runDirectory: dir)
        let u = dash.poll()
        XCTAssertEqual(u.records.map(\.step), [1, 2])
        XCTAssertEqual(u.problems.count, 1)
        let report = dash.state.status.malformed
        XCTAssertEqual(report.count, 1)
        XCTAssertEqual(report.first?.count, 3)
        XCTAssertTrue(report.first?.first.contains("not valid JSON: this is not json") ?? false, "\(report)")
        append("{broken\n" + metricsLine(step: 3), to: path)
        let later = dash.poll()
        XCTAssertTrue(later.problems.isEmpty, "reported once, then only counted")
        XCTAssertEqual(later.records.map(\.step), [3])
        XCTAssertEqual(dash.state.status.malformed.first?.count, 4)
        let frame = dash.renderFrame()
        XCTAssertTrue(frame.contains("metrics.jsonl: 4 unreadable lines skipped"), frame)
        XCTAssertTrue(frame.contains("step 3"), frame)
    }

    func testTruncatedLogStartsTheCurvesOver() throws {
        let dir = temporaryDirectory(self), path = dir + "/metrics.jsonl"
        append((0..<10).map { metricsLine(step: $0) }.joined(), to: path)
        let dash = Dashboard(runDirectory: dir)
        dash.poll()
        XCTAssertEqual(dash.state.curves.losses["loss"]?.count, 10)
        try metricsLine(step: 0, loss: 9).write(toFile: path, atomically: false, encoding: .utf8)
        XCTAssertTrue(dash.poll().reset)
        XCTAssertEqual(dash.state.curves.losses["loss"]?.values, [9])
    }

    func testSeriesStaysBoundedAndRewindsOnResume() {
        var s = Series(capacity: 64)
        for i in 0..<100_000 { s.append(step: i, value: Double(i)) }
        XCTAssertLessThan(s.count, 64)
        XCTAssertEqual(s.last?.step, 99_999)
        XCTAssertEqual(s.steps.first.map { $0 < 1000 }, true, "the start of the run is still there")
        XCTAssertEqual(s.steps, s.steps.sorted())
        XCTAssertEqual(s.steps.suffix(16), ArraySlice(99_984..<100_000), "recent points at full resolution")
        s.append(step: 99_990, value: -1)  // resumed from a checkpoint at step 99,990
        XCTAssertEqual(s.last?.step, 99_990)
        XCTAssertEqual(s.last?.value, -1)
        XCTAssertFalse(s.steps.contains(99_995))
    }

    func testWorkerStateFollowsTheNewestEvent() {
        var st = DashboardState(runDirectory: "r")
        if case .success(let r) = JSONLine.decode(MetricsRecord.self, from: Data(metricsLine(step: 1).utf8)) {
            st.apply(r)
        }
        st.apply(RunEvent(time: 1_700_000_000, kind: "lost", details: [.init(key: "worker", value: "1")]))  // older than the step
        XCTAssertEqual(st.status.workers.first { $0.id == "1" }?.state, "up")
        st.apply(RunEvent(time: 1_800_000_000, kind: "lost", details: [.init(key: "worker", value: "1")]))
        XCTAssertEqual(st.status.workers.first { $0.id == "1" }?.state, "lost")
        // A spare the coordinator dropped for silence is shown as such, not as "up".
        st.apply(RunEvent(time: 1_800_000_001, kind: "join", details: [.init(key: "worker", value: "spare")]))
        st.apply(RunEvent(time: 1_800_000_002, kind: "expired", details: [.init(key: "worker", value: "spare")]))
        XCTAssertEqual(st.status.workers.first { $0.id == "spare" }?.state, "expired")
    }

    func testChartsAndPlainLines() {
        var s = Series()
        for i in 0..<50 { s.append(step: i, value: 50 - Double(i)) }
        let braille = TextChart.draw(s, x: 0...49, y: (1, 50), columns: 20, rows: 3, ascii: false)
        XCTAssertEqual(braille.count, 3)
        XCTAssertTrue(braille.allSatisfy { $0.count == 20 && $0.unicodeScalars.allSatisfy { (0x2800...0x28FF).contains($0.value) } })
        XCTAssertNotEqual(braille[0].unicodeScalars.first?.value, 0x2800, "a falling curve starts top left")
        let ascii = TextChart.draw(s, x: 0...49, y: (1, 50), columns: 20, rows: 3, ascii: true)
        XCTAssertTrue(ascii.allSatisfy { $0.allSatisfy(\.isASCII) })
        XCTAssertNotEqual(ascii[2].last, " ", "and ends bottom right")

        let r = MetricsRecord(
            step: 7, loss: 1.5, lossTxt2Img: 2, lr: 1e-3, gradNorm: 0.5, tokens: 10,
            tokensPerS: 100, activeVisualIds: 16, visualCodebook: 64)
        XCTAssertEqual(
            TerminalView.plainLine(r, codebook: 64),
            "step 7  loss 1.5000  text→image 2.0000  lr 1.00e-03  grad_norm 0.500  tokens/s 100  vocab 16/64")
    }
}
