import Foundation
import UGenKernels

/// The image tokenizer: a vector quantiser over non-overlapping P×P patches. Each patch (P·P·C values
/// scaled to 0…1) becomes the id of its nearest codebook vector; decoding pastes the codebook vectors
/// back. The codebook is learned by k-means (k-means++ seeding, fixed Lloyd iterations), so the same
/// images and seed always give the same codebook. Images must all have the tokenizer's size.
public struct VQTokenizer: Sendable {
    /// Flattened [K, P·P·C], patch pixels row-major then channel.
    public let codebook: [Float]
    public let codebookSize: Int
    public let patch: Int
    public let channels: Int
    public let imageWidth: Int
    public let imageHeight: Int

    public init(codebook: [Float], codebookSize: Int, patch: Int, channels: Int, imageWidth: Int, imageHeight: Int) throws {
        guard patch > 0, imageWidth % patch == 0, imageHeight % patch == 0, imageWidth > 0, imageHeight > 0 else {
            throw DataError.vqImageSize(width: imageWidth, height: imageHeight, patch: patch)
        }
        guard codebook.count == codebookSize * patch * patch * channels, codebookSize > 0 else {
            throw DataError.codebookValues(count: codebook.count, codes: codebookSize, patch: patch, channels: channels)
        }
        self.codebook = codebook; self.codebookSize = codebookSize; self.patch = patch; self.channels = channels
        self.imageWidth = imageWidth; self.imageHeight = imageHeight
    }

    /// Values per patch: P·P·C.
    public var dim: Int { patch * patch * channels }
    /// Visual tokens per image, in row-major patch order.
    public var tokensPerImage: Int { (imageWidth / patch) * (imageHeight / patch) }

    /// Learns a codebook of `codebookSize` codes from the patches of `images` (at most `maxPatches` of
    /// them, a seeded sample, so huge image sets stay tractable). `progress(iteration, iterations)`.
    ///
    /// `groups` (one number per image, e.g. the source dataset) makes the sample stratified: each group gives
    /// at most `maxPatches / groups` patches, so 3,289 emoji are not drowned by 60,000 Fashion-MNIST items.
    public static func train(
        images: [PNGImage], groups: [Int]? = nil, codebookSize: Int, patch: Int, iterations: Int = 20,
        seed: UInt64, maxPatches: Int = 200_000, progress: ((Int, Int) -> Void)? = nil
    ) throws -> VQTokenizer {
        guard let first = images.first else { throw DataError.noImages }
        guard codebookSize > 0 else { throw DataError.codebookSizeNotPositive }
        let shape = try VQTokenizer(
            codebook: [Float](repeating: 0, count: codebookSize * patch * patch * first.channels),
            codebookSize: codebookSize, patch: patch, channels: first.channels,
            imageWidth: first.width, imageHeight: first.height)
        var rng = SplitMix64(seed: seed ^ 0x5651_4B4D)  // "VQKM"
        precondition(groups == nil || groups!.count == images.count, "one group per image")
        let groupOf = groups ?? [Int](repeating: 0, count: images.count)
        let distinct = Set(groupOf).sorted()
        let quota = maxPatches / distinct.count
        var order: [Int] = []
        for g in distinct {  // a seeded sample of at most `quota` patches of each group
            var members = images.indices.filter { groupOf[$0] == g }.flatMap { i in
                (i * shape.tokensPerImage)..<((i + 1) * shape.tokensPerImage)
            }
            if members.count > quota {
                for i in 0..<quota { members.swapAt(i, i + rng.nextInt(below: members.count - i)) }
                members = Array(members[..<quota])
            }
            order += members
        }
        order.sort()
        // Only the sampled patches are cut out (order is sorted, so each image is cut once): 70,000 images of
        // 64 patches × 48 values would be 860 MB as floats.
        let d = shape.dim, perImage = shape.tokensPerImage
        var x = [Float](repeating: 0, count: order.count * d)
        var cut: (image: Int, patches: [Float]) = (-1, [])
        for (row, p) in order.enumerated() {
            let (image, patch) = p.quotientAndRemainder(dividingBy: perImage)
            if cut.image != image { cut = (image, shape.patches(of: images[image].converted(toChannels: first.channels))) }
            for j in 0..<d { x[row * d + j] = cut.patches[patch * d + j] }
        }
        let centers = kMeans(x, dim: d, k: codebookSize, iterations: iterations, rng: &rng, progress: progress)
        return try VQTokenizer(
            codebook: centers, codebookSize: codebookSize, patch: patch, channels: first.channels,
            imageWidth: first.width, imageHeight: first.height)
    }

    /// Codes of the image's patches, row-major. The image must have the tokenizer's size; grey/RGB is
    /// converted to the tokenizer's channels.
    public func encode(_ image: PNGImage) -> [Int] {
        precondition(image.width == imageWidth && image.height == imageHeight, "image size differs from the tokenizer's")
        let x = patches(of: image.converted(toChannels: channels))
        return Self.nearest(x, dim: dim, centers: codebook, k: codebookSize)
    }

