import Foundation
import XCTest

@testable import UGenDashboard

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

final class WebServerTests: XCTestCase {
    /// A dashboard on a run with three steps, served on a free port.
    private func serve() throws -> (String, Dashboard, DashboardServer) {
        let dir = temporaryDirectory(self)
        append((0..<3).map { metricsLine(step: $0, img2txt: 3.0) }.joined(), to: dir + "/metrics.jsonl")
        append(#"{"time": 1700000000, "kind": "join", "worker": 0, "host": "node-a"}"# + "\n", to: dir + "/events.jsonl")
        let dash = Dashboard(runDirectory: dir)
        dash.poll()
        let server = try DashboardServer(dashboard: dash, host: "127.0.0.1", port: 0)
        server.start()
        addTeardownBlock { server.stop() }
        XCTAssertGreaterThan(server.port, 0)
        return (dir, dash, server)
    }

    private func body(_ response: String) -> String {
        response.range(of: "\r\n\r\n").map { String(response[$0.upperBound...]) } ?? ""
    }

    func testPageAndStateReflectTheLog() throws {
        let (dir, dash, server) = try serve()
        let page = rawHTTP(port: server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(page.hasPrefix("HTTP/1.1 200 OK"), page)
        XCTAssertTrue(page.contains("Content-Type: text/html"))
        XCTAssertTrue(page.contains("<canvas") || page.contains("canvas"))
        XCTAssertTrue(page.contains("new EventSource(\"/events\")"))
        XCTAssertFalse(page.contains("http://") || page.contains("https://"), "self-contained: nothing fetched from elsewhere")
        XCTAssertTrue(page.contains("\"step\":2"), "the current state is inlined")

        append(metricsLine(step: 3, loss: 1.75), to: dir + "/metrics.jsonl")
        server.publish(dash.poll())
        let response = rawHTTP(port: server.port, "GET /api/state HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 200 OK"), response)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(body(response).utf8)) as? [String: Any])
        let status = try XCTUnwrap(json["status"] as? [String: Any])
        let latest = try XCTUnwrap(status["latest"] as? [String: Any])
        XCTAssertEqual(latest["step"] as? Int, 3)
        XCTAssertEqual((latest["losses"] as? [String: Any])?["loss"] as? Double, 1.75)
        let curves = try XCTUnwrap(json["curves"] as? [String: Any])
        let img2txt = try XCTUnwrap((curves["losses"] as? [String: Any])?["loss_img2txt"] as? [String: Any])
        XCTAssertEqual(img2txt["steps"] as? [Int], [0, 1, 2])
        XCTAssertEqual((status["workers"] as? [Any])?.count, 2)
    }

    func testBadRequestsGetErrorsAndTheServerKeepsServing() throws {
        let (_, _, server) = try serve()
        XCTAssertTrue(rawHTTP(port: server.port, "garbage\r\n\r\n").hasPrefix("HTTP/1.1 400"))
        XCTAssertTrue(rawHTTP(port: server.port, "GET nopath HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 400"))
        XCTAssertTrue(rawHTTP(port: server.port, "GET / HTTP/1.1\r\nno colon here\r\n\r\n").hasPrefix("HTTP/1.1 400"))
        XCTAssertTrue(rawHTTP(port: server.port, "\u{1}\u{2}\u{FF}\r\n\r\n").hasPrefix("HTTP/1.1 400"))
        XCTAssertTrue(rawHTTP(port: server.port, "GET /" + String(repeating: "a", count: 40_000)).hasPrefix("HTTP/1.1 400"))
        XCTAssertTrue(rawHTTP(port: server.port, "POST /api/state HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 405"))
        XCTAssertTrue(rawHTTP(port: server.port, "GET /nothing HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404"))
        // A client that connects and hangs up without a word.
        close(connectTo(port: server.port))
        let head = rawHTTP(port: server.port, "HEAD / HTTP/1.0\r\n\r\n")
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200 OK"), head)
        XCTAssertTrue(body(head).isEmpty)
        XCTAssertTrue(rawHTTP(port: server.port, "GET /api/state HTTP/1.1\r\n\r\n").contains("\"step\":2"))
    }

    func testEventStreamPushesNewSteps() throws {
        let (dir, dash, server) = try serve()
        let fd = connectTo(port: server.port)
        defer { close(fd) }
        _ = "GET /events HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n".withCString { send(fd, $0, strlen($0), 0) }
        var seen = ""
        XCTAssertTrue(readUntil(fd, contains: "\"type\":\"state\"", seen: &seen), seen)
        XCTAssertTrue(seen.contains("Content-Type: text/event-stream"))
        XCTAssertTrue(readUntil(fd, contains: "\n\n", seen: &seen))

        append(metricsLine(step: 3), to: dir + "/metrics.jsonl")
        append(#"{"time": 1700000005, "kind": "checkpoint", "step": 3, "path": "ck/3.h5"}"# + "\n", to: dir + "/events.jsonl")
        server.publish(dash.poll())
        seen = ""
        XCTAssertTrue(readUntil(fd, contains: "\"type\":\"update\"", seen: &seen), seen)
        XCTAssertTrue(readUntil(fd, contains: "\n\n", seen: &seen), seen)
        XCTAssertTrue(seen.contains("\"step\":3"), seen)
        XCTAssertTrue(seen.contains("ck/3.h5"), seen)
    }
}
