import Foundation

/// Reductions over float arrays: the softmaxes' max and sum, the norms' sums of squares and dot products,
/// the softmax backward's dot products, the gradient norm's sum of squares. Sums run
/// in double, element i in lane i mod 8 (eight doubles: one AVX-512 register), the lanes added at the end
/// and then the tail: a fixed order for a given length, whatever the vector width the build has, so the
/// result is deterministic, with a chain of dependent additions eight times shorter than one running sum.
public enum Reduce {
    public typealias Lanes = FastExp.Lanes

    /// The largest of n floats (a maximum is exact, so the lane count does not matter).
    @inline(__always)
    public static func max(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = Lanes(repeating: -.infinity)
        var i = 0
        while i + Lanes.scalarCount <= n {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: Lanes.self)
            m.replace(with: v, where: v .> m)  // (pointwiseMax is not inlined)
            i += Lanes.scalarCount
        }
        var mx = m.max()
        while i < n { mx = Swift.max(mx, x[i]); i += 1 }
        return mx
    }

    /// Σ x[i], in double.
    @inline(__always)
    public static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
        laneSum(n, { lanes(x + $0) }, { Double(x[$0]) })
    }

    /// Σ x[i]², in double.
    @inline(__always)
    public static func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
        laneSum(n, { lanes(x + $0) * lanes(x + $0) }, { Double(x[$0]) * Double(x[$0]) })
    }

    /// Σ a[i]·b[i], in double (each product exact in double).
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Double {
        laneSum(n, { lanes(a + $0) * lanes(b + $0) }, { Double(a[$0]) * Double(b[$0]) })
    }

    /// Σ a[i]·b[i]·c[i], in double, multiplied in that order.
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>, _ n: Int) -> Double {
        laneSum(n, { lanes(a + $0) * lanes(b + $0) * lanes(c + $0) }, { Double(a[$0]) * Double(b[$0]) * Double(c[$0]) })
    }

    /// Eight floats from x on, in double.
    @inline(__always)
    static func lanes(_ x: UnsafePointer<Float>) -> SIMD8<Double> {
        SIMD8<Double>(UnsafeRawPointer(x).loadUnaligned(as: SIMD8<Float>.self))
    }

    /// The order every sum here keeps: `eight(i)` gives the terms of elements i..<i+8, added into lane
    /// i mod 8; the lanes are added, then the tail's terms `one(i)` one by one.
    @inline(__always)
    static func laneSum(_ n: Int, _ eight: (Int) -> SIMD8<Double>, _ one: (Int) -> Double) -> Double {
        var acc = SIMD8<Double>(repeating: 0)
        var i = 0
        while i + 8 <= n {
            acc += eight(i)
            i += 8
        }
        var s = (acc.lowHalf + acc.highHalf).sum()
        while i < n { s += one(i); i += 1 }
        return s
    }
}
