import Foundation
import UGenKernels

/// A named trainable tensor with its gradient (HuggingFace name and shape).
public final class Parameter {
    public let name: String
    public let value: Tensor
    public let grad: Tensor
    public init(name: String, value: Tensor, grad: Tensor) {
        self.name = name; self.value = value; self.grad = grad
    }
    /// Decoupled weight decay applies to 2-D weights only (not to norm gains).
    public var decays: Bool { value.shape.count == 2 }
}

/// One transformer block's weights. q/k/v are views into one fused [(H+2·Hkv)·hd, d] matrix and
/// gate/up into one [2f, d] matrix, so the block runs one sgemm where it would run three or two.
final class BlockWeights {
    let attnNorm, q, k, v, o, mlpNorm, gate, up, down: Parameter
    let qkv, qkvGrad, gateUp, gateUpGrad: Tensor

    init(_ c: ModelConfig, layer l: Int) {
        let d = c.dModel, hd = c.headDim, f = c.ffnHidden
        let p = "model.layers.\(l)."
        func param(_ n: String, _ shape: [Int]) -> Parameter { Parameter(name: p + n, value: Tensor(shape), grad: Tensor(shape)) }
        func view(_ n: String, _ base: Tensor, _ grad: Tensor, rows: Range<Int>) -> Parameter {
            Parameter(name: p + n, value: Tensor(viewOf: base, offset: rows.lowerBound * d, shape: [rows.count, d]),
                      grad: Tensor(viewOf: grad, offset: rows.lowerBound * d, shape: [rows.count, d]))
        }
        attnNorm = param("input_layernorm.weight", [d])
        qkv = Tensor([c.qkvWidth, d]); qkvGrad = Tensor([c.qkvWidth, d])
        let qRows = c.nHeads * hd, kvRows = c.nKVHeads * hd
        q = view("self_attn.q_proj.weight", qkv, qkvGrad, rows: 0..<qRows)
        k = view("self_attn.k_proj.weight", qkv, qkvGrad, rows: qRows..<(qRows + kvRows))
        v = view("self_attn.v_proj.weight", qkv, qkvGrad, rows: (qRows + kvRows)..<(qRows + 2 * kvRows))
        o = param("self_attn.o_proj.weight", [d, qRows])
        mlpNorm = param("post_attention_layernorm.weight", [d])
        gateUp = Tensor([2 * f, d]); gateUpGrad = Tensor([2 * f, d])
        gate = view("mlp.gate_proj.weight", gateUp, gateUpGrad, rows: 0..<f)
        up = view("mlp.up_proj.weight", gateUp, gateUpGrad, rows: f..<(2 * f))
        down = param("mlp.down_proj.weight", [d, f])
    }

    /// In canonical order (`ModelConfig.layerParameterShapes`).
    var parameters: [Parameter] { [attnNorm, q, k, v, o, mlpNorm, gate, up, down] }
}

/// Seeded initialisation that depends only on (seed, parameter name): any partition of the model into
/// stages, in any number of processes, starts from the same weights.
public enum Initializer {
    public static func initialize(_ p: Parameter, seed: UInt64, nLayers: Int, std: Double = 0.02) {
        if p.value.shape.count == 1 {  // RMSNorm gains
            for i in 0..<p.value.count { p.value[i] = 1 }
            return
        }
        // Residual-branch outputs are scaled down by √(2L) (GPT-2), keeping the stream's variance steady.
        let isResidualOut = p.name.hasSuffix("o_proj.weight") || p.name.hasSuffix("down_proj.weight")
        let s = isResidualOut ? std / (2 * Double(nLayers)).squareRoot() : std
        var rng = SplitMix64(seed: fnv1a64("\(seed)/\(p.name)"))
        for i in 0..<p.value.count { p.value[i] = Float(rng.nextNormal() * s) }
    }
}
