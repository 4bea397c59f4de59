import CBLAS
import Foundation

/// The one door to matrix products: every one in the model goes through `cblas_sgemm`.
///
/// With more than one thread, a large product is cut into row (or column) blocks of C, one per thread,
/// each block one single-threaded `cblas_sgemm`. OpenBLAS's own threads stay off (its library count is
/// kept at 1): between calls they spin for up to ~0.1 s, and on a 2-core machine a spinning BLAS
/// thread takes half a core from the element-wise loops that run between the products. Each element
/// of C still comes from one kernel call with the same inner (k) order, so a block's results do not
/// depend on how C was cut.
public enum BLAS {
    /// Sets this process's thread count for products and element-wise loops (`Parallel.width`).
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(1)
        Parallel.width = max(1, n)
    }

    public static var threads: Int { Parallel.width }

    /// Products below this many flops run as one call (splitting costs a thread hand-off, ~10 µs).
    static let splitFlops = 1 << 22

    /// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, row-major with explicit leading dimensions
    /// (so a head's slice of a fused q/k/v row can be used in place).
    @inline(__always)
    public static func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                            alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let w = Parallel.width
        if w > 1, !Parallel.inRegion, 2 * m * n * k >= splitFlops {
            // Cut the longer side of C into w blocks aligned to 16 (the kernels' register tile).
            let alongRows = m >= n
            let len = alongRows ? m : n
            Parallel.region(w) { t in
                let lo = (len * t / w) & ~15, hi = t == w - 1 ? len : (len * (t + 1) / w) & ~15
                guard hi > lo else { return }
                if alongRows {
                    sgemm(transA, transB, hi - lo, n, k, alpha, a + (transA ? lo : lo * lda), lda, b, ldb, beta, c + lo * ldc, ldc)
                } else {
                    sgemm(transA, transB, m, hi - lo, k, alpha, a, lda, b + (transB ? lo * ldb : lo), ldb, beta, c + lo, ldc)
                }
            }
        } else {
            sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        }
    }

    @inline(__always)
    static func sgemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                      _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                      _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Measures this machine's `cblas_sgemm` rate (GFLOP/s) on square n×n products with OpenBLAS's own
    /// threading at `threads`: the library's ceiling a BLAS-backed trainer is judged against.
    public static func measureSgemmGFLOPs(n: Int = 1024, threads: Int = 1, seconds: Double = 1.0) -> Double {
        openblas_set_num_threads(Int32(threads))
        defer { openblas_set_num_threads(1) }
        let a = Tensor([n, n]), b = Tensor([n, n]), c = Tensor([n, n])
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.01; b[i] = Float(i % 5) * 0.01 }
        sgemm(false, false, n, n, n, 1, a.data, n, b.data, n, 0, c.data, n)  // warm-up
        var reps = 0
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            sgemm(false, false, n, n, n, 1, a.data, n, b.data, n, 0, c.data, n)
            reps += 1
        }
        let elapsed = Date().timeIntervalSince(start)
        return 2.0 * Double(n * n * n) * Double(reps) / elapsed / 1e9
    }
}

/// Row-parallel loops for the elementwise work between matrix products (softmax, norms). Each index is
/// handled by exactly one thread with the same arithmetic, so results do not depend on the width.
public enum Parallel {
    nonisolated(unsafe) public static var width = 1

    /// True while a parallel region runs (products inside it are not split again).
    nonisolated(unsafe) public private(set) static var inRegion = false

    /// Runs `body(t)` for t in 0..<w on w threads (the caller's among them) and waits for all.
    static func region(_ w: Int, _ body: (Int) -> Void) {
        inRegion = true
        defer { inRegion = false }
        DispatchQueue.concurrentPerform(iterations: w, execute: body)
    }

    /// Runs `body(i)` for i in 0..<n spread over the threads, each product inside running as one
    /// single-threaded call (for many small products, e.g. attention per batch row, where one call is
    /// too small to split). Each i's arithmetic does not depend on which thread runs it.
    public static func items(_ n: Int, _ body: (Int) -> Void) {
        let w = min(width, n)
        if w <= 1 || inRegion { for i in 0..<n { body(i) }; return }
        region(w) { t in
            for i in (n * t / w)..<(n * (t + 1) / w) { body(i) }
        }
    }

    /// Column ranges of a row-major [*, d] array, aligned to 16 floats (a cache line each side), for
    /// sums over rows that each thread keeps in row order.
    public static func columns(_ d: Int, _ body: (Range<Int>) -> Void) {
        let w = min(width, d / 16)
        if w <= 1 || inRegion { body(0..<d); return }
        region(w) { t in
            let lo = (d * t / w) & ~15, hi = t == w - 1 ? d : (d * (t + 1) / w) & ~15
            body(lo..<hi)
        }
    }

    @inline(__always)
    public static func rows(_ n: Int, _ body: (Range<Int>) -> Void) {
        let w = min(width, n)
        if w <= 1 || n < 64 || inRegion { body(0..<n); return }
        region(w) { t in
            body((n * t / w)..<(n * (t + 1) / w))
        }
    }
}
