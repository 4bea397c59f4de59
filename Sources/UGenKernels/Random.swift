import Foundation

/// SplitMix64: a small, fast, seedable generator whose whole state is one UInt64 (easy to checkpoint).
public struct SplitMix64: RandomNumberGenerator, Codable, Equatable, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal (Box–Muller, one value per call: simple and reproducible).
    public mutating func nextNormal() -> Double {
        let u1 = max(nextDouble(), 1e-300), u2 = nextDouble()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }

    /// Uniform integer in 0..<n (n > 0), by rejection so it is unbiased.
    public mutating func nextInt(below n: Int) -> Int {
        Int(truncatingIfNeeded: next(upperBound: UInt64(n)))
    }
}

/// FNV-1a 64-bit hash: names a stream of random numbers by a string (e.g. a parameter's name), so every
/// parameter's initial values depend only on (seed, name) and not on which process or stage makes them.
public func fnv1a64(_ s: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 { h ^= UInt64(b); h = h &* 0x100_0000_01B3 }
    return h
}
