import Foundation
import UGenModel

/// The wire protocol between coordinator and workers (Documentation/protocol.md), written down once.
///
/// Every control message is a ZeroMQ multipart message:
///
///     part 0   "UGEN" · version (UInt16 LE) · kind (UInt8) · JSON body (the kind's small fields)
///     part 1…  raw little-endian arrays (token ids, masks, tensors, float64 sums), as the kind lists
///
/// Arrays never pass through JSON: they are sent and received as their bytes. Float64 values that must
/// survive exactly (losses, squared norms) travel as arrays too. Decoding checks the magic, version, kind,
/// body and every array's byte count against what the body declares before anything is allocated for it.
public enum Wire {
    public static let magic: [UInt8] = Array("UGEN".utf8)
    /// 2: stage specs count residual blocks (half layers); 3: data headers name rows; 4: halving-doubling
    /// all-reduce messages; 5: their rounds count pieces of buckets.
    public static let version: UInt16 = 5
    /// Largest message the coordinator's control socket accepts (libzmq drops bigger ones before allocating).
    /// Most parts a control message has (identity, head, and three arrays per parameter of the largest
    /// stage stay far below); more is dropped unread.
    public static let maxParts = 4096

    public enum Kind: UInt8, CaseIterable, Sendable {
        case hello = 1, assign, reject, ready, step, stepDone, apply, heartbeat, shutdown, saveRequest, saveReply, failure, reset
    }
}

/// A message a peer should not have sent, or one that cannot be read: one case per way it is wrong,
/// printed as one line.
public enum ProtocolError: Error, CustomStringConvertible, Equatable {
    case emptyMessage
    case badMagic
    /// A header shorter than magic, version and kind (7 bytes).
    case truncatedHeader(bytes: Int)
    case unsupportedVersion(UInt16)
    case unknownKind(UInt8)
    case malformedBody(Wire.Kind)
    /// Array part `part` (1-based) of the message is missing, or has `bytes` where `expected` were due.
    case missingPart(Wire.Kind, part: Int)
    case partSize(Wire.Kind, part: Int, bytes: Int, expected: Int)
    case malformedDataHeader
    /// A step's token or target id (`what`) outside the model's vocabulary.
    case idOutsideVocabulary(what: String)
    /// The assignment names a neighbour (`role`) without its CURVE key.
    case missingPeerKey(role: String, endpoint: String)
    case malformedReduceHeader
    /// The all-reduce cannot run as set up (replica count, sizes, sockets); `reason` says which.
    case allReduce(reason: String)

    public var description: String {
        switch self {
        case .emptyMessage: "empty message"
        case .badMagic: "not a UGen message (bad magic)"
        case .truncatedHeader(let n): "truncated header (\(n) bytes; magic, version and kind take 7)"
        case .unsupportedVersion(let v): "protocol version \(v) is not supported (this build speaks \(Wire.version))"
        case .unknownKind(let k): "unknown message kind \(k)"
        case .malformedBody(let kind): "malformed \(kind) body"
        case .missingPart(let kind, let part): "\(kind): missing array part \(part)"
        case .partSize(let kind, let part, let bytes, let expected): "\(kind): array part \(part) has \(bytes) bytes, expected \(expected)"
        case .malformedDataHeader: "malformed data header"
        case .idOutsideVocabulary(let what): "step: \(what) id outside the vocabulary"
        case .missingPeerKey(let role, let endpoint): "assignment lacks the CURVE key of the \(role) (\(endpoint))"
        case .malformedReduceHeader: "malformed reduce header"
        case .allReduce(let reason): reason
        }
    }
}

/// A local setup failure of the cluster: a run file that cannot be opened, a worker program not found.
public enum SetupError: Error, CustomStringConvertible, Equatable {
    case cannotOpenForWriting(path: String)
    case workerExecutableNotFound(path: String)

    public var description: String {
        switch self {
        case .cannotOpenForWriting(let path): "\(path): cannot open for writing"
        case .workerExecutableNotFound(let path):
            "\(path): worker executable not found (build it with `swift build`, or pass its path)"
        }
    }
}

/// A decoded control message: its kind, body, and raw array parts.
public struct WireMessage {
    public var kind: Wire.Kind
    public var body: Data
    public var arrays: [Data]

    public init<B: Encodable>(_ kind: Wire.Kind, _ body: B, arrays: [Data] = []) {
        self.kind = kind
        self.body = try! JSONEncoder().encode(body)
        self.arrays = arrays
    }

