import CBLAS
import Foundation

/// The one door to matrix products: every one in the model goes through `cblas_sgemm`.
public enum BLAS {
    /// Sets OpenBLAS's thread count for this process (also the width of `parallelRows`).
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(n))
        Parallel.width = max(1, n)
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, row-major with explicit leading dimensions
    /// (so a head's slice of a fused q/k/v row can be used in place).
    @inline(__always)
    public static func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                            alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Measures this machine's `cblas_sgemm` rate (GFLOP/s) on square n×n products at the current
    /// thread count: the ceiling a BLAS-backed trainer is judged against.
    public static func measureSgemmGFLOPs(n: Int = 1024, seconds: Double = 1.0) -> Double {
        let a = Tensor([n, n]), b = Tensor([n, n]), c = Tensor([n, n])
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.01; b[i] = Float(i % 5) * 0.01 }
        gemm(m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n)  // warm-up
        var reps = 0
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            gemm(m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n)
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

    /// Runs `body(i)` for i in 0..<n spread over the threads, each thread calling BLAS single-threaded
    /// (for many small products, e.g. attention per batch row, where one BLAS call is too small to split).
    /// Each i's arithmetic does not depend on which thread runs it.
    public static func items(_ n: Int, _ body: (Int) -> Void) {
        let w = min(width, n)
        if w <= 1 { for i in 0..<n { body(i) }; return }
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(Int32(width)) }
        DispatchQueue.concurrentPerform(iterations: w) { t in
            for i in (n * t / w)..<(n * (t + 1) / w) { body(i) }
        }
    }

    @inline(__always)
    public static func rows(_ n: Int, _ body: (Range<Int>) -> Void) {
        let w = min(width, n)
        if w <= 1 || n < 64 { body(0..<n); return }
        DispatchQueue.concurrentPerform(iterations: w) { t in
            body((n * t / w)..<(n * (t + 1) / w))
        }
    }
}
