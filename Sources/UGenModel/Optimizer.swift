import Foundation
import UGenKernels

/// AdamW moments for a set of parameters (one stage's), and the step count.
public final class AdamWState {
    public let m: [Tensor]
    public let v: [Tensor]
    /// Number of updates applied so far (PyTorch's `state['step']`).
    public var step = 0

    public init(parameters: [Parameter]) {
        m = parameters.map { Tensor($0.value.shape) }
        v = parameters.map { Tensor($0.value.shape) }
    }

    /// Scales every gradient by `clipScale` (when below 1), then applies one AdamW update.
    public func update(_ parameters: [Parameter], lr: Double, hyper: AdamWHyper, clipScale: Float) {
        step += 1
        for (i, p) in parameters.enumerated() {
            if clipScale < 1 { for j in 0..<p.grad.count { p.grad[j] *= clipScale } }
            AdamW.step(param: p.value.data, grad: p.grad.data, m: m[i].data, v: v[i].data, count: p.value.count,
                       lr: lr, t: step, hyper: hyper, decay: p.decays)
        }
    }
}

/// The global gradient norm from per-parameter squared norms listed in canonical model order.
public func globalNorm(_ squares: [Double]) -> Double { squares.reduce(0, +).squareRoot() }
