import Foundation
import XCTest

@testable import UGenDashboard

final class LogFollowerTests: XCTestCase {
    private func texts(_ b: LogBatch) -> [String] { b.lines.map { String(decoding: $0.bytes, as: UTF8.self) } }

    func testWaitsForMissingDirectoryThenReadsGrowingFile() {
        let dir = temporaryDirectory(self) + "/run-not-yet"
        let f = LogFollower(path: dir + "/metrics.jsonl")
        XCTAssertTrue(f.poll().lines.isEmpty)
        XCTAssertFalse(f.isOpen)
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        append("a\nb\n", to: dir + "/metrics.jsonl")
        let first = f.poll()
        XCTAssertTrue(first.reset)
        XCTAssertEqual(texts(first), ["a", "b"])
        append("c\n", to: dir + "/metrics.jsonl")
        let next = f.poll()
        XCTAssertFalse(next.reset)
        XCTAssertEqual(texts(next), ["c"])
        XCTAssertTrue(f.poll().lines.isEmpty)
    }

    func testHalfWrittenLineWaitsForItsNewline() {
        let path = temporaryDirectory(self) + "/m.jsonl"
        append("{\"step\": 1}\n{\"step\": 2, \"lo", to: path)
        let f = LogFollower(path: path)
        XCTAssertEqual(texts(f.poll()), ["{\"step\": 1}"])
        append("ss\": 1.5", to: path)
        XCTAssertEqual(texts(f.poll()), [])
        append("}\n{\"step\"", to: path)
        let b = f.poll()
        XCTAssertEqual(texts(b), ["{\"step\": 2, \"loss\": 1.5}"])
        XCTAssertEqual(b.lines[0].offset, 12)
    }

    func testTruncationReopensFromTheStart() {
        let path = temporaryDirectory(self) + "/m.jsonl"
        append("one\ntwo\nthree\n", to: path)
        let f = LogFollower(path: path)
        XCTAssertEqual(texts(f.poll()), ["one", "two", "three"])
        try! "new\n".write(toFile: path, atomically: false, encoding: .utf8)  // same inode, shorter
        let b = f.poll()
        XCTAssertTrue(b.reset)
        XCTAssertEqual(texts(b), ["new"])
    }

    func testReplacementFinishesOldFileThenReopens() throws {
        let dir = temporaryDirectory(self), path = dir + "/m.jsonl"
        append("old1\n", to: path)
        let f = LogFollower(path: path)
        XCTAssertEqual(texts(f.poll()), ["old1"])
        append("old2\n", to: path)
        try FileManager.default.moveItem(atPath: path, toPath: dir + "/m.jsonl.1")  // rotated away
        append("fresh1\nfresh2\n", to: path)  // new inode
        let rest = f.poll()
        XCTAssertFalse(rest.reset)
        XCTAssertEqual(texts(rest), ["old2"])
        let fresh = f.poll()
        XCTAssertTrue(fresh.reset)
        XCTAssertEqual(texts(fresh), ["fresh1", "fresh2"])
        XCTAssertTrue(f.poll().lines.isEmpty)
    }

    func testOpenReadsOnlyTheLastLinesPlusASample() {
        let path = temporaryDirectory(self) + "/m.jsonl"
        append((0..<10_000).map { "line \($0)\n" }.joined(), to: path)
        let f = LogFollower(path: path, tailLines: 100, sampleLines: 10)
        let b = f.poll()
        XCTAssertEqual(texts(b).first, "line 9900")
        XCTAssertEqual(texts(b).last, "line 9999")
        XCTAssertEqual(b.lines.count, 100)
        XCTAssertEqual(b.sampled.count, 10)
        XCTAssertEqual(String(decoding: b.sampled[0].bytes, as: UTF8.self), "line 0")
        let sampledNumbers = b.sampled.map { Int(String(decoding: $0.bytes, as: UTF8.self).dropFirst(5))! }
        XCTAssertEqual(sampledNumbers, sampledNumbers.sorted())
        XCTAssertLessThan(sampledNumbers.last!, 9900)
    }

    /// A 1 GB metrics file: opening it must read a few megabytes from the end, not the whole file.
    func testOneGigabyteFileStartsInUnderASecond() throws {
        let dir = temporaryDirectory(self), path = dir + "/metrics.jsonl"
        let block = Data((0..<4000).map { metricsLine(step: $0, loss: 5 - Double($0) / 1000) }.joined().utf8)
        let total: Int64 = 1 << 30
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        var written: Int64 = 0
        do {
            while written < total { try h.write(contentsOf: block); written += Int64(block.count) }
            // The newest steps, and a last line still being written.
            try h.write(contentsOf: Data(((1_000_000..<1_000_050).map { metricsLine(step: $0) }.joined() + "{\"step\": 10000").utf8))
            try h.close()
        } catch {
            throw XCTSkip("cannot write a 1 GB file in \(NSTemporaryDirectory()) (disk space?): \(error)")
        }

        let start = Date()
        let dash = Dashboard(runDirectory: dir)
        dash.poll()
        let frame = dash.renderFrame(width: 100)
        let seconds = Date().timeIntervalSince(start)
        print("1 GB metrics file: first frame after \(String(format: "%.3f", seconds)) s, read \(dash.metricsBytesRead >> 10) KB")
        XCTAssertLessThan(seconds, 1.0)
        XCTAssertLessThan(dash.metricsBytesRead, 32 << 20)
        XCTAssertEqual(dash.state.status.latest?.step, 1_000_049)
        XCTAssertTrue(frame.contains("step 1000049"), frame)
        XCTAssertTrue(dash.state.status.malformed.isEmpty, "the half-written last line is not an error")
    }
}