    /// The image whose patches are the given codes' codebook vectors.
    public func decode(_ codes: [Int]) -> PNGImage {
        precondition(codes.count == tokensPerImage, "expected \(tokensPerImage) codes")
        var pixels = [UInt8](repeating: 0, count: imageWidth * imageHeight * channels)
        let gridWidth = imageWidth / patch
        for (p, code) in codes.enumerated() {
            let (py, px) = (p / gridWidth, p % gridWidth)
            var j = code * dim
            for dy in 0..<patch {
                for dx in 0..<patch {
                    let base = ((py * patch + dy) * imageWidth + px * patch + dx) * channels
                    for c in 0..<channels {
                        pixels[base + c] = UInt8(max(0, min(255, (codebook[j] * 255).rounded())))
                        j += 1
                    }
                }
            }
        }
        return PNGImage(width: imageWidth, height: imageHeight, channels: channels, pixels: pixels)
    }

    /// The image's patches as rows of `dim` values in 0…1, row-major patch order.
    func patches(of image: PNGImage) -> [Float] {
        let gridWidth = imageWidth / patch
        var out = [Float](repeating: 0, count: tokensPerImage * dim)
        var j = 0
        for p in 0..<tokensPerImage {
            let (py, px) = (p / gridWidth, p % gridWidth)
            for dy in 0..<patch {
                for dx in 0..<patch {
                    let base = ((py * patch + dy) * imageWidth + px * patch + dx) * channels
                    for c in 0..<channels {
                        out[j] = Float(image.pixels[base + c]) / 255
                        j += 1
                    }
                }
            }
        }
        return out
    }

    // MARK: k-means

    /// k-means++ seeding, then `iterations` Lloyd steps. An empty cluster is re-seeded from a random point.
    static func kMeans(
        _ x: [Float], dim d: Int, k: Int, iterations: Int, rng: inout SplitMix64,
        progress: ((Int, Int) -> Void)?
    ) -> [Float] {
        let n = x.count / d
        var centers = [Float](repeating: 0, count: k * d)
        func copyPoint(_ i: Int, toCenter c: Int) { for j in 0..<d { centers[c * d + j] = x[i * d + j] } }
        func distance(_ i: Int, _ c: Int) -> Float {
            x.withUnsafeBufferPointer { xs in
                centers.withUnsafeBufferPointer { cs in
                    var s: Float = 0
                    let (a, b) = (xs.baseAddress! + i * d, cs.baseAddress! + c * d)
                    for j in 0..<d { let t = a[j] - b[j]; s += t * t }
                    return s
                }
            }
        }
        copyPoint(rng.nextInt(below: n), toCenter: 0)
        var d2 = (0..<n).map { distance($0, 0) }
        for c in 1..<max(k, 1) {
            let total = d2.reduce(0.0) { $0 + Double($1) }
            var pick = n - 1
            if total > 0 {
                var r = rng.nextDouble() * total
                for i in 0..<n {
                    r -= Double(d2[i])
                    if r < 0 { pick = i; break }
                }
            } else {
                pick = rng.nextInt(below: n)
            }
            copyPoint(pick, toCenter: c)
            for i in 0..<n { d2[i] = min(d2[i], distance(i, c)) }
        }
        for iteration in 0..<iterations {
            let assignment = nearest(x, dim: d, centers: centers, k: k)
            var sums = [Double](repeating: 0, count: k * d), counts = [Int](repeating: 0, count: k)
            for i in 0..<n {
                let c = assignment[i]
                counts[c] += 1
                for j in 0..<d { sums[c * d + j] += Double(x[i * d + j]) }
            }
            for c in 0..<k {
                if counts[c] == 0 {
                    copyPoint(rng.nextInt(below: n), toCenter: c)
                } else {
                    for j in 0..<d { centers[c * d + j] = Float(sums[c * d + j] / Double(counts[c])) }
                }
            }
            progress?(iteration + 1, iterations)
        }
        return centers
    }

    /// Index of the nearest center for each row of `x`: argmin ‖c‖² − 2·x·c, the products by sgemm in
    /// blocks of rows so memory stays bounded.
    static func nearest(_ x: [Float], dim d: Int, centers: [Float], k: Int) -> [Int] {
        let n = x.count / d, block = 2048
        let norms = (0..<k).map { c in (0..<d).reduce(Float(0)) { $0 + centers[c * d + $1] * centers[c * d + $1] } }
        var out = [Int](repeating: 0, count: n)
        var products = [Float](repeating: 0, count: min(block, n) * k)
        x.withUnsafeBufferPointer { xs in
            centers.withUnsafeBufferPointer { cs in
                for start in stride(from: 0, to: n, by: block) {
                    let m = min(block, n - start)
                    products.withUnsafeMutableBufferPointer { g in
                        BLAS.gemm(
                            transB: true, m: m, n: k, k: d, a: xs.baseAddress! + start * d, lda: d,
                            b: cs.baseAddress!, ldb: d, c: g.baseAddress!, ldc: k)
                    }
                    for i in 0..<m {
                        var best = 0, bestScore = Float.infinity
                        for c in 0..<k {
                            let score = norms[c] - 2 * products[i * k + c]
                            if score < bestScore { bestScore = score; best = c }
                        }
                        out[start + i] = best
                    }
                }
            }
        }
        return out
    }
}
