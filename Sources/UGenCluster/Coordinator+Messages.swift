import CZeroMQ
import Foundation
import Logging
import UGenData
import UGenKernels
import UGenModel
import UGenRecords
import UGenStore
import UGenTraining

/// The coordinator's side of the wire: sending, broadcasting, collecting replies within a deadline,
/// the hang diagnosis, and admitting or refusing what peers send (the training loop is in Coordinator.swift).
extension Coordinator {
    struct WorkerLost: Error { var workerId: Int; var reason: String }
    struct StopBeforeStart: Error {}

    func send(_ id: Int, _ msg: WireMessage) throws { try send(id, frames: msg.frames, kind: msg.kind) }

    /// Sends a message's frames (built once for many workers) to worker `id`.
    func send(_ id: Int, frames: [Data], kind: Wire.Kind) throws {
        guard let m = members[id] else { throw WorkerLost(workerId: id, reason: "gone") }
        do { try socket.send([m.identity] + frames) } catch {
            throw WorkerLost(workerId: id, reason: "cannot send \(kind): \(error)")
        }
    }

    func broadcast<B: Encodable>(_ kind: Wire.Kind, _ body: B, to ids: [Int]? = nil) {
        let frames = WireMessage(kind, body).frames
        for id in ids ?? slots.compactMap({ $0 }) { try? send(id, frames: frames, kind: kind) }
    }

    /// Tells `ids` the run is over and waits (at most 2 s) until each has answered with its own
    /// `shutdown`. Without the wait the process could exit — and close the control socket — before
    /// libzmq's I/O thread had put the messages on the wire, and a remote worker would learn of the
    /// end only by its coordinator timeout (seen on the network-namespace hosts under CURVE).
    func shutDown(_ ids: [Int], reason: String) {
        broadcast(.shutdown, Shutdown(reason: reason), to: ids)
        var waiting = Set(ids)
        let start = Date()
        while !waiting.isEmpty && Date().timeIntervalSince(start) < 2 {
            guard let got = try? pump(timeoutMs: 50) else { break }
            for m in got.messages where m.message.kind == .shutdown { waiting.remove(m.worker) }
        }
        if !waiting.isEmpty {
            log.info("no goodbye within 2 s from worker(s) \(waiting.sorted().map(String.init).joined(separator: ", "))")
        }
    }

    /// Waits for one `kind` message from each of `ids`; throws `WorkerLost` when one of them fails,
    /// disconnects or falls silent.
    ///
    /// Each message costs O(1); the scan of every awaited worker for silence (and the local workers'
    /// restart check) runs at most every 100 ms, not after every batch of messages, which made a step
    /// O(workers²) with hundreds of workers answering one by one.
    func collect(_ kind: Wire.Kind, from ids: [Int], deadline: Double, stepOf: Int? = nil) throws -> [Int: Inbound] {
        var got: [Int: Inbound] = [:]
        let wanted = Set(ids)
        let start = Date()
        var lastScan = start
        while got.count < ids.count {
            for inbound in try pump(timeoutMs: 100).messages {
                let id = inbound.worker, msg = inbound.message
                guard wanted.contains(id) else { continue }
                if msg.kind == kind {
                    if let expected = stepOf, let body = inbound.stepDone, body.step != expected {
                        log.warning("dropping a stale \(kind) for step \(body.step) from worker \(id)")
                        continue
                    }
                    got[id] = inbound
                    continue
                }
                if msg.kind == .failure { throw lost(failure: msg, from: id) }
                log.warning("unexpected \(msg.kind) from worker \(id) while waiting for \(kind)")
            }
            let now = Date()
            guard got.count < ids.count else { break }
            if now.timeIntervalSince(lastScan) >= 0.1 {
                lastScan = now
                for id in ids where got[id] == nil {
                    guard let m = members[id] else { throw WorkerLost(workerId: id, reason: "gone") }
                    if now.timeIntervalSince(m.lastSeen) > config.lostAfterSeconds {
                        throw WorkerLost(workerId: id, reason: "no heartbeat for \(config.lostAfterSeconds) s")
                    }
                }
                local?.restartDead()
            }
            if now.timeIntervalSince(start) > deadline {
                throw lost(waitingFor: kind, missing: ids.filter { got[$0] == nil }, deadline: deadline)
            }
            if StopRequest.isSet && kind == .ready { throw StopBeforeStart() }
        }
        return got
    }