    /// The frames to send.
    public var frames: [Data] {
        var head = Data(Wire.magic)
        withUnsafeBytes(of: Wire.version.littleEndian) { head.append(contentsOf: $0) }
        head.append(kind.rawValue)
        head.append(body)
        return [head] + arrays
    }

    /// Parses frames; every failure is a one-line reason.
    public init(frames: [Data]) throws {
        guard let head = frames.first else { throw ProtocolError.emptyMessage }
        guard Array(head.prefix(4)) == Array(Wire.magic.prefix(head.count)) else { throw ProtocolError.badMagic }
        guard head.count >= 7 else { throw ProtocolError.truncatedHeader(bytes: head.count) }
        let version = UInt16(head[head.startIndex + 4]) | UInt16(head[head.startIndex + 5]) << 8
        guard version == Wire.version else {
            throw ProtocolError.unsupportedVersion(version)
        }
        guard let kind = Wire.Kind(rawValue: head[head.startIndex + 6]) else {
            throw ProtocolError.unknownKind(head[head.startIndex + 6])
        }
        self.kind = kind
        body = head.dropFirst(7)
        arrays = Array(frames.dropFirst())
    }

    /// The body as `B`, or a one-line reason.
    public func decode<B: Decodable>(_ type: B.Type) throws -> B {
        do { return try JSONDecoder().decode(B.self, from: body) } catch {
            throw ProtocolError.malformedBody(kind)
        }
    }

    /// Checks that the body is the JSON its kind carries (a one-line reason if not).
    public func checkBody() throws {
        switch kind {
        case .hello: _ = try decode(Hello.self)
        case .assign: _ = try decode(Assign.self)
        case .reject: _ = try decode(Reject.self)
        case .ready: _ = try decode(Ready.self)
        case .step: _ = try decode(StepOrder.self)
        case .stepDone: _ = try decode(StepDone.self)
        case .apply: _ = try decode(Apply.self)
        case .heartbeat: _ = try decode(Heartbeat.self)
        case .shutdown: _ = try decode(Shutdown.self)
        case .saveRequest: _ = try decode(SaveRequest.self)
        case .saveReply: _ = try decode(SaveReply.self)
        case .failure: _ = try decode(Failure.self)
        case .reset: _ = try decode(Reset.self)
        }
    }

    /// The worker id a worker's message names (ready, stepDone, saveReply, failure, heartbeat), if any.
    public var claimedWorkerId: Int? {
        struct Claim: Decodable { var workerId: Int }
        switch kind {
        case .ready, .stepDone, .saveReply, .failure, .heartbeat: return (try? JSONDecoder().decode(Claim.self, from: body))?.workerId
        default: return nil
        }
    }

    /// Array part `i` as `count` elements of `T`, checking the byte count first.
    public func array<T>(_ i: Int, _ type: T.Type, count: Int) throws -> [T] {
        guard i < arrays.count else { throw ProtocolError.missingPart(kind, part: i + 1) }
        let d = arrays[i]
        guard d.count == count * MemoryLayout<T>.stride else {
            throw ProtocolError.partSize(kind, part: i + 1, bytes: d.count, expected: count * MemoryLayout<T>.stride)
        }
        return d.withUnsafeBytes { raw in Array(raw.bindMemory(to: T.self)) }
    }
}

/// Raw bytes of an array (for an array part).
public func bytes<T>(_ a: [T]) -> Data { a.withUnsafeBytes { Data($0) } }

// MARK: - Message bodies

/// worker → coordinator: asks to join.
public struct Hello: Codable, Sendable {
    public var protocolVersion: Int
    public var name: String
    public var host: String
    public var cores: Int
    public var secret: String
    /// Where this worker's data socket listens for its neighbours.
    public var dataEndpoint: String
    /// The worker's CURVE public key (its data socket is a CURVE server with it); nil in plain text.
    public var publicKey: String?
    public init(
        protocolVersion: Int, name: String, host: String, cores: Int, secret: String, dataEndpoint: String,
        publicKey: String? = nil
    ) {
        self.protocolVersion = protocolVersion; self.name = name; self.host = host; self.cores = cores
        self.secret = secret; self.dataEndpoint = dataEndpoint; self.publicKey = publicKey
    }
}

