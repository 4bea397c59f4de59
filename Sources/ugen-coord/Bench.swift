import ArgumentParser
import Foundation
import UGenBench
import UGenCluster
import UGenKernels
import UGenTraining

/// `ugen-coord bench`: the cluster's speed on this machine, with a real coordinator and real worker
/// processes: pipeline speed-up, bubble and activation traffic for config S, checkpoint
/// throughput and the training time a checkpoint costs for config M.
/// Documentation/benchmarks.md records the numbers and how to read them.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure pipeline speed-up, bubble and activation traffic (config S) and checkpoint throughput (config M).",
        discussion: """
            Build in release first (swift build -c release) and make the dataset (make data). Every number is measured \
            here: tokens/s and per-stage times come from the runs' own metrics.jsonl, checkpoint times from \
            events.jsonl and from timing CheckpointFile.write/read, the ceiling from cblas_sgemm in this process. \
            Run it on a quiet machine: workers on a 2-core machine have no core to spare.
            """)

    enum Part: String, ExpressibleByArgument, CaseIterable { case pipeline, checkpoint, controlPlane = "control-plane" }

    @Option(help: "What to measure: pipeline, checkpoint, control-plane (repeatable; default all; --control-plane alone: only that).")
    var part: [Part] = []
    @Option(help: "Worker counts of the control-plane part (simulated workers, comma-separated).") var controlPlane: String?
    @Option(help: "Pipeline stages of the control-plane runs (the workers divide into stages × replicas).") var controlPlaneStages = 2
    @Option(help: "Timed steps per control-plane run (after --warmup steps, at least 1).") var controlPlaneSteps = 100
    @Option(help: "Dataset folder (train.h5; make data).") var dataDir = "data/tokenized"
    @Option(help: "train.precision of the pipeline runs (fp32 or bf16).") var precision: Precision = .fp32
    @Option(help: "Micro-batches per step in the pipeline runs.") var microBatches = 8
    @Option(help: "Rows (of config S's 256 tokens) per global batch in the pipeline runs; must divide by --micro-batches.") var batchRows =
        16
    @Option(help: "Steps before timing starts.") var warmup = 2
    @Option(help: "Timed steps per pipeline run (the median step is reported).") var steps = 10
    @Option(help: "Times every pipeline layout is trained, the layouts taking turns (the median speed-up is the verdict).") var rounds = 5
    @Option(help: "Steps of the config-M checkpoint run.") var checkpointSteps = 7
    @Option(help: "train.checkpoint_every of the checkpoint run.") var checkpointEvery = 2
    @Option(help: "Writes and reads of the checkpoint file timed.") var repeats = 3
    @Option(help: "The ugen-worker executable (default: next to ugen-coord).") var workerExecutable: String?
    @Option(help: "Keep the runs in this folder (default: a temporary folder, removed afterwards).") var keep: String?
    @Flag(help: "Print one JSON object with everything measured.") var json = false

    func validate() throws {
        guard microBatches >= 1, batchRows % microBatches == 0 else {
            throw ValidationError("--batch-rows (\(batchRows)) must divide by --micro-batches (\(microBatches))")
        }
        guard workerCounts.allSatisfy({ $0 >= controlPlaneStages && $0 % controlPlaneStages == 0 }), controlPlaneSteps >= 1 else {
            throw ValidationError(
                "--control-plane counts must be multiples of --control-plane-stages (\(controlPlaneStages)); --control-plane-steps ≥ 1")
        }
        guard steps >= 1, rounds >= 1, warmup >= 0, checkpointEvery >= 1, checkpointSteps > checkpointEvery, repeats >= 1 else {
            throw ValidationError(
                "--steps, --rounds, --repeats and --checkpoint-every must be ≥ 1, --checkpoint-steps > --checkpoint-every")
        }
    }

    /// The control-plane worker counts (16 to 256 by default).
    var workerCounts: [Int] {
        (controlPlane ?? "16,32,64,128,256").split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }
    /// What runs: `--part`s, else only the control plane when `--control-plane` is given, else everything.
    var parts: [Part] { !part.isEmpty ? part : controlPlane != nil ? [.controlPlane] : Part.allCases }

    /// The pipeline and checkpoint parts' options, from the command line.
    var pipelineOptions: PipelineBenchmark.Options {
        var opt = PipelineBenchmark.Options()
        opt.dataDir = dataDir
        opt.precision = precision
        opt.microBatches = microBatches
        opt.batchRows = batchRows
        opt.warmupSteps = warmup
        opt.timedSteps = steps
        opt.rounds = rounds
        opt.checkpointSteps = checkpointSteps
        opt.checkpointEvery = checkpointEvery
        opt.fileRepeats = repeats
        opt.workerExecutable = workerExecutable
        opt.keep = keep != nil
        return opt
    }

    func run() throws {
        guard FileManager.default.fileExists(atPath: dataDir + "/train.h5") else {
            fail("\(dataDir)/train.h5: no dataset (run `make data`, or pass --data-dir)")
        }
        PipelineBenchmark.quietLogs()
        let opt = pipelineOptions
        let root = keep ?? NSTemporaryDirectory() + "ugen-bench-\(getpid())"
        defer { if keep == nil { try? FileManager.default.removeItem(atPath: root) } }
        let say: (String) -> Void = { line in
            FileHandle.standardError.write(("bench: " + line + "\n").data(using: .utf8)!)
        }

        var pipeline: PipelineBenchmark.PipelineReport?
        var checkpoint: PipelineBenchmark.CheckpointReport?
        var controlPlaneRows: [ControlPlaneBenchmark.Row]?
        do {
            if parts.contains(.pipeline) {
                pipeline = try PipelineBenchmark.pipeline(opt, root: root, progress: say)
                if !json { print(Self.render(pipeline!)) }
            }
            if parts.contains(.checkpoint) {
                checkpoint = try PipelineBenchmark.checkpoint(opt, root: root, progress: say)
                if !json { print(Self.render(checkpoint!)) }
            }
            if parts.contains(.controlPlane) {
                var o = ControlPlaneBenchmark.Options()
                o.dataDir = dataDir
                o.stages = controlPlaneStages
                o.warmupSteps = max(1, warmup)
                o.timedSteps = controlPlaneSteps
                o.helper = [URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path, "simulate-workers"]
                controlPlaneRows = try ControlPlaneBench.run(counts: workerCounts, options: o, root: root, say: say)
                if !json { print(ControlPlaneBench.render(controlPlaneRows!, o)) }
            }
        } catch { fail("\(error)") }
        if json {
            struct All: Encodable {
                var pipeline: PipelineBenchmark.PipelineReport?; var checkpoint: PipelineBenchmark.CheckpointReport?
                var controlPlane: [ControlPlaneBenchmark.Row]?
            }
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            enc.keyEncodingStrategy = .convertToSnakeCase
            print(
                String(
                    data: try enc.encode(All(pipeline: pipeline, checkpoint: checkpoint, controlPlane: controlPlaneRows)), encoding: .utf8)!
            )
        }
    }

    static func f(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }
    static func pct(_ x: Double) -> String { String(format: "%.1f%%", 100 * x) }
    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
    static func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }

    static func render(_ r: PipelineBenchmark.PipelineReport) -> String {
        var out: [String] = []
        let s = r.sgemm
        out.append(
            "sgemm (1024², this process): 1 thread \(f(s.oneThreadGflops)) GFLOP/s"
                + (s.oneThreadAfterGflops.map { " (after the runs: \(f($0)))" } ?? "")
                + "; \(s.concurrentThreads) single-threaded at once: \(f(s.concurrentTotalGflops)) GFLOP/s in all")
        guard let first = r.runs.first else { return out.joined(separator: "\n") }
        out.append("")
        out.append(
            "Pipeline, config S dims over the dataset's vocabulary (V = \(first.vocabSize)): \(first.batchRows) rows × "
                + "\(first.seqLen) tokens per step, "
                + "\(first.microBatches) micro-batches, \(first.timedSteps) timed steps")
        out.append(
            "round layout                    median step ms (min–max)    tokens/s  GFLOP/s  sgemm GFLOP/s  ratio  bubble theory  "
                + "wait  idle  comm"
        )
        for run in r.runs {
            out.append(
                lpad("\(run.round)", 5) + " " + pad(run.name, 30) + lpad(f(run.stepMs, 0), 9) + " (" + f(run.stepMsMin, 0) + "–"
                    + f(run.stepMsMax, 0) + ")"
                    + lpad(f(run.tokensPerS, 0), 10) + lpad(f(run.modelGflops), 9) + lpad(f(run.sgemmGflops), 15)
                    + lpad(f(run.ratioToSgemm, 2), 7) + lpad(pct(run.bubbleTheory), 15) + lpad(pct(run.bubbleMeasured), 6)
                    + lpad(pct(run.idleMeasured), 6) + lpad(pct(run.commShare), 6))
        }
        let lastRound = r.runs.map(\.round).max() ?? 1
        out.append("")
        out.append(pad("per stage, ms per step (round \(lastRound))", 44) + "forward  backward     wait    comm  wait/step  idle/step")
        for run in r.runs where run.round == lastRound {
            for st in run.stageTimes {
                out.append(
                    pad("p=\(run.stages) \(run.schedule) stage \(st.stage) [\(st.layers)]", 42)
                        + lpad(f(st.forwardMs), 9) + lpad(f(st.backwardMs), 10) + lpad(f(st.waitMs), 9) + lpad(f(st.commMs, 2), 8)
                        + lpad(pct(st.waitShare), 12) + lpad(pct(st.idleShare), 11))
            }
        }
        if let twoStage = r.runs.first(where: { $0.stages > 1 }) {
            out.append(
                "activations between stages: \(twoStage.activationBytes / 1024) KiB per micro-batch each way; "
                    + "send + receive time \(f(twoStage.commMsPerStep, 2)) ms per step (\(pct(twoStage.commShare)) of the step)")
        }
        out += speedupLines(r)
        return out.joined(separator: "\n")
    }

    /// What the speed-ups are made of, the rounds' summary against the target, and how to read the table.
    static func speedupLines(_ r: PipelineBenchmark.PipelineReport) -> [String] {
        var out: [String] = []
        out.append("")
        for sp in r.speedups {
            out.append(
                "round \(sp.round): \(sp.name) \(f(sp.speedup, 2))× = \(f(sp.ceilingBalanced, 2)) 1F1B ceiling p·m/(m+p−1)"
                    + " × \(f(sp.stageBalance, 2)) stage balance (mean/max busy) × \(f(sp.workRatio, 2)) work ratio (1 stage's busy "
                    + "/ Σ stages' busy)"
                    + " × \(f(sp.stepVsModel, 2)) step vs pipeline model / \(f(sp.baselineBusyShare, 2)) 1-stage busy share")
        }
        out.append("")
        for su in r.summary {
            out.append(
                "speed-up \(su.name) over 1 stage: median \(f(su.median, 2))× over \(su.perRound.count) rounds "
                    + "(\(su.perRound.map { f($0, 2) }.joined(separator: ", "))); target ≥ \(f(su.target, 1))×: "
                    + "\(su.meetsTarget ? "met" : "NOT met")"
                    + " (\(su.roundsMeetingTarget) of \(su.perRound.count) rounds)")
        }
        if let sp = r.speedups.first {
            out.append(
                "1F1B ceiling with equal stages p·m/(m+p−1) = \(f(sp.ceilingBalanced, 2))×; zero bubble fills part of that bubble "
                    + "with weight passes, so it may pass it"
            )
        }
        out.append(
            "wait = mean over stages of time blocked on a neighbour / step time (the measured bubble); idle = 1 − (forward + "
                + "backward) / step "
                + "(also the optimizer update and the coordinator's round trip); comm = sends + receives of activations and "
                + "gradients / step"
        )
        return out
    }

    static func render(_ c: PipelineBenchmark.CheckpointReport) -> String {
        func list(_ xs: [Double], _ d: Int = 0) -> String { xs.map { f($0, d) }.joined(separator: ", ") }
        var out = [""]
        out.append(
            "Checkpoints, config \(c.model): \(c.parameters) parameters; file \(f(Double(c.fileBytes) / 1e6)) MB "
                + "(tensors incl. AdamW m and v: \(f(Double(c.tensorBytes) / 1e6)) MB)")
        out.append(
            "CheckpointFile.write (temp name, fsync, rename): \(list(c.writeMbPerS)) MB/s (median \(f(median(c.writeMbPerS), 0)); "
                + "\(list(c.writeMs)) ms)"
        )
        out.append(
            "CheckpointFile.read from disk (page cache dropped): \(list(c.readColdMbPerS)) MB/s (median "
                + "\(f(median(c.readColdMbPerS), 0)); \(list(c.readColdMs)) ms)"
        )
        out.append(
            "CheckpointFile.read from the page cache:   \(list(c.readWarmMbPerS)) MB/s (median \(f(median(c.readWarmMbPerS), 0)); "
                + "\(list(c.readWarmMs)) ms)"
        )
        out.append(
            "training run (\(c.runLayout)): step \(f(c.runStepMs, 0)) ms; each checkpoint stopped training for "
                + "\(list(c.runCheckpointMs)) ms "
                + "(gather from the workers + write + rotate)")
        let mean = c.runCheckpointMs.reduce(0, +) / Double(max(c.runCheckpointMs.count, 1))
        let write = median(c.writeMs)
        out.append(
            "  of which writing the file ≈ \(f(write, 0)) ms (median CheckpointFile.write above); the rest, ≈ \(f(mean - write, 0)) ms, "
                + "is the gather: save requests, \(f(Double(c.tensorBytes) / 1e6, 0)) MB of tensors from the workers, checksums, rotation")
        out.append(
            "time lost per checkpoint: \(f(mean, 0)) ms = \(f(mean / c.runStepMs, 2)) steps; at checkpoint_every \(c.checkpointEvery): "
                + "\(pct(c.lostShare)) of training time; at checkpoint_every 100: \(pct(mean / (100 * c.runStepMs + mean)))")
        out.append("sgemm 1 thread in this process: \(f(c.sgemmOneThreadGflops)) GFLOP/s")
        return out.joined(separator: "\n")
    }
}

extension Precision: ExpressibleByArgument {}
