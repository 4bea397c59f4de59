import Foundation
import Logging
import UGenCluster
import UGenKernels
import UGenModel
import UGenRecords
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
        public var oneThreadGflops: Double
        public var concurrentThreads: Int
        public var concurrentTotalGflops: Double
        public var oneThreadAfterGflops: Double?
    }

    public struct StageTimes: Codable, Sendable {
        public var stage: Int
        public var layers: String
        public var forwardMs: Double
        public var backwardMs: Double
        public var waitMs: Double
        public var commMs: Double
        /// forward + backward (computing, and sending what was computed).
        public var busyMs: Double
        /// wait / step time.
        public var waitShare: Double
        /// 1 − busy / step time: waiting, plus the optimizer and the coordinator's round trip.
        public var idleShare: Double
        public var commShare: Double
    }

    public struct PipelineRun: Codable, Sendable {
        public var name: String
        public var round: Int
        public var stages: Int
        public var schedule: String
        public var threadsPerWorker: Int
        public var microBatches: Int
        public var batchRows: Int
        public var seqLen: Int
        public var vocabSize: Int
        public var timedSteps: Int
        /// The median of the timed steps.
        public var stepMs: Double
        public var stepMsMin: Double
        public var stepMsMax: Double
        public var tokensPerS: Double
        public var modelGflops: Double
        /// The measured sgemm rate of the threads this layout uses (1 thread, or `stages` concurrent ones).
        public var sgemmGflops: Double
        public var ratioToSgemm: Double
        /// (p−1)/(m+p−1).
        public var bubbleTheory: Double
        /// Mean over stages of wait_ms / step_ms.
        public var bubbleMeasured: Double
        /// Mean over stages of 1 − busy / step.
        public var idleMeasured: Double
        /// Sum over stages of comm_ms, over step_ms (the share of a step's wall time spent in data sends/receives).
        public var commShare: Double
        public var commMsPerStep: Double
        /// Bytes of one activation (or its gradient) between two stages.
        public var activationBytes: Int
        public var stageTimes: [StageTimes]
        public var runDirectory: String?
    }

    public struct Speedup: Codable, Sendable {
        public var name: String
        public var round: Int
        public var speedup: Double
        public var target: Double
        /// p·m/(m+p−1): a perfect pipeline with perfectly balanced stages and no overhead.
        public var ceilingBalanced: Double
        /// The same with the measured stage imbalance: Σbusy / max busy · m/(m+p−1), with busy from the run.
        public var ceilingAtMeasuredBalance: Double
        public var meetsTarget: Bool
        /// The speed-up, factored exactly: ceiling_balanced × stage_balance × work_ratio × step_vs_model / baseline_busy_share.
        /// mean busy / max busy over the stages (1: equal stages).
        public var stageBalance: Double
        /// The one stage's compute time / the stages' compute time summed (1: cutting the model costs nothing).
        public var workRatio: Double
        /// (max busy · (m+p−1)/m) / step time: how close the step comes to the pipeline model.
        public var stepVsModel: Double
        /// busy / step time of the one-stage run.
        public var baselineBusyShare: Double
    }

    /// One layout's speed-up over all rounds.
    public struct SpeedupSummary: Codable, Sendable {
        public var name: String
        public var perRound: [Double]
        public var median: Double
        public var target: Double
        /// The median meets the target.
        public var meetsTarget: Bool
        public var roundsMeetingTarget: Int
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
        public var fileBytes: Int
        public var tensorBytes: Int
        public var writeMbPerS: [Double]
        public var readColdMbPerS: [Double]
        public var readWarmMbPerS: [Double]
        public var writeMs: [Double]
        public var readColdMs: [Double]
        public var readWarmMs: [Double]
        /// From the run: the `checkpoint` events' `ms` (gather from the workers + write + rotate), steps in between.
        public var runLayout: String
        public var runCheckpointMs: [Double]
        public var runStepMs: Double
        public var checkpointEvery: Int
        /// checkpoint ms / (checkpoint_every · step ms + checkpoint ms).
        public var lostShare: Double
        public var sgemmOneThreadGflops: Double
        public var runDirectory: String?
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
        return Sgemm(
            oneThreadGflops: one, concurrentThreads: concurrent, concurrentTotalGflops: box.with { $0.reduce(0, +) },
            oneThreadAfterGflops: nil)
    }

    public static func setup(_ name: String) -> TrainingBenchmark.Setup {
        TrainingBenchmark.setups.first { $0.name == name }!
    }

    /// The run configuration of a setup's dimensions (the vocabulary from the dataset) and a layout.
    static func config(
        _ s: TrainingBenchmark.Setup, dataDir: String, batchRows: Int, stages: Int, schedule: String,
        microBatches: Int, steps: Int, checkpointEvery: Int = 0, keep: Int = 3,
        precision: Precision = .fp32
    ) throws -> RunConfig {
        let m = s.model
        return try RunConfig.parse(
            yaml: "", source: "bench",
            overrides: [
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
        guard outcome == .finished(step: config.steps) else { throw BenchError.endedEarly("\(outcome)") }
        return coordinator.model
    }

    /// Every line of a run file (metrics.jsonl, events.jsonl) as its record; a line that is not one is an
    /// error naming the file and the line.
    static func records<T: Decodable>(_ type: T.Type, _ path: String) throws -> [T] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").enumerated().map { i, line in
            switch JSONLine.decode(T.self, from: Data(line.utf8)) {
            case .success(let r): return r
            case .failure(let e): throw BenchError.unreadableRecord(path: path, line: i + 1, e)
            }
        }
    }

    // MARK: Pipeline

    public static func pipeline(_ opt: Options, root: String, progress: (String) -> Void) throws -> PipelineReport {
        let s = setup("S")
        progress("measuring sgemm (1 thread, and 2 threads at once) …")
        var sgemm = measureSgemm(concurrent: 2)
        let layouts: [(String, Int, String)] = [
            ("1 stage × 1 thread", 1, "1f1b"), ("2 stages × 1 thread, zero bubble", 2, "zb"),
            ("2 stages × 1 thread, 1F1B", 2, "1f1b"), ("2 stages × 1 thread, GPipe", 2, "gpipe"),
        ]
        var runs: [PipelineRun] = [], speedups: [Speedup] = []
        for round in 1...max(1, opt.rounds) {
            var roundRuns: [PipelineRun] = []
            for (name, p, schedule) in layouts {
                progress(
                    "round \(round)/\(opt.rounds): config S \(opt.precision.rawValue), \(name), \(opt.microBatches) micro-batches, "
                        + "\(opt.warmupSteps) + \(opt.timedSteps) steps …")
                let cfg = try config(
                    s, dataDir: opt.dataDir, batchRows: opt.batchRows, stages: p, schedule: schedule,
                    microBatches: opt.microBatches, steps: opt.warmupSteps + opt.timedSteps, precision: opt.precision)
                let dir = root + "/pipeline-\(p)-\(schedule)-round\(round)"
                let model = try train(cfg, runDirectory: dir, workerExecutable: opt.workerExecutable)
                // The sgemm rate a stage can reach: one thread alone, or its share of p threads at once.
                let rate = p == 1 ? sgemm.oneThreadGflops : sgemm.concurrentTotalGflops * Double(p) / Double(sgemm.concurrentThreads)
                roundRuns.append(
                    try summarize(
                        name: name, round: round, config: cfg, model: model, runDirectory: dir,
                        warmup: opt.warmupSteps, sgemm: rate, keep: opt.keep))
            }
            speedups += speedupsOverOneStage(roundRuns, round: round)
            runs += roundRuns
        }
        BLAS.setThreads(1)
        sgemm.oneThreadAfterGflops = BLAS.measureSgemmGFLOPs(n: 1024, seconds: 1.5)
        let summary = layouts.dropFirst().map { layout -> SpeedupSummary in
            let values = speedups.filter { $0.name == layout.0 }.map(\.speedup)
            let m = median(values)
            return SpeedupSummary(
                name: layout.0, perRound: values, median: m, target: 1.8, meetsTarget: m >= 1.8,
                roundsMeetingTarget: values.filter { $0 >= 1.8 }.count)
        }
        return PipelineReport(sgemm: sgemm, runs: runs, speedups: speedups, summary: summary)
    }

    /// Each multi-stage run of a round against that round's one-stage run, with the speed-up factored.
    static func speedupsOverOneStage(_ runs: [PipelineRun], round: Int) -> [Speedup] {
        let base = runs[0]
        return runs.dropFirst().map { r -> Speedup in
            let p = Double(r.stages), m = Double(r.microBatches)
            let busy = r.stageTimes.map(\.busyMs)
            let atBalance = busy.reduce(0, +) / (busy.max() ?? 1) * m / (m + p - 1)
            let sp = r.tokensPerS / base.tokensPerS
            let busy1 = base.stageTimes.map(\.busyMs).reduce(0, +)
            return Speedup(
                name: r.name, round: round, speedup: sp, target: 1.8, ceilingBalanced: p * m / (m + p - 1),
                ceilingAtMeasuredBalance: atBalance, meetsTarget: sp >= 1.8,
                stageBalance: busy.reduce(0, +) / p / (busy.max() ?? 1), workRatio: busy1 / busy.reduce(0, +),
                stepVsModel: (busy.max() ?? 0) * (m + p - 1) / m / r.stepMs, baselineBusyShare: busy1 / base.stepMs)
        }
    }

    static func summarize(
        name: String, round: Int, config c: RunConfig, model: ModelConfig, runDirectory: String, warmup: Int,
        sgemm: Double, keep: Bool
    ) throws -> PipelineRun {
        let metrics = try records(MetricsRecord.self, runDirectory + "/metrics.jsonl").filter { $0.step > warmup }
        guard !metrics.isEmpty else { throw BenchError.noTimedSteps(path: runDirectory + "/metrics.jsonl") }
        let stepMs = metrics.map { $0.stepMs ?? .nan }
        let stepMedian = median(stepMs)
        let specs = try StageSpec.partition(model, stages: c.stages, seqLen: c.seqLen)
        var sums = [[Double]](repeating: [0, 0, 0, 0], count: c.stages)  // forward, backward, wait, comm
        for m in metrics {
            for st in m.stages where st.replica == 0 {
                for (j, v) in [st.forwardMs, st.backwardMs, st.waitMs, st.commMs].enumerated() { sums[st.stage][j] += v ?? .nan }
            }
        }
        let n = Double(metrics.count)
        let times = (0..<c.stages).map { i -> StageTimes in
            let f = sums[i][0] / n, b = sums[i][1] / n, w = sums[i][2] / n, cm = sums[i][3] / n
            let layers = specs[i].description
            return StageTimes(
                stage: i, layers: layers, forwardMs: f, backwardMs: b, waitMs: w, commMs: cm, busyMs: f + b,
                waitShare: w / stepMedian, idleShare: 1 - (f + b) / stepMedian, commShare: cm / stepMedian)
        }
        let tokens = Double(c.batchRows * c.seqLen)
        let tps = tokens / (stepMedian / 1000)
        let gflops = tps * model.trainingFLOPsPerToken(seqLen: c.seqLen) / 1e9
        let p = Double(c.stages), m = Double(c.microBatches)
        let commTotal = times.map(\.commMs).reduce(0, +)
        return PipelineRun(
            name: name, round: round, stages: c.stages, schedule: c.schedule, threadsPerWorker: c.threadsPerWorker,
            microBatches: c.microBatches,
            batchRows: c.batchRows, seqLen: c.seqLen, vocabSize: model.vocabSize, timedSteps: metrics.count,
            stepMs: stepMedian, stepMsMin: stepMs.min()!, stepMsMax: stepMs.max()!, tokensPerS: tps, modelGflops: gflops,
            sgemmGflops: sgemm, ratioToSgemm: gflops / sgemm, bubbleTheory: (p - 1) / (m + p - 1),
            bubbleMeasured: times.map(\.waitShare).reduce(0, +) / p, idleMeasured: times.map(\.idleShare).reduce(0, +) / p,
            commShare: commTotal / stepMedian, commMsPerStep: commTotal,
            activationBytes: c.batchRows / c.microBatches * c.seqLen * model.dModel * 4,
            stageTimes: times, runDirectory: keep ? runDirectory : nil)
    }

    // MARK: Checkpoints

    public static func checkpoint(_ opt: Options, root: String, progress: (String) -> Void) throws -> CheckpointReport {
        let s = setup("M")
        BLAS.setThreads(1)
        let sgemm = BLAS.measureSgemmGFLOPs(n: 1024, seconds: 1.5)
        let stages = 2
        let cfg = try config(
            s, dataDir: opt.dataDir, batchRows: opt.checkpointBatchRows, stages: stages, schedule: "1f1b",
            microBatches: opt.checkpointMicroBatches, steps: opt.checkpointSteps,
            checkpointEvery: opt.checkpointEvery, keep: 2)
        let dir = root + "/checkpoint-M"
        progress(
            "training config M: \(stages) stages × 1 thread, \(opt.checkpointSteps) steps, "
                + "a checkpoint every \(opt.checkpointEvery) …")
        let model = try train(cfg, runDirectory: dir, workerExecutable: opt.workerExecutable)
        let ckptMs = try records(RunEvent.self, dir + "/events.jsonl").filter { $0.kind == "checkpoint" }.map { $0.number("ms") ?? .nan }
        let steps = try records(MetricsRecord.self, dir + "/metrics.jsonl").filter { $0.step > 1 }.map { $0.stepMs ?? .nan }
        let stepMs = steps.reduce(0, +) / Double(max(steps.count, 1))

        let latest = try CheckpointFile.resolve("latest", runDirectory: dir)
        progress(
            "checkpoint file throughput: \(opt.fileRepeats) writes, \(opt.fileRepeats) cold and \(opt.fileRepeats) warm "
                + "reads of \(latest) …")
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
            parameters: ckpt.params.reduce(0) { $0 + $1.values.count }, fileBytes: fileBytes, tensorBytes: tensorBytes,
            writeMbPerS: rate(writeMs), readColdMbPerS: rate(coldMs), readWarmMbPerS: rate(warmMs),
            writeMs: writeMs, readColdMs: coldMs, readWarmMs: warmMs,
            runLayout: "\(stages) stages × 1 thread, \(cfg.batchRows) rows × \(cfg.seqLen) tokens, \(cfg.microBatches) micro-batches",
            runCheckpointMs: ckptMs, runStepMs: stepMs, checkpointEvery: opt.checkpointEvery,
            lostShare: lost / (Double(opt.checkpointEvery) * stepMs + lost), sgemmOneThreadGflops: sgemm,
            runDirectory: opt.keep ? dir : nil)
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

/// A benchmark run that gave nothing to measure.
public enum BenchError: Error, CustomStringConvertible, Equatable {
    /// The training run ended before its last step (the outcome as text).
    case endedEarly(String)
    case unreadableRecord(path: String, line: Int, RecordError)
    case noTimedSteps(path: String)
    /// The generation benchmark's prompt and new tokens do not fit the model's context.
    case promptTooLong(prompt: Int, newTokens: Int, maxSeqLen: Int)
    /// The control-plane benchmark could not run (its layout, its helper process).
    case controlPlane(String)

    public var description: String {
        switch self {
        case .endedEarly(let outcome): "bench run ended early: \(outcome)"
        case .unreadableRecord(let path, let line, let e): "\(path): line \(line): \(e)"
        case .noTimedSteps(let path): "\(path): no timed steps"
        case .promptTooLong(let prompt, let new, let max):
            "benchmark: prompt of \(prompt) tokens + \(new) new tokens must fit model.max_seq_len \(max)"
        case .controlPlane(let what): "control-plane bench: \(what)"
        }
    }
}
