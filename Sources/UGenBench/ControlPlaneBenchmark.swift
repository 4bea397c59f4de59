import Foundation
import UGenCluster
import UGenTraining

/// How many workers one coordinator can drive (`ugen-coord bench --control-plane 16,32,…`).
///
/// A real coordinator (this process, CURVE as in production, the dataset read each step) drives N
/// `SimulatedWorkers` hosted by one helper process, which answer every step order at once. So a step
/// takes what the coordinator needs to send N step orders, take N stepDones, combine them, send N applies
/// and log the step, plus the helper's turn on a shared machine. Measured over the timed steps only (a
/// hook at each step's end): steps per second, this process's CPU time per step (getrusage: the
/// coordinator's thread, ZeroMQ's I/O threads with the CURVE encryption, the ZAP handler), the
/// coordinator thread's own CPU time, and the helper's (from /proc).
public enum ControlPlaneBenchmark {
    public struct Options: Sendable {
        public var dataDir = "data/tokenized"
        public var stages = 2
        public var microBatches = 4
        public var warmupSteps = 10
        public var timedSteps = 100
        /// The helper: an executable and the arguments before `--coord …` (e.g. ugen-coord simulate-workers).
        public var helper: [String] = []
        public init() {}
    }

    public struct Row: Codable, Sendable {
        public var workers: Int
        public var stages: Int
        public var replicas: Int
        public var timedSteps: Int
        public var stepsPerS: Double
        public var stepMsMedian: Double
        public var stepMsMax: Double
        /// getrusage(RUSAGE_SELF) user + system over the timed steps, per step.
        public var coordinatorCpuMsPerStep: Double
        /// CLOCK_THREAD_CPUTIME_ID of the coordinator's thread, per step.
        public var coordinatorThreadCpuMsPerStep: Double
        /// The helper process hosting the simulated workers (utime + stime from /proc, 10 ms ticks), per step.
        public var helperCpuMsPerStep: Double
    }

    /// The run configuration: configs/tiny.yaml's model and vocabulary schedule over the dataset,
    /// `micro_batches` rows of 64 tokens per replica.
    static func config(_ o: Options, workers: Int) throws -> RunConfig {
        let replicas = workers / o.stages
        return try RunConfig.parse(
            yaml: "", source: "control-plane bench",
            overrides: [
                "model.d_model=64", "model.n_layers=4", "model.n_heads=4", "model.n_kv_heads=2", "model.ffn_hidden=172",
                "model.max_seq_len=128", "data.dir=\(o.dataDir)", "data.seq_len=64", "data.batch_rows=\(replicas * o.microBatches)",
                "train.steps=\(o.warmupSteps + o.timedSteps)", "train.warmup_steps=2", "train.checkpoint_every=0",
                "train.log_every=1000000", "vocab_schedule.kind=progressive", "vocab_schedule.text_only_steps=2",
                "vocab_schedule.start=16", "vocab_schedule.every=2", "vocab_schedule.add=16",
                "cluster.stages=\(o.stages)", "cluster.replicas=\(replicas)", "cluster.micro_batches=\(o.microBatches)",
                "cluster.lost_after_s=30",
            ])
    }

