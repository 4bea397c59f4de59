import XCTest

@testable import UGenKernels

/// bf16 rounding, and the bf16 products of `BLAS.gemm` against a float64 product of the same rounded
/// operands: what oneDNN computes must be exactly that product up to float32 summation error.
final class BF16Tests: XCTestCase {
    func testRoundingIsToNearestEvenAndKeepsSpecials() {
        XCTAssertEqual(BF16.round(1.0), 0x3F80)
        XCTAssertEqual(BF16.round(-2.0), 0xC000)
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even mantissa (1.0).
        XCTAssertEqual(BF16.round(Float(bitPattern: 0x3F80_8000)), 0x3F80)
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: to the even one, upwards.
        XCTAssertEqual(BF16.round(Float(bitPattern: 0x3F81_8000)), 0x3F82)
        XCTAssertEqual(BF16.round(Float(bitPattern: 0x3F80_8001)), 0x3F81, "just above half rounds up")
        XCTAssertEqual(BF16.round(.infinity), 0x7F80)
        XCTAssertEqual(BF16.round(-.infinity), 0xFF80)
        XCTAssertTrue(BF16.float(BF16.round(.nan)).isNaN)
        XCTAssertTrue(BF16.float(BF16.round(Float(bitPattern: 0x7F80_0001))).isNaN, "a NaN with low payload bits stays NaN")
        XCTAssertEqual(BF16.round(.greatestFiniteMagnitude), 0x7F80, "overflows to infinity, as round-to-nearest must")
        var rng = SplitMix64(seed: 1)
        for _ in 0..<10_000 {
            let x = Float(rng.nextNormal() * 100)
            let r = BF16.float(BF16.round(x))
            XCTAssertLessThanOrEqual(abs(r - x), abs(x) * 0x1p-8, "\(x)")
        }
    }

    func testVectorConversionEqualsTheScalarOne() {
        var rng = SplitMix64(seed: 2)
        let rows = 3, cols = 37, ld = 41
        var src = (0..<(rows * ld)).map { _ in Float(rng.nextNormal()) }
        src[5] = .nan; src[6] = .infinity; src[7] = Float(bitPattern: 0x3F80_8000)
        var dst = [UInt16](repeating: 0, count: rows * cols)
        src.withUnsafeBufferPointer { s in
            dst.withUnsafeMutableBufferPointer { d in
                BF16.convert(s.baseAddress!, ld: ld, rows: rows, cols: cols, into: d.baseAddress!)
            }
        }
        for r in 0..<rows { for c in 0..<cols { XCTAssertEqual(dst[r * cols + c], BF16.round(src[r * ld + c]), "row \(r) col \(c)") } }
    }

    /// Every transpose, leading dimensions wider than the rows, alpha, beta, a weight's ready bf16 copy, and
    /// sizes below and above the split threshold at 1 and 2 threads.
    func testProductsEqualTheFloat64ProductOfTheRoundedOperands() {
        let saved = Parallel.width
        defer { Parallel.width = saved }
        var rng = SplitMix64(seed: 3)
        for (m, n, k) in [(5, 7, 9), (33, 17, 64), (256, 160, 96)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    for threads in [1, 2] {
                        Parallel.width = threads
                        let (aRows, aCols) = transA ? (k, m) : (m, k), (bRows, bCols) = transB ? (n, k) : (k, n)
                        let lda = aCols + 3, ldb = bCols + 1, ldc = n + 2
                        let a = (0..<(aRows * lda)).map { _ in Float(rng.nextNormal()) }
                        let b = (0..<(bRows * ldb)).map { _ in Float(rng.nextNormal()) }
                        let c0 = (0..<(m * ldc)).map { _ in Float(rng.nextNormal()) }
                        let alpha: Float = 0.75, beta: Float = 1
                        func opA(_ i: Int, _ p: Int) -> Double { Double(BF16.float(BF16.round(transA ? a[p * lda + i] : a[i * lda + p]))) }
                        func opB(_ p: Int, _ j: Int) -> Double { Double(BF16.float(BF16.round(transB ? b[j * ldb + p] : b[p * ldb + j]))) }
                        let bLow = b.map(BF16.round)
                        for useCopy in [false, true] {
                            var c = c0
                            a.withUnsafeBufferPointer { ap in
                                b.withUnsafeBufferPointer { bp in
                                    bLow.withUnsafeBufferPointer { lp in
                                        c.withUnsafeMutableBufferPointer { cp in
                                            BLAS.gemm(
                                                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!,
                                                lda: lda,
                                                b: bp.baseAddress!, ldb: ldb, bBF16: useCopy ? lp.baseAddress! : nil, beta: beta,
                                                c: cp.baseAddress!, ldc: ldc, precision: .bf16)
                                        }
                                    }
                                }
                            }
                            var worst = 0.0
                            for i in stride(from: 0, to: m, by: m > 100 ? 7 : 1) {  // a sample of the large case's rows
                                for j in 0..<n {
                                    var exact = 0.0, magnitude = 0.0
                                    for p in 0..<k { exact += opA(i, p) * opB(p, j); magnitude += abs(opA(i, p) * opB(p, j)) }
                                    exact = Double(alpha) * exact + Double(beta) * Double(c0[i * ldc + j])
                                    // float32 sums over k terms: at most k·2⁻²⁴ of the terms' magnitudes (and the output's rounding).
                                    let bound = Double(k + 2) * 0x1p-24 * (magnitude + abs(Double(c0[i * ldc + j]))) + 1e-30
                                    worst = max(worst, abs(Double(c[i * ldc + j]) - exact) / bound)
                                }
                                for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], c0[i * ldc + j], "padding of row \(i) untouched") }
                            }
                            XCTAssertLessThanOrEqual(
                                worst, 1, "m\(m) n\(n) k\(k) transA \(transA) transB \(transB) threads \(threads) copy \(useCopy)")
                        }
                    }
                }
            }
        }
    }

    /// BLAS.gemm promises the same bits at any thread count (each element of C comes from one kernel call
    /// over the same k order), in both precisions.
    func testProductsAreTheSameBitsAtOneAndTwoThreads() {
        let saved = Parallel.width
        defer { Parallel.width = saved }
        var rng = SplitMix64(seed: 4)
        let (m, n, k) = (512, 384, 256)
        let a = (0..<(m * k)).map { _ in Float(rng.nextNormal()) }, b = (0..<(n * k)).map { _ in Float(rng.nextNormal()) }
        for precision in Precision.allCases {
            var results: [[Float]] = []
            for threads in [1, 2] {
                Parallel.width = threads
                var c = [Float](repeating: 0, count: m * n)
                a.withUnsafeBufferPointer { ap in
                    b.withUnsafeBufferPointer { bp in
                        c.withUnsafeMutableBufferPointer { cp in
                            BLAS.gemm(
                                transB: true, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: k,
                                c: cp.baseAddress!, ldc: n, precision: precision)
                        }
                    }
                }
                results.append(c)
            }
            XCTAssertEqual(results[0], results[1], "\(precision)")
        }
    }
}
