import Foundation
import XCTest

/// The repository's root (this file is Tests/UGenModelTests/TestSupport.swift).
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The shared PyTorch fixture, beside the checkout as `../shared/fixtures/tiny-llama.h5`.
let fixturePath = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures/tiny-llama.h5").path

/// English prose from Debian's `fortunes` package (installed by `make deps`).
func fortunesText() throws -> [UInt8] {
    let dir = "/usr/share/games/fortunes"
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
        throw XCTSkip("never skipped silently: \(dir) is missing; run `make deps` (apt-get install fortunes)")
    }
    var bytes: [UInt8] = []
    for name in names.sorted() where !name.hasSuffix(".dat") && !name.hasSuffix(".u8") && !name.hasPrefix(".") {
        if let d = FileManager.default.contents(atPath: dir + "/" + name) { bytes += d }
    }
    return bytes
}
