import Foundation
import Logging
import UGenKernels
import UGenModel
import UGenStore
import UGenTraining

/// The cluster's speed, measured with real processes on this machine (`ugen-coord bench`):
///
/// - **Pipeline**: config S's dimensions over the dataset's vocabulary, trained by a real
///   coordinator and real `ugen-worker` processes over ZeroMQ: one stage on one thread, then two stages on
///   one thread each (1F1B, and GPipe for comparison), at `m` micro-batches. Reports tokens/s, the speed-up
///   over one stage, the measured bubble beside the theory (p−1)/(m+p−1), and the time spent moving
///   activations — all read back from the run's own `metrics.jsonl`.
/// - **Checkpoint**: a short config-M run with `train.checkpoint_every`, whose `checkpoint`
///   events give the training time lost per save; then `CheckpointFile.write` and `read` of that run's last
///   (full, with AdamW moments) checkpoint give the file throughput in MB/s, reads both from disk (the
///   file's pages dropped from the page cache first) and from the page cache.
///
/// Nothing here is a constant about the machine: the sgemm ceiling is measured in the same process.
public enum PipelineBenchmark {
    public struct Options: Sendable {
        /// Folder with train.h5 (`make data`).
        public var dataDir = "data/tokenized"
        /// train.precision of the pipeline runs.
        public var precision = Precision.fp32
        public var microBatches = 8
        public var batchRows = 16
        /// Steps thrown away before timing (allocation, first touches), then steps timed.
        public var warmupSteps = 2
        public var timedSteps = 10
        /// Every layout is trained this many times, the layouts taking turns, so a slow spell of a shared
        /// machine falls on all of them alike; each round's speed-up is against the same round's one stage.
        public var rounds = 3
        /// The `ugen-worker` executable (default: next to the running executable).
        public var workerExecutable: String?
        /// Where the runs go (default: a fresh temporary folder, removed afterwards unless `keep`).
        public var directory: String?
        public var keep = false
        // The checkpoint run (config M).
        public var checkpointSteps = 7
        public var checkpointEvery = 2
        public var checkpointBatchRows = 8
        public var checkpointMicroBatches = 4
        public var fileRepeats = 3
        public init() {}
    }

    // MARK: Results

    /// `cblas_sgemm` on 1024² products: one thread alone, and one thread in each of `workers` threads at once
    /// (the ceiling of that many single-threaded workers sharing the machine).
    public struct Sgemm: Codable, Sendable {
        public var one_thread_gflops: Double
        public var concurrent_threads: Int
        public var concurrent_total_gflops: Double
        public var one_thread_after_gflops: Double?
    }

    public struct StageTimes: Codable, Sendable {
        public var stage: Int
        public var layers: String
        public var forward_ms: Double
        public var backward_ms: Double
        public var wait_ms: Double
        public var comm_ms: Double
        /// forward + backward (computing, and sending what was computed).
        public var busy_ms: Double
        /// wait / step time.
        public var wait_share: Double
        /// 1 − busy / step time: waiting, plus the optimizer and the coordinator's round trip.
        public var idle_share: Double
        public var comm_share: Double
    }

    public struct PipelineRun: Codable, Sendable {
        public var name: String
        public var round: Int
        public var stages: Int
        public var schedule: String
        public var threads_per_worker: Int
        public var micro_batches: Int
        public var batch_rows: Int
        public var seq_len: Int
        public var vocab_size: Int
        public var timed_steps: Int
        /// The median of the timed steps.
        public var step_ms: Double
        public var step_ms_min: Double
        public var step_ms_max: Double
        public var tokens_per_s: Double
        public var model_gflops: Double
        /// The measured sgemm rate of the threads this layout uses (1 thread, or `stages` concurrent ones).
        public var sgemm_gflops: Double
        public var ratio_to_sgemm: Double
        /// (p−1)/(m+p−1).
        public var bubble_theory: Double
        /// Mean over stages of wait_ms / step_ms.
        public var bubble_measured: Double
        /// Mean over stages of 1 − busy / step.
        public var idle_measured: Double
        /// Sum over stages of comm_ms, over step_ms (the share of a step's wall time spent in data sends/receives).
        public var comm_share: Double
        public var comm_ms_per_step: Double
        /// Bytes of one activation (or its gradient) between two stages.
        public var activation_bytes: Int
        public var stage_times: [StageTimes]
        public var run_directory: String?
    }

