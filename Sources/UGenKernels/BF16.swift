import Foundation

/// bfloat16: the top 16 bits of a float32 (sign, the same 8 exponent bits, 7 mantissa bits). A bf16 run
/// multiplies bf16 operands with float32 sums; these are the conversions on the way in.
public enum BF16 {
    /// Round to nearest, ties to even (what PyTorch's `.to(torch.bfloat16)` and oneDNN's reorders do);
    /// a NaN stays a (quiet) NaN instead of rounding up into infinity.
    @inline(__always)
    public static func round(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if b & 0x7FFF_FFFF > 0x7F80_0000 { return UInt16(truncatingIfNeeded: b >> 16) | 0x0040 }
        return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    }

    @inline(__always)
    public static func float(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

    /// Converts `rows` rows of `cols` floats (row stride `ld`) into a dense [rows, cols] bf16 array.
    public static func convert(_ src: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int, into dst: UnsafeMutablePointer<UInt16>) {
        Parallel.rows(rows) { range in
            for r in range { convertRow(src + r * ld, dst + r * cols, cols) }
        }
    }

    /// `round` without a branch, so the compiler turns the loop over a row into vector code (AVX-512 or
    /// AVX2: shifts, adds, a compare and a blend per lane; the same IEEE-free integer arithmetic either way).
    @inline(__always)
    static func convertRow(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<UInt16>, _ n: Int) {
        let bits = UnsafeRawPointer(s).assumingMemoryBound(to: UInt32.self)
        for i in 0..<n {
            let b = bits[i]
            let rounded = (b &+ 0x7FFF &+ ((b &>> 16) & 1)) &>> 16
            let nan = (b &>> 16) | 0x0040
            d[i] = UInt16(truncatingIfNeeded: (b & 0x7FFF_FFFF) > 0x7F80_0000 ? nan : rounded)
        }
    }
}
