import ArgumentParser
import Foundation
import UGenCluster
import UGenTraining

/// `ugen-coord`: the coordinator of a UGen training run, and the dashboard that follows one.
@main
struct Coord: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ugen-coord", abstract: "The UGen cluster coordinator.",
        subcommands: [Start.self, Keygen.self, DashboardCommand.self, Bench.self, SimulateWorkers.self])
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a config: wait for cluster.stages × cluster.replicas workers, assign stages, drive every step.",
        discussion: """
            Writes RUN/config.yaml, RUN/metrics.jsonl, RUN/events.jsonl and RUN/checkpoints/. SIGINT or SIGTERM \
            saves a checkpoint at the next step boundary and stops the workers; `--resume latest` continues.
            """)

    @Option(help: "The run's YAML config (e.g. configs/tiny.yaml).") var config: String
    @Option(name: .customLong("run"), help: "Run directory (default: runs/<config name>).") var runDirectory: String?
    @Option(name: .customLong("set"), help: "Override a config key: group.key=value (repeatable).") var overrides: [String] = []
    @Option(help: "Control endpoint to bind (port 0: any free port).") var bind: String = "tcp://127.0.0.1:5555"
    @Option(help: "Start this many `ugen-worker join` processes on this machine.") var localWorkers: Int = 0
    @Option(help: "Stop with a checkpoint after this many steps in all (the LR schedule still spans train.steps).") var steps: Int?
    @Option(help: "Continue from a checkpoint: a path, or `latest` (RUN/checkpoints/latest).") var resume: String?
    @Flag(help: "Resume even when the checkpoint was trained on another tokenizer or dataset than data.dir's.") var allowDataChange = false
    @Option(help: "The cluster secret workers must present (or UGEN_SECRET in the environment).") var secret: String?
    @Option(help: "The ugen-worker executable for --local-workers (default: next to ugen-coord).") var workerExecutable: String?
    @Option(help: "The coordinator's CURVE secret key file (from `ugen-coord keygen`).") var key: String?
    @Option(help: "Worker public keys to admit: a .pub file or a directory of them.") var authorizedKeys: String?
    @Flag(
        help: ArgumentHelp(
            "Plain text instead of CURVE (only on loopback). Without keys, a run whose workers are all local "
                + "uses CURVE keys made for the run."))
    var insecure = false

    func run() throws {
        let cfg: RunConfig
        let runDir = runDirectory ?? "runs/" + URL(fileURLWithPath: config).deletingPathExtension().lastPathComponent
        do { cfg = try RunConfig.load(path: config, overrides: overrides) } catch {
            Coordinator.recordFailedStart(runDirectory: runDir, error)
            fail("\(error)")
        }
        var options = Coordinator.Options(config: cfg, runDirectory: runDir)
        options.bind = bind
        options.localWorkers = localWorkers
        options.stopAfter = steps
        options.resume = resume
        options.allowDataChange = allowDataChange
        options.secret = secret ?? ProcessInfo.processInfo.environment["UGEN_SECRET"] ?? ""
        options.workerExecutable = workerExecutable
        do {
            (options.security, options.authorizedKeys) = try SecurityPolicy.coordinator(
                keyFile: key, authorized: authorizedKeys, insecure: insecure, bind: bind, localWorkers: localWorkers,
                workersNeeded: cfg.stages * cfg.replicas)
        } catch {
            Coordinator.recordFailedStart(runDirectory: runDir, error)
            fail("\(error)")
        }
        for s in [SIGINT, SIGTERM] { signal(s) { _ in StopRequest.set() } }
        let outcome: Coordinator.Outcome
        do {
            let c = try Coordinator(options)
            outcome = try c.run()
        } catch { fail("\(error)") }
        switch outcome {
        case .finished(let s): print("run finished at step \(s): \(runDir)")
        case .stopped(let s): print("run stopped at step \(s); continue with --resume latest --run \(runDir)")
        }
    }
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a CURVE key pair: NAME.key (secret, mode 0600) and NAME.pub (public).",
        discussion: "Give the coordinator its .key with --key and the workers' .pub files with --authorized-keys; "
            + "give each worker its own .key with --key and the coordinator's .pub with --coord-key.")

    @Option(help: "Folder to write the keys into.") var out: String = "keys"
    @Argument(help: "Names of the key pairs, e.g. coordinator worker-1 worker-2.") var names: [String] = ["coordinator"]

    func run() throws {
        for name in names {
            do {
                let (sec, pub) = try CurveKeyPair.generate().write(directory: out, name: name)
                print("\(name): \(sec) (secret), \(pub) (public)")
            } catch { fail("\(error)") }
        }
    }
}

/// Prints `message` to stderr as one line and exits with status 1.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(("error: " + message + "\n").data(using: .utf8)!)
    exit(1)
}
