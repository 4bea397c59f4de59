// swift-tools-version:6.0
// UGen Cluster: distributed training of a unified text+image autoregressive transformer.
// Modules follow the data's way: schema → kernels → model, schema → store → data; then training → cluster → dashboard.
import Foundation
import PackageDescription

/// The kernels' element-wise loops are vectorised by the compiler at the width the target has: SSE on
/// baseline x86-64, AVX2 where the building machine has it, AVX-512 (F, CD, BW, DQ, VL: `skylake-avx512`,
/// which every AVX-512 CPU has) where it has that. The arithmetic is the same IEEE operations at every
/// width (no FMA contraction; sums keep their lane order), so results are the same bits (checked against
/// a UGEN_PORTABLE=1 build). Checked on the building machine's CPU: set UGEN_PORTABLE=1 to build binaries
/// for another one.
let vectorISA: [SwiftSetting] = {
    guard ProcessInfo.processInfo.environment["UGEN_PORTABLE"] == nil,
          let cpu = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [] }
    let flags = Set((cpu.split(separator: "\n").first { $0.hasPrefix("flags") } ?? "").split(separator: " ").map(String.init))
    if flags.isSuperset(of: ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]) {
        return [.unsafeFlags(["-target-cpu", "skylake-avx512"])]
    }
    if flags.isSuperset(of: ["avx2", "fma"]) { return [.unsafeFlags(["-target-cpu", "haswell"])] }
    return []
}()

let package = Package(
    name: "UGenCluster",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ugen", targets: ["ugen"]),
        .executable(name: "ugen-coord", targets: ["ugen-coord"]),
        .executable(name: "ugen-worker", targets: ["ugen-worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // System libraries (Debian: libopenblas-dev, libhdf5-dev, libzmq3-dev, libpng-dev, libdnnl-dev).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // oneDNN 2.x (libdnnl-dev) ships no pkg-config file: a module map over <oneapi/dnnl/dnnl.h>.
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),

        // Float buffers, BLAS calls, every operation's forward and backward side by side, AdamW.
        // Swift 5 language mode here only: row-parallel loops hand raw pointers to worker threads by design
        // (each thread owns disjoint rows), which Swift 6's Sendable checking cannot express.
        .target(name: "UGenKernels", dependencies: ["CBLAS", "CDNNL"],
                // sqrt without errno (-fno-math-errno): Swift's squareRoot() otherwise calls libm's sqrtf for its
                // errno on a negative input, which keeps AdamW's loop from vectorising; the result is the same
                // correctly rounded IEEE square root either way.
                swiftSettings: [.swiftLanguageMode(.v5), .unsafeFlags(["-Xcc", "-fno-math-errno"]),
                                .unsafeFlags(["-Ounchecked"], .when(configuration: .release)),
                                // Optimised in debug builds too: the vector loops (FastExp) run ~50× slower
                                // unoptimised, and the test suite and `make demo` train real models through them.
                                // Whole-module (-wmo), as a release build is: file by file, FastExp.exp is not
                                // inlined into SwiGLU's and the softmaxes' loops in other files, which then stay
                                // scalar calls (the demo's step 80 ms, against 51–56 ms whole-module, the release
                                // build's rate, same bits). -num-threads keeps one object file per source, which
                                // the debug build's index store expects.
                                .unsafeFlags(["-O", "-wmo", "-num-threads", "2"], .when(configuration: .debug))] + vectorISA),
        // The model's configuration and its cut into stages: plain values, no kernels (a leaf).
        .target(name: "UGenSchema", dependencies: []),
        // Named parameters, the stage (a cut of the chain), loss, init.
        .target(name: "UGenModel", dependencies: ["UGenKernels", "UGenSchema"]),
        // HDF5 files: typed reading/writing, dataset/tokenizer/checkpoint schemas, checksums. A leaf over HDF5:
        // no kernels, so the tokenizers above it link no BLAS.
        .target(name: "UGenStore", dependencies: ["CHDF5", "CZlib", "UGenSchema", .product(name: "Yams", package: "Yams")]),
        // Tokenizers (byte-level BPE, k-means VQ), PNG, dataset reader, packer, task mixing.
        // The kernels for SplitMix64 and the VQ codebook's k-means distances (BLAS.gemm); the store for files.
        .target(name: "UGenData", dependencies: ["UGenStore", "UGenKernels", "CPNG"]),
        // Run config, schedules (LR, progressive vocabulary), the single-process trainer.
        .target(name: "UGenTraining", dependencies: [
            "UGenModel", "UGenData", "UGenStore",
            .product(name: "Yams", package: "Yams"),
        ]),
        // The run files' records (metrics.jsonl, events.jsonl): written by the cluster, read by the dashboard.
        .target(name: "UGenRecords", dependencies: []),
        // Wire protocol, coordinator, worker, pipeline schedules, data-parallel reduce.
        .target(name: "UGenCluster", dependencies: [
            "CZeroMQ", "UGenTraining", "UGenStore", "UGenRecords",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Benchmarks: training throughput, generation, the packer, pipeline layouts and checkpoints. The
        // executables call them; no library module holds benchmark code.
        .target(name: "UGenBench", dependencies: [
            "UGenCluster", "UGenTraining", "UGenData", "UGenStore", "UGenModel", "UGenKernels", "UGenRecords",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Log followers, terminal and web views (reads files only).
        .target(name: "UGenDashboard", dependencies: ["UGenRecords", .product(name: "Yams", package: "Yams")]),

        .executableTarget(name: "ugen", dependencies: [
            "UGenTraining", "UGenData", "UGenStore", "UGenBench",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ugen-coord", dependencies: [
            "UGenCluster", "UGenDashboard", "UGenBench",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ugen-worker", dependencies: [
            "UGenCluster",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "UGenKernelsTests", dependencies: ["UGenKernels"]),
        .testTarget(name: "UGenModelTests", dependencies: ["UGenModel", "UGenStore", "UGenTraining", "UGenBench"]),
        .testTarget(name: "UGenDataTests", dependencies: ["UGenData", "UGenStore", "UGenBench"]),
        .testTarget(name: "UGenClusterTests", dependencies: ["UGenCluster", "UGenTraining", "UGenData", "UGenStore", "UGenModel", "UGenKernels", "UGenBench"]),
        .testTarget(name: "UGenDashboardTests", dependencies: ["UGenDashboard", "UGenRecords"]),
    ]
)
