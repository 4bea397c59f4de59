import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A minimal HTTP/1.1 server over POSIX sockets: GET (and HEAD) only, one thread per connection, every
/// response closes its connection.
///
/// Why hand-written rather than SwiftNIO or Hummingbird: this module only reads files, and the dashboard
/// needs one page, one JSON route and one event stream for a handful of local viewers. Adding a server
/// framework would cost minutes of build time for everyone and a dependency to keep current; a few hundred
/// lines of sockets do the job and keep UGenDashboard on Foundation alone.
///
/// Robustness: a request that is not `METHOD /target HTTP/1.x` plus header lines, or is larger than 16 KB,
/// gets 400 and the connection is closed; a method other than GET/HEAD gets 405. Nothing a client sends can
/// stop the server: SIGPIPE is ignored, reads time out, and at most `maxConnections` run at once (503 beyond).
public final class HTTPServer: @unchecked Sendable {
    public struct Request: Sendable {
        public var method: String, path: String, query: String
    }

    /// What a handler answers: a whole body, or a stream that writes to the socket until it returns.
    public enum Response: Sendable {
        case body(status: Int, contentType: String, bytes: Data)
        case stream(contentType: String, write: @Sendable (Connection) -> Void)
    }

    /// The write side of one client socket, handed to streaming responses.
    public final class Connection: @unchecked Sendable {
        fileprivate let fd: Int32
        fileprivate init(fd: Int32) { self.fd = fd }
        /// Writes all bytes; false once the client has gone (the stream should then return).
        public func write(_ data: Data) -> Bool {
            data.withUnsafeBytes { p in
                var sent = 0
                while sent < p.count {
                    let r = send(fd, p.baseAddress! + sent, p.count - sent, sendFlags)
                    if r < 0 && errno == EINTR { continue }
                    if r <= 0 { return false }
                    sent += r
                }
                return true
            }
        }
        public func write(_ text: String) -> Bool { write(Data(text.utf8)) }
    }

    /// The port actually bound (useful with port 0, which picks a free one).
    public private(set) var port: Int = 0
    public let maxConnections: Int
    private let handler: @Sendable (Request) -> Response
    private let lock = NSLock()
    private var listener: Int32 = -1
    private var running = false
    private var open = 0

