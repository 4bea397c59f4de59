import XCTest

@testable import UGenKernels

/// `BLAS.gemm` cuts a large product into blocks of C, one per thread, and promises that every element
/// still comes out the same bits at any thread count. Checked here at 1 to 5 threads, in fp32 and bf16,
/// for every transpose and both ways of cutting (along rows when m ≥ n, along columns otherwise), with
/// sizes that are no multiple of the 16-wide alignment so the last block is ragged.
final class ThreadCountTests: XCTestCase {
    func testProductsAreTheSameBitsAtEveryThreadCount() {
        let saved = Parallel.width
        defer { Parallel.width = saved }
        var rng = SplitMix64(seed: 11)
        // Both above BLAS.splitFlops (2·m·n·k ≥ 2²²), so they are really cut: one along rows, one along columns.
        for (m, n, k) in [(203, 97, 160), (61, 331, 128)] {
            XCTAssertGreaterThanOrEqual(2 * m * n * k, BLAS.splitFlops, "\(m)×\(n)×\(k) would not be split")
            for precision in Precision.allCases {
                for (transA, transB) in [(false, false), (true, false), (false, true), (true, true)] {
                    let (aRows, aCols) = transA ? (k, m) : (m, k), (bRows, bCols) = transB ? (n, k) : (k, n)
                    let a = (0..<(aRows * aCols)).map { _ in Float(rng.nextNormal()) }
                    let b = (0..<(bRows * bCols)).map { _ in Float(rng.nextNormal()) }
                    let c0 = (0..<(m * n)).map { _ in Float(rng.nextNormal()) }
                    func product(threads: Int) -> [UInt32] {
                        Parallel.width = threads
                        var c = c0
                        a.withUnsafeBufferPointer { ap in
                            b.withUnsafeBufferPointer { bp in
                                c.withUnsafeMutableBufferPointer { cp in
                                    BLAS.gemm(
                                        transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: ap.baseAddress!, lda: aCols,
                                        b: bp.baseAddress!, ldb: bCols, beta: 0.25, c: cp.baseAddress!, ldc: n, precision: precision)
                                }
                            }
                        }
                        return c.map(\.bitPattern)
                    }
                    let one = product(threads: 1)
                    XCTAssertNotEqual(one, c0.map(\.bitPattern), "the product wrote C")
                    for threads in 2...5 {
                        let many = product(threads: threads)
                        let differing = zip(one, many).filter { $0 != $1 }.count
                        XCTAssertEqual(
                            differing, 0,
                            "\(precision) \(m)×\(n)×\(k) transA \(transA) transB \(transB): "
                                + "\(differing) elements differ between 1 and \(threads) threads")
                    }
                }
            }
        }
    }
}
