import Foundation
import UGenKernels
import UGenModel

/// Single-process training throughput against the machine's own `cblas_sgemm` rate, measured in the
/// same run (issue 2's speed target: the model's achieved GFLOP/s as a fraction of sgemm's).
public enum TrainingBenchmark {
    public struct Setup: Sendable {
        public let name: String
        public let model: ModelConfig
        public let seqLen: Int
        public let batch: Int
    }

    /// Config S and M of issue 2.
    public static let setups: [Setup] = [
        Setup(name: "S", model: ModelConfig(vocabSize: 4096, dModel: 256, nLayers: 4, nHeads: 4, ffnHidden: 688, maxSeqLen: 256),
              seqLen: 256, batch: 8),
        Setup(name: "M", model: ModelConfig(vocabSize: 8192, dModel: 512, nLayers: 8, nHeads: 8, ffnHidden: 1376, maxSeqLen: 256),
              seqLen: 256, batch: 8),
    ]

    public struct Result: Codable, Sendable {
        public let config: String
        public let threads: Int
        public let tokens_per_s: Double
        public let step_ms: Double
        public let model_gflops: Double
        /// Median of the sgemm samples taken one before each timed step.
        public let sgemm_gflops: Double
        /// Median over the timed steps of (the step's model GFLOP/s ÷ the sample just before it): the
        /// efficiency under the same conditions, so a shared machine's slow spells cancel out.
        public let ratio: Double
        /// The best sgemm sample of the whole measurement (1024² and 2048², before, between, after).
        public let sgemm_peak_gflops: Double
        /// Model GFLOP/s of the median step ÷ the peak: the stricter reading.
        public let ratio_to_peak: Double
        public let peak_rss_mb: Double
    }

    /// The machine's sgemm peak at `threads`: the best of several short samples on 1024² and 2048²
    /// products (a neighbour's burst on a shared machine lowers a sample but never raises one).
    public static func sgemmPeak(threads: Int, samples: Int = 3) -> Double {
        var best = 0.0
        for n in [1024, 2048] {
            for _ in 0..<samples { best = max(best, BLAS.measureSgemmGFLOPs(n: n, threads: threads, seconds: 0.4)) }
        }
        return best
    }

    /// Times `steps` optimizer steps (after `warmup`) of the whole model on random tokens (throughput does
    /// not depend on the tokens' content), the batch as one micro-batch. Before each timed step one short
    /// sgemm sample is taken at the same thread count, and the step is judged against it; the peak of all
    /// samples (and of longer ones before and after) is reported beside it.
    public static func run(_ s: Setup, threads: Int, steps: Int = 5, warmup: Int = 1) throws -> Result {
        BLAS.setThreads(threads)
        var peak = sgemmPeak(threads: threads)
        let stage = try Stage(config: s.model, spec: .whole(s.model), rows: s.batch, seqLen: s.seqLen)
        stage.initialize(seed: 1)
        let opt = AdamWState(parameters: stage.parameters)
        let n = s.batch * s.seqLen
        var rng = SplitMix64(seed: 9)
        let tokens = (0..<n).map { _ in Int32(rng.nextInt(below: s.model.vocabSize)) }
        let targets = (0..<n).map { _ in Int32(rng.nextInt(below: s.model.vocabSize)) }
        let mask = [Float](repeating: 1, count: n)
        let a = stage.activations(0)
        func step() {
            stage.zeroGrads()
            tokens.withUnsafeBufferPointer { stage.forward(a, tokens: $0.baseAddress!) }
            targets.withUnsafeBufferPointer { t in mask.withUnsafeBufferPointer { m in
                _ = stage.loss(a, targets: t.baseAddress!, mask: m.baseAddress!, gradScale: 1 / Float(n))
            } }
            stage.backward(a)
            let norm = globalNorm(stage.gradSquares())
            opt.update(stage.parameters, lr: 1e-4, hyper: AdamWHyper(), clipScale: AdamW.clipScale(globalNorm: norm, maxNorm: 1))
        }
        for _ in 0..<warmup { step() }
        let flopsPerStep = Double(n) * s.model.trainingFLOPsPerToken(seqLen: s.seqLen)
        var times: [Double] = [], samples: [Double] = [], ratios: [Double] = []
        for _ in 0..<steps {
            let sample = BLAS.measureSgemmGFLOPs(n: 1024, threads: threads, seconds: 0.25)
            let start = Date()
            step()
            let t = Date().timeIntervalSince(start)
            times.append(t); samples.append(sample); ratios.append(flopsPerStep / t / 1e9 / sample)
        }
        peak = max(peak, samples.max() ?? 0, sgemmPeak(threads: threads))
        let seconds = median(times)
        let gflops = flopsPerStep / seconds / 1e9
        return Result(config: s.name, threads: threads, tokens_per_s: Double(n) / seconds, step_ms: seconds * 1000, model_gflops: gflops,
                      sgemm_gflops: median(samples), ratio: median(ratios), sgemm_peak_gflops: peak, ratio_to_peak: gflops / peak,
                      peak_rss_mb: peakRSSMegabytes())
    }

    /// The process's peak resident memory so far.
    public static func peakRSSMegabytes() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_maxrss) / 1024
    }
}

/// The middle value (the upper one of the two middles for an even count): what the benchmarks report,
/// since on a shared machine one disturbed sample moves a mean further than the effects measured.
public func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