/// coordinator → worker: what to run.
public struct Assign: Codable, Sendable {
    public var workerId: Int
    public var stage: Int
    public var replica: Int
    public var stages: Int
    public var spec: StageSpec
    public var model: ModelConfig
    /// The resolved run configuration (YAML).
    public var config: String
    /// Data endpoints of the previous and next stage of the same replica.
    public var previous: String?
    public var next: String?
    /// The same stage in every replica, in replica order (for the gradient reduce), and whether the
    /// parameters follow as arrays (params, m, v per parameter, then the optimizer step in the body).
    public var replicaPeers: [String]
    /// CURVE public keys of `previous`, `next` and `replicaPeers` (nil in plain text): the worker admits
    /// exactly these on its data socket and checks them when it connects.
    public var previousKey: String?
    public var nextKey: String?
    public var replicaPeerKeys: [String]?
    public var withTensors: Bool
    public var optimizerStep: Int
    /// Counts assignments; data messages carry it, so a message left over from before a recovery is
    /// recognised and dropped.
    public var generation: Int
    /// The coordinator process's instance id (also in its heartbeat replies): a worker that hears another
    /// one knows the coordinator was restarted and joins it afresh.
    public var coordinator: String? = nil
}

/// `retryAfter`: the refusal is for now (a quarantine, a name or key still held by a live worker); the
/// worker may say hello again after that many seconds.
public struct Reject: Codable, Sendable { public var reason: String; public var retryAfter: Double? = nil }
public struct Ready: Codable, Sendable { public var workerId: Int }

/// coordinator → worker: run one step's micro-batches.
///
/// Arrays, first stage: tokens (Int32, m·rows·T), then the input id map (Int32, V) when `masked`.
/// Last stage: targets (Int32, m·rows·T), mask (Float, m·rows·T), tasks (UInt8, m·rows·T), then the
/// inactive table (UInt8, V) when `masked`. A stage that is both has the first stage's arrays first.
public struct StepOrder: Codable, Sendable {
    public var step: Int
    public var microBatches: Int
    public var gradScale: Float
    public var masked: Bool
}

extension MicroBatch {
    /// The arrays of a `step` message as one stage reads them (`StepOrder` lists them), by name rather
    /// than by position, each checked: byte counts, and every token and target id inside the vocabulary.
    /// First stage: token ids (m·rows·T) and, when masked, the input id map (V). Last stage: targets, loss
    /// mask and task per position (m·rows·T), the inactive table (V) when masked. Its index is 0: set it
    /// to each micro-batch of the step in turn. `positions`: m·rows·T of this worker; `vocab`: V.
    public init(stepMessage message: WireMessage, masked: Bool, embedding: Bool, head: Bool, positions: Int, vocab: Int) throws {
        self.init()
        var part = 0
        func next<T>(_ type: T.Type, _ count: Int) throws -> [T] {
            defer { part += 1 }; return try message.array(part, T.self, count: count)
        }
        if embedding {
            tokens = try next(Int32.self, positions)
            if masked { tokenMap = try next(Int32.self, vocab) }
            guard tokens.allSatisfy({ $0 >= 0 && Int($0) < vocab }) else { throw ProtocolError.idOutsideVocabulary(what: "token") }
        }
        if head {
            targets = try next(Int32.self, positions)
            mask = try next(Float.self, positions)
            tasks = try next(UInt8.self, positions)
            if masked { inactive = try next(UInt8.self, vocab) }
            guard targets.allSatisfy({ $0 >= 0 && Int($0) < vocab }) else { throw ProtocolError.idOutsideVocabulary(what: "target") }
        }
    }
}

/// The arrays of a `stepDone` message (`StepDone` lists them), by name.
public struct StepOutputs {
    /// Last stage: Σ mask·loss of each micro-batch, in order, and the losses by task (else nil).
    public var losses: StepLosses?
    /// Σ grad² of every parameter the stage holds, in canonical order.
    public var gradSquares: [Double]

    public init(losses: StepLosses?, gradSquares: [Double]) {
        self.losses = losses; self.gradSquares = gradSquares
    }

    /// Reads them from a worker's message, checking each byte count: `microBatches` loss sums and the
    /// task sums then weights (3 + 3) when the stage has the head, `parameters` squared norms.
    public init(_ message: WireMessage, microBatches: Int, head: Bool, parameters: Int) throws {
        if head {
            var losses = StepLosses(microBatches: 0)
            losses.sums = try message.array(0, Double.self, count: microBatches)
            let tasks = try message.array(1, Double.self, count: 6)
            losses.tasks.sum = Array(tasks[0..<3])
            losses.tasks.weight = Array(tasks[3..<6])
            self.losses = losses
        }
        gradSquares = try message.array(2, Double.self, count: parameters)
    }

