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
        // Element-wise, so cut into ranges across the threads: each element's arithmetic is the same.
        for (i, p) in parameters.enumerated() {
            let g = p.grad.data, value = p.value.data, m = m[i].data, v = v[i].data
            Parallel.rows(p.value.count) { r in
                if clipScale < 1 { for j in r { g[j] *= clipScale } }
                AdamW.step(
                    param: value + r.lowerBound, grad: g + r.lowerBound, m: m + r.lowerBound, v: v + r.lowerBound,
                    count: r.count, lr: lr, t: step, hyper: hyper, decay: p.decays)
            }
        }
    }
}

/// The global gradient norm from per-parameter squared norms listed in canonical model order.
public func globalNorm(_ squares: [Double]) -> Double { squares.reduce(0, +).squareRoot() }
