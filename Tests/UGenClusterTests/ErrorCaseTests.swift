import Foundation
import UGenCluster
import UGenStore
import XCTest

/// Failures are cases a caller can match, not only text: the wire's and the security options'.
final class ErrorCaseTests: XCTestCase {
    func testWireFailuresAreCases() {
        XCTAssertThrowsError(try WireMessage(frames: [])) { XCTAssertEqual($0 as? ProtocolError, .emptyMessage) }
        XCTAssertThrowsError(try WireMessage(frames: [Data("UGEN".utf8) + Data([UInt8(Wire.version)])])) {
            XCTAssertEqual($0 as? ProtocolError, .truncatedHeader(bytes: 5))
            XCTAssertEqual("\($0)", "truncated header (5 bytes; magic, version and kind take 7)")
        }
        let done = WireMessage(.stepDone, Heartbeat(workerId: 0))
        XCTAssertThrowsError(try done.array(0, Double.self, count: 2)) {
            XCTAssertEqual($0 as? ProtocolError, .missingPart(.stepDone, part: 1))
        }
        XCTAssertThrowsError(try done.decode(Hello.self)) { XCTAssertEqual($0 as? ProtocolError, .malformedBody(.stepDone)) }
    }

    func testSecurityMistakesAreCases() {
        let bind = "tcp://10.0.0.1:5555"
        XCTAssertThrowsError(
            try SecurityPolicy.coordinator(
                keyFile: nil, authorized: nil, insecure: true, bind: bind, localWorkers: 0, workersNeeded: 1)
        ) { XCTAssertEqual($0 as? SecurityError, .insecureOffLoopback(bind)) }
        XCTAssertThrowsError(try CurveKeyPair(secretKey: "short")) { XCTAssertEqual($0 as? SecurityError, .secretKeyLength(5)) }
    }
}

/// Store failures name the file and a case.
final class StoreErrorCaseTests: XCTestCase {
    func testAMissingFileAndABadPointerAreCases() throws {
        let dir = NSTemporaryDirectory() + "ugen-store-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try H5File.open(dir + "/none.h5")) {
            XCTAssertEqual(($0 as? StoreError)?.problem, .noSuchFile)
            XCTAssertEqual(($0 as? StoreError)?.path, dir + "/none.h5")
        }
        try "".write(toFile: dir + "/latest", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CheckpointFile.followPointer(dir + "/latest")) {
            XCTAssertEqual(($0 as? StoreError)?.problem, .pointerEmpty)
            XCTAssertTrue("\($0)".hasPrefix(dir + "/latest: empty, names no checkpoint"), "\($0)")
        }
    }
}
