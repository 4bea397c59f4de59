import CZeroMQ
import Foundation

/// A ZeroMQ call that failed, with libzmq's errno at the time; printed as one line: what was attempted
/// and zmq_strerror.
public enum ZMQError: Error, CustomStringConvertible, Equatable {
    /// zmq_curve_keypair: libzmq was built without CURVE.
    case noCurve(errno: Int32)
    case socket(errno: Int32)
    case setOption(Int32, errno: Int32)
    case bind(String, errno: Int32)
    case connect(String, errno: Int32)
    case send(errno: Int32)
    /// `call`: zmq_recv or zmq_msg_recv.
    case receive(call: String, errno: Int32)
    case monitor(errno: Int32)

    public var description: String {
        let (what, errno): (String, Int32) =
            switch self {
            case .noCurve(let e): ("zmq_curve_keypair (is libzmq built with CURVE?)", e)
            case .socket(let e): ("zmq_socket", e)
            case .setOption(let option, let e): ("zmq_setsockopt \(option)", e)
            case .bind(let endpoint, let e): ("cannot bind \(endpoint)", e)
            case .connect(let endpoint, let e): ("cannot connect to \(endpoint)", e)
            case .send(let e): ("zmq_send", e)
            case .receive(let call, let e): (call, e)
            case .monitor(let e): ("zmq_socket_monitor", e)
            }
        return "\(what): \(String(cString: zmq_strerror(errno)))"
    }
}

/// The process's ZeroMQ context (one per process, as libzmq recommends).
final class ZMQContext: @unchecked Sendable {
    static let shared = ZMQContext()
    let handle: UnsafeMutableRawPointer
    private init() { handle = zmq_ctx_new() }

    /// Flushes what sockets closed with a linger still have queued, then ends the context: the last
    /// thing a process does before it exits (exiting with messages queued drops them). Bounded by
    /// `seconds`, because `zmq_ctx_term` also waits for sockets still open on other threads.
    func terminate(within seconds: Double) {
        let done = DispatchSemaphore(value: 0)
        Thread { [self] in
            zmq_ctx_term(handle); done.signal()
        }.start()
        _ = done.wait(timeout: .now() + seconds)
    }
}

/// One ZeroMQ socket. Not thread-safe (ZeroMQ sockets never are): each thread owns its sockets.
public final class ZMQSocket {
    public enum Kind {
        case router, dealer, push, pull, rep, pair
        var raw: Int32 {
            switch self {
            case .router: ZMQ_ROUTER;
            case .dealer: ZMQ_DEALER;
            case .push: ZMQ_PUSH;
            case .pull: ZMQ_PULL;
            case .rep: ZMQ_REP;
            case .pair: ZMQ_PAIR
            }
        }
    }
    let handle: UnsafeMutableRawPointer

    public init(_ kind: Kind) throws {
        guard let h = zmq_socket(ZMQContext.shared.handle, kind.raw) else { throw ZMQError.socket(errno: zmq_errno()) }
        handle = h
        try set(ZMQ_LINGER, 0)  // closing never blocks on undelivered messages
        // A DEALER with no completed connection (coordinator down, CURVE handshake refused) would block a
        // send for ever; it fails after 2 s instead, and the worker treats that as a lost coordinator.
        if kind == .dealer { try set(ZMQ_SNDTIMEO, 2000) }
    }

    deinit { zmq_close(handle) }

