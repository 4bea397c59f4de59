import Foundation
import XCTest

/// The repository must stand alone: a fresh clone has nothing beside it, so no file may point at a folder
/// next to the checkout (a reference there once made `make test` fail for every new user).
final class StandaloneTests: XCTestCase {
    /// The needles are built from parts so that this file does not contain them.
    static let needles = [".." + "/shared", "shared" + "/fixtures", "shared" + "/notes"]

    func testNoFileRefersOutsideTheRepository() throws {
        let files = repositoryFiles()
        XCTAssertGreaterThan(files.count, 50, "listed the repository's files (\(files.count))")
        XCTAssertTrue(files.contains("Tests/UGenModelTests/StandaloneTests.swift"), "the listing includes the tests")
        var found: [String] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: repoRoot.appendingPathComponent(file).path) else { continue }
            for needle in Self.needles {
                var from = data.startIndex
                while let r = data.range(of: Data(needle.utf8), in: from..<data.endIndex) {
                    let line = data[data.startIndex..<r.lowerBound].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
                    found.append("\(file):\(line): \(needle)")
                    from = r.upperBound
                }
            }
        }
        XCTAssertEqual(found, [], "files refer to folders outside the repository:\n" + found.joined(separator: "\n"))
    }

    /// Without git (an exported tarball) the check walks the tree instead; that walk must see every file git
    /// lists, or the check would miss some.
    func testTheWalkWithoutGitSeesEveryListedFile() throws {
        let listed = try XCTUnwrap(gitFiles(), "git lists the checkout's files")
        let walked = Set(walkedFiles())
        let onDisk = listed.filter { FileManager.default.fileExists(atPath: repoRoot.appendingPathComponent($0).path) }
        let missing = onDisk.filter { !walked.contains($0) }
        XCTAssertEqual(missing, [], "files git lists that the walk does not see")
    }

    func repositoryFiles() -> [String] { gitFiles() ?? walkedFiles() }

    /// The files git knows (tracked, and new ones it does not ignore), relative to the root; nil without git.
    func gitFiles() -> [String]? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["git", "-C", repoRoot.path, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, !data.isEmpty else { return nil }
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Every file under the root except git's, build output, data and runs.
    func walkedFiles() -> [String] {
        var files: [String] = []
        let skip: Set<String> = [".git", ".build", "data", "runs"]
        let root = repoRoot.standardizedFileURL.path
        guard let walk = FileManager.default.enumerator(atPath: root) else { return [] }
        while let relative = walk.nextObject() as? String {
            if skip.contains(String(relative.split(separator: "/").first ?? "")) {
                walk.skipDescendants()
                continue
            }
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + relative, isDirectory: &isDir), !isDir.boolValue {
                files.append(relative)
            }
        }
        return files
    }
}
