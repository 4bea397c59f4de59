import ArgumentParser
import Foundation
import UGenCluster

/// `ugen-worker join`: one pipeline stage of a UGen training run, on this machine.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ugen-worker", abstract: "A UGen cluster worker: runs the pipeline stage the coordinator assigns it.",
        subcommands: [Join.self])
}

struct Join: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Join a coordinator and train until it says the run is over.",
        discussion: "Workers need no copy of the dataset: the coordinator sends each step's token ids and targets. "
            + "A worker that loses the coordinator keeps trying to rejoin (see --give-up-after).")

    @Option(help: "The coordinator's control endpoint, e.g. tcp://10.0.0.1:5555.") var coord: String
    @Option(help: "BLAS threads for this worker (default: the run's cluster.threads_per_worker is advisory; this wins).")
    var threads: Int = 1
    @Option(help: "A name for logs and the dashboard (default: HOST-PID).") var name: String?
    @Option(help: "The cluster secret (or UGEN_SECRET in the environment).") var secret: String?
    @Option(help: "The address neighbours use to reach this worker (default: this host's name, or 127.0.0.1 for a loopback coordinator).")
    var advertise: String?
    @Option(help: "Seconds without the coordinator before this worker considers it gone and tries to rejoin.")
    var coordinatorTimeout: Double = 10
    @Option(help: "This worker's CURVE secret key file (or UGEN_CURVE_SECRET_KEY).") var key: String?
    @Option(help: "The coordinator's CURVE public key: a .pub file or the 40-character key (or UGEN_COORD_PUBLIC_KEY).")
    var coordKey: String?
    @Option(help: "Stop trying to rejoin a lost coordinator after this many seconds (0: never give up).") var giveUpAfter: Double = 120

    func run() throws {
        // A worker the coordinator started itself ignores the terminal's Ctrl-C (the coordinator stops it
        // cleanly) and does not outlive its coordinator.
        let local = ProcessInfo.processInfo.environment["UGEN_LOCAL_WORKER"] == "1"
        let parent = getppid()
        if local {
            signal(SIGINT, SIG_IGN)
            // Dies with its coordinator, even one killed with SIGKILL (the kernel signals it); if the
            // coordinator was already gone before this line, the parent has changed: exit now.
            LocalWorkers.dieWithParent()
            if let coordinator = ProcessInfo.processInfo.environment["UGEN_COORD_PID"].flatMap(Int32.init), getppid() != coordinator {
                print("coordinator process gone; exiting")
                return
            }
        }
        let host = ProcessInfo.processInfo.hostName
        var options = Worker.Options(
            coordinator: coord, name: name ?? "\(host)-\(getpid())", threads: threads,
            secret: secret ?? ProcessInfo.processInfo.environment["UGEN_SECRET"] ?? "",
            advertise: advertise, coordinatorTimeout: coordinatorTimeout)
        try setKeys(&options)
        var lostSince: Date?
        while true {
            let outcome: Worker.Outcome
            let started = Date()
            do { outcome = try Worker(options).run() } catch {
                FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
                throw ExitCode(1)
            }
            switch outcome {
            case .finished: Worker.flushBeforeExit(); return
            case .rejected: throw ExitCode(2)
            case .deferred(_, let seconds):  // quarantined, or its name or key still held: try again later
                lostSince = nil
                usleep(UInt32(max(0.1, seconds) * 1_000_000))
            case .dropped:  // declared lost while alive (e.g. a hung step): join again at once, as a new worker
                lostSince = nil
                continue
            case .coordinatorLost:
                if local && getppid() != parent { print("coordinator process gone; exiting"); return }
                if Date().timeIntervalSince(started) > 3 * coordinatorTimeout { lostSince = nil }  // it was working
                let since = lostSince ?? Date()
                lostSince = since
                if giveUpAfter > 0 && Date().timeIntervalSince(since) > giveUpAfter {
                    let message = "error: coordinator \(coord) gone for \(Int(giveUpAfter)) s; giving up\n"
                    FileHandle.standardError.write(message.data(using: .utf8)!)
                    throw ExitCode(3)
                }
                print("coordinator lost; trying to rejoin \(coord)")
                sleep(1)
            }
        }
    }

    /// With `--key` and `--coord-key` (or their variables), CURVE with those keys; one without the other
    /// is an error (printed, exit 1).
    private func setKeys(_ options: inout Worker.Options) throws {
        let env = ProcessInfo.processInfo.environment
        do {
            let secretKey = try key.map(CurveKeyPair.readKey) ?? env["UGEN_CURVE_SECRET_KEY"]
            // --coord-key is the 40-character key itself, or a file holding it.
            let coordinatorKey =
                try coordKey.map {
                    $0.utf8.count == 40 && !FileManager.default.fileExists(atPath: $0) ? $0 : try CurveKeyPair.readKey($0)
                }
                ?? env["UGEN_COORD_PUBLIC_KEY"]
            switch (secretKey, coordinatorKey) {
            case (let s?, let c?): options.security = .curve(try CurveKeyPair(secretKey: s)); options.coordinatorKey = c
            case (nil, nil): break
            case (_?, nil): throw SecurityError.keyNeedsCoordinatorKey
            case (nil, _?): throw SecurityError.coordinatorKeyNeedsKey
            }
        } catch {
            FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
            throw ExitCode(1)
        }
    }
}

WorkerCommand.main()