    /// Who a `failure` message from worker `id` loses. A failure caused by a neighbour's data message is
    /// the sender's fault, not the reporter's. Only a neighbour's key can reach a data socket (its ZAP
    /// handler admits no other), so a failure naming any other key is the reporter's own fault (a lie or a bug).
    func lost(failure msg: WireMessage, from id: Int) -> WorkerLost {
        let f = try? msg.decode(Failure.self)
        let reason = PeerText.escape(f?.reason ?? "failure")
        guard let key = f?.peerKey else { return WorkerLost(workerId: id, reason: reason) }
        let reporter = members[id]?.name ?? "worker \(id)"
        guard let culprit = members.first(where: { $0.value.hello.publicKey == key })?.key, culprit != id,
            let a = slots.firstIndex(of: id), let b = slots.firstIndex(of: culprit),
            (a / stages == b / stages && abs(a % stages - b % stages) == 1) || (a % stages == b % stages)
        else {
            return WorkerLost(
                workerId: id, reason: "blames CURVE key \(PeerText.escape(key, limit: 48)), which is none of its neighbours': \(reason)")
        }
        return WorkerLost(workerId: culprit, reason: "sent \(reporter) a bad data message: \(reason)")
    }

    /// The `missing` workers sent no `kind` within `deadline`: the hang is diagnosed, logged as an event,
    /// and the worker it blames is lost.
    func lost(waitingFor kind: Wire.Kind, missing: [Int], deadline: Double) -> WorkerLost {
        let (culprit, why, waits) = diagnoseHang(missing: missing)
        runLog.event(
            "hang",
            [
                ("waiting_for", .string("\(kind)")),
                ("workers", .array(missing.map { .string(members[$0]?.name ?? "?") })),
                ("status", .array(missing.map { .string(status[$0] ?? "unknown") })),
                ("waits", .array(waits)), ("blamed", .string(members[culprit]?.name ?? "?")),
            ])
        return WorkerLost(workerId: culprit, reason: "no \(kind) within \(Int(deadline)) s: \(why)")
    }

    /// A step is past its deadline: asks every worker of the layout what it waits for (micro-batch, peer,
    /// since when), logs who waits on whom, and follows the waits from the first late worker to the one
    /// that waits on nobody: that one is blamed (a cycle, or no answers, blames the first late worker).
    func diagnoseHang(missing: [Int]) -> (culprit: Int, why: String, waits: [JSONValue]) {
        let layout = slots.compactMap { $0 }
        probeAnswers = [:]
        for id in layout {
            guard let hb = heartbeatIdentity[id] else { continue }
            socket.sendNow([hb] + WireMessage(.heartbeat, Heartbeat(workerId: id, coordinator: instance, probe: true)).frames)
        }
        let asked = Date()
        while Date().timeIntervalSince(asked) < 2 && probeAnswers.count < layout.count { _ = try? pump(timeoutMs: 50) }
        func place(_ id: Int) -> (stage: Int, replica: Int)? { slots.firstIndex(of: id).map { ($0 % stages, $0 / stages) } }
        func worker(stage: Int, replica: Int) -> Int? {
            guard (0..<stages).contains(stage), (0..<config.replicas).contains(replica) else { return nil }
            return slots[replica * stages + stage]
        }
        func name(_ id: Int) -> String { members[id]?.name ?? "worker \(id)" }
        var waitsOn: [Int: Int] = [:]
        var waits: [JSONValue] = []
        for id in layout {
            guard let (stage, replica) = place(id) else { continue }
            var fields: [(String, JSONValue)] = [("worker", .string(name(id))), ("stage", .int(stage)), ("replica", .int(replica))]
            switch probeAnswers[id] {
            case .none:
                log.warning("hang: \(name(id)) (stage \(stage + 1), replica \(replica)) did not answer the probe")
                fields.append(("answer", .string("none")))
            case .some(.none):
                log.warning("hang: \(name(id)) (stage \(stage + 1), replica \(replica)) waits on nobody (\(status[id] ?? "no status"))")
                fields.append(("answer", .string("not waiting")))
            case .some(.some(let w)):
                let from = w.fromReplica.flatMap { worker(stage: w.fromStage, replica: $0) }
                if let from { waitsOn[id] = from }
                let whom = from.map { "\(name($0)) (stage \(w.fromStage + 1))" } ?? "stage \(w.fromStage + 1)"
                let what = w.what == .reduce ? "the gradient reduce" : "the \(w.what.rawValue) of micro-batch \(w.microBatch)"
                let seconds = String(format: "%.1f", w.seconds)
                let who = "\(name(id)) (stage \(stage + 1), replica \(replica))"
                log.warning("hang: \(who) waits for \(what) of step \(w.step) from \(whom) for \(seconds) s")
                fields += [
                    ("waiting_for", .string(w.what.rawValue)), ("micro_batch", .int(w.microBatch)), ("step", .int(w.step)),
                    ("from", .string(from.map(name) ?? "?")), ("seconds", .double(w.seconds)),
                ]
            }
            waits.append(.object(fields))
        }
        guard let first = missing.first else { return (layout.first ?? -1, "no worker is late", waits) }
        var at = first, seen: Set<Int> = [first]
        while let next = waitsOn[at] {
            guard !seen.contains(next) else { return (first, "circular wait starting at \(name(first))", waits) }
            seen.insert(next)
            at = next
        }
        if at == first {
            let said = probeAnswers[first] == nil ? "did not answer what it waits for" : "waits on nobody"
            return (first, "\(name(first)) \(said) (\(status[first] ?? "no status"))", waits)
        }
        let through = seen.count > 2 ? " through \(seen.count - 2) other worker(s)" : ""
        return (at, "\(name(at)) waits on nobody, and \(name(first)) waits on it\(through)", waits)
    }

