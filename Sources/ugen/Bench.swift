import ArgumentParser
import Foundation
import UGenBench
import UGenKernels
import UGenTraining

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure single-process training speed (configs S and M) against this machine's product rate, fp32 and bf16.",
        discussion: """
            Build in release first: swift build -c release. Before each timed step a short 1024² product sample is taken at \
            the same thread count and precision (cblas_sgemm for fp32, oneDNN bf16 matmul for bf16); ratio is the median over \
            the steps of the step's model GFLOP/s over that sample (same conditions), ratio to peak the median step against \
            the best sample of all (1024² and 2048², before, between and after). The ceilings table gives both precisions' \
            product rates at each config's own forward shapes.
            """)

    @Option(help: "Configs to run (S, M).") var configs: [String] = ["S", "M"]
    @Option(help: "Thread counts to run.") var threads: [Int] = [1, 2]
    @Option(help: "Precisions to run (fp32, bf16).") var precisions: [String] = ["fp32", "bf16"]
    @Option(help: "Timed steps per measurement (the median is reported).") var steps = 7
    @Flag(help: "Print one JSON object per measurement.") var json = false

    func run() throws {
        let setups = TrainingBenchmark.setups.filter { configs.contains($0.name) }
        guard !setups.isEmpty else { fail("--configs: expected S and/or M") }
        let precs = try precisions.map { p -> Precision in
            guard let v = Precision(rawValue: p) else { throw ValidationError("--precisions: expected fp32 and/or bf16, got \(p)") }
            return v
        }
        if !json {
            for s in setups {
                for t in threads {
                    print("ceilings, config \(s.name), \(t) thread(s): product            fp32 GFLOP/s  bf16 GFLOP/s")
                    for row in TrainingBenchmark.shapeCeilings(s, threads: t) {
                        print(String(format: "  %-44@ %12.1f %13.1f", row.shape, row.fp32, row.bf16))
                    }
                }
            }
            print(
                "config precision threads  tokens/s   step ms  model GFLOP/s  ceiling GFLOP/s  ratio  ceiling peak  "
                    + "ratio to peak  peak RSS MB")
        }
        for s in setups {
            for p in precs {
                for t in threads {
                    let r = try TrainingBenchmark.run(s, threads: t, precision: p, steps: steps)
                    if json {
                        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]; enc.keyEncodingStrategy = .convertToSnakeCase
                        print(String(data: try enc.encode(r), encoding: .utf8)!)
                    } else {
                        print(
                            String(
                                format: "%-6@ %-9@ %7d %9.0f %9.1f %14.1f %16.1f %6.2f %13.1f %14.2f %12.0f", r.config, r.precision,
                                r.threads, r.tokensPerS, r.stepMs, r.modelGflops, r.ceilingGflops, r.ratio,
                                r.ceilingPeakGflops, r.ratioToPeak, r.peakRssMb))
                    }
                }
            }
        }
    }
}
