import Foundation
import UGenRecords
import XCTest

/// The run files' records: written with formats.md's key order and the exact doubles, read back equal.
final class RecordsTests: XCTestCase {
    func testAMetricsLineKeepsItsKeyOrderAndExactDoubles() throws {
        let timing = StageTiming(
            stage: 1, replica: 0, worker: "w\"1", host: "vm", forwardMs: 2.726688999682665,
            backwardMs: 10.0, waitMs: .nan, commMs: 7.256487)
        let r = MetricsRecord(
            step: 3, loss: 6.9491211999030345, precision: "fp32", lossText: 0.1 + 0.2, lossTxt2Img: .infinity,
            lr: 0.0005, gradNorm: 0.8809645730115163, tokens: 336, tokensPerS: 3581.67643414085,
            activeVisualIds: 0, visualCodebook: 64, stepMs: 142.94981956481934, time: 1796272495.9837742,
            stages: [timing])
        let line = try JSONLine.encode(r)
        XCTAssertEqual(
            line,
            #"{"step":3,"loss":6.9491211999030345,"precision":"fp32","loss_text":0.30000000000000004,"#
                + #""loss_txt2img":null,"lr":0.0005,"grad_norm":0.8809645730115163,"tokens":336,"tokens_per_s":3581.67643414085,"#
                + #""active_visual_ids":0,"visual_codebook":64,"step_ms":142.94981956481934,"time":1796272495.9837742,"#
                + #""stages":[{"stage":1,"replica":0,"worker":"w\"1","host":"vm","forward_ms":2.726688999682665,"#
                + #""backward_ms":10.0,"wait_ms":null,"comm_ms":7.256487}]}"#)
        let back = try JSONLine.decode(MetricsRecord.self, from: Data(line.utf8)).get()
        var expected = r
        expected.lossTxt2Img = nil; expected.stages[0].waitMs = nil  // null reads back as absent
        XCTAssertEqual(back, expected)
        XCTAssertEqual(back.loss?.bitPattern, 6.9491211999030345.bitPattern)
    }

    func testAReplicasAllReduceFiguresFollowCommMs() throws {
        let t = StageTiming(
            stage: 0, replica: 1, worker: "w", host: nil, forwardMs: 1, backwardMs: 2, waitMs: 3, commMs: 4,
            reduceBytesSent: 96, reduceBytesReceived: 96, reduceMs: 5.5, reduceWaitMs: 0.25)
        let line = try JSONLine.encode(t)
        XCTAssertEqual(
            line,
            #"{"stage":0,"replica":1,"worker":"w","forward_ms":1.0,"backward_ms":2.0,"wait_ms":3.0,"comm_ms":4.0,"#
                + #""reduce_bytes_sent":96,"reduce_bytes_received":96,"reduce_ms":5.5,"reduce_wait_ms":0.25}"#)
        XCTAssertEqual(try JSONLine.decode(StageTiming.self, from: Data(line.utf8)).get(), t)
    }

    func testAnEventKeepsTimeKindThenItsDetailsInOrder() throws {
        let e = RunEvent(
            time: 1796272495.25, kind: "checkpoint",
            details: [.init(key: "step", value: 4), .init(key: "path", value: "/r/step-4.h5"), .init(key: "ms", value: .double(12.5))])
        let line = try JSONLine.encode(e)
        XCTAssertEqual(line, #"{"time":1796272495.25,"kind":"checkpoint","step":4,"path":"/r/step-4.h5","ms":12.5}"#)
        let back = try JSONLine.decode(RunEvent.self, from: Data(line.utf8)).get()
        XCTAssertEqual(back.kind, "checkpoint")
        XCTAssertEqual(back.number("ms"), 12.5)
        XCTAssertEqual(back.detail("path"), "/r/step-4.h5")
        XCTAssertEqual(back.details.map(\.key), ["step", "ms", "path"], "read back: who and where first, then by name")
    }

    func testALineThatIsNoRecordSaysWhy() {
        func why<T: Decodable>(_ t: T.Type, _ text: String) -> String {
            if case .failure(let e) = JSONLine.decode(T.self, from: Data(text.utf8), offset: 7) { return e.description }
            return "read"
        }
        XCTAssertEqual(why(MetricsRecord.self, "nope"), "byte 7: not valid JSON: nope")
        guard case .failure(.missingKey("step", offset: 0, _)) = JSONLine.decode(MetricsRecord.self, from: Data("{}".utf8)) else {
            return XCTFail("a line without step is missing the key step")
        }
        XCTAssertEqual(why(MetricsRecord.self, "[1]"), "byte 7: not a JSON object: [1]")
        XCTAssertEqual(why(MetricsRecord.self, #"{"loss":1}"#), #"byte 7: no "step": {"loss":1}"#)
        XCTAssertEqual(why(RunEvent.self, #"{"time":1}"#), #"byte 7: no "kind": {"time":1}"#)
    }
}
