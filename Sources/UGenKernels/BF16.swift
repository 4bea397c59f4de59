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

    typealias Lanes = SIMD16<UInt32>

    /// `round` sixteen lanes at a time (one AVX-512 register where the build has it).
    @inline(__always)
    static func round(_ b: Lanes) -> SIMD16<UInt16> {
        var r = (b &+ 0x7FFF &+ ((b &>> 16) & 1)) &>> 16
        r.replace(with: (b &>> 16) | 0x0040, where: (b & 0x7FFF_FFFF) .> 0x7F80_0000)
        return SIMD16<UInt16>(truncatingIfNeeded: r)
    }

    /// Converts `rows` rows of `cols` floats (row stride `ld`) into a dense [rows, cols] bf16 array.
    public static func convert(_ src: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int, into dst: UnsafeMutablePointer<UInt16>) {
        Parallel.rows(rows) { range in
            for r in range { convertRow(src + r * ld, dst + r * cols, cols) }
        }
    }

    @inline(__always)
    static func convertRow(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<UInt16>, _ n: Int) {
        let raw = UnsafeRawPointer(s), out = UnsafeMutableRawPointer(d)
        var i = 0
        while i + 16 <= n {
            out.storeBytes(of: round(raw.loadUnaligned(fromByteOffset: 4 * i, as: Lanes.self)), toByteOffset: 2 * i,
                           as: SIMD16<UInt16>.self)
            i += 16
        }
        while i < n { d[i] = round(s[i]); i += 1 }
    }
}
