import Foundation
import UGenKernels
import UGenModel

/// Single-process training throughput against the machine's own product rate at the same precision
/// (`cblas_sgemm` for fp32, oneDNN's bf16 matmul for bf16), measured in the same run: the model's
/// achieved GFLOP/s as a fraction of what the product kernels alone reach.
public enum TrainingBenchmark {
    public struct Setup: Sendable {
        public let name: String
        public let model: ModelConfig
        public let seqLen: Int
        public let batch: Int
    }

    /// Configs S and M.
    public static let setups: [Setup] = [
        Setup(
            name: "S", model: ModelConfig(vocabSize: 4096, dModel: 256, nLayers: 4, nHeads: 4, ffnHidden: 688, maxSeqLen: 256),
            seqLen: 256, batch: 8),
        Setup(
            name: "M", model: ModelConfig(vocabSize: 8192, dModel: 512, nLayers: 8, nHeads: 8, ffnHidden: 1376, maxSeqLen: 256),
            seqLen: 256, batch: 8),
    ]

    public struct Result: Codable, Sendable {
        public let config: String
        public let precision: String
        public let threads: Int
        public let tokensPerS: Double
        public let stepMs: Double
        public let modelGflops: Double
        /// Median of the product-rate samples (1024², the run's precision) taken one before each timed step.
        public let ceilingGflops: Double
        /// Median over the timed steps of (the step's model GFLOP/s ÷ the sample just before it): the
        /// efficiency under the same conditions, so a shared machine's slow spells cancel out.
        public let ratio: Double
        /// The best product-rate sample of the whole measurement (1024² and 2048², before, between, after).
        public let ceilingPeakGflops: Double
        /// Model GFLOP/s of the median step ÷ the peak: the stricter reading.
        public let ratioToPeak: Double
        public let peakRssMb: Double
    }

    /// One sample of the product rate on n×n×n at `threads`: sgemm (OpenBLAS threading) or bf16 (oneDNN,
    /// cut over the threads as `BLAS.gemm` cuts it).
    public static func productRate(_ precision: Precision, n: Int, threads: Int, seconds: Double) -> Double {
        switch precision {
        case .fp32: BLAS.measureSgemmGFLOPs(n: n, threads: threads, seconds: seconds)
        case .bf16: BLAS.measureBF16GFLOPs(m: n, n: n, k: n, threads: threads, seconds: seconds)
        }
    }

    /// The machine's product peak at `threads`: the best of several short samples on 1024² and 2048²
    /// products (a neighbour's burst on a shared machine lowers a sample but never raises one).
    public static func productPeak(_ precision: Precision, threads: Int, samples: Int = 3) -> Double {
        var best = 0.0
        for n in [1024, 2048] {
            for _ in 0..<samples { best = max(best, productRate(precision, n: n, threads: threads, seconds: 0.4)) }
        }
        return best
    }

    /// The product rates (GFLOP/s) at the model's own forward shapes, [rows, in] · [in, out]ᵀ: the ceiling a
    /// step of this config could reach, per precision.
    public static func shapeCeilings(_ s: Setup, threads: Int) -> [(shape: String, fp32: Double, bf16: Double)] {
        let c = s.model, n = s.batch * s.seqLen
        let shapes = [
            ("q/k/v", c.qkvWidth, c.dModel), ("o", c.dModel, c.nHeads * c.headDim), ("gate/up", 2 * c.ffnHidden, c.dModel),
            ("down", c.dModel, c.ffnHidden), ("head", c.vocabSize, c.dModel),
        ]
        BLAS.setThreads(threads)
        return shapes.map { name, out, inF in
            let x = Tensor([n, inF]), w = Tensor([out, inF]), y = Tensor([n, out])
            for i in 0..<x.count { x[i] = Float(i % 7) * 0.01 }
            for i in 0..<w.count { w[i] = Float(i % 5) * 0.01 }
            w.refreshBF16()
            func rate(_ p: Precision) -> Double {
                let run = { Linear.forward(out: y.data, x: x.data, w: w.data, wBF16: w.bf16, n: n, inF: inF, outF: out, precision: p) }
                run()
                var reps = 0
                let start = Date()
                while Date().timeIntervalSince(start) < 0.3 { run(); reps += 1 }
                return 2.0 * Double(n * inF * out) * Double(reps) / Date().timeIntervalSince(start) / 1e9
            }
            return ("\(name) \(n)×\(inF)·\(inF)×\(out)", rate(.fp32), rate(.bf16))
        }
    }

    /// Times `steps` optimizer steps (after `warmup`) of the whole model on random tokens (throughput does
    /// not depend on the tokens' content), the batch as one micro-batch. Before each timed step one short
    /// sgemm sample is taken at the same thread count, and the step is judged against it; the peak of all
    /// samples (and of longer ones before and after) is reported beside it.
    public static func run(_ s: Setup, threads: Int, precision: Precision = .fp32, steps: Int = 5, warmup: Int = 1) throws -> Result {
        BLAS.setThreads(threads)
        var peak = productPeak(precision, threads: threads)
        let stage = try Stage(config: s.model, spec: .whole(s.model), rows: s.batch, seqLen: s.seqLen, precision: precision)
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
            targets.withUnsafeBufferPointer { t in
                mask.withUnsafeBufferPointer { m in
                    _ = stage.loss(a, targets: t.baseAddress!, mask: m.baseAddress!, gradScale: 1 / Float(n))
                }
            }
            stage.backward(a)
            let norm = globalNorm(stage.gradSquares())
            stage.update(with: opt, lr: 1e-4, hyper: AdamWHyper(), clipScale: AdamW.clipScale(globalNorm: norm, maxNorm: 1))
        }
        for _ in 0..<warmup { step() }
        let flopsPerStep = Double(n) * s.model.trainingFLOPsPerToken(seqLen: s.seqLen)
        var times: [Double] = [], samples: [Double] = [], ratios: [Double] = []
        for _ in 0..<steps {
            let sample = productRate(precision, n: 1024, threads: threads, seconds: 0.25)
            let start = Date()
            step()
            let t = Date().timeIntervalSince(start)
            times.append(t); samples.append(sample); ratios.append(flopsPerStep / t / 1e9 / sample)
        }
        peak = max(peak, samples.max() ?? 0, productPeak(precision, threads: threads))
        let seconds = median(times)
        let gflops = flopsPerStep / seconds / 1e9
        return Result(
            config: s.name, precision: precision.rawValue, threads: threads, tokensPerS: Double(n) / seconds,
            stepMs: seconds * 1000, modelGflops: gflops,
            ceilingGflops: median(samples), ratio: median(ratios), ceilingPeakGflops: peak, ratioToPeak: gflops / peak,
            peakRssMb: peakRSSMegabytes())
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
