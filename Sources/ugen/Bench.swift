import ArgumentParser
import Foundation
import UGenTraining

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure single-process training speed (configs S and M) against this machine's sgemm rate.",
        discussion: "Build in release first: swift build -c release. Before each timed step a short 1024² sgemm sample is taken at the same thread count; ratio is the median over the steps of the step's model GFLOP/s over that sample (same conditions), ratio to peak the median step against the best sample of all (1024² and 2048², before, between and after). Targets: ≥ 75% of sgemm on M, ≥ 65% on S, at 2 threads.")

    @Option(help: "Configs to run (S, M).") var configs: [String] = ["S", "M"]
    @Option(help: "BLAS thread counts to run.") var threads: [Int] = [1, 2]
    @Option(help: "Timed steps per measurement (the median is reported).") var steps = 7
    @Flag(help: "Print one JSON object per measurement.") var json = false

    func run() throws {
        let setups = TrainingBenchmark.setups.filter { configs.contains($0.name) }
        guard !setups.isEmpty else { fail("--configs: expected S and/or M") }
        if !json { print("config threads  tokens/s   step ms  model GFLOP/s  sgemm GFLOP/s  ratio  sgemm peak  ratio to peak  peak RSS MB") }
        for s in setups {
            for t in threads {
                let r = try TrainingBenchmark.run(s, threads: t, steps: steps)
                if json {
                    let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
                    print(String(data: try enc.encode(r), encoding: .utf8)!)
                } else {
                    print(String(format: "%-6@ %7d %9.0f %9.1f %14.1f %14.1f %6.2f %11.1f %14.2f %12.0f", r.config, r.threads, r.tokens_per_s,
                                 r.step_ms, r.model_gflops, r.sgemm_gflops, r.ratio, r.sgemm_peak_gflops, r.ratio_to_peak, r.peak_rss_mb))
                }
            }
        }
    }
}
