import Foundation
import UGenKernels
import UGenModel
import UGenStore

/// Compares this implementation with reference tensors laid out like `Tests/fixtures/tiny-llama-a.h5`
/// (any configuration; `Tests/python/make_fixture.py` makes them and documents the layout): forward loss
/// and logits, and every parameter gradient, for the plain case and the case with `/batch/inactive_ids`
/// removed from the softmax.
public struct GradCheck {
    public struct Row: Sendable {
        public let caseName: String
        public let quantity: String
        public let relativeError: Double
        public let tolerance: Double
        public var passed: Bool { relativeError <= tolerance }
    }

    /// How far a quantity may be from the float64 reference, by relative norm.
    public struct Tolerances: Sendable {
        public let loss: Double, logits: Double, grad: Double
    }

    /// fp32: fixed bounds a float32 implementation meets with a wide margin (measured: loss ~5e-9,
    /// gradients ~1e-6 relative).
    ///
    /// bf16, derived from the format: a bf16 number keeps 8 significant bits, so rounding an operand moves
    /// it by at most u = 2⁻⁸ relative, u/√3 on average (the error is uniform over half a unit either side).
    /// A product of two rounded operands is then off by about √2·u/√3 relative, by norm: its terms'
    /// errors are independent, so they add in quadrature just as the terms do. The float32 sums add at
    /// most K·2⁻²⁴ over a reduction of length K. Errors of a chain of P products add in quadrature again:
    /// √P·(√(2/3)·u + K·2⁻²⁴). The logits sit at the end of P = 6·L + 1 products (q/k/v, q·kᵀ, p·v, o,
    /// gate/up, down per layer, then the head); a gradient at the end of the forward chain and the
    /// backward one, 2P. The loss is an average of functions of the logits, bounded by the logits' bound.
    /// A factor 4 covers errors that are not quite independent (the same rounded weight feeds every
    /// row). On the 2-layer fixture this predicts 1.2e-2 for the logits and 1.6e-2 for the gradients;
    /// measured 1.0e-2 and at most 2.0e-2. A wrong model is off by O(1).
    public static func tolerances(_ precision: Precision, config c: ModelConfig, seqLen: Int, rows: Int) -> Tolerances {
        switch precision {
        case .fp32:
            return Tolerances(loss: 1e-5, logits: 1e-4, grad: 1e-3)
        case .bf16:
            let u = 0x1p-8, maxK = Double([c.dModel, c.ffnHidden, c.vocabSize, seqLen * rows].max()!)
            let perProduct = (2.0 / 3).squareRoot() * u + maxK * 0x1p-24
            let forward = Double(6 * c.nLayers + 1)
            let logits = 4 * forward.squareRoot() * perProduct
            return Tolerances(loss: logits, logits: logits, grad: 4 * (2 * forward).squareRoot() * perProduct)
        }
    }

    /// Reads a model configuration from a `/config` group's attributes.
    public static func readConfig(_ f: H5File, at group: String = "/config") throws -> ModelConfig {
        func int(_ k: String) throws -> Int { try f.intAttribute(k, at: group) }
        func dbl(_ k: String, _ def: Double) throws -> Double {
            f.hasAttribute(k, at: group) ? try f.doubleAttribute(k, at: group) : def
        }
        let c = ModelConfig(
            vocabSize: try int("vocab_size"), dModel: try int("d_model"), nLayers: try int("n_layers"),
            nHeads: try int("n_heads"), nKVHeads: try int("n_kv_heads"), ffnHidden: try int("ffn_hidden"),
            ropeTheta: try dbl("rope_theta", 10000), rmsEps: try dbl("rms_eps", 1e-5),
            maxSeqLen: try int("max_seq_len"))
        do { try c.validate() } catch { throw StoreError(f.path, .badConfig("\(error)")) }
        return c
    }

    /// Loads `/params/<name>` (or another group) into a stage's parameters, checking every shape.
    public static func loadParameters(_ f: H5File, into stage: Stage, group: String = "/params") throws {
        for p in stage.parameters {
            let name = "\(group)/\(p.name)"
            let shape = try f.shape(of: name)
            guard shape == p.value.shape else {
                throw StoreError(f.path, .shape(name, found: shape, expected: p.value.shape))
            }
            try f.read(name, into: p.value.data, count: p.value.count)
        }
        stage.refreshLowPrecisionWeights()
    }

