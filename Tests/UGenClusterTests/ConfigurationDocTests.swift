import Foundation
import UGenCluster
import UGenTraining
import XCTest
import Yams

/// Documentation/configuration.md is the list of config keys: every key a file in configs/ uses, and every
/// key RunConfig accepts, has a row there, and the row's default is the code's.
final class ConfigurationDocTests: XCTestCase {
    static let docPath = packageRoot.appendingPathComponent("Documentation/configuration.md").path

    /// The documented rows: `| \`group.key\` | type | default | allowed | meaning |`, by key.
    func documentedRows() throws -> [String: (type: String, defaultValue: String)] {
        let doc = try String(contentsOfFile: Self.docPath, encoding: .utf8)
        var rows: [String: (String, String)] = [:]
        for line in doc.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 6 else { continue }
            let key = cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            XCTAssertNil(rows[key], "configuration.md lists \(key) twice")
            rows[key] = (cells[2], cells[3].trimmingCharacters(in: CharacterSet(charactersIn: "`")))
        }
        return rows
    }

    /// Every YAML file under configs/, with its keys as `group.key`.
    func configKeys() throws -> [(file: String, keys: [String])] {
        let root = packageRoot.appendingPathComponent("configs")
        let files = FileManager.default.enumerator(atPath: root.path)!.compactMap { $0 as? String }
            .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
        XCTAssertTrue(files.contains("tiny.yaml"), "configs/tiny.yaml not found under \(root.path)")
        return try files.map { name in
            let text = try String(contentsOfFile: root.appendingPathComponent(name).path, encoding: .utf8)
            let top = try XCTUnwrap(try Yams.load(yaml: text) as? [String: Any], "configs/\(name): not a mapping")
            var keys: [String] = []
            for (group, value) in top {
                let inner = try XCTUnwrap(value as? [String: Any], "configs/\(name): \(group) is not a group of keys")
                keys += inner.keys.map { "\(group).\($0)" }
            }
            return ("configs/" + name, keys.sorted())
        }
    }

    func testEveryKeyOfEveryConfigFileIsDocumented() throws {
        let rows = try documentedRows()
        var missing: [String] = []
        for (file, keys) in try configKeys() {
            for key in keys where rows[key] == nil { missing.append("\(file): \(key)") }
            // And the file is a valid configuration (so a documented key cannot hide a misspelt one).
            XCTAssertNoThrow(try RunConfig.load(path: packageRoot.appendingPathComponent(file).path), file)
        }
        XCTAssertEqual(missing, [], "keys missing from Documentation/configuration.md")
    }

    func testEveryKeyRunConfigAcceptsIsDocumentedWithItsDefault() throws {
        let rows = try documentedRows()
        let defaults = RunConfig()
        let known = Set(RunConfig.keys.map(\.name))
        for key in RunConfig.keys.map(\.name) {
            guard let row = rows[key] else {
                XCTFail("Documentation/configuration.md: RunConfig key \(key) is not documented")
                continue
            }
            let code = defaults.value(of: key)
            if let a = Double(row.defaultValue), let b = Double(code) {
                XCTAssertEqual(a, b, "Documentation/configuration.md: \(key) default is \(row.defaultValue), the code's is \(code)")
            } else {
                XCTAssertEqual(row.defaultValue, code, "Documentation/configuration.md: \(key) default differs from the code's")
            }
        }
        for key in rows.keys.sorted() where !known.contains(key) {
            XCTFail("Documentation/configuration.md documents \(key), which RunConfig does not accept")
        }
    }

    /// The types in the table are the ones the parser enforces: an int key refuses 1.5, a number key takes 1.
    func testDocumentedTypesAreEnforced() throws {
        for (key, row) in try documentedRows() {
            let set = { (v: String) in try RunConfig.parse(yaml: "", overrides: ["\(key)=\(v)"]) }
            switch row.type {
            case "int":
                XCTAssertThrowsError(try set("1.5"), key) { XCTAssertTrue("\($0)".contains(key), "\($0)") }
            case "number":
                XCTAssertThrowsError(try set("many"), key) { XCTAssertTrue("\($0)".contains(key), "\($0)") }
                XCTAssertNoThrow(try set("1"), key)
            case "bool":
                XCTAssertThrowsError(try set("sometimes"), key)
                XCTAssertNoThrow(try set("true"), key)
            case "string":
                break
            default:
                XCTFail("configuration.md: \(key) has type \(row.type), expected int, number, string or bool")
            }
        }
    }
}
