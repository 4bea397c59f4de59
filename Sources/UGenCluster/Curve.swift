import CZeroMQ
import Foundation

/// A CURVE key pair in Z85 text (40 characters each), as `ugen-coord keygen` writes them.
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    public static func generate() throws -> CurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41), sec = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&pub, &sec) == 0 else { throw ZMQError.noCurve(errno: zmq_errno()) }
        return CurveKeyPair(publicKey: String(cString: pub), secretKey: String(cString: sec))
    }

    /// The pair of a secret key (the public half is derived from it).
    public init(secretKey: String) throws {
        guard secretKey.utf8.count == 40 else { throw SecurityError.secretKeyLength(secretKey.utf8.count) }
        var pub = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&pub, secretKey) == 0 else { throw SecurityError.notZ85SecretKey }
        self.secretKey = secretKey
        publicKey = String(cString: pub)
    }

    init(publicKey: String, secretKey: String) { self.publicKey = publicKey; self.secretKey = secretKey }

    /// Reads a key file: its first line that is 40 characters of Z85 (comments with `#` allowed).
    public static func readKey(_ path: String) throws -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw SecurityError.unreadableKeyFile(path) }
        guard
            let key = text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) })
                .first(where: { !$0.hasPrefix("#") && $0.utf8.count == 40 })
        else {
            throw SecurityError.noKeyInFile(path)
        }
        return key
    }

    /// Writes `NAME.key` (secret, mode 0600) and `NAME.pub` (public) into `directory`.
    public func write(directory: String, name: String) throws -> (secret: String, public: String) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let sec = directory + "/" + name + ".key", pub = directory + "/" + name + ".pub"
        guard !FileManager.default.fileExists(atPath: sec) else { throw SecurityError.keyExists(sec) }
        try "# UGen CURVE secret key of \(name): keep it private\n\(secretKey)\n".write(toFile: sec, atomically: true, encoding: .utf8)
        chmod(sec, 0o600)
        try "# UGen CURVE public key of \(name)\n\(publicKey)\n".write(toFile: pub, atomically: true, encoding: .utf8)
        return (sec, pub)
    }

    /// Public keys from a file (one per line) or a directory of `*.pub` files.
    public static func readPublicKeys(_ path: String) throws -> Set<String> {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw SecurityError.noSuchKeyFile(path) }
        let files =
            isDir.boolValue
            ? try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".pub") }.sorted().map { path + "/" + $0 }
            : [path]
        var keys = Set<String>()
        for f in files {
            let text = try String(contentsOfFile: f, encoding: .utf8)
            for line in text.split(separator: "\n") {
                let k = line.trimmingCharacters(in: .whitespaces)
                if k.hasPrefix("#") || k.isEmpty { continue }
                guard k.utf8.count == 40 else { throw SecurityError.badPublicKey(file: f, start: String(k.prefix(12))) }
                keys.insert(k)
            }
        }
        return keys
    }
}

/// How a socket protects its traffic.
public enum Security: Sendable, Equatable {
    case plaintext
    /// This end's key pair; a client also needs the server's public key.
    case curve(CurveKeyPair)

    var keys: CurveKeyPair? { if case .curve(let k) = self { return k } else { return nil } }
}

extension ZMQSocket {
    /// Makes this socket a CURVE server: clients must know its public key, and the process's ZAP
    /// handler decides which client keys are admitted.
    public func makeCurveServer(_ keys: CurveKeyPair) throws {
        ZAPHandler.shared.start()
        try set(ZMQ_CURVE_SERVER, 1)
        try set(ZMQ_CURVE_SECRETKEY, bytes: Array(keys.secretKey.utf8))
        try set(ZMQ_ZAP_DOMAIN, bytes: Array("ugen".utf8))
    }

    /// Makes this socket a CURVE client of a server whose public key is `server`.
    public func makeCurveClient(_ keys: CurveKeyPair, server: String) throws {
        try set(ZMQ_CURVE_SERVERKEY, bytes: Array(server.utf8))
        try set(ZMQ_CURVE_PUBLICKEY, bytes: Array(keys.publicKey.utf8))
        try set(ZMQ_CURVE_SECRETKEY, bytes: Array(keys.secretKey.utf8))
    }
}

/// The process's ZAP handler (ZeroMQ's authentication protocol, RFC 27): every CURVE handshake with a
/// server socket in this process asks it whether the client's public key is admitted. Denials are kept
/// for the owner to log.
public final class ZAPHandler: @unchecked Sendable {
    public static let shared = ZAPHandler()
    private let lock = NSLock()
    private var allowed = Set<String>()
    private var denied: [Denial] = []
    /// A refused handshake: the client's public key and IP address.
    public struct Denial: Sendable, Equatable { public var key: String; public var address: String }
    private var started = false

    public func allow(_ keys: Set<String>) { lock.withLock { allowed.formUnion(keys) } }
    public func replaceAllowed(_ keys: Set<String>) { lock.withLock { allowed = keys } }
    /// Client keys refused since the last call.
    public func takeDenied() -> [Denial] {
        lock.withLock {
            defer { denied = [] }; return denied
        }
    }