    /// Binds and listens on `host:port` (any address getaddrinfo understands, e.g. 127.0.0.1, ::1, 0.0.0.0).
    public init(host: String, port: Int, maxConnections: Int = 64, handler: @escaping @Sendable (Request) -> Response) throws {
        self.handler = handler
        self.maxConnections = maxConnections
        signal(SIGPIPE, SIG_IGN)
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = socketStream
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else { throw ServerError.cannotResolve(host: host, reason: String(cString: gai_strerror(rc))) }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { throw ServerError.socket(reason: String(cString: strerror(errno))) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0, listen(fd, 64) == 0 else {
            let why = String(cString: strerror(errno)); close(fd)
            throw ServerError.cannotListen(host: host, port: Int(port), reason: why)
        }
        var addr = sockaddr_storage(), len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &len) } }
        self.port = Int(UInt16(bigEndian: withUnsafeBytes(of: &addr) { $0.load(fromByteOffset: 2, as: UInt16.self) }))
        listener = fd
    }

    deinit { stop() }

    /// Starts accepting on a background thread.
    public func start() {
        lock.withLock { running = true }
        Thread { [self] in acceptLoop() }.start()
    }

    /// Stops accepting; connections already open finish on their own.
    public func stop() {
        lock.withLock {
            running = false
            if listener >= 0 { close(listener); listener = -1 }
        }
    }

    public var isRunning: Bool { lock.withLock { running } }

    private func acceptLoop() {
        while true {
            // poll with a timeout, so stop() is noticed even though close() does not wake a blocked accept.
            let fd = lock.withLock { listener }
            guard fd >= 0, isRunning else { return }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 200) > 0 else { continue }
            let client = accept(fd, nil, nil)
            guard client >= 0 else { continue }
            let admitted = lock.withLock { () -> Bool in
                guard open < maxConnections else { return false }
                open += 1; return true
            }
            guard admitted else {
                _ = Connection(fd: client).write(Self.plain(503, "too many connections"))
                close(client); continue
            }
            Thread { [self] in
                serve(client)
                close(client)
                lock.withLock { open -= 1 }
            }.start()
        }
    }

    private func serve(_ fd: Int32) {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let conn = Connection(fd: fd)
        guard let head = readHead(fd) else { _ = conn.write(Self.plain(400, "bad request")); return }
        let request: Request
        switch Self.parse(head) {
        case .failure(let status): _ = conn.write(Self.plain(status.code, status.text)); return
        case .success(let r): request = r
        }
        switch handler(request) {
        case .body(let status, let type, let bytes):
            let header =
                "HTTP/1.1 \(status) \(Self.reason(status))\r\nContent-Type: \(type)\r\n"
                + "Content-Length: \(bytes.count)\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            if conn.write(header), request.method == "GET" { _ = conn.write(bytes) }
        case .stream(let type, let write):
            let header = "HTTP/1.1 200 OK\r\nContent-Type: \(type)\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
            if conn.write(header), request.method == "GET" { write(conn) }
        }
    }

    /// Reads up to the blank line ending the headers; nil if the client sends more than 16 KB, stops, or
    /// times out first.
    private func readHead(_ fd: Int32) -> Data? {
        var head = Data(), buf = [UInt8](repeating: 0, count: 4096)
        let end = Data("\r\n\r\n".utf8), bareEnd = Data("\n\n".utf8)
        while head.count < 16 << 10 {
            let n = recv(fd, &buf, buf.count, 0)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            head.append(contentsOf: buf[0..<n])
            if let r = head.range(of: end) ?? head.range(of: bareEnd) { return head[..<r.lowerBound] }
        }
        return nil
    }

    /// Parses the request line and checks the header lines' shape.
    static func parse(_ head: Data) -> Result<Request, HTTPStatus> {
        guard let text = String(data: head, encoding: .utf8) else { return .failure(.badRequest) }
        // Swift treats "\r\n" as one Character, so normalise line ends before splitting.
        let lines = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
        let parts = lines[0].split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy({ $0.isASCII && $0.isUppercase }),
            parts[1].hasPrefix("/"), parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0"
        else { return .failure(.badRequest) }
        for line in lines.dropFirst() where !line.contains(":") { return .failure(.badRequest) }
        guard parts[0] == "GET" || parts[0] == "HEAD" else { return .failure(.methodNotAllowed) }
        let target = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        return .success(Request(method: String(parts[0]), path: String(target[0]), query: target.count > 1 ? String(target[1]) : ""))
    }

    struct HTTPStatus: Error {
        let code: Int, text: String
        static let badRequest = HTTPStatus(code: 400, text: "bad request")
        static let methodNotAllowed = HTTPStatus(code: 405, text: "only GET and HEAD")
    }

    static func plain(_ status: Int, _ text: String) -> String {
        "HTTP/1.1 \(status) \(reason(status))\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(text.utf8.count + 1)\r\nConnection: close\r\n\r\n\(text)\n"
    }

    static func reason(_ status: Int) -> String {
        [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"][status] ?? "Status"
    }
}

/// Why the dashboard's server could not start listening.
public enum ServerError: Error, CustomStringConvertible, Equatable {
    /// getaddrinfo failed: its gai_strerror text.
    case cannotResolve(host: String, reason: String)
    case socket(reason: String)
    case cannotListen(host: String, port: Int, reason: String)

    public var description: String {
        switch self {
        case .cannotResolve(let host, let reason): "cannot resolve \(host): \(reason)"
        case .socket(let reason): "socket: \(reason)"
        case .cannotListen(let host, let port, let reason): "cannot listen on \(host):\(port): \(reason)"
        }
    }
}

#if os(Linux)
    private let socketStream = Int32(SOCK_STREAM.rawValue)
    private let sendFlags = Int32(MSG_NOSIGNAL)
#else
    private let socketStream = SOCK_STREAM
    private let sendFlags: Int32 = 0
#endif