    public func set(_ option: Int32, _ value: Int32) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) == 0 else {
            throw ZMQError.setOption(option, errno: zmq_errno())
        }
    }

    public func set(_ option: Int32, int64 value: Int64) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size) == 0 else {
            throw ZMQError.setOption(option, errno: zmq_errno())
        }
    }

    public func set(_ option: Int32, bytes: [UInt8]) throws {
        guard bytes.withUnsafeBytes({ zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }) == 0 else {
            throw ZMQError.setOption(option, errno: zmq_errno())
        }
    }

    /// Binds and returns the endpoint actually bound (a `:0` or `*` port resolved).
    @discardableResult
    public func bind(_ endpoint: String) throws -> String {
        guard zmq_bind(handle, endpoint) == 0 else { throw ZMQError.bind(endpoint, errno: zmq_errno()) }
        var buf = [CChar](repeating: 0, count: 256)
        var len = buf.count
        zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buf, &len)
        return String(cString: buf)
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(handle, endpoint) == 0 else { throw ZMQError.connect(endpoint, errno: zmq_errno()) }
    }

    /// Sends a multipart message; each part is copied into ZeroMQ once.
    public func send(_ parts: [UnsafeRawBufferPointer]) throws {
        for (i, p) in parts.enumerated() { try sendPart(p, more: i < parts.count - 1) }
    }

    /// The same for parts held in `Data` (read in place: bridging to NSData would copy each part first).
    public func send(_ parts: [Data]) throws {
        for (i, d) in parts.enumerated() { try d.withUnsafeBytes { try sendPart($0, more: i < parts.count - 1) } }
    }

    /// Sends a multipart message only if it can be queued at once (ZMQ_DONTWAIT): a reply to a peer that
    /// does not read its messages is dropped instead of blocking the sender. Whether it was queued.
    @discardableResult
    public func sendNow(_ parts: [Data]) -> Bool {
        for (i, d) in parts.enumerated() {
            let flags = ZMQ_DONTWAIT | (i < parts.count - 1 ? ZMQ_SNDMORE : 0)
            let ok = d.withUnsafeBytes { p in
                while zmq_send(handle, p.baseAddress, p.count, flags) < 0 { if zmq_errno() != EINTR { return false } }
                return true
            }
            if !ok { return false }  // only the first part can fail: a multipart message is queued whole
        }
        return true
    }

    /// One part of a multipart message (`more`: parts follow); ZeroMQ copies it before this returns.
    public func sendPart(_ p: UnsafeRawBufferPointer, more: Bool) throws {
        while zmq_send(handle, p.baseAddress, p.count, more ? ZMQ_SNDMORE : 0) < 0 {
            if zmq_errno() == EINTR { continue }
            throw ZMQError.send(errno: zmq_errno())
        }
    }

    /// Whether a message is waiting within `timeoutMs`; returns early (false, unless a message came too)
    /// when file descriptor `fd` becomes readable: how another thread wakes a thread that sleeps here.
    public func poll(timeoutMs: Int, orReadable fd: Int32) -> Bool {
        var items = (
            zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0),
            zmq_pollitem_t(socket: nil, fd: fd, events: Int16(ZMQ_POLLIN), revents: 0)
        )
        let r = withUnsafeMutableBytes(of: &items) { zmq_poll($0.baseAddress!.assumingMemoryBound(to: zmq_pollitem_t.self), 2, timeoutMs) }
        return r > 0 && items.0.revents & Int16(ZMQ_POLLIN) != 0
    }

    /// Whether a message is waiting within `timeoutMs` (-1: wait for ever).
    public func poll(timeoutMs: Int) -> Bool {
        var item = zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        let r = zmq_poll(&item, 1, timeoutMs)
        return r > 0 && (item.revents & Int16(ZMQ_POLLIN)) != 0
    }

    /// Receives one whole multipart message (blocking), each part a `Data` over its ZeroMQ buffer; beyond `maxParts`
    /// the rest of the message is received and dropped (so a flood of tiny parts allocates nothing).
    public func receive(maxParts: Int = .max) throws -> [Data] { try receive(maxParts: maxParts, sender: nil) }

    /// Who sent a message, as libzmq knows it: the ZAP user id (here the sender's CURVE public key, see
    /// `ZAPHandler`; nil in plain text) and the peer's IP address.
    public struct Sender: Sendable, Equatable {
        public var key: String?
        public var address: String?
        public init(key: String? = nil, address: String? = nil) { self.key = key; self.address = address }
    }

    /// `receive(maxParts:)`, and who sent the message.
    public func receiveWithSender(maxParts: Int = .max) throws -> (parts: [Data], sender: Sender) {
        var sender = Sender()
        let parts = try receive(maxParts: maxParts, sender: &sender)
        return (parts, sender)
    }

    private func receive(maxParts: Int, sender: UnsafeMutablePointer<Sender>?) throws -> [Data] {
        var parts: [Data] = []
        repeat {
            if parts.count >= maxParts {
                var msg = zmq_msg_t()
                zmq_msg_init(&msg)
                while zmq_msg_recv(&msg, handle, 0) < 0 && zmq_errno() == EINTR {}
                zmq_msg_close(&msg)
                continue
            }
            // The part stays in ZeroMQ's buffer, which the Data owns (no copy: a checkpoint's parts are
            // hundreds of megabytes).
            let msg = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
            zmq_msg_init(msg)
            while zmq_msg_recv(msg, handle, 0) < 0 {
                if zmq_errno() == EINTR { continue }
                zmq_msg_close(msg); msg.deallocate()
                throw ZMQError.receive(call: "zmq_msg_recv", errno: zmq_errno())
            }
            if let sender, sender.pointee.key == nil && sender.pointee.address == nil { sender.pointee = Self.sender(of: msg) }
            let size = zmq_msg_size(msg)
            if size == 0 {
                zmq_msg_close(msg); msg.deallocate()
                parts.append(Data())
            } else {
                parts.append(
                    Data(
                        bytesNoCopy: zmq_msg_data(msg), count: size,
                        deallocator: .custom { _, _ in
                            zmq_msg_close(msg); msg.deallocate()
                        }))
            }
        } while hasMore
        return parts
    }

    /// Receives one part into caller memory of `capacity` bytes; returns the part's true size (larger
    /// than `capacity` means it was truncated: a protocol error the caller reports).
    public func receive(into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int {
        while true {
            let n = zmq_recv(handle, buffer, capacity, 0)
            if n >= 0 { return Int(n) }
            if zmq_errno() == EINTR { continue }
            throw ZMQError.receive(call: "zmq_recv", errno: zmq_errno())
        }
    }

    /// `receive(into:capacity:)` that also keeps who sent the part, for `lastSender` (a small part lives
    /// inside the zmq_msg_t: nothing is allocated).
    public func receiveNotingSender(into buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int {
        var msg = zmq_msg_t()
        zmq_msg_init(&msg)
        defer { zmq_msg_close(&msg) }
        while zmq_msg_recv(&msg, handle, 0) < 0 {
            if zmq_errno() == EINTR { continue }
            throw ZMQError.receive(call: "zmq_msg_recv", errno: zmq_errno())
        }
        let size = zmq_msg_size(&msg)
        if size > 0 { buffer.copyMemory(from: zmq_msg_data(&msg), byteCount: min(size, capacity)) }
        let key = zmq_msg_gets(&msg, "User-Id")
        lastSenderKey.withUnsafeMutableBufferPointer { b in
            b[0] = 0
            if let key { _ = strncpy(b.baseAddress!, key, b.count - 1) }
        }
        return size
    }

    private var lastSenderKey = [CChar](repeating: 0, count: 64)
    /// The CURVE key of the sender of the last part `receiveNotingSender` received (nil in plain text).
    public var lastSender: String? { lastSenderKey[0] == 0 ? nil : String(cString: lastSenderKey) }

    private static func sender(of msg: UnsafeMutablePointer<zmq_msg_t>) -> Sender {
        func get(_ property: String) -> String? {
            guard let p = zmq_msg_gets(msg, property) else { return nil }
            let s = String(cString: p)
            return s.isEmpty ? nil : s
        }
        return Sender(key: get("User-Id"), address: get("Peer-Address"))
    }

    /// Reports `events` of this socket (ZMQ_EVENT_…) on a PAIR socket it returns: each a message of the
    /// event id (UInt16 LE) and value (UInt32 LE), then the endpoint.
    public func monitor(events: Int32) throws -> ZMQSocket {
        let endpoint = "inproc://ugen-monitor-\(UInt64.random(in: 1...UInt64.max))"
        guard zmq_socket_monitor(handle, endpoint, events) == 0 else { throw ZMQError.monitor(errno: zmq_errno()) }
        let pair = try ZMQSocket(.pair)
        try pair.connect(endpoint)
        return pair
    }

    /// Whether more parts of the current message follow.
    public var hasMore: Bool {
        var more: Int32 = 0
        var len = MemoryLayout<Int32>.size
        zmq_getsockopt(handle, ZMQ_RCVMORE, &more, &len)
        return more != 0
    }

    /// Drops the rest of the current multipart message.
    public func discardRest() throws { while hasMore { _ = try receive() } }
}

/// Polls several sockets at once; returns the indices of those with a message waiting.
func pollAny(_ sockets: [ZMQSocket], timeoutMs: Int) -> [Int] {
    var items = sockets.map { zmq_pollitem_t(socket: $0.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0) }
    let r = zmq_poll(&items, Int32(items.count), timeoutMs)
    guard r > 0 else { return [] }
    return items.indices.filter { items[$0].revents & Int16(ZMQ_POLLIN) != 0 }
}
