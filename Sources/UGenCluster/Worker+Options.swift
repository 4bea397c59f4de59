import Foundation

extension Worker {
    public struct Options: Sendable {
        public var coordinator: String
        public var name: String
        public var threads: Int
        public var secret: String
        /// The address neighbours use to reach this worker's data socket (default: derived from the
        /// coordinator's address: loopback stays loopback, otherwise this host's name).
        public var advertise: String?
        /// Seconds without any message from the coordinator after which it is considered gone.
        public var coordinatorTimeout: Double
        /// `.curve(keys)` with the coordinator's public key: every socket is CURVE-encrypted.
        public var security: Security = .plaintext
        public var coordinatorKey: String?
        public init(
            coordinator: String, name: String, threads: Int = 1, secret: String = "", advertise: String? = nil,
            coordinatorTimeout: Double = 10
        ) {
            self.coordinator = coordinator; self.name = name; self.threads = threads; self.secret = secret
            self.advertise = advertise; self.coordinatorTimeout = coordinatorTimeout
        }
    }

    /// `deferred`: refused for now (quarantined, or its name or key still held by a live worker); join
    /// again after that many seconds.
    public enum Outcome: Equatable, Sendable { case finished, rejected(String), coordinatorLost, dropped(String), deferred(String, Double) }
}

/// A data message a neighbour should not have sent; `key`: the sender's CURVE key (nil in plain text).
struct PeerFault: Error, CustomStringConvertible {
    var key: String?
    var reason: String
    var description: String { reason }

    /// The fault of whoever sent `socket`'s last message: the reason ends naming its CURVE key (escaped).
    init(lastSenderOf socket: ZMQSocket, _ reason: String) {
        key = socket.lastSender
        self.reason = reason + (key.map { " from CURVE key \(PeerText.escape($0, limit: 48))" } ?? "")
    }
}
