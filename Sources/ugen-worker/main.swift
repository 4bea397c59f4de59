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
        discussion: "Workers need no copy of the dataset: the coordinator sends each step's token ids and targets. A worker that loses the coordinator keeps trying to rejoin (see --give-up-after).")

    @Option(help: "The coordinator's control endpoint, e.g. tcp://10.0.0.1:5555.") var coord: String
    @Option(help: "BLAS threads for this worker (default: the run's cluster.threads_per_worker is advisory; this wins).") var threads: Int = 1
    @Option(help: "A name for logs and the dashboard (default: HOST-PID).") var name: String?
    @Option(help: "The cluster secret (or UGEN_SECRET in the environment).") var secret: String?
    @Option(help: "The address neighbours use to reach this worker (default: this host's name, or 127.0.0.1 for a loopback coordinator).") var advertise: String?
    @Option(help: "Seconds without the coordinator before this worker considers it gone and tries to rejoin.") var coordinatorTimeout: Double = 10
    @Option(help: "Stop trying to rejoin a lost coordinator after this many seconds (0: never give up).") var giveUpAfter: Double = 120

    func run() throws {
        // A worker the coordinator started itself ignores the terminal's Ctrl-C (the coordinator stops it
        // cleanly) and does not outlive its coordinator.
        let local = ProcessInfo.processInfo.environment["UGEN_LOCAL_WORKER"] == "1"
        let parent = getppid()
        if local { signal(SIGINT, SIG_IGN) }
        let host = ProcessInfo.processInfo.hostName
        let options = Worker.Options(coordinator: coord, name: name ?? "\(host)-\(getpid())", threads: threads,
                                     secret: secret ?? ProcessInfo.processInfo.environment["UGEN_SECRET"] ?? "",
                                     advertise: advertise, coordinatorTimeout: coordinatorTimeout)
        var lostSince: Date?
        while true {
            let outcome: Worker.Outcome
            let started = Date()
            do { outcome = try Worker(options).run() } catch {
                FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
                throw ExitCode(1)
            }
            switch outcome {
            case .finished: return
            case .rejected: throw ExitCode(2)
            case .coordinatorLost:
                if local && getppid() != parent { print("coordinator process gone; exiting"); return }
                if Date().timeIntervalSince(started) > 3 * coordinatorTimeout { lostSince = nil }  // it was working
                let since = lostSince ?? Date()
                lostSince = since
                if giveUpAfter > 0 && Date().timeIntervalSince(since) > giveUpAfter {
                    FileHandle.standardError.write("error: coordinator \(coord) gone for \(Int(giveUpAfter)) s; giving up\n".data(using: .utf8)!)
                    throw ExitCode(3)
                }
                print("coordinator lost; trying to rejoin \(coord)")
                sleep(1)
            }
        }
    }
}

WorkerCommand.main()
