import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A fresh directory under the system temp dir, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase) -> String {
    let dir = NSTemporaryDirectory() + "ugen-dash-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

/// Appends raw text to a file, creating it if needed (like a trainer writing its log).
func append(_ text: String, to path: String) {
    if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
    let h = FileHandle(forWritingAtPath: path)!
    h.seekToEndOfFile()
    h.write(Data(text.utf8))
    h.closeFile()
}

/// One metrics.jsonl line, as Documentation/formats.md describes it.
func metricsLine(
    step: Int, loss: Double = 2.5, text: Double? = 2.4, img2txt: Double? = nil, txt2img: Double? = nil,
    active: Int = 8, time: Double = 1_700_000_000
) -> String {
    var o: [String: Any] = [
        "step": step, "loss": loss, "lr": 3e-4, "grad_norm": 1.25, "tokens": step * 4096, "tokens_per_s": 12345.0,
        "active_visual_ids": active, "visual_codebook": 64, "time": time + Double(step), "unknown_key": [1, 2],
        "stages": [
            ["stage": 0, "replica": 0, "worker": 0, "forward_ms": 10.5, "backward_ms": 20.25, "wait_ms": 1.5, "host": "node-a"],
            ["stage": 1, "replica": 0, "worker": 1, "forward_ms": 11.5, "backward_ms": 21.25, "wait_ms": 0.5],
        ],
    ]
    if let text { o["loss_text"] = text }
    if let img2txt { o["loss_img2txt"] = img2txt }
    if let txt2img { o["loss_txt2img"] = txt2img }
    let data = try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self) + "\n"
}

/// A raw HTTP exchange over a real socket: sends `request` as is and reads until the server closes.
func rawHTTP(port: Int, _ request: String, timeout: Int = 5) -> String {
    let fd = connectTo(port: port)
    defer { close(fd) }
    _ = request.withCString { send(fd, $0, strlen($0), 0) }
    var out = Data(), buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}

/// A connected TCP socket to 127.0.0.1:`port` with a 5 s receive timeout.
func connectTo(port: Int) -> Int32 {
    #if os(Linux)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    precondition(rc == 0, "connect failed: \(errno)")
    return fd
}

/// Reads from `fd` until the text received so far contains `needle` (or the receive times out).
func readUntil(_ fd: Int32, contains needle: String, seen: inout String) -> Bool {
    var buf = [UInt8](repeating: 0, count: 65536)
    while !seen.contains(needle) {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { return false }
        seen += String(decoding: buf[0..<n], as: UTF8.self)
    }
    return true
}
