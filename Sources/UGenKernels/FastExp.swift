import Foundation

/// e^x sixteen lanes at a time (one AVX-512 register where the build has it, two AVX2 or four SSE ones
/// elsewhere: the same IEEE operations per element either way): the softmaxes (over the vocabulary and over attention scores) and SwiGLU's
/// sigmoid take ~50 M exponentials per config-S step, which one scalar `expf` at a time spent ~12% of
/// the step on. This is the Cephes `expf` (range reduction by ln 2 split in two, a degree-6 polynomial on
/// [−ln2/2, ln2/2], 2ⁿ put in the exponent bits), within 2 ulp of the exact value (a test checks it
/// against `Foundation.exp` in double). Every element gets the same arithmetic whatever its position, so
/// results do not depend on how an array is cut into lanes or threads.
///
/// e^x is 0 below −87.3 (where float32 turns denormal: a softmax term that small is zero at float32
/// precision anyway; −∞, the removed ids' logit, gives exactly 0) and +∞ above 88.37 (e^88.37 is within
/// 10% of the largest float; softmaxes only ever take e^x for x ≤ 0).
public enum FastExp {
    public typealias Lanes = SIMD16<Float>

    @inline(__always)
    public static func exp(_ x: Lanes) -> Lanes {
        let low: Float = -87.33654, high: Float = 88.37626  // 2ⁿ stays a normal float: n ∈ −126…127
        var xc = x  // clamped by masks (SIMD's clamped(lowerBound:upperBound:) is not inlined)
        xc.replace(with: low, where: x .< low)
        xc.replace(with: high, where: x .> high)
        // n = round(x / ln 2) by the 1.5·2²³ trick (no rounding instruction needed).
        let magic: Float = 12_582_912
        let t = xc * Float(1.44269504088896341) + magic
        let n = t - magic
        let r = xc - n * Float(0.693359375) - n * Float(-2.12194440e-4)
        var p = Lanes(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * (r * r) + r + 1
        // 2ⁿ: n sits in t's low mantissa bits (t = 1.5·2²³ + n); move n + 127 into the exponent field.
        let nBits = unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000
        let scale = unsafeBitCast((nBits &+ 127) &<< 23, to: Lanes.self)
        var y = p * scale
        y.replace(with: 0, where: x .< low)
        y.replace(with: .infinity, where: x .> high)
        return y
    }

    /// One value through the same lanes (for the rare single value; arrays use `apply`).
    @inline(__always)
    public static func exp(_ x: Float) -> Float { exp(Lanes(repeating: x))[0] }

    /// y[i] = f(x[i]) for i in 0..<count, a vector at a time; the tail goes through a padded vector, so it gets
    /// the same arithmetic. `y` may be `x`.
    @inline(__always)
    public static func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, _ f: (Lanes) -> Lanes) {
        var i = 0
        while i + Lanes.scalarCount <= count {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: Lanes.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: f(v), as: Lanes.self)
            i += Lanes.scalarCount
        }
        if i < count {
            var v = Lanes(repeating: 0)
            for j in 0..<(count - i) { v[j] = x[i + j] }
            let out = f(v)
            for j in 0..<(count - i) { y[i + j] = out[j] }
        }
    }
}
