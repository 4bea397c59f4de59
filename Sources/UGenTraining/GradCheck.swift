import Foundation
import UGenKernels
import UGenModel
import UGenStore

/// Compares this implementation with reference tensors laid out like `shared/fixtures/tiny-llama.h5`
/// (any configuration): forward loss and logits, and every parameter gradient, for the plain case and
/// the case with `/batch/inactive_ids` removed from the softmax.
public struct GradCheck {
    public struct Row: Sendable {
        public let caseName: String
        public let quantity: String
        public let relativeError: Double
        public let tolerance: Double
        public var passed: Bool { relativeError <= tolerance }
    }

    public static let lossTolerance = 1e-5
    public static let gradTolerance = 1e-3
    public static let logitsTolerance = 1e-4

    /// Reads a model configuration from a `/config` group's attributes.
    public static func readConfig(_ f: H5File, at group: String = "/config") throws -> ModelConfig {
        func int(_ k: String) throws -> Int { try f.intAttribute(k, at: group) }
        func dbl(_ k: String, _ def: Double) throws -> Double {
            f.hasAttribute(k, at: group) ? try f.doubleAttribute(k, at: group) : def
        }
        let c = ModelConfig(vocabSize: try int("vocab_size"), dModel: try int("d_model"), nLayers: try int("n_layers"),
                            nHeads: try int("n_heads"), nKVHeads: try int("n_kv_heads"), ffnHidden: try int("ffn_hidden"),
                            ropeTheta: try dbl("rope_theta", 10000), rmsEps: try dbl("rms_eps", 1e-5),
                            maxSeqLen: try int("max_seq_len"))
        do { try c.validate() } catch { throw StoreError("\(f.path): /config: \(error)") }
        return c
    }

    /// Loads `/params/<name>` (or another group) into a stage's parameters, checking every shape.
    public static func loadParameters(_ f: H5File, into stage: Stage, group: String = "/params") throws {
        for p in stage.parameters {
            let name = "\(group)/\(p.name)"
            let shape = try f.shape(of: name)
            guard shape == p.value.shape else {
                throw StoreError("\(f.path): \(name) has shape \(shape), expected \(p.value.shape)")
            }
            try f.read(name, into: p.value.data, count: p.value.count)
        }
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
    public static func run(path: String) throws -> [Row] {
        let f = try H5File.open(path)
        let c = try readConfig(f)
        let shape = try f.shape(of: "/batch/inputs")
        guard shape.count == 2 else { throw StoreError("\(path): /batch/inputs must be [B, T], is \(shape)") }
        let (B, T) = (shape[0], shape[1])
        let inputs: [Int32] = try f.read("/batch/inputs")
        let targets: [Int32] = try f.read("/batch/targets")
        let mask: [Float] = try f.read("/batch/loss_mask")
        guard targets.count == B * T, mask.count == B * T else { throw StoreError("\(path): /batch tensors disagree in shape") }
        for (name, ids) in [("inputs", inputs), ("targets", targets)] where ids.contains(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw StoreError("\(path): /batch/\(name) holds ids outside the vocabulary of \(c.vocabSize)")
        }
        let stage = try Stage(config: c, spec: .whole(c), rows: B, seqLen: T)
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
            stage.zeroGrads()
            let a = stage.activations(0)
            let logits = Tensor([B * T, c.vocabSize])
            var lossSum = 0.0
            inputs.withUnsafeBufferPointer { inp in
                stage.forward(a, tokens: inp.baseAddress!)
            }
            targets.withUnsafeBufferPointer { tgt in
                mask.withUnsafeBufferPointer { m in
                    let call = { (ina: UnsafePointer<UInt8>?) in
                        lossSum = stage.loss(a, targets: tgt.baseAddress!, mask: m.baseAddress!, inactive: ina,
                                             gradScale: 1 / maskSum, logitsOut: logits.data)
                    }
                    if let inactive { inactive.withUnsafeBufferPointer { call($0.baseAddress!) } } else { call(nil) }
                }
            }
            stage.backward(a)
            let loss = lossSum / Double(maskSum)
            let refLoss: [Double] = try f.read("\(group)/loss")
            rows.append(Row(caseName: caseName, quantity: "loss", relativeError: abs(loss - refLoss[0]) / abs(refLoss[0]),
                            tolerance: lossTolerance))
            if f.exists("\(group)/logits") {
                let refLogits: [Double] = try f.read("\(group)/logits")
                guard refLogits.count == logits.count else { throw StoreError("\(path): \(group)/logits has the wrong size") }
                rows.append(Row(caseName: caseName, quantity: "logits", relativeError: relativeError(logits.data, refLogits),
                                tolerance: logitsTolerance))
            }
            for p in stage.parameters {
                let name = "\(group)/grads/\(p.name)"
                guard f.exists(name) else { throw StoreError("\(path): missing dataset \(name)") }
                let ref: [Double] = try f.read(name)
                guard ref.count == p.grad.count else { throw StoreError("\(path): \(name) has the wrong size") }
                rows.append(Row(caseName: caseName, quantity: p.name, relativeError: relativeError(p.grad.data, ref),
                                tolerance: gradTolerance))
            }
        }
        return rows
    }
}
