import Foundation

/// How well an image tokenizer reproduces a set of (held-out) images: reconstruction PSNR, how much of the
/// codebook the images use, tokens per image and encoding throughput. `ugen image-report` prints it.
public struct ImageTokenizerReport: Sendable {
    public var images: Int
    public var tokensPerImage: Int
    public var codebookSize: Int
    /// Mean squared error per pixel value (0…255 scale) over every value of every image — over each image's own
    /// pixels when it was centred on a larger canvas (the margin is not counted).
    public var mse: Double
    /// 10·log10(255² / mse): the PSNR of the whole set (mean error first).
    public var psnr: Double { mse > 0 ? 10 * log10(255 * 255 / mse) : .infinity }
    /// The mean over images of each image's own PSNR (an exact reconstruction counts as 100 dB).
    public var meanImagePSNR: Double
    /// exp(entropy) of the codes' frequencies over all tokens: the number of equally used codes that would
    /// give the same entropy (K when every code is used equally).
    public var perplexity: Double
    /// Codes used at least once by these images; the rest are dead on this set.
    public var usedCodes: Int
    public var deadCodes: Int { codebookSize - usedCodes }
    /// Images encoded per second (one thread, encode only, images already decoded from PNG).
    public var imagesPerSecond: Double
    /// Each image's codes, in input order.
    public var codes: [[Int]]

    /// Encodes every image, decodes it back and measures. Images must have the tokenizer's size and are
    /// converted to its channels. `sizes` (one per image) are the images' own sizes before they were centred on
    /// the tokenizer's canvas: the error is measured on that centred region only.
    public static func measure(_ vq: VQTokenizer, images: [PNGImage], sizes: [(width: Int, height: Int)]? = nil) -> ImageTokenizerReport {
        let inputs = images.map { $0.converted(toChannels: vq.channels) }
        let start = Date()
        let codes = inputs.map { vq.encode($0) }
        let seconds = max(Date().timeIntervalSince(start), 1e-9)
        var counts = [Int](repeating: 0, count: vq.codebookSize)
        for c in codes.joined() { counts[c] += 1 }
        let total = Double(counts.reduce(0, +))
        let entropy = counts.reduce(0.0) { h, n in n == 0 ? h : h - Double(n) / total * log(Double(n) / total) }
        var squared = 0.0, imagePSNR = 0.0
        for (i, (image, c)) in zip(inputs, codes).enumerated() {
            let e = Self.regionError(vq.decode(c), image, size: sizes?[i] ?? (image.width, image.height))
            squared += e
            imagePSNR += e > 0 ? 10 * log10(255 * 255 / e) : 100
        }
        let n = Double(max(images.count, 1))
        return ImageTokenizerReport(
            images: images.count, tokensPerImage: vq.tokensPerImage, codebookSize: vq.codebookSize,
            mse: squared / n, meanImagePSNR: imagePSNR / n, perplexity: exp(entropy),
            usedCodes: counts.filter { $0 > 0 }.count, imagesPerSecond: Double(images.count) / seconds,
            codes: codes)
    }

    /// Mean squared error over the centred `size` region of two images of the same shape.
    static func regionError(_ a: PNGImage, _ b: PNGImage, size: (width: Int, height: Int)) -> Double {
        if size.width == a.width && size.height == a.height { return a.meanSquaredError(to: b) }
        let (x0, y0, c) = ((a.width - size.width) / 2, (a.height - size.height) / 2, a.channels)
        var sum = 0.0
        for y in y0..<y0 + size.height {
            for j in ((y * a.width + x0) * c)..<((y * a.width + x0 + size.width) * c) {
                let d = Double(a.pixels[j]) - Double(b.pixels[j])
                sum += d * d
            }
        }
        return sum / Double(max(size.width * size.height * c, 1))
    }

    /// A grid of originals beside their reconstructions: `columns` pairs a row (original, then reconstruction,
    /// a 2-pixel white gap), every pixel repeated `scale` times, a white margin between pairs. RGB.
    public static func grid(originals: [PNGImage], reconstructions: [PNGImage], columns: Int, scale: Int) -> PNGImage {
        precondition(originals.count == reconstructions.count && !originals.isEmpty)
        let (w, h) = (originals[0].width * scale, originals[0].height * scale)
        let (gap, margin) = (2, 8)
        let cellW = 2 * w + gap + margin, cellH = h + margin
        let rows = (originals.count + columns - 1) / columns
        let width = columns * cellW + margin, height = rows * cellH + margin
        var pixels = [UInt8](repeating: 255, count: width * height * 3)
        func paste(_ image: PNGImage, x0: Int, y0: Int) {
            let rgb = image.converted(toChannels: 3)
            for y in 0..<h {
                for x in 0..<w {
                    let src = ((y / scale) * rgb.width + x / scale) * 3, dst = ((y0 + y) * width + x0 + x) * 3
                    pixels[dst] = rgb.pixels[src]; pixels[dst + 1] = rgb.pixels[src + 1]; pixels[dst + 2] = rgb.pixels[src + 2]
                }
            }
        }
        for (i, (a, b)) in zip(originals, reconstructions).enumerated() {
            let x0 = margin + (i % columns) * cellW, y0 = margin + (i / columns) * cellH
            paste(a, x0: x0, y0: y0)
            paste(b, x0: x0 + w + gap, y0: y0)
        }
        return PNGImage(width: width, height: height, channels: 3, pixels: pixels)
    }
}