    public struct Speedup: Codable, Sendable {
        public var name: String
        public var round: Int
        public var speedup: Double
        public var target: Double
        /// p·m/(m+p−1): a perfect pipeline with perfectly balanced stages and no overhead.
        public var ceiling_balanced: Double
        /// The same with the measured stage imbalance: Σbusy / max busy · m/(m+p−1), with busy from the run.
        public var ceiling_at_measured_balance: Double
        public var meets_target: Bool
        /// The speed-up, factored exactly: ceiling_balanced × stage_balance × work_ratio × step_vs_model / baseline_busy_share.
        /// mean busy / max busy over the stages (1: equal stages).
        public var stage_balance: Double
        /// The one stage's compute time / the stages' compute time summed (1: cutting the model costs nothing).
        public var work_ratio: Double
        /// (max busy · (m+p−1)/m) / step time: how close the step comes to the pipeline model.
        public var step_vs_model: Double
        /// busy / step time of the one-stage run.
        public var baseline_busy_share: Double
    }

    /// One layout's speed-up over all rounds.
    public struct SpeedupSummary: Codable, Sendable {
        public var name: String
        public var per_round: [Double]
        public var median: Double
        public var target: Double
        /// The median meets the target.
        public var meets_target: Bool
        public var rounds_meeting_target: Int
    }

    public struct PipelineReport: Codable, Sendable {
        public var sgemm: Sgemm
        public var runs: [PipelineRun]
        public var speedups: [Speedup]
        public var summary: [SpeedupSummary]
    }

    public struct CheckpointReport: Codable, Sendable {
        public var model: String
        public var parameters: Int
        public var file_bytes: Int
        public var tensor_bytes: Int
        public var write_mb_per_s: [Double]
        public var read_cold_mb_per_s: [Double]
        public var read_warm_mb_per_s: [Double]
        public var write_ms: [Double]
        public var read_cold_ms: [Double]
        public var read_warm_ms: [Double]
        /// From the run: the `checkpoint` events' `ms` (gather from the workers + write + rotate), steps in between.
        public var run_layout: String
        public var run_checkpoint_ms: [Double]
        public var run_step_ms: Double
        public var checkpoint_every: Int
        /// checkpoint ms / (checkpoint_every · step ms + checkpoint ms).
        public var lost_share: Double
        public var sgemm_one_thread_gflops: Double
        public var run_directory: String?
    }

    // MARK: Pieces