    public var parts: [Data] {
        [bytes(losses?.sums ?? []), bytes(losses.map { $0.tasks.sum + $0.tasks.weight } ?? []), bytes(gradSquares)]
    }
}

/// worker → coordinator: the step's results (arrays: `StepOutputs`). Arrays: loss sums per micro-batch (Float64, m; last stage,
/// else empty), task loss sums then weights (Float64, 6; last stage, else empty), the squared norm of
/// every parameter gradient this stage holds (Float64, canonical order).
public struct StepDone: Codable, Sendable {
    public var workerId: Int
    public var step: Int
    public var forwardMs: Double
    public var backwardMs: Double
    public var waitMs: Double
    /// Time spent handing activations and gradients to ZeroMQ and copying received ones in.
    public var commMs: Double
    /// The replicas' gradient all-reduce (nil with one replica): bytes this worker sent and received in it,
    /// the milliseconds from its start (the first bucket final) to its end, and how many of them the
    /// training thread waited after its last backward pass (the rest was hidden behind it).
    public var reduceBytesSent: Int? = nil
    public var reduceBytesReceived: Int? = nil
    public var reduceMs: Double? = nil
    public var reduceWaitMs: Double? = nil
    /// Of `reduceMs`, the milliseconds the reduce thread had nothing under way and waited for a bucket to
    /// become final; and the milliseconds from the first bucket final to the last (the backward pass a
    /// reduce can hide behind). Where the exposed reduce time goes.
    public var reduceIdleMs: Double? = nil
    public var reduceWindowMs: Double? = nil
}

/// coordinator → worker: apply the optimizer step with the global clip factor.
public struct Apply: Codable, Sendable {
    public var step: Int
    public var lr: Double
    public var clipScale: Float
}

/// Both ways, every half second on the worker's own heartbeat socket. A worker says what it is doing,
/// so a hung step can be diagnosed from the coordinator's log.
public struct Heartbeat: Codable, Sendable {
    public var workerId: Int
    public var status: String?
    /// In the coordinator's replies: its instance id (see `Assign.coordinator`).
    public var coordinator: String?
    /// coordinator → worker, when a step is past its deadline: answer at once with what you wait for.
    public var probe: Bool? = nil
    /// worker → coordinator, the answer to a probe (`answer` true): what it waits for, nil if nothing.
    public var answer: Bool? = nil
    public var wait: WaitReport? = nil
    public init(
        workerId: Int, status: String? = nil, coordinator: String? = nil, probe: Bool? = nil, answer: Bool? = nil,
        wait: WaitReport? = nil
    ) {
        self.workerId = workerId; self.status = status; self.coordinator = coordinator
        self.probe = probe; self.answer = answer; self.wait = wait
    }
}

/// What a worker is blocked on: a micro-batch's activation (from the previous stage), gradient (from the
/// next stage) or the replicas' reduce, and for how long.
public struct WaitReport: Codable, Sendable, Equatable {
    public enum What: String, Codable, Sendable { case activation, gradient, reduce }
    public var step: Int
    public var what: What
    public var microBatch: Int
    /// The stage and replica it waits on (in the reduce: the all-reduce partner whose segment is due).
    public var fromStage: Int
    public var fromReplica: Int?
    public var seconds: Double
    public init(step: Int, what: What, microBatch: Int, fromStage: Int, fromReplica: Int?, seconds: Double) {
        self.step = step; self.what = what; self.microBatch = microBatch; self.fromStage = fromStage
        self.fromReplica = fromReplica; self.seconds = seconds
    }
}
/// coordinator → worker: drop the current step and wait for a new assignment; with `rejoin` the
/// coordinator has dropped this worker (declared lost while still alive) and it must join afresh.
public struct Reset: Codable, Sendable {
    public var reason: String
    public var rejoin: Bool?
    public init(reason: String, rejoin: Bool? = nil) { self.reason = reason; self.rejoin = rejoin }
}
public struct Shutdown: Codable, Sendable { public var reason: String }
/// coordinator → worker: send your tensors (for a checkpoint). Reply arrays: per parameter value, m, v.
public struct SaveRequest: Codable, Sendable { public var step: Int }
public struct SaveReply: Codable, Sendable { public var workerId: Int; public var step: Int; public var optimizerStep: Int }
/// worker → coordinator: the worker cannot go on (reason in words).
/// `peerKey`: the CURVE key of the neighbour whose data message caused the failure (the fault is its).
public struct Failure: Codable, Sendable {
    public var workerId: Int; public var reason: String; public var peerKey: String? = nil
    public init(workerId: Int, reason: String, peerKey: String? = nil) {
        self.workerId = workerId; self.reason = reason; self.peerKey = peerKey
    }
}