    /// ‖a − b‖ / ‖b‖ over the entries where b is finite (where b is −∞, a must be too).
    static func relativeError(_ a: UnsafePointer<Float>, _ b: [Double]) -> Double {
        var num = 0.0, den = 0.0
        for i in 0..<b.count {
            if b[i].isInfinite { if !(a[i].isInfinite && a[i] < 0) { return .infinity }; continue }
            let diff = Double(a[i]) - b[i]
            num += diff * diff
            den += b[i] * b[i]
        }
        return (num / max(den, 1e-300)).squareRoot()
    }

    /// Runs both cases and returns one row per compared quantity.
    public static func run(path: String, precision: Precision = .fp32) throws -> [Row] {
        let f = try H5File.open(path)
        let c = try readConfig(f)
        let shape = try f.shape(of: "/batch/inputs")
        guard shape.count == 2 else { throw StoreError(path, .batchShape(shape)) }
        let (B, T) = (shape[0], shape[1])
        let inputs: [Int32] = try f.read("/batch/inputs")
        let targets: [Int32] = try f.read("/batch/targets")
        let mask: [Float] = try f.read("/batch/loss_mask")
        guard targets.count == B * T, mask.count == B * T else { throw StoreError(path, .batchMismatch) }
        for (name, ids) in [("inputs", inputs), ("targets", targets)] where ids.contains(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw StoreError(path, .idsOutside(name, vocabulary: c.vocabSize))
        }
        let stage = try Stage(config: c, spec: .whole(c), rows: B, seqLen: T, precision: precision)
        let tol = tolerances(precision, config: c, seqLen: T, rows: B)
        try loadParameters(f, into: stage)
        let maskSum = mask.reduce(0, +)

        var rows: [Row] = []
        for caseName in ["plain", "masked"] {
            let group = "/expected/\(caseName)"
            guard f.exists(group) else { continue }
            var inactive: [UInt8]? = nil
            if caseName == "masked" {
                let ids: [Int32] = try f.read("/batch/inactive_ids")
                var table = [UInt8](repeating: 0, count: c.vocabSize)
                for id in ids { table[Int(id)] = 1 }
                inactive = table
            }
            let batch = MicroBatch(tokens: inputs, targets: targets, mask: mask, inactive: inactive)
            rows += try compare(f, group, caseName, stage: stage, batch: batch, maskSum: maskSum, tolerances: tol)
        }
        return rows
    }

    /// One case: the batch forward and backward on `stage`, its loss, logits and every parameter
    /// gradient against `group`'s.
    private static func compare(
        _ f: H5File, _ group: String, _ caseName: String, stage: Stage, batch: MicroBatch, maskSum: Float,
        tolerances tol: Tolerances
    ) throws -> [Row] {
        let path = f.path
        var rows: [Row] = []
        stage.zeroGrads()
        let a = stage.activations(0)
        let logits = Tensor([stage.n, stage.config.vocabSize])
        stage.forward(a, batch)
        let lossSum = stage.crossEntropy(a, batch, gradScale: 1 / maskSum, logitsOut: logits.data)!
        stage.backward(a)
        let loss = lossSum / Double(maskSum)
        let refLoss: [Double] = try f.read("\(group)/loss")
        rows.append(
            Row(
                caseName: caseName, quantity: "loss", relativeError: abs(loss - refLoss[0]) / abs(refLoss[0]),
                tolerance: tol.loss))
        if f.exists("\(group)/logits") {
            let refLogits: [Double] = try f.read("\(group)/logits")
            guard refLogits.count == logits.count else { throw StoreError(path, .wrongSize("\(group)/logits")) }
            rows.append(
                Row(
                    caseName: caseName, quantity: "logits", relativeError: relativeError(logits.data, refLogits),
                    tolerance: tol.logits))
        }
        for p in stage.parameters {
            let name = "\(group)/grads/\(p.name)"
            guard f.exists(name) else { throw StoreError(path, .missingDataset(name, notOurs: false)) }
            let ref: [Double] = try f.read(name)
            guard ref.count == p.grad.count else { throw StoreError(path, .wrongSize(name)) }
            rows.append(
                Row(
                    caseName: caseName, quantity: p.name, relativeError: relativeError(p.grad.data, ref),
                    tolerance: tol.grad))
        }
        return rows
    }
}