    /// Log only warnings and errors (the coordinator's step lines would drown the table). Call once.
    public static func quietLogs() {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .warning
            return h
        }
    }

    public static func measureSgemm(concurrent: Int, seconds: Double = 1.5) -> Sgemm {
        BLAS.setThreads(1)
        let one = BLAS.measureSgemmGFLOPs(n: 1024, seconds: seconds)
        let box = LockedBox([Double](repeating: 0, count: concurrent))
        DispatchQueue.concurrentPerform(iterations: concurrent) { i in
            let g = BLAS.measureSgemmGFLOPs(n: 1024, seconds: seconds)
            box.with { $0[i] = g }
        }
        return Sgemm(one_thread_gflops: one, concurrent_threads: concurrent, concurrent_total_gflops: box.with { $0.reduce(0, +) },
                     one_thread_after_gflops: nil)
    }

    public static func setup(_ name: String) -> TrainingBenchmark.Setup {
        TrainingBenchmark.setups.first { $0.name == name }!
    }

    /// The run configuration of a setup's dimensions (the vocabulary from the dataset) and a layout.
    static func config(_ s: TrainingBenchmark.Setup, dataDir: String, batchRows: Int, stages: Int, schedule: String,
                       microBatches: Int, steps: Int, checkpointEvery: Int = 0, keep: Int = 3,
                       precision: Precision = .fp32) throws -> RunConfig {
        let m = s.model
        return try RunConfig.parse(yaml: "", source: "bench", overrides: [
            "model.d_model=\(m.dModel)", "model.n_layers=\(m.nLayers)", "model.n_heads=\(m.nHeads)",
            "model.n_kv_heads=\(m.nKVHeads)", "model.ffn_hidden=\(m.ffnHidden)", "model.max_seq_len=\(m.maxSeqLen)",
            "data.dir=\(dataDir)", "data.seq_len=\(s.seqLen)", "data.batch_rows=\(batchRows)",
            "train.steps=\(steps)", "train.warmup_steps=1", "train.checkpoint_every=\(checkpointEvery)",
            "train.keep_checkpoints=\(keep)", "train.log_every=1000000", "train.precision=\(precision.rawValue)",
            "cluster.stages=\(stages)", "cluster.schedule=\(schedule)", "cluster.micro_batches=\(microBatches)",
            "cluster.threads_per_worker=1",
            // A step of config M on one thread takes seconds; give heartbeats room on a busy 2-core machine.
            "cluster.lost_after_s=30",
        ])
    }

    /// Trains `config` with a coordinator in this process and its local worker processes (their output
    /// goes to RUN/worker-N.log). Returns the resolved model.
    @discardableResult
    static func train(_ config: RunConfig, runDirectory: String, workerExecutable: String?) throws -> ModelConfig {
        try? FileManager.default.removeItem(atPath: runDirectory)
        try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        var o = Coordinator.Options(config: config, runDirectory: runDirectory)
        o.bind = "tcp://127.0.0.1:0"
        o.secret = ProcessInfo.processInfo.environment["UGEN_SECRET"] ?? ""
        o.localWorkers = config.stages * config.replicas
        o.workerExecutable = workerExecutable
        o.localWorkerLogs = runDirectory
        let coordinator = try Coordinator(o)
        let outcome = try coordinator.run()
        guard outcome == .finished(step: config.steps) else { throw ConfigError("bench run ended early: \(outcome)") }
        return coordinator.model
    }

    /// One line of a JSON-lines file per element.
    static func jsonLines(_ path: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return text.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    static func number(_ v: Any?) -> Double { (v as? Double) ?? (v as? Int).map(Double.init) ?? (v as? NSNumber)?.doubleValue ?? .nan }

    // MARK: Pipeline

    public static func pipeline(_ opt: Options, root: String, progress: (String) -> Void) throws -> PipelineReport {
        let s = setup("S")
        progress("measuring sgemm (1 thread, and 2 threads at once) …")
        var sgemm = measureSgemm(concurrent: 2)
        let layouts: [(String, Int, String)] = [("1 stage × 1 thread", 1, "1f1b"), ("2 stages × 1 thread, zero bubble", 2, "zb"),
                                                ("2 stages × 1 thread, 1F1B", 2, "1f1b"), ("2 stages × 1 thread, GPipe", 2, "gpipe")]
        var runs: [PipelineRun] = [], speedups: [Speedup] = []
        for round in 1...max(1, opt.rounds) {
            var roundRuns: [PipelineRun] = []
            for (name, p, schedule) in layouts {
                progress("round \(round)/\(opt.rounds): config S \(opt.precision.rawValue), \(name), \(opt.microBatches) micro-batches, \(opt.warmupSteps) + \(opt.timedSteps) steps …")
                let cfg = try config(s, dataDir: opt.dataDir, batchRows: opt.batchRows, stages: p, schedule: schedule,
                                     microBatches: opt.microBatches, steps: opt.warmupSteps + opt.timedSteps, precision: opt.precision)
                let dir = root + "/pipeline-\(p)-\(schedule)-round\(round)"
                let model = try train(cfg, runDirectory: dir, workerExecutable: opt.workerExecutable)
                roundRuns.append(try summarize(name: name, round: round, config: cfg, model: model, runDirectory: dir, warmup: opt.warmupSteps,
                                               sgemm: p == 1 ? sgemm.one_thread_gflops : sgemm.concurrent_total_gflops * Double(p) / Double(sgemm.concurrent_threads),
                                               keep: opt.keep))
            }
            speedups += speedupsOverOneStage(roundRuns, round: round)
            runs += roundRuns
        }
        BLAS.setThreads(1)
        sgemm.one_thread_after_gflops = BLAS.measureSgemmGFLOPs(n: 1024, seconds: 1.5)
        let summary = layouts.dropFirst().map { layout -> SpeedupSummary in
            let values = speedups.filter { $0.name == layout.0 }.map(\.speedup)
            let m = median(values)
            return SpeedupSummary(name: layout.0, per_round: values, median: m, target: 1.8, meets_target: m >= 1.8,
                                  rounds_meeting_target: values.filter { $0 >= 1.8 }.count)
        }
        return PipelineReport(sgemm: sgemm, runs: runs, speedups: speedups, summary: summary)
    }

    /// Each multi-stage run of a round against that round's one-stage run, with the speed-up factored.
    static func speedupsOverOneStage(_ runs: [PipelineRun], round: Int) -> [Speedup] {
        let base = runs[0]
        return runs.dropFirst().map { r -> Speedup in
            let p = Double(r.stages), m = Double(r.micro_batches)
            let busy = r.stage_times.map(\.busy_ms)
            let atBalance = busy.reduce(0, +) / (busy.max() ?? 1) * m / (m + p - 1)
            let sp = r.tokens_per_s / base.tokens_per_s
            let busy1 = base.stage_times.map(\.busy_ms).reduce(0, +)
            return Speedup(name: r.name, round: round, speedup: sp, target: 1.8, ceiling_balanced: p * m / (m + p - 1),
                           ceiling_at_measured_balance: atBalance, meets_target: sp >= 1.8,
                           stage_balance: busy.reduce(0, +) / p / (busy.max() ?? 1), work_ratio: busy1 / busy.reduce(0, +),
                           step_vs_model: (busy.max() ?? 0) * (m + p - 1) / m / r.step_ms, baseline_busy_share: busy1 / base.step_ms)
        }
    }

    static func summarize(name: String, round: Int, config c: RunConfig, model: ModelConfig, runDirectory: String, warmup: Int,
                          sgemm: Double, keep: Bool) throws -> PipelineRun {
        let metrics = try jsonLines(runDirectory + "/metrics.jsonl").filter { (($0["step"] as? Int) ?? 0) > warmup }
        guard !metrics.isEmpty else { throw ConfigError("\(runDirectory)/metrics.jsonl: no timed steps") }
        let stepMs = metrics.map { number($0["step_ms"]) }
        let stepMedian = median(stepMs)
        let specs = try StageSpec.partition(model, stages: c.stages, seqLen: c.seqLen)
        var sums = [[Double]](repeating: [0, 0, 0, 0], count: c.stages)  // forward, backward, wait, comm
        for m in metrics {
            for st in (m["stages"] as? [[String: Any]]) ?? [] where (st["replica"] as? Int ?? 0) == 0 {
                let i = st["stage"] as? Int ?? 0
                for (j, key) in ["forward_ms", "backward_ms", "wait_ms", "comm_ms"].enumerated() { sums[i][j] += number(st[key]) }
            }
        }
        let n = Double(metrics.count)
        let times = (0..<c.stages).map { i -> StageTimes in
            let f = sums[i][0] / n, b = sums[i][1] / n, w = sums[i][2] / n, cm = sums[i][3] / n
            let layers = specs[i].description
            return StageTimes(stage: i, layers: layers, forward_ms: f, backward_ms: b, wait_ms: w, comm_ms: cm, busy_ms: f + b,
                              wait_share: w / stepMedian, idle_share: 1 - (f + b) / stepMedian, comm_share: cm / stepMedian)
        }
        let tokens = Double(c.batchRows * c.seqLen)
        let tps = tokens / (stepMedian / 1000)
        let gflops = tps * model.trainingFLOPsPerToken(seqLen: c.seqLen) / 1e9
        let p = Double(c.stages), m = Double(c.microBatches)
        let commTotal = times.map(\.comm_ms).reduce(0, +)
        return PipelineRun(
            name: name, round: round, stages: c.stages, schedule: c.schedule, threads_per_worker: c.threadsPerWorker, micro_batches: c.microBatches,
            batch_rows: c.batchRows, seq_len: c.seqLen, vocab_size: model.vocabSize, timed_steps: metrics.count,
            step_ms: stepMedian, step_ms_min: stepMs.min()!, step_ms_max: stepMs.max()!, tokens_per_s: tps, model_gflops: gflops,
            sgemm_gflops: sgemm, ratio_to_sgemm: gflops / sgemm, bubble_theory: (p - 1) / (m + p - 1),
            bubble_measured: times.map(\.wait_share).reduce(0, +) / p, idle_measured: times.map(\.idle_share).reduce(0, +) / p,
            comm_share: commTotal / stepMedian, comm_ms_per_step: commTotal,
            activation_bytes: c.batchRows / c.microBatches * c.seqLen * model.dModel * 4,
            stage_times: times, run_directory: keep ? runDirectory : nil)
    }

    // MARK: Checkpoints

    public static func checkpoint(_ opt: Options, root: String, progress: (String) -> Void) throws -> CheckpointReport {
        let s = setup("M")
        BLAS.setThreads(1)
        let sgemm = BLAS.measureSgemmGFLOPs(n: 1024, seconds: 1.5)
        let stages = 2
        let cfg = try config(s, dataDir: opt.dataDir, batchRows: opt.checkpointBatchRows, stages: stages, schedule: "1f1b",
                             microBatches: opt.checkpointMicroBatches, steps: opt.checkpointSteps,
                             checkpointEvery: opt.checkpointEvery, keep: 2)
        let dir = root + "/checkpoint-M"
        progress("training config M: \(stages) stages × 1 thread, \(opt.checkpointSteps) steps, a checkpoint every \(opt.checkpointEvery) …")
        let model = try train(cfg, runDirectory: dir, workerExecutable: opt.workerExecutable)
        let ckptMs = try jsonLines(dir + "/events.jsonl").filter { $0["kind"] as? String == "checkpoint" }.map { number($0["ms"]) }
        let steps = try jsonLines(dir + "/metrics.jsonl").filter { (($0["step"] as? Int) ?? 0) > 1 }.map { number($0["step_ms"]) }
        let stepMs = steps.reduce(0, +) / Double(max(steps.count, 1))

        let latest = try CheckpointFile.resolve("latest", runDirectory: dir)
        progress("checkpoint file throughput: \(opt.fileRepeats) writes, \(opt.fileRepeats) cold and \(opt.fileRepeats) warm reads of \(latest) …")
        let ckpt = try CheckpointFile.read(latest)
        let fileBytes = try fileSize(latest)
        let tensorBytes = (ckpt.params + ckpt.adamM + ckpt.adamV).reduce(0) { $0 + $1.values.count * 4 }
        let target = dir + "/bench-write.h5"
        var writeMs: [Double] = [], coldMs: [Double] = [], warmMs: [Double] = []
        for _ in 0..<opt.fileRepeats {
            writeMs.append(try time { try CheckpointFile.write(ckpt, to: target) })
        }
        for _ in 0..<opt.fileRepeats {
            dropFromPageCache(target)
            coldMs.append(try time { _ = try CheckpointFile.read(target) })
        }
        _ = try CheckpointFile.read(target)
        for _ in 0..<opt.fileRepeats {
            warmMs.append(try time { _ = try CheckpointFile.read(target) })
        }
        let writtenBytes = Double(try fileSize(target))
        try? FileManager.default.removeItem(atPath: target)
        func rate(_ ms: [Double]) -> [Double] { ms.map { writtenBytes / 1e6 / ($0 / 1000) } }
        let lost = (ckptMs.reduce(0, +) / Double(max(ckptMs.count, 1)))
        return CheckpointReport(
            model: "M dims (d \(model.dModel), \(model.nLayers) layers, ffn \(model.ffnHidden)), vocab \(model.vocabSize) from the dataset",
            parameters: ckpt.params.reduce(0) { $0 + $1.values.count }, file_bytes: fileBytes, tensor_bytes: tensorBytes,
            write_mb_per_s: rate(writeMs), read_cold_mb_per_s: rate(coldMs), read_warm_mb_per_s: rate(warmMs),
            write_ms: writeMs, read_cold_ms: coldMs, read_warm_ms: warmMs,
            run_layout: "\(stages) stages × 1 thread, \(cfg.batchRows) rows × \(cfg.seqLen) tokens, \(cfg.microBatches) micro-batches",
            run_checkpoint_ms: ckptMs, run_step_ms: stepMs, checkpoint_every: opt.checkpointEvery,
            lost_share: lost / (Double(opt.checkpointEvery) * stepMs + lost), sgemm_one_thread_gflops: sgemm,
            run_directory: opt.keep ? dir : nil)
    }

    static func time(_ body: () throws -> Void) throws -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
    }

    static func fileSize(_ path: String) throws -> Int {
        ((try FileManager.default.attributesOfItem(atPath: path))[.size] as? NSNumber)?.intValue ?? 0
    }

    /// Evicts a (synced, so clean) file's pages from the page cache, so the next read comes from the disk.
    static func dropFromPageCache(_ path: String) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return }
        fsync(fd)
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
    }
}

/// A value shared between threads behind a lock.
final class LockedBox<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ v: T) { value = v }
    func with<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&value) } }
}