    func start() {
        let go: Bool = lock.withLock {
            defer { started = true }; return !started
        }
        guard go else { return }
        let sem = DispatchSemaphore(value: 0)
        let t = Thread { [self] in
            guard let s = try? ZMQSocket(.rep), (try? s.bind("inproc://zeromq.zap.01")) != nil else { sem.signal(); return }
            sem.signal()
            while true {
                guard let req = try? s.receive(maxParts: 16) else {
                    if zmq_errno() == ETERM { return }  // the process is flushing before it exits
                    continue
                }
                guard req.count >= 6 else { continue }
                var ok = false
                var user = ""
                if String(decoding: req[5], as: UTF8.self) == "CURVE", req.count >= 7, req[6].count == 32 {
                    var z = [CChar](repeating: 0, count: 41)
                    _ = req[6].withUnsafeBytes { zmq_z85_encode(&z, $0.bindMemory(to: UInt8.self).baseAddress, 32) }
                    user = String(cString: z)
                    ok = lock.withLock { allowed.contains(user) }
                    // Kept for the owner's log (bounded: a flood of handshakes is summarised there).
                    let denial = Denial(key: user, address: String(decoding: req[3], as: UTF8.self))
                    if !ok { lock.withLock { if denied.count < 10_000 { denied.append(denial) } } }
                }
                _ = try? s.send([
                    Data("1.0".utf8), req[1], Data((ok ? "200" : "400").utf8),
                    Data((ok ? "OK" : "key not admitted").utf8), Data(user.utf8), Data(),
                ])
            }
        }
        t.start()
        sem.wait()
    }
}

/// Which protection a coordinator uses, from its command line. Cluster traffic is CURVE unless the
/// user says `--insecure`, and plain text never leaves the machine.
public enum SecurityPolicy {
    public static func isLoopback(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        let hostPort = endpoint.dropFirst(6)
        let host = hostPort.hasPrefix("[") ? String(hostPort.prefix { $0 != "]" }.dropFirst()) : String(hostPort.prefix { $0 != ":" })
        return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// - `keyFile` + `authorized`: CURVE with the given keys.
    /// - `insecure`: plain text, loopback only.
    /// - neither, with every worker started locally: CURVE with keys made for this run.
    public static func coordinator(
        keyFile: String?, authorized: String?, insecure: Bool, bind: String,
        localWorkers: Int, workersNeeded: Int
    ) throws -> (Security, Set<String>) {
        if insecure {
            guard keyFile == nil else { throw SecurityError.insecureWithKey }
            guard isLoopback(bind) else {
                throw SecurityError.insecureOffLoopback(bind)
            }
            return (.plaintext, [])
        }
        if let keyFile {
            let keys = try CurveKeyPair(secretKey: try CurveKeyPair.readKey(keyFile))
            let admitted = try authorized.map(CurveKeyPair.readPublicKeys) ?? []
            if admitted.isEmpty && localWorkers < workersNeeded {
                throw SecurityError.keyNeedsAuthorizedKeys
            }
            return (.curve(keys), admitted)
        }
        guard localWorkers >= workersNeeded else {
            throw SecurityError.remoteWorkersNeedKeys
        }
        return (.curve(try CurveKeyPair.generate()), [])
    }
}

/// A key, key file or security option that cannot be used: one case per mistake, printed as one line.
public enum SecurityError: Error, CustomStringConvertible, Equatable {
    case secretKeyLength(Int)
    case notZ85SecretKey
    case unreadableKeyFile(String)
    case noKeyInFile(String)
    /// `ugen-coord keygen` would overwrite this secret key file.
    case keyExists(String)
    case noSuchKeyFile(String)
    /// A line of a public-key file that is no key (its first 12 characters).
    case badPublicKey(file: String, start: String)
    case insecureWithKey
    case insecureOffLoopback(String)
    case keyNeedsAuthorizedKeys
    case remoteWorkersNeedKeys
    /// A worker with CURVE keys but not the coordinator's public key (or the reverse).
    case curveNeedsCoordinatorKey
    case keyNeedsCoordinatorKey
    case coordinatorKeyNeedsKey

    public var description: String {
        switch self {
        case .secretKeyLength(let n): "a CURVE secret key is 40 Z85 characters, got \(n)"
        case .notZ85SecretKey: "not a Z85 CURVE secret key"
        case .unreadableKeyFile(let path): "\(path): cannot read key file"
        case .noKeyInFile(let path): "\(path): no 40-character Z85 key in the file"
        case .keyExists(let path): "\(path) exists; not overwriting a key"
        case .noSuchKeyFile(let path): "\(path): no such key file or directory"
        case .badPublicKey(let file, let start): "\(file): '\(start)…' is not a 40-character Z85 public key"
        case .insecureWithKey: "--insecure and --key exclude each other"
        case .insecureOffLoopback(let bind):
            "--insecure binds only to loopback (127.0.0.1); \(bind) would carry plain text over a network: "
                + "use --key and --authorized-keys"
        case .keyNeedsAuthorizedKeys: "--key needs --authorized-keys (the workers' .pub files) unless every worker is local"
        case .remoteWorkersNeedKeys:
            "workers on other machines need CURVE keys: make them with `ugen-coord keygen`, pass --key and --authorized-keys "
                + "(or --insecure on loopback)"
        case .curveNeedsCoordinatorKey: "CURVE needs the coordinator's public key (--coord-key)"
        case .keyNeedsCoordinatorKey: "--key needs --coord-key (the coordinator's public key)"
        case .coordinatorKeyNeedsKey: "--coord-key needs --key (this worker's secret key; make one with `ugen-coord keygen`)"
        }
    }
}
