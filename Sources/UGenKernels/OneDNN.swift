import CDNNL
import Foundation

/// bf16 matrix products on oneDNN's matmul primitive (Debian's OpenBLAS has no `sbgemm`): bf16 operands,
/// float32 sums and output, `brg:avx512_core_bf16` kernels on CPUs with `avx512_bf16` (about twice the
/// sgemm rate here). Only `BLAS.gemm` calls this.
///
/// One primitive per product shape (sizes, transposes, leading dimensions, alpha, beta), made the first
/// time a thread meets the shape and kept; oneDNN's own primitive cache makes the same shape on another
/// thread cheap. Every thread keeps its own stream, primitives and memory handles (none of them may be
/// shared between threads that run at once) and runs oneDNN on one OpenMP thread: `BLAS.gemm` splits a
/// large product over the threads itself, as it does for sgemm, so a 2-thread run uses two threads.
enum OneDNN {
    struct Shape: Hashable {
        let m, n, k, lda, ldb, ldc: Int
        let transA, transB: Bool
        let alpha, beta: Float
    }

    /// A primitive and the memory objects it runs on (their data handles are set per call).
    final class Product {
        let primitive: dnnl_primitive_t
        let a, b, c: dnnl_memory_t
        init(_ s: Shape, engine: dnnl_engine_t) {
            func check(_ status: dnnl_status_t, _ what: String) {
                if status != dnnl_success { fatalError("oneDNN \(what) failed (status \(status.rawValue)) for \(s)") }
            }
            var aDesc = dnnl_memory_desc_t(), bDesc = dnnl_memory_desc_t(), cDesc = dnnl_memory_desc_t()
            // Strides express the transposes and leading dimensions: A is [m, k], B [k, n], C [m, n].
            var aDims: [Int64] = [Int64(s.m), Int64(s.k)], bDims: [Int64] = [Int64(s.k), Int64(s.n)],
                cDims: [Int64] = [Int64(s.m), Int64(s.n)]
            var aStrides: [Int64] = s.transA ? [1, Int64(s.lda)] : [Int64(s.lda), 1]
            var bStrides: [Int64] = s.transB ? [1, Int64(s.ldb)] : [Int64(s.ldb), 1]
            var cStrides: [Int64] = [Int64(s.ldc), 1]
            check(withDims(&aDims, &aStrides) { dnnl_memory_desc_init_by_strides(&aDesc, 2, $0, dnnl_bf16, $1) }, "A descriptor")
            check(withDims(&bDims, &bStrides) { dnnl_memory_desc_init_by_strides(&bDesc, 2, $0, dnnl_bf16, $1) }, "B descriptor")
            check(withDims(&cDims, &cStrides) { dnnl_memory_desc_init_by_strides(&cDesc, 2, $0, dnnl_f32, $1) }, "C descriptor")
            var desc = dnnl_matmul_desc_t()
            check(dnnl_matmul_desc_init(&desc, &aDesc, &bDesc, nil, &cDesc), "matmul descriptor")
            var attr: dnnl_primitive_attr_t? = nil
            check(dnnl_primitive_attr_create(&attr), "attribute")
            defer { dnnl_primitive_attr_destroy(attr) }
            if s.alpha != 1 {
                var alpha = s.alpha
                check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "output scale")
            }
            if s.beta != 0 {
                var ops: dnnl_post_ops_t? = nil
                check(dnnl_post_ops_create(&ops), "post-ops")
                defer { dnnl_post_ops_destroy(ops) }
                check(dnnl_post_ops_append_sum(ops, s.beta), "sum post-op")
                check(dnnl_primitive_attr_set_post_ops(attr, ops), "post-ops attribute")
            }
            var pd: dnnl_primitive_desc_t? = nil
            check(dnnl_primitive_desc_create(&pd, &desc, attr, engine, nil), "primitive descriptor")
            defer { dnnl_primitive_desc_destroy(pd) }
            var p: dnnl_primitive_t? = nil
            check(dnnl_primitive_create(&p, pd), "primitive")
            primitive = p!
            var am: dnnl_memory_t? = nil, bm: dnnl_memory_t? = nil, cm: dnnl_memory_t? = nil
            check(dnnl_memory_create(&am, &aDesc, engine, nil), "memory A")
            check(dnnl_memory_create(&bm, &bDesc, engine, nil), "memory B")
            check(dnnl_memory_create(&cm, &cDesc, engine, nil), "memory C")
            a = am!; b = bm!; c = cm!
        }