    /// Receives what is waiting (up to `timeoutMs` for the first message): answers heartbeats, admits
    /// or refuses hellos, refuses malformed input with a logged reason, and returns the rest. Checks in
    /// the order protocol.md gives ("What the coordinator refuses").
    func pump(timeoutMs: Int) throws -> (messages: [Inbound], joined: [Int]) {
        var out: [Inbound] = [], joined: [Int] = []
        reportRefusedConnections()
        expireSpares()
        var wait = timeoutMs
        while socket.poll(timeoutMs: wait) {
            wait = 0
            let (frames, sender) = try socket.receiveWithSender(maxParts: Wire.maxParts)
            guard frames.count >= 2 else { continue }
            let identity = frames[0]
            guard budget.spend(sender.key ?? hex(identity)) else {  // a flood: dropped unread, told once in a while
                tell(
                    peer: peerName(identity, sender), reason: "over its message budget (\(Int(budget.rate)) a second): dropped unread",
                    event: "over its message budget", sender: sender)
                continue
            }
            let msg: WireMessage
            var stepDone: StepDone?, heartbeat: Heartbeat?
            do {
                msg = try WireMessage(frames: Array(frames.dropFirst()))
                // The kinds every worker sends every step or half second are decoded once, here, and handed
                // on (decoding the same JSON four times was most of the coordinator's step at 256 workers).
                switch msg.kind {
                case .stepDone: stepDone = try msg.decode(StepDone.self)
                case .heartbeat: heartbeat = try msg.decode(Heartbeat.self)
                default: try msg.checkBody()
                }
            } catch {
                refuse(identity, "\(error)", sender: sender)
                continue
            }
            if let hb = heartbeat {
                answer(hb, identity, sender)
                continue
            }
            if msg.kind == .hello {
                if let id = admit(identity, msg, sender: sender) { joined.append(id) }
                continue
            }
            guard let id = identities[identity] else {
                // Also what a live worker of a coordinator that was killed and restarted sends first (its
                // last stepDone): it is told to join again, not sent away.
                refuse(identity, "\(msg.kind) from a peer that has not joined", sender: sender, rejoin: true)
                continue
            }
            if let claimed = stepDone?.workerId ?? msg.claimedWorkerId, claimed != id {
                refuse(
                    identity, "\(msg.kind) names worker \(claimed) but comes from worker \(id) (spoofed id)", sender: sender, answer: false)
                continue
            }
            members[id]!.lastSeen = Date()
            out.append(Inbound(worker: id, message: msg, stepDone: stepDone))
        }
        return (out, joined)
    }

    /// Logs the connections refused before any message: keys ZAP did not admit, handshakes that failed
    /// (plain text or garbage at a CURVE socket), and how many refusals were not logged one by one.
    func reportRefusedConnections() {
        for d in ZAPHandler.shared.takeDenied() {
            tell(
                peer: "address \(d.address)", reason: "CURVE key \(PeerText.escape(d.key, limit: 48)) is not admitted",
                event: "key not admitted",
                sender: ZMQSocket.Sender(key: d.key, address: d.address), what: "a connection")
        }
        for (peer, n) in refusals.closedWindows() {
            log.warning("refused \(n) more message(s) from \(peer) in the last \(Int(refusals.window)) s (not logged one by one)")
            runLog.event(
                "refused", [("peer", .string(peer)), ("reason", .string("more refusals, not logged one by one")), ("suppressed", .int(n))])
        }
        while let m = monitor, m.poll(timeoutMs: 0), let event = try? m.receive(), event.count >= 2, event[0].count >= 6 {
            let id = UInt16(event[0][event[0].startIndex]) | UInt16(event[0][event[0].startIndex + 1]) << 8
            let value = event[0].dropFirst(2).prefix(4).enumerated().reduce(UInt32(0)) {
                $0 | UInt32($1.element) << (8 * UInt32($1.offset))
            }
            let what =
                Int32(id) == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                ? "handshake failed (ZMTP protocol error 0x\(String(value, radix: 16)): plain text at a CURVE socket, another "
                    + "protocol, or garbage)"
                : "handshake failed (\(String(cString: zmq_strerror(Int32(bitPattern: value)))))"
            tell(
                peer: "a client of \(PeerText.escape(String(decoding: event[1], as: UTF8.self), limit: 80))", reason: what,
                event: "handshake failed",
                sender: nil, what: "a connection")
        }
    }

