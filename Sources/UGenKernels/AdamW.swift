import Foundation

/// AdamW exactly as PyTorch's `torch.optim.AdamW` (decoupled weight decay), one tensor at a time.
public struct AdamWHyper: Codable, Equatable, Sendable {
    public var beta1: Double = 0.9
    public var beta2: Double = 0.95
    public var eps: Double = 1e-8
    public var weightDecay: Double = 0.1
    public init(beta1: Double = 0.9, beta2: Double = 0.95, eps: Double = 1e-8, weightDecay: Double = 0.1) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }
}

public enum AdamW {
    /// One update of `param` from `grad` at 1-based step `t`. Weight decay applies when `decay`
    /// (2-D weights only, by the caller's choice).
    public static func step(
        param: UnsafeMutablePointer<Float>, grad: UnsafePointer<Float>,
        m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
        lr: Double, t: Int, hyper h: AdamWHyper, decay: Bool
    ) {
        let b1 = Float(h.beta1), b2 = Float(h.beta2)
        let bc1 = 1 - pow(h.beta1, Double(t)), bc2 = 1 - pow(h.beta2, Double(t))
        let stepSize = Float(lr / bc1)
        let bc2Sqrt = Float(bc2.squareRoot())
        let eps = Float(h.eps)
        let shrink = Float(1 - lr * (decay ? h.weightDecay : 0))
        // One element at a time, written so the compiler vectorises the loop (AVX-512 where the build has
        // it): the same IEEE operations per element at any width (no fused multiply-add).
        for i in 0..<count {
            let g = grad[i]
            let mi = b1 * m[i] + (1 - b1) * g
            let vi = b2 * v[i] + (1 - b2) * g * g
            m[i] = mi
            v[i] = vi
            let denom = vi.squareRoot() / bc2Sqrt + eps
            param[i] = param[i] * shrink - stepSize * mi / denom
        }
    }

    /// PyTorch's `clip_grad_norm_` factor: `maxNorm / (norm + 1e-6)` when that is below 1, else 1.
    public static func clipScale(globalNorm: Double, maxNorm: Double) -> Float {
        guard maxNorm > 0 else { return 1 }
        let c = maxNorm / (globalNorm + 1e-6)
        return c < 1 ? Float(c) : 1
    }
}
