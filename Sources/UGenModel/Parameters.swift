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

/// A parameter of layer `l` named as in HuggingFace.
private func layerParameter(_ l: Int, _ name: String, _ shape: [Int]) -> Parameter {
    Parameter(name: "model.layers.\(l).\(name)", value: Tensor(shape), grad: Tensor(shape))
}

/// Rows `rows` of a fused [R, d] matrix (and its gradient) as a named parameter of its own.
private func layerView(_ l: Int, _ name: String, _ base: Tensor, _ grad: Tensor, rows: Range<Int>, d: Int) -> Parameter {
    Parameter(
        name: "model.layers.\(l).\(name)", value: Tensor(viewOf: base, offset: rows.lowerBound * d, shape: [rows.count, d]),
        grad: Tensor(viewOf: grad, offset: rows.lowerBound * d, shape: [rows.count, d]))
}

/// The attention half of a layer. q/k/v are views into one fused [(H+2·Hkv)·hd, d] matrix, so the block
/// runs one sgemm where it would run three.
final class AttentionWeights {
    let norm, q, k, v, o: Parameter
    let qkv, qkvGrad: Tensor

    init(_ c: ModelConfig, layer l: Int) {
        let d = c.dModel, qRows = c.nHeads * c.headDim, kvRows = c.nKVHeads * c.headDim
        norm = layerParameter(l, "input_layernorm.weight", [d])
        qkv = Tensor([c.qkvWidth, d]); qkvGrad = Tensor([c.qkvWidth, d])
        q = layerView(l, "self_attn.q_proj.weight", qkv, qkvGrad, rows: 0..<qRows, d: d)
        k = layerView(l, "self_attn.k_proj.weight", qkv, qkvGrad, rows: qRows..<(qRows + kvRows), d: d)
        v = layerView(l, "self_attn.v_proj.weight", qkv, qkvGrad, rows: (qRows + kvRows)..<(qRows + 2 * kvRows), d: d)
        o = layerParameter(l, "self_attn.o_proj.weight", [d, qRows])
    }

    /// In canonical order (`ModelConfig.layerParameterShapes`).
    var parameters: [Parameter] { [norm, q, k, v, o] }
    /// The gradient buffers it owns (the fused one once, not through its views).
    var gradStorage: [Tensor] { [norm.grad, qkvGrad, o.grad] }
}

/// The MLP half of a layer. gate/up are views into one fused [2f, d] matrix.
final class MLPWeights {
    let norm, gate, up, down: Parameter
    let gateUp, gateUpGrad: Tensor

    init(_ c: ModelConfig, layer l: Int) {
        let d = c.dModel, f = c.ffnHidden
        norm = layerParameter(l, "post_attention_layernorm.weight", [d])
        gateUp = Tensor([2 * f, d]); gateUpGrad = Tensor([2 * f, d])
        gate = layerView(l, "mlp.gate_proj.weight", gateUp, gateUpGrad, rows: 0..<f, d: d)
        up = layerView(l, "mlp.up_proj.weight", gateUp, gateUpGrad, rows: f..<(2 * f), d: d)
        down = layerParameter(l, "mlp.down_proj.weight", [d, f])
    }

    var parameters: [Parameter] { [norm, gate, up, down] }
    var gradStorage: [Tensor] { [norm.grad, gateUpGrad, down.grad] }
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