    /// One coordinator run with `workers` simulated workers, in `directory`.
    public static func measure(workers: Int, _ o: Options, directory: String) throws -> Row {
        guard workers % o.stages == 0 else { throw BenchError.controlPlane("\(workers) workers do not divide into \(o.stages) stages") }
        let config = try config(o, workers: workers)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let coordKeys = try CurveKeyPair.generate()
        let keys = try (0..<workers).map { _ in try CurveKeyPair.generate() }
        let keyFile = directory + "/worker-keys"
        try keys.map(\.secretKey).joined(separator: "\n").write(toFile: keyFile, atomically: true, encoding: .utf8)
        chmod(keyFile, 0o600)

        var options = Coordinator.Options(config: config, runDirectory: directory + "/run")
        options.bind = "tcp://127.0.0.1:0"
        options.security = .curve(coordKeys)
        options.authorizedKeys = Set(keys.map(\.publicKey))
        guard let exe = o.helper.first, FileManager.default.isExecutableFile(atPath: exe) else {
            throw BenchError.controlPlane("no helper executable \(o.helper.first ?? "(none)")")
        }
        let coordinator = try Coordinator(options)
        let helper = Process()
        // The coordinator would wait for its workers for ever: when the helper cannot start, or exits
        // before the run is over, the coordinator is asked to stop (and the run counts as failed).
        StopRequest.clear()
        let over = LockedBox(false)
        helper.terminationHandler = { _ in if !over.with({ $0 }) { StopRequest.set() } }
        defer { if helper.isRunning { helper.terminate() } }
        coordinator.onBound = { endpoint in
            helper.executableURL = URL(fileURLWithPath: exe)
            helper.arguments =
                Array(o.helper.dropFirst()) + [
                    "--coord", endpoint, "--coord-key", coordKeys.publicKey,
                    "--keys", keyFile, "--count", String(workers),
                ]
            if (try? helper.run()) == nil { StopRequest.set() }
        }
        var samples = StepSamples(capacity: config.steps + 1)
        coordinator.onStep = { step in
            if step == o.warmupSteps || step == config.steps { samples.helperTicks.append(Self.processTicks(helper.processIdentifier)) }
            samples.take(at: step)
        }
        let outcome = try coordinator.run()
        over.with { $0 = true }
        helper.waitUntilExit()
        StopRequest.clear()
        guard outcome == .finished(step: config.steps) else {
            throw BenchError.endedEarly("control-plane run with \(workers) workers: \(outcome)")
        }
        guard helper.terminationStatus == 0 else {
            throw BenchError.controlPlane("the simulated workers' process exited with \(helper.terminationStatus)")
        }
        return samples.row(workers: workers, stages: o.stages, from: o.warmupSteps, to: config.steps)
    }

    /// utime + stime of a process in clock ticks (/proc/PID/stat fields 14 and 15).
    static func processTicks(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command's ")": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) 12.
        guard fields.count > 12, let u = Int(fields[11]), let s = Int(fields[12]) else { return 0 }
        return u + s
    }

    /// Wall clock, process CPU and thread CPU at the end of each step (index = steps done).
    struct StepSamples {
        var wall: [Double] = [], processCPU: [Double] = [], threadCPU: [Double] = []
        var helperTicks: [Int] = []

        /// Room for `capacity` steps (index = steps done; NaN until taken: a missed step shows as NaN).
        init(capacity: Int) {
            wall = Array(repeating: .nan, count: capacity); processCPU = wall; threadCPU = wall
        }

        mutating func take(at i: Int) {
            guard i < wall.count else { return }
            var ts = timespec(), ru = rusage()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            wall[i] = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
            getrusage(RUSAGE_SELF.rawValue, &ru)
            processCPU[i] = Double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + Double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            threadCPU[i] = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }

        func row(workers: Int, stages: Int, from a: Int, to b: Int) -> Row {
            let n = Double(b - a)
            let stepMs = (a..<b).map { (wall[$0 + 1] - wall[$0]) * 1000 }.sorted()
            let ticks = helperTicks.count == 2 ? Double(helperTicks[1] - helperTicks[0]) : .nan
            return Row(
                workers: workers, stages: stages, replicas: workers / stages, timedSteps: b - a,
                stepsPerS: n / (wall[b] - wall[a]), stepMsMedian: stepMs[stepMs.count / 2], stepMsMax: stepMs.last ?? 0,
                coordinatorCpuMsPerStep: (processCPU[b] - processCPU[a]) * 1000 / n,
                coordinatorThreadCpuMsPerStep: (threadCPU[b] - threadCPU[a]) * 1000 / n,
                helperCpuMsPerStep: ticks * 1000 / Double(sysconf(Int32(_SC_CLK_TCK))) / n)
        }
    }
}
