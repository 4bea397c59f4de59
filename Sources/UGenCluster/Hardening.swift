import Foundation

/// Text a peer supplied (a worker's name, host, reasons, status), made safe to print: every control
/// character becomes a visible escape, so a name cannot start a forged log line, move the cursor or
/// colour a terminal. The one helper every log line, event and dashboard field of peer text goes through.
public enum PeerText {
    /// `s` with `\` doubled, `\n` `\r` `\t` and ESC as `\n` `\r` `\t` `\e`, any other C0/C1 control or
    /// DEL as `\x{HH}`, and the Unicode line separators and direction overrides as `\u{HHHH}`; cut to
    /// `limit` characters (then `…(N bytes)` says how long it was).
    public static func escape(_ s: String, limit: Int = 256) -> String {
        var out = ""
        var n = 0
        for u in s.unicodeScalars {
            if n >= limit { return out + "…(\(s.utf8.count) bytes)" }
            n += 1
            switch u.value {
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x1B: out += "\\e"
            case 0..<0x20, 0x7F...0x9F: out += "\\x{" + String(u.value, radix: 16, uppercase: true) + "}"
            case 0x200B...0x200F, 0x2028...0x202E, 0x2060...0x206F, 0xFEFF, 0xFFF9...0xFFFB:
                out += "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }

    /// Whether `s` is printed unchanged by `escape` (no control characters, within `limit`).
    public static func isPlain(_ s: String, limit: Int = 256) -> Bool { escape(s, limit: limit) == s }
}

/// The limits a `hello` is checked against (Documentation/protocol.md, "Limits").
public enum HelloLimits {
    public static let nameLength = 1...128  // room for the default HOST-PID
    /// Letters, digits and `. _ - @ : +` (a host name, a pid, a label).
    public static let nameCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@:+".unicodeScalars)
    public static let hostLength = 1...253
    /// A host name or an IP address (IPv6 with `:` and `%zone`).
    public static let hostCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:%".unicodeScalars)
    public static let cores = 1...1024
    public static let endpointLength = 1...300
    public static let secretLength = 0...1024

    /// The first field of `hello` outside its limits, as a one-line reason (nil: all within).
    public static func violation(_ hello: Hello) -> String? {
        let who = PeerText.escape(hello.name, limit: 64)
        if !nameLength.contains(hello.name.unicodeScalars.count) || !hello.name.unicodeScalars.allSatisfy(nameCharacters.contains) {
            return "hello: worker name '\(who)' is not 1-128 letters, digits or . _ - @ : +"
        }
        if !hostLength.contains(hello.host.unicodeScalars.count) || !hello.host.unicodeScalars.allSatisfy(hostCharacters.contains) {
            return "hello from \(who): host '\(PeerText.escape(hello.host, limit: 64))' is not a host name or address"
        }
        if !cores.contains(hello.cores) { return "hello from \(who): cores \(hello.cores) is outside 1...1024" }
        if !secretLength.contains(hello.secret.utf8.count) { return "hello from \(who): secret longer than 1024 bytes" }
        if let bad = endpointViolation(hello.dataEndpoint) { return "hello from \(who): data endpoint \(bad)" }
        if let k = hello.publicKey, k.utf8.count != 40 || !k.unicodeScalars.allSatisfy(z85.contains) {
            return "hello from \(who): public key '\(PeerText.escape(k, limit: 48))' is not 40 Z85 characters"
        }
        return nil
    }

    /// Why `e` is not `tcp://HOST:PORT` with a port in 1...65535 (nil: it is).
    static func endpointViolation(_ e: String) -> String? {
        let shown = "'\(PeerText.escape(e, limit: 80))'"
        guard endpointLength.contains(e.utf8.count), e.hasPrefix("tcp://") else { return "\(shown) is not tcp://host:port" }
        let rest = e.dropFirst(6)
        let host: Substring, port: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else {
                return "\(shown) is not tcp://host:port"
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            port = rest[rest.index(close, offsetBy: 2)...]
        } else {
            guard let colon = rest.lastIndex(of: ":") else { return "\(shown) is not tcp://host:port" }
            host = rest[..<colon]
            port = rest[rest.index(after: colon)...]
            if host.contains(":") { return "\(shown) is not tcp://host:port" }
        }
        guard !host.isEmpty, host.unicodeScalars.allSatisfy(hostCharacters.contains) else { return "\(shown) has no valid host" }
        guard port.count <= 5, port.allSatisfy(\.isASCII), port.allSatisfy(\.isNumber), let p = Int(port), (1...65535).contains(p) else {
            return "\(shown) has no port in 1...65535"
        }
        return nil
    }

    static let z85 = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".unicodeScalars)
}

/// Faults by peer (a CURVE key, or a worker name in plain text): each fault is a strike, and from the
/// second on the peer is quarantined — its hellos are refused — for `base`·2^(strikes−2) seconds, at
/// most `cap`. A completed step forgives. Bounded in size: the oldest entry makes room.
struct Quarantine {
    var base: Double
    var cap = 300.0
    private(set) var book: [String: (strikes: Int, until: Date, last: Date)] = [:]
    static let maxEntries = 4096

    init(base: Double) { self.base = max(base, 0.5) }

    /// Records `weight` strikes against `peer`; returns how long it is now quarantined (0: not).
    mutating func strike(_ peer: String, weight: Int = 1, now: Date = Date()) -> (strikes: Int, seconds: Double) {
        if book[peer] == nil && book.count >= Self.maxEntries, let oldest = book.min(by: { $0.value.last < $1.value.last })?.key {
            book[oldest] = nil
        }
        let strikes = (book[peer]?.strikes ?? 0) + weight
        let seconds = strikes < 2 ? 0 : min(cap, base * pow(2, Double(strikes - 2)))
        book[peer] = (strikes, now.addingTimeInterval(seconds), now)
        return (strikes, seconds)
    }

    /// Seconds left in `peer`'s quarantine (nil: not quarantined).
    func remaining(_ peer: String, now: Date = Date()) -> Double? {
        guard let e = book[peer] else { return nil }
        let left = e.until.timeIntervalSince(now)
        return left > 0 ? left : nil
    }

    mutating func forgive(_ peer: String) { book[peer] = nil }
}

/// Refusals, rate-limited per peer: the first `burst` in a `window` are told one by one, the rest
/// counted and told as one line when the window closes, so a flood cannot fill the log or events.jsonl.
struct RefusalLimiter {
    var burst = 20
    var window = 5.0
    private var peers: [String: (start: Date, count: Int, suppressed: Int)] = [:]
    static let maxPeers = 4096

    /// Whether this refusal from `peer` is to be told.
    mutating func admit(_ peer: String, now: Date = Date()) -> Bool {
        if var e = peers[peer], now.timeIntervalSince(e.start) < window {
            e.count += 1
            if e.count > burst { e.suppressed += 1 }
            peers[peer] = e
            return e.count <= burst
        }
        if peers.count >= Self.maxPeers { peers.removeAll(keepingCapacity: true) }  // a bounded book (rare)
        peers[peer] = (now, 1, peers[peer]?.suppressed ?? 0)
        return true
    }

    /// Peers whose window closed with refusals suppressed: (peer, how many); their counts start over.
    mutating func closedWindows(now: Date = Date()) -> [(String, Int)] {
        var out: [(String, Int)] = []
        for (peer, e) in peers where now.timeIntervalSince(e.start) >= window {
            if e.suppressed > 0 { out.append((peer, e.suppressed)) }
            peers[peer] = nil
        }
        return out.sorted { $0.0 < $1.0 }
    }
}

/// A message budget per peer on the control socket (a token bucket): `rate` messages a second, bursts
/// of `burst`. A worker sends two heartbeats a second and one `stepDone` a step (a step takes
/// milliseconds at the least); a flood beyond the budget is dropped unread.
struct MessageBudget {
    var rate = 1000.0
    var burst = 2000.0
    private var buckets: [String: (tokens: Double, at: Date)] = [:]
    static let maxPeers = 4096

    mutating func spend(_ peer: String, now: Date = Date()) -> Bool {
        var b = buckets[peer] ?? (burst, now)
        b.tokens = min(burst, b.tokens + now.timeIntervalSince(b.at) * rate)
        b.at = now
        let ok = b.tokens >= 1
        if ok { b.tokens -= 1 }
        if buckets[peer] == nil && buckets.count >= Self.maxPeers {
            buckets = buckets.filter { now.timeIntervalSince($0.value.at) < 10 }
        }
        buckets[peer] = b
        return ok
    }
}