    /// Answers a heartbeat (never blocking on a peer that does not read) and notes what it tells of its
    /// worker: alive, its status, its answer to a hang probe. One that names another worker is refused.
    func answer(_ hb: Heartbeat, _ identity: Data, _ sender: ZMQSocket.Sender) {
        if let m = members[hb.workerId] {
            // The heartbeat socket is not the control socket: its key tells whose it is (CURVE).
            guard options.security == .plaintext || m.hello.publicKey == sender.key else {
                refuse(
                    identity, "heartbeat names worker \(hb.workerId) (\(m.name)) but comes from another key (spoofed id)",
                    sender: sender,
                    answer: false)
                return
            }
            members[hb.workerId]!.lastSeen = Date()
            if let s = hb.status { status[hb.workerId] = PeerText.escape(s, limit: 200) }
            heartbeatIdentity[hb.workerId] = identity
            if hb.answer == true { probeAnswers[hb.workerId] = .some(hb.wait) }
        }
        // Never blocks on a peer that does not read.
        socket.sendNow([identity] + WireMessage(.heartbeat, Heartbeat(workerId: -1, coordinator: instance)).frames)
    }

    /// A message from a joined worker, its body checked; a stepDone's body already decoded.
    struct Inbound { var worker: Int; var message: WireMessage; var stepDone: StepDone? }

    func hex(_ identity: Data) -> String { identity.map { String(format: "%02x", $0) }.joined() }

    func peerName(_ identity: Data, _ sender: ZMQSocket.Sender?) -> String {
        identities[identity].flatMap { members[$0]?.name } ?? "peer \(hex(identity))"
    }

    /// Refuses a message: a one-line reason in the log and a `refused` event (rate-limited per peer),
    /// and (`answer`) a `reject` — or a `reset` asking it to join, for a peer that has not joined.
    func refuse(
        _ identity: Data, _ reason: String, sender: ZMQSocket.Sender? = nil, rejoin: Bool = false,
        retryAfter: Double? = nil, answer: Bool = true
    ) {
        tell(peer: peerName(identity, sender), reason: reason, event: reason, sender: sender)
        guard answer else { return }
        let msg =
            rejoin
            ? WireMessage(.reset, Reset(reason: reason, rejoin: true))
            : WireMessage(.reject, Reject(reason: reason, retryAfter: retryAfter))
        socket.sendNow([identity] + msg.frames)
    }

    /// Logs a refusal (of `what`: a message or a connection) unless its peer has had its share this window.
    func tell(peer: String, reason: String, event: String, sender: ZMQSocket.Sender?, what: String = "a message") {
        guard refusals.admit(sender?.key ?? sender?.address ?? peer) else { return }
        var from = peer
        if let a = sender?.address, !peer.contains(a) { from += " at \(PeerText.escape(a, limit: 64))" }
        if let k = sender?.key, !reason.contains(k) { from += " (key \(PeerText.escape(k, limit: 48)))" }
        log.warning("refused \(what) from \(from): \(reason)")
        var fields: [(String, JSONValue)] = [("peer", .string(peer)), ("reason", .string(event))]
        if let a = sender?.address { fields.append(("address", .string(PeerText.escape(a, limit: 64)))) }
        if let k = sender?.key { fields.append(("key", .string(PeerText.escape(k, limit: 48)))) }
        runLog.event("refused", fields)
    }

    /// A fault of `peer`: a strike; from the second one (until a step completes) it is quarantined.
    func strike(_ peer: String, name: String, reason: String, weight: Int = 1) {
        let (strikes, seconds) = quarantine.strike(peer, weight: weight)
        guard seconds > 0 else { return }
        log.warning("\(name) (\(peer)) quarantined for \(Int(seconds)) s after \(strikes) faults; the last: \(reason)")
        runLog.event(
            "quarantine",
            [
                ("worker", .string(name)), ("peer", .string(peer)), ("seconds", .double(seconds)),
                ("strikes", .int(strikes)), ("reason", .string(reason)),
            ])
    }

