import CPNG
import Foundation

/// An 8-bit image, grey (1 channel) or RGB (3), pixels row-major with channels interleaved. Read and
/// written as PNG through libpng's simplified API, which also converts any PNG (palette, 16-bit, alpha)
/// to the 8-bit grey or RGB we ask for.
public struct PNGImage: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(channels == 1 || channels == 3, "channels must be 1 (grey) or 3 (RGB)")
        precondition(pixels.count == width * height * channels, "pixel count does not match the size")
        self.width = width; self.height = height; self.channels = channels; self.pixels = pixels
    }

    /// Reads a PNG file; colour images come back RGB, grey ones grey (alpha is composited onto black).
    public static func read(_ path: String) throws -> PNGImage {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw FileManager.default.fileExists(atPath: path) ? DataError.notReadable(path) : DataError.noSuchFile(path)
        }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_file(&image, path) != 0 else {
            let message = libpngMessage(&image)
            png_image_free(&image)
            throw DataError.notPNG(path: path, libpng: message)
        }
        let channels = image.format & PNG_FORMAT_FLAG_COLOR != 0 ? 3 : 1
        image.format = channels == 3 ? UInt32(PNG_FORMAT_RGB) : UInt32(PNG_FORMAT_GRAY)
        let (w, h) = (Int(image.width), Int(image.height))
        var pixels = [UInt8](repeating: 0, count: w * h * channels)
        let ok = pixels.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard ok != 0 else {
            let message = libpngMessage(&image)
            png_image_free(&image)
            throw DataError.cannotDecodePNG(path: path, libpng: message)
        }
        return PNGImage(width: w, height: h, channels: channels, pixels: pixels)
    }

    /// Writes the image as an 8-bit grey or RGB PNG.
    public func write(_ path: String) throws {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = channels == 3 ? UInt32(PNG_FORMAT_RGB) : UInt32(PNG_FORMAT_GRAY)
        let ok = pixels.withUnsafeBytes { png_image_write_to_file(&image, path, 0, $0.baseAddress, 0, nil) }
        guard ok != 0 else { throw DataError.cannotWritePNG(path: path, libpng: Self.libpngMessage(&image)) }
    }

    /// The same image with `channels` channels: grey → RGB repeats the value, RGB → grey takes the
    /// luma (Rec. 601 weights).
    public func converted(toChannels target: Int) -> PNGImage {
        if target == channels { return self }
        let n = width * height
        if target == 3 {
            return PNGImage(width: width, height: height, channels: 3, pixels: pixels.flatMap { [$0, $0, $0] })
        }
        let grey = (0..<n).map { i -> UInt8 in
            let r = Double(pixels[3 * i]), g = Double(pixels[3 * i + 1]), b = Double(pixels[3 * i + 2])
            return UInt8(min(255, (0.299 * r + 0.587 * g + 0.114 * b).rounded()))
        }
        return PNGImage(width: width, height: height, channels: 1, pixels: grey)
    }

    /// The image centred on a black canvas of `width`×`height` (an odd margin puts the extra pixel right and
    /// below); the canvas must be at least as large as the image. Fashion-MNIST's 28×28 items lie on black, so
    /// centring them in 32×32 adds background, not a frame.
    public func centred(inWidth w: Int, height h: Int) -> PNGImage {
        precondition(w >= width && h >= height, "canvas smaller than the image")
        if w == width && h == height { return self }
        var out = [UInt8](repeating: 0, count: w * h * channels)
        let (x0, y0) = ((w - width) / 2, (h - height) / 2)
        for y in 0..<height {
            let src = y * width * channels, dst = ((y0 + y) * w + x0) * channels
            out.replaceSubrange(dst..<dst + width * channels, with: pixels[src..<src + width * channels])
        }
        return PNGImage(width: w, height: h, channels: channels, pixels: out)
    }

    /// Mean squared error per pixel value (0…255 scale) between two images of the same shape.
    public func meanSquaredError(to other: PNGImage) -> Double {
        precondition(width == other.width && height == other.height && channels == other.channels, "shape mismatch")
        var sum = 0.0
        for (a, b) in zip(pixels, other.pixels) { sum += (Double(a) - Double(b)) * (Double(a) - Double(b)) }
        return sum / Double(max(pixels.count, 1))
    }

    private static func libpngMessage(_ image: inout png_image) -> String {
        withUnsafeBytes(of: &image.message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }
}

extension PNGImage {
    /// Images of one size side by side, left to right, each enlarged `scale` times (nearest neighbour).
    public static func sideBySide(_ images: [PNGImage], scale: Int = 1) -> PNGImage {
        precondition(!images.isEmpty && scale >= 1, "no images to place")
        let w = images[0].width, h = images[0].height, c = images[0].channels
        precondition(images.allSatisfy { $0.width == w && $0.height == h && $0.channels == c }, "images differ in size")
        let width = w * scale * images.count, height = h * scale
        var pixels = [UInt8](repeating: 0, count: width * height * c)
        for (k, img) in images.enumerated() {
            for y in 0..<height {
                for x in 0..<(w * scale) {
                    let src = ((y / scale) * w + x / scale) * c, dst = (y * width + k * w * scale + x) * c
                    for ch in 0..<c { pixels[dst + ch] = img.pixels[src + ch] }
                }
            }
        }
        return PNGImage(width: width, height: height, channels: c, pixels: pixels)
    }
}
