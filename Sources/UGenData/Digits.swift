import Foundation
import UGenKernels

/// scikit-learn's copy of the UCI handwritten digits (CC BY 4.0): `digits.csv(.gz)`, one image per line,
/// 64 grey values 0…16 (8×8, row-major) then the label. Turned into PNGs and captioned pairs so the image
/// path of `ugen tokenize` runs on real data.
public enum Digits {
    public struct Sample: Sendable {
        public var image: PNGImage
        public var label: Int
    }

    /// Reads the CSV (gzip-compressed when the name ends in `.gz`); values are scaled 0…16 → 0…255.
    public static func read(csv path: String) throws -> [Sample] {
        let bytes = path.hasSuffix(".gz") ? try gunzip(path) : try readFile(path)
        var samples: [Sample] = []
        for (i, line) in bytes.split(separator: UInt8(ascii: "\n")).enumerated() {
            let fields = line.split(separator: UInt8(ascii: ",")).map {
                Double(
                    String(decoding: $0, as: UTF8.self)
                        .trimmingCharacters(in: .whitespacesAndNewlines))
            }
            guard fields.count == 65, fields.allSatisfy({ $0 != nil }) else {
                throw DataError.digitsLineLength(path: path, line: i + 1)
            }
            let values = fields.map { $0! }
            guard values[..<64].allSatisfy({ (0...16).contains($0) }), (0...9).contains(values[64]) else {
                throw DataError.digitsRange(path: path, line: i + 1)
            }
            let pixels = values[..<64].map { UInt8(($0 * 255 / 16).rounded()) }
            samples.append(Sample(image: PNGImage(width: 8, height: 8, channels: 1, pixels: pixels), label: Int(values[64])))
        }
        guard !samples.isEmpty else { throw DataError.empty(path: path, what: .digits) }
        return samples
    }

    static let words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

    /// Caption templates: `{w}` is the number word, `{d}` the numeral, `{a}` the article before the word
    /// ("an" only for eight).
    static let templates = [
        "{a} handwritten {w}", "the digit {d} written by hand", "a handwritten digit {d}", "{a} {w}",
        "the number {w}, handwritten", "a picture of the digit {w}", "handwritten {d}", "a scanned {w}",
        "this is {a} {w}", "the numeral {d} in pen", "a small grey image of {a} {w}", "digit {d}",
    ]

    /// The caption of `label` in wording `variant` (any integer; taken modulo the templates).
    public static func caption(label: Int, variant: Int) -> String {
        let word = words[label]
        return templates[variant % templates.count]
            .replacingOccurrences(of: "{a}", with: label == 8 ? "an" : "a")
            .replacingOccurrences(of: "{w}", with: word)
            .replacingOccurrences(of: "{d}", with: String(label))
    }

    /// Writes `out/images/NNNNN.png` and `out/pairs.jsonl` (one line per digit, caption wording drawn
    /// from `seed`). pairs.jsonl is written last, under a temporary name, so it only exists complete.
    /// Returns the pairs file's path.
    @discardableResult
    public static func prepare(csv: String, out: String, seed: UInt64 = 1) throws -> String {
        let samples = try read(csv: csv)
        let images = URL(fileURLWithPath: out).appendingPathComponent("images")
        do { try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true) } catch {
            throw DataError.cannotCreateDirectory(images.path)
        }
        var rng = SplitMix64(seed: seed)
        var lines = ""
        for (i, s) in samples.enumerated() {
            let name = String(format: "images/%05d.png", i)
            try s.image.write(URL(fileURLWithPath: out).appendingPathComponent(name).path)
            let object: [String: Any] = [
                "image": name, "caption": caption(label: s.label, variant: rng.nextInt(below: templates.count)),
                "label": s.label,
            ]
            let json = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            lines += String(decoding: json, as: UTF8.self) + "\n"
        }
        let pairs = URL(fileURLWithPath: out).appendingPathComponent("pairs.jsonl").path
        do { try lines.write(toFile: pairs, atomically: true, encoding: .utf8) } catch {
            throw DataError.cannotWrite(pairs)
        }
        return pairs
    }

    /// Decompresses with the system's gzip (present on every Debian machine).
    static func gunzip(_ path: String) throws -> [UInt8] {
        _ = try readFile(path)  // the one-line error for a missing or unreadable file
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: FileManager.default.fileExists(atPath: "/bin/gzip") ? "/bin/gzip" : "/usr/bin/gzip")
        gzip.arguments = ["-dc", path]
        let out = Pipe()
        gzip.standardOutput = out
        gzip.standardError = FileHandle.nullDevice
        do { try gzip.run() } catch { throw DataError.gzipNotRunnable(path) }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        gzip.waitUntilExit()
        guard gzip.terminationStatus == 0 else { throw DataError.notGzip(path) }
        return [UInt8](data)
    }
}