    /// Drops spares (members without an assignment being watched) silent for `cluster.lost_after_s`: the
    /// coordinator never assigns a worker it has not heard from lately, and forgets the dead ones.
    /// At most every 100 ms (it scans every member; pump runs once per batch of messages).
    func expireSpares() {
        let now = Date()
        guard now >= nextExpiryScan else { return }
        nextExpiryScan = now.addingTimeInterval(0.1)
        let watched = assigned ? Set(slots.compactMap { $0 }) : []
        for (id, m) in members where !watched.contains(id) && now.timeIntervalSince(m.lastSeen) > config.lostAfterSeconds {
            let reason = "no heartbeat for \(config.lostAfterSeconds) s"
            log.warning("worker \(m.name) on \(m.host) expired: \(reason)")
            runLog.event("expired", [("worker", .string(m.name)), ("host", .string(m.host)), ("reason", .string(reason))])
            socket.sendNow([m.identity] + WireMessage(.reset, Reset(reason: "expired: \(reason)", rejoin: true)).frames)
            identities[m.identity] = nil
            members[id] = nil
            status[id] = nil
            heartbeatIdentity[id] = nil
        }
    }

    func admit(_ identity: Data, _ msg: WireMessage, sender: ZMQSocket.Sender) -> Int? {
        guard let hello = try? msg.decode(Hello.self) else { refuse(identity, "malformed hello", sender: sender); return nil }
        guard hello.protocolVersion == Int(Wire.version) else {
            refuse(
                identity, "protocol version \(hello.protocolVersion) is not supported (this coordinator speaks \(Wire.version))",
                sender: sender)
            return nil
        }
        let who = "\(PeerText.escape(hello.name, limit: 64))@\(PeerText.escape(hello.host, limit: 64))"
        guard hello.secret == options.secret else { refuse(identity, "wrong cluster secret from \(who)", sender: sender); return nil }
        if let violation = HelloLimits.violation(hello) { refuse(identity, violation, sender: sender); return nil }
        if options.security != .plaintext {
            // A CURVE hello names the key it authenticated with: the data sockets of its neighbours will
            // admit and check exactly that key. Anything else is this peer's fault.
            guard let key = sender.key else {
                refuse(identity, "hello from \(who) without an authenticated CURVE key", sender: sender); return nil
            }
            guard hello.publicKey == key else {
                let said = hello.publicKey.map { "CURVE key \($0)" } ?? "no CURVE public key"
                let reason = "hello from \(who) carries \(said), but it authenticated with key \(key)"
                refuse(identity, reason, sender: sender)
                strike(key, name: PeerText.escape(hello.name, limit: 64), reason: reason, weight: 2)
                return nil
            }
        }
        let principal = sender.key ?? "name \(hello.name)"
        if let left = quarantine.remaining(principal) {
            refuse(
                identity, "\(who) is quarantined for \(Int(left.rounded(.up))) s more (repeated faults)", sender: sender, retryAfter: left)
            return nil
        }
        guard identities[identity] == nil else { refuse(identity, "\(who) has already joined", sender: sender); return nil }
        // One live worker per key and per name: a second is told to come back once the first is gone
        // (lost or expired after cluster.lost_after_s without a heartbeat).
        let retry = min(max(config.lostAfterSeconds / 2, 0.5), 5)
        if let key = sender.key, let holder = members.values.first(where: { $0.hello.publicKey == key }) {
            refuse(
                identity, "CURVE key \(key) already has a live worker (\(holder.name)); one worker per key", sender: sender,
                retryAfter: retry)
            return nil
        }
        if let holder = members.values.first(where: { $0.hello.name == hello.name }) {
            refuse(identity, "worker name \(holder.name) is taken by a live worker on \(holder.host)", sender: sender, retryAfter: retry)
            return nil
        }
        let id = nextWorkerId
        nextWorkerId += 1
        members[id] = Member(identity: identity, hello: hello, lastSeen: Date())
        identities[identity] = id
        let m = members[id]!
        log.info("worker \(m.name) joined from \(m.host) (\(hello.cores) cores)")
        var fields: [(String, JSONValue)] = [
            ("worker", .string(m.name)), ("host", .string(m.host)), ("cores", .int(hello.cores)),
            ("data", .string(PeerText.escape(hello.dataEndpoint))),
        ]
        if let k = hello.publicKey { fields.append(("key", .string(k))) }
        runLog.event("join", fields)
        return id
    }
}