        deinit {
            dnnl_memory_destroy(a); dnnl_memory_destroy(b); dnnl_memory_destroy(c)
            dnnl_primitive_destroy(primitive)
        }
    }

    private static func withDims<R>(
        _ d: inout [Int64], _ s: inout [Int64],
        _ body: (UnsafePointer<Int64>, UnsafePointer<Int64>) -> R
    ) -> R {
        d.withUnsafeBufferPointer { dp in s.withUnsafeBufferPointer { sp in body(dp.baseAddress!, sp.baseAddress!) } }
    }

    static let engine: dnnl_engine_t = {
        var e: dnnl_engine_t? = nil
        guard dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success, let e else { fatalError("oneDNN: no CPU engine") }
        return e
    }()

    /// What one thread keeps: its stream, its primitives, and the bf16 copies of the operands it converts.
    final class ThreadState {
        let stream: dnnl_stream_t
        var products: [Shape: Product] = [:]
        var a = Scratch(), b = Scratch()
        /// bf16 copies of activations that several products read (`Attention`): the q/k/v buffer, d(out),
        /// and one head's d(scores).
        var qkv = Scratch(), dout = Scratch(), scores = Scratch()
        init() {
            omp_set_num_threads(1)
            var s: dnnl_stream_t? = nil
            guard dnnl_stream_create(&s, engine, dnnl_stream_default_flags.rawValue) == dnnl_success, let s else {
                fatalError("oneDNN: no stream")
            }
            stream = s
        }
        deinit { dnnl_stream_destroy(stream) }

        func product(_ s: Shape) -> Product {
            if let p = products[s] { return p }
            let p = Product(s, engine: engine)
            products[s] = p
            return p
        }
    }

    /// A growable bf16 buffer: it grows while the first steps meet larger operands, then stays.
    struct Scratch {
        private(set) var pointer = UnsafeMutablePointer<UInt16>.allocate(capacity: 1)
        private var capacity = 1
        mutating func reserve(_ n: Int) -> UnsafeMutablePointer<UInt16> {
            if n > capacity { pointer.deallocate(); pointer = .allocate(capacity: n); capacity = n }
            return pointer
        }

        /// Rounds the [rows, cols] floats at x (row stride `ld`) into this buffer, dense (row stride cols).
        mutating func round(_ x: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int) -> UnsafePointer<UInt16> {
            let low = reserve(rows * cols)
            BF16.convert(x, ld: ld, rows: rows, cols: cols, into: low)
            return UnsafePointer(low)
        }
    }

    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { p in
            if let p { Unmanaged<ThreadState>.fromOpaque(p).release() }
        }
        return k
    }()

    /// This thread's state, made on the thread's first bf16 product.
    static var thread: ThreadState {
        if let p = pthread_getspecific(key) { return Unmanaged<ThreadState>.fromOpaque(p).takeUnretainedValue() }
        let s = ThreadState()
        pthread_setspecific(key, Unmanaged.passRetained(s).toOpaque())
        return s
    }

    /// C[m,n] = alpha · op(A) · op(B) + beta · C on this thread, A and B in bf16.
    static func matmul(_ s: Shape, a: UnsafePointer<UInt16>, b: UnsafePointer<UInt16>, c: UnsafeMutablePointer<Float>) {
        let t = thread
        let p = t.product(s)
        dnnl_memory_set_data_handle(p.a, UnsafeMutableRawPointer(mutating: a))
        dnnl_memory_set_data_handle(p.b, UnsafeMutableRawPointer(mutating: b))
        dnnl_memory_set_data_handle(p.c, UnsafeMutableRawPointer(c))
        let status = withUnsafeTemporaryAllocation(of: dnnl_exec_arg_t.self, capacity: 3) { args in  // on the stack
            args[0] = dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: p.a)
            args[1] = dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: p.b)
            args[2] = dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: p.c)
            return dnnl_primitive_execute(p.primitive, t.stream, 3, args.baseAddress!)
        }
        if status != dnnl_success { fatalError("oneDNN matmul failed (status \(status.rawValue)) for \(s)") }
    }
}
