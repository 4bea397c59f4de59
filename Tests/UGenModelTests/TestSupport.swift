import Foundation
import XCTest

/// The repository's root (this file is Tests/UGenModelTests/TestSupport.swift).
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The PyTorch reference fixtures, committed in `Tests/fixtures/` (remade by `make fixtures`, from
/// `Tests/python/make_fixture.py`): two model shapes that differ in every size and constant the model
/// branches on, so a bug that one shape hides shows in the other. The suite reads only these files.
let referenceFixtures = ["tiny-llama-a", "tiny-llama-b"].map { repoRoot.appendingPathComponent("Tests/fixtures/\($0).h5").path }

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