/// A message of the replicas' gradient all-reduce (Documentation/protocol.md): part 0 is 21 bytes —
/// kind 2, generation, step, round, the sending replica, the element offset of the segment (each Int32
/// LE); part 1 is the float32 segment. Rounds 0..<p are the recursive-halving reduce-scatter (partner at
/// distance 2^round), rounds p..<2p the recursive-doubling all-gather, among 2^p replicas.
public struct ReduceHeader: Equatable {
    public static let kind: UInt8 = 2
    public var generation: Int32
    public var step: Int32
    public var round: Int32
    public var fromReplica: Int32
    public var offset: Int32

    public init(generation: Int32, step: Int32, round: Int32, fromReplica: Int32, offset: Int32) {
        self.generation = generation; self.step = step; self.round = round; self.fromReplica = fromReplica; self.offset = offset
    }

    /// The header's 21 bytes, written on the stack.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try DataHeader.withFields(kind: Self.kind, (generation, step, round, fromReplica, offset), body)
    }

    public init(_ raw: UnsafeRawBufferPointer) throws {
        guard raw.count == DataHeader.size, raw[0] == Self.kind else { throw ProtocolError.malformedReduceHeader }
        (generation, step, round, fromReplica, offset) = DataHeader.fields(raw)
    }
}

/// The data path between neighbouring stages: part 0 is 21 bytes — kind (0 activation, 1 gradient),
/// generation, step, micro-batch, first row, row count (each Int32 LE; micro-batch −1−r is replica r's
/// gradients for the reduce); part 1 is the float32 tensor of those rows ([rows·T, d]), or every gradient
/// of the stage, flattened. A micro-batch's rows come in order: whole, or (the pipeline fill) a row at a
/// time.
public struct DataHeader: Equatable {
    public enum Kind: UInt8 { case activation = 0, gradient = 1 }
    public static let size = 21
    public var kind: Kind
    public var generation: Int32
    public var step: Int32
    public var microBatch: Int32
    public var firstRow: Int32
    public var rowCount: Int32

    /// The header's 21 bytes, written on the stack (a send in the training step allocates nothing).
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Self.withFields(kind: kind.rawValue, (generation, step, microBatch, firstRow, rowCount), body)
    }

    /// The layout both data-socket headers share (this one and `ReduceHeader`): a kind byte, then five
    /// Int32 LE fields, 21 bytes in all, written on the stack.
    static func withFields<R>(
        kind: UInt8, _ f: (Int32, Int32, Int32, Int32, Int32),
        _ body: (UnsafeRawBufferPointer) throws -> R
    ) rethrows -> R {
        try withUnsafeTemporaryAllocation(byteCount: size, alignment: 1) { raw in
            raw[0] = kind
            func store(_ i: Int, _ v: Int32) { raw.storeBytes(of: v.littleEndian, toByteOffset: 1 + 4 * i, as: Int32.self) }
            store(0, f.0); store(1, f.1); store(2, f.2); store(3, f.3); store(4, f.4)
            return try body(UnsafeRawBufferPointer(raw))
        }
    }

    /// The five Int32 fields after the kind byte of a 21-byte header (its size checked by the caller).
    static func fields(_ raw: UnsafeRawBufferPointer) -> (Int32, Int32, Int32, Int32, Int32) {
        func field(_ i: Int) -> Int32 { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 1 + 4 * i, as: Int32.self)) }
        return (field(0), field(1), field(2), field(3), field(4))
    }

    public var bytes: [UInt8] { withBytes { Array($0) } }

    /// `rowCount` 0: not a row range (the reduce's flattened gradients).
    public init(kind: Kind, generation: Int32, step: Int32, microBatch: Int32, firstRow: Int32 = 0, rowCount: Int32 = 0) {
        self.kind = kind; self.generation = generation; self.step = step; self.microBatch = microBatch
        self.firstRow = firstRow; self.rowCount = rowCount
    }

    public init(_ raw: UnsafeRawBufferPointer) throws {
        guard raw.count == Self.size, let k = Kind(rawValue: raw[0]) else { throw ProtocolError.malformedDataHeader }
        kind = k
        (generation, step, microBatch, firstRow, rowCount) = Self.fields(raw)
    }
}
