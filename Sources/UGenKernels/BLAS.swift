import CBLAS
import Foundation

/// How a product multiplies: fp32 operands (OpenBLAS `sgemm`), or bf16 operands with fp32 sums and output
/// (oneDNN's matmul on the CPU's bf16 units). Everything else in a step stays fp32 either way.
public enum Precision: String, Sendable, Codable, CaseIterable {
    case fp32, bf16
}

/// The one door to matrix products: every one in the model goes through `gemm`, which runs it on
/// `cblas_sgemm` (fp32) or oneDNN's bf16 matmul (bf16).
///
/// With more than one thread, a large product is cut into row (or column) blocks of C, one per thread,
/// each block one single-threaded `cblas_sgemm` (or oneDNN matmul). OpenBLAS's own threads stay off (its library count is
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
    /// OpenBLAS's small-matrix kernels take products of at most 100³ multiply-adds (m·n·k).
    static let smallProduct = 100 * 100 * 100

    /// C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, row-major with explicit leading dimensions
    /// (so a head's slice of a fused q/k/v row can be used in place).
    ///
    /// In bf16, A and B are rounded to bf16 (into this thread's scratch) unless `aBF16` / `bBF16` already
    /// hold their bf16 copies, laid out like `a` / `b` with the same `lda` / `ldb`: a weight's copy, made
    /// once per optimizer step, or an activation that several products read (attention's q, k, v). fp32
    /// ignores them.
    @inline(__always)
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, aBF16: UnsafePointer<UInt16>? = nil,
        b: UnsafePointer<Float>, ldb: Int, bBF16: UnsafePointer<UInt16>? = nil,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, precision: Precision = .fp32
    ) {
        if precision == .bf16 {
            gemmBF16(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, aBF16: aBF16, b: b,
                ldb: ldb, bBF16: bBF16, beta: beta, c: c, ldc: ldc)
            return
        }
        blocks(m: m, n: n, k: k) { rows, cols in
            sgemm(
                transA, transB, rows.count, cols.count, k, alpha, a + (transA ? rows.lowerBound : rows.lowerBound * lda), lda,
                b + (transB ? cols.lowerBound * ldb : cols.lowerBound), ldb, beta, c + rows.lowerBound * ldc + cols.lowerBound, ldc)
        }
    }

    /// Runs a product [m, n] = [m, k] · [k, n] as blocks of C: `block(rows, cols)` computes C[rows, cols]
    /// from those rows of op(A) and columns of op(B). With more than one thread, a product of at least
    /// `splitFlops` is cut along the longer side of C into one block per thread, aligned to 16 (the
    /// kernels' register tile); otherwise it is one block.
    ///
    /// No block goes below `smallProduct` multiply-adds: OpenBLAS runs products up to that size on its
    /// small-matrix kernels, which sum in another order than its main kernels, so such a block would not
    /// be the same bits as the uncut product. Fewer blocks are cut (fewer threads used) instead.
    @inline(__always)
    static func blocks(m: Int, n: Int, k: Int, _ block: (_ rows: Range<Int>, _ cols: Range<Int>) -> Void) {
        guard Parallel.width > 1, !Parallel.inRegion, 2 * m * n * k >= splitFlops else { block(0..<m, 0..<n); return }
        let alongRows = m >= n
        let len = alongRows ? m : n, other = (alongRows ? n : m) * k
        func cut(_ t: Int, _ w: Int) -> Range<Int> {
            (len * t / w) & ~15..<(t == w - 1 ? len : (len * (t + 1) / w) & ~15)
        }
        // The smallest block is the first (the others end on the same rounding and the last takes the rest).
        var w = Parallel.width
        while w > 1 && cut(0, w).count * other <= smallProduct { w -= 1 }
        guard w > 1 else { block(0..<m, 0..<n); return }
        Parallel.region(w) { t in
            let part = cut(t, w)
            guard !part.isEmpty else { return }
            if alongRows { block(part, 0..<n) } else { block(0..<m, part) }
        }
    }

    /// The bf16 path of `gemm`: operands converted once in the calling thread (unless given in bf16), then
    /// the product cut into blocks of C exactly as sgemm's is, each block one single-threaded oneDNN matmul.
    static func gemmBF16(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        aBF16: UnsafePointer<UInt16>?, b: UnsafePointer<Float>, ldb: Int, bBF16: UnsafePointer<UInt16>?,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let state = OneDNN.thread
        // Stored shapes: op(A) is [m, k], so A is stored [k, m] when transposed; likewise B.
        let (aLow, aLd) = lowOperand(a, ld: lda, stored: transA ? (k, m) : (m, k), given: aBF16, scratch: &state.a)
        let (bLow, bLd) = lowOperand(b, ld: ldb, stored: transB ? (n, k) : (k, n), given: bBF16, scratch: &state.b)
        productBF16(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: aLow, lda: aLd, b: bLow, ldb: bLd,
            beta: beta, c: c, ldc: ldc)
    }

    /// An operand in bf16 and its leading dimension: the copy the caller gave, or the stored [rows, cols]
    /// rounded into `scratch` (dense).
    @inline(__always)
    static func lowOperand(
        _ x: UnsafePointer<Float>, ld: Int, stored: (rows: Int, cols: Int), given: UnsafePointer<UInt16>?,
        scratch: inout OneDNN.Scratch
    ) -> (UnsafePointer<UInt16>, Int) {
        if let given { return (given, ld) }
        return (scratch.round(x, ld: ld, rows: stored.rows, cols: stored.cols), stored.cols)
    }

    /// A product of bf16 operands, cut over the threads like sgemm's.
    static func productBF16(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a aLow: UnsafePointer<UInt16>,
        lda aLd: Int, b bLow: UnsafePointer<UInt16>, ldb bLd: Int, beta: Float,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        blocks(m: m, n: n, k: k) { rows, cols in
            OneDNN.matmul(
                OneDNN.Shape(
                    m: rows.count, n: cols.count, k: k, lda: aLd, ldb: bLd, ldc: ldc, transA: transA,
                    transB: transB, alpha: alpha, beta: beta),
                a: aLow + (transA ? rows.lowerBound : rows.lowerBound * aLd),
                b: bLow + (transB ? cols.lowerBound * bLd : cols.lowerBound), c: c + rows.lowerBound * ldc + cols.lowerBound)
        }
    }

    @inline(__always)
    static func sgemm(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
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

extension BLAS {
    /// Measures the bf16 product rate (GFLOP/s) of [m,k]·[k,n] on `threads` threads, operands already in
    /// bf16 (the kernels' ceiling, as `measureSgemmGFLOPs` is sgemm's): the same blocks `gemm` runs.
    public static func measureBF16GFLOPs(
        m: Int = 1024, n: Int = 1024, k: Int = 1024, threads: Int = 1,
        seconds: Double = 1.0
    ) -> Double {
        let saved = Parallel.width
        Parallel.width = max(1, threads)
        defer { Parallel.width = saved }
        let a = UnsafeMutablePointer<UInt16>.allocate(capacity: m * k), b = UnsafeMutablePointer<UInt16>.allocate(capacity: k * n)
        let c = Tensor([m, n])
        defer { a.deallocate(); b.deallocate() }
        for i in 0..<(m * k) { a[i] = BF16.round(Float(i % 7) * 0.01) }
        for i in 0..<(k * n) { b[i] = BF16.round(Float(i % 5) * 0.01) }
        let run = {
            productBF16(
                transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0,
                c: c.data, ldc: n)
        }
        run()  // warm-up: the primitive is made here
        var reps = 0
        let start = Date()
        while Date().timeIntervalSince(start) < seconds { run(); reps += 1 }
        return 2.0 * Double(m * n * k) * Double(reps) / Date().timeIntervalSince(start) / 1e9
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
