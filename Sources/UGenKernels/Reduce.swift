import Foundation

/// Reductions over a float array, eight lanes at a time: the softmaxes' max and sum, the gradient norm's
/// sum of squares. Sums run in double, element i in lane i mod 8, the lanes added at the end and then the
/// tail: a fixed order for a given length, so the result is deterministic, with a chain of dependent
/// additions eight times shorter than one running sum.
public enum Reduce {
    public typealias Lanes = SIMD8<Float>

    /// The largest of n floats.
    @inline(__always)
    public static func max(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = Lanes(repeating: -.infinity)
        var i = 0
        while i + 8 <= n {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: Lanes.self)
            m.replace(with: v, where: v .> m)  // (pointwiseMax is not inlined)
            i += 8
        }
        var mx = m.max()
        while i < n { mx = Swift.max(mx, x[i]); i += 1 }
        return mx
    }

    /// Σ x[i], in double.
    @inline(__always)
    public static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Double { laneSum(x, n) { $0 } }

    /// Σ x[i]², in double.
    @inline(__always)
    public static func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Double { laneSum(x, n) { $0 * $0 } }

    @inline(__always)
    static func laneSum(_ x: UnsafePointer<Float>, _ n: Int, _ f: (SIMD4<Double>) -> SIMD4<Double>) -> Double {
        var lo = SIMD4<Double>(repeating: 0), hi = SIMD4<Double>(repeating: 0)
        var i = 0
        while i + 8 <= n {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: Lanes.self)
            lo += f(SIMD4<Double>(v.lowHalf)); hi += f(SIMD4<Double>(v.highHalf))
            i += 8
        }
        var s = (lo + hi).sum()
        while i < n { s += f(SIMD4<Double>(repeating: Double(x[i])))[0]; i += 1 }
        return s
    }
}
