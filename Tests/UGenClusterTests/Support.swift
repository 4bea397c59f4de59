import Foundation
import UGenCluster
import UGenData
import UGenKernels
import UGenModel
import UGenStore
import UGenTraining
import XCTest

/// The package root and the build folder the test bundle runs from (the worker executable is there).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

var buildDirectory: URL {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
        Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
        packageRoot.appendingPathComponent(".build/debug"),
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("ugen-worker").path) }
        ?? packageRoot.appendingPathComponent(".build/debug")
}
var workerExecutable: String { buildDirectory.appendingPathComponent("ugen-worker").path }
var coordExecutable: String { buildDirectory.appendingPathComponent("ugen-coord").path }

func temporaryDirectory(_ test: XCTestCase) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ugen-cluster-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

/// A small real dataset (prose + 200 handwritten digits with captions), tokenized once per test run.
enum ClusterDataset {
    nonisolated(unsafe) private static var dir: String?

    static func path() throws -> String {
        if let dir { return dir }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ugen-cluster-data-\(getpid())").path
        try? FileManager.default.removeItem(atPath: root)
        atexit {
            try? FileManager.default.removeItem(
                atPath: FileManager.default.temporaryDirectory.appendingPathComponent("ugen-cluster-data-\(getpid())").path)
        }
        dir = try tokenize(prose, into: root)
        return dir!
    }

    /// `text` and the 200 test digits tokenized into ROOT/tokenized (T = 300, K = 16): its folder.
    static func tokenize(_ text: String, into root: String) throws -> String {
        let raw = root + "/raw"
        try FileManager.default.createDirectory(atPath: raw, withIntermediateDirectories: true)
        let textFile = raw + "/prose.txt"
        try text.write(toFile: textFile, atomically: true, encoding: .utf8)
        let csv = packageRoot.appendingPathComponent("Tests/fixtures/digits-200.csv").path
        let pairs = try Digits.prepare(csv: csv, out: raw + "/digits")
        var o = TokenizeOptions(textFiles: [textFile], pairFiles: [pairs], outDir: root + "/tokenized")
        o.textVocab = 300
        o.codebookSize = 16
        o.kMeansIterations = 4
        o.valFraction = 0.1
        _ = try TokenizeJob.run(o)
        return root + "/tokenized"
    }

    static let prose = """
        The coordinator splits every global batch into micro-batches and sends each pipeline its share. \
        Workers run their stage and pass activations forward and gradients backward to their neighbours.

        A checkpoint holds the parameters, the optimizer moments and where the data stream stands, so a \
        stopped run continues exactly where it left off, on as many stages as the machine has to offer.

        Progressive vocabulary learning switches the visual token ids on a few at a time: first text only, \
        then a handful of image codes, then more, until the whole codebook is live.
        """
}

/// A tiny config over the test dataset.
func tinyConfig(_ overrides: [String] = []) throws -> RunConfig {
    let yaml = """
        model: {d_model: 32, n_layers: 4, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 32}
        data: {seq_len: 32, batch_rows: 8, seed: 3}
        train: {steps: 8, lr: 0.01, warmup_steps: 2, seed: 11, checkpoint_every: 0, log_every: 100}
        vocab_schedule: {kind: progressive, text_only_steps: 2, start: 4, every: 1, add: 4, seed: 5}
        cluster: {stages: 1, replicas: 1, micro_batches: 4, lost_after_s: 20}
        """
    return try RunConfig.parse(yaml: yaml, source: "test", overrides: ["data.dir=\(try ClusterDataset.path())"] + overrides)
}

/// Single-process reference: the loss at every step, and the final parameters.
func referenceRun(_ config: RunConfig, steps: Int? = nil) throws -> (losses: [Double], params: [NamedTensor]) {
    BLAS.setThreads(config.threadsPerWorker)  // bit-equality holds at equal BLAS thread counts (Documentation/architecture.md)
    defer { BLAS.setThreads(ProcessInfo.processInfo.activeProcessorCount) }
    let data = try RunData.open(config)
    let trainer = try Trainer(config: config, model: config.modelConfig(vocabSize: data.vocabSize))
    var losses: [Double] = []
    for s in 0..<(steps ?? config.steps) {
        let batch = try data.source.batch(step: s, textOnly: data.schedule.isTextOnly(step: s))
        let vocab = StepVocab.at(step: s, schedule: data.schedule, vocabSize: data.vocabSize)
        losses.append(trainer.train(batch, vocab: vocab).loss)
    }
    return (losses, trainer.stage.exportParameters())
}

