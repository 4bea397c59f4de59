import Foundation

/// e^x for arrays: the softmaxes (over the vocabulary and over attention scores) and SwiGLU's sigmoid take
/// ~50 M exponentials per config-S step, which one `expf` call at a time spent ~12% of the step on. This is
/// the Cephes `expf` (range reduction by ln 2 split in two, a degree-6 polynomial on [−ln2/2, ln2/2], 2ⁿ put
/// in the exponent bits), within 2 ulp of the exact value (a test checks it against `Foundation.exp` in
/// double). It is written for one value, without branches, so that the loops of `apply` compile to vector
/// code of whatever width the build has (AVX-512, AVX2 or SSE): the same IEEE operations per element
/// either way (no FMA contraction), so results do not depend on the width, the position in an array or the
/// threads. (Swift's SIMD16 types with masked `replace` compiled to 128-bit pieces and outlined calls.)
///
/// e^x is 0 below −87.3 (where float32 turns denormal: a softmax term that small is zero at float32
/// precision anyway; −∞, the removed ids' logit, gives exactly 0) and +∞ above 88.37 (e^88.37 is within
/// 10% of the largest float; softmaxes only ever take e^x for x ≤ 0).
public enum FastExp {
    /// The lane type of the reductions (`Reduce`).
    public typealias Lanes = SIMD16<Float>

    @inline(__always)
    public static func exp(_ x: Float) -> Float {
        let low: Float = -87.33654, high: Float = 88.37626  // 2ⁿ stays a normal float: n ∈ −126…127
        let xc = x < low ? low : (x > high ? high : x)
        // n = round(x / ln 2) by the 1.5·2²³ trick (no rounding instruction needed).
        let magic: Float = 12_582_912
        let t = xc * Float(1.44269504088896341) + magic
        let n = t - magic
        let r = xc - n * Float(0.693359375) - n * Float(-2.12194440e-4)
        var p: Float = 1.9875691500e-4
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * (r * r) + r + 1
        // 2ⁿ: n sits in t's low mantissa bits (t = 1.5·2²³ + n); move n + 127 into the exponent field.
        let nBits = Int32(bitPattern: t.bitPattern) &- 0x4B40_0000
        let scale = Float(bitPattern: UInt32(bitPattern: (nBits &+ 127) &<< 23))
        let y = p * scale
        return x < low ? 0 : (x > high ? .infinity : y)
    }

    /// y[i] = f(x[i]) for i in 0..<count, x and y distinct.
    @inline(__always)
    public static func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, _ f: (Float) -> Float) {
        for i in 0..<count { y[i] = f(x[i]) }
    }

    /// x[i] = f(x[i]) for i in 0..<count (one pointer, so the compiler needs no overlap check to vectorise).
    @inline(__always)
    public static func applyInPlace(_ x: UnsafeMutablePointer<Float>, count: Int, _ f: (Float) -> Float) {
        for i in 0..<count { x[i] = f(x[i]) }
    }
}