/// A cluster run with real worker processes on loopback; returns the logged losses.
@discardableResult
func clusterRun(
    _ config: RunConfig, run dir: String, resume: String? = nil, stopAfter: Int? = nil,
    workers: Int? = nil
) throws -> (outcome: Coordinator.Outcome, losses: [Double]) {
    var o = Coordinator.Options(config: config, runDirectory: dir)
    o.bind = "tcp://127.0.0.1:0"
    o.localWorkers = workers ?? config.stages * config.replicas
    o.workerExecutable = workerExecutable
    o.resume = resume
    o.stopAfter = stopAfter
    let outcome = try Coordinator(o).run()
    return (outcome, try exactLosses(dir))
}

/// Options for a run on loopback with local worker processes under CURVE, as `ugen-coord start
/// --local-workers` sets it up by default (keys made for the run, no --insecure).
func localCurveOptions(_ config: RunConfig, run dir: String, workers: Int) throws -> Coordinator.Options {
    var o = Coordinator.Options(config: config, runDirectory: dir)
    o.bind = "tcp://127.0.0.1:0"
    o.localWorkers = workers
    o.workerExecutable = workerExecutable
    (o.security, o.authorizedKeys) = try SecurityPolicy.coordinator(
        keyFile: nil, authorized: nil, insecure: false, bind: o.bind, localWorkers: workers, workersNeeded: workers)
    return o
}

/// The `loss` of every metrics line, parsed with Swift's exact decimal reader (Foundation's
/// JSONSerialization on Linux can be off by one ulp on 17-digit numbers).
func exactLosses(_ dir: String) throws -> [Double] {
    let text = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8)
    return text.split(separator: "\n").map { line in
        let after = line.range(of: "\"loss\":")!.upperBound
        let end = line[after...].firstIndex(where: { $0 == "," || $0 == "}" })!
        return Double(line[after..<end])!
    }
}

func metrics(_ dir: String) throws -> [[String: Any]] {
    let text = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8)
    return text.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
}

func events(_ dir: String) throws -> [[String: Any]] {
    let text = (try? String(contentsOfFile: dir + "/events.jsonl", encoding: .utf8)) ?? ""
    return text.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
}

/// Runs an executable to completion; returns (status, stdout, stderr).
func runProcess(_ exe: String, _ args: [String], environment: [String: String] = [:]) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, b in b }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// A coordinator running on a thread of the test, once it has bound its endpoint.
final class RunningCoordinator: @unchecked Sendable {
    let coordinator: Coordinator
    let endpoint: String
    private let thread: Thread
    private let lock = NSLock()
    private let result = Box<Coordinator.Outcome?>(nil)

    init(_ options: Coordinator.Options) throws {
        let c = Box(try Coordinator(options))  // the Box carries it onto the thread (Coordinator is not Sendable)
        let bound = Box<String?>(nil), result = self.result, lock = self.lock
        c.value.onBound = { e in lock.withLock { bound.value = e } }
        let t = Thread {
            let o = try? c.value.run(); lock.withLock { result.value = o }
        }
        t.start()
        while lock.withLock({ bound.value }) == nil && !t.isFinished { usleep(10_000) }
        coordinator = c.value
        thread = t
        endpoint = lock.withLock { bound.value ?? "" }
    }

    var isFinished: Bool { thread.isFinished }

    /// Waits up to `seconds` for the run to end; its outcome, or nil if it failed or has not ended.
    func wait(seconds: Double = 120) -> Coordinator.Outcome? {
        let deadline = Date().addingTimeInterval(seconds)
        while !thread.isFinished && Date() < deadline { usleep(10_000) }
        return lock.withLock { result.value }
    }
}

/// The process exists and is no zombie (an orphan's exit may wait for a reaper that never comes).
func isAlive(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
    return !(stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") ?? true)
}

/// Polls `condition` every 20 ms for up to `seconds`; whether it came true.
func waitUntil(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline { if try condition() { return true }; usleep(20_000) }
    return try condition()
}
