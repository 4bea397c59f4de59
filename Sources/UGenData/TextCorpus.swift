import Foundation

/// Reads text documents (as bytes: byte-level BPE needs no decoding, and odd encodings survive).
///
/// - a `.jsonl` file: one document per line, the line's `"text"` string;
/// - any other file: documents are blocks separated by blank lines or by lines that are just `%` (the
///   separator of fortune files). A document keeps its inner newlines, not the separator lines.
public enum TextCorpus {
    public static func documents(inFile path: String) throws -> [[UInt8]] {
        let bytes = try readFile(path)
        let documents = path.hasSuffix(".jsonl") ? try jsonlDocuments(bytes, path: path) : blocks(bytes)
        guard !documents.isEmpty else { throw DataError.empty(path: path, what: .documents) }
        return documents
    }

    /// Splits on lines that are blank or exactly `%` (trailing spaces and `\r` ignored).
    static func blocks(_ bytes: [UInt8]) -> [[UInt8]] {
        var documents: [[UInt8]] = []
        var current: [UInt8] = []
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            let trimmed = line.reversed().drop(while: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }).reversed()
            if trimmed.isEmpty || Array(trimmed) == [UInt8(ascii: "%")] {
                if !current.isEmpty { documents.append(current) }
                current = []
            } else {
                if !current.isEmpty { current.append(UInt8(ascii: "\n")) }
                current += line
            }
        }
        if !current.isEmpty { documents.append(current) }
        return documents
    }

    static func jsonlDocuments(_ bytes: [UInt8], path: String) throws -> [[UInt8]] {
        try JSONLines.objects(bytes, path: path).compactMap { line, object in
            guard let text = object["text"] as? String else {
                throw DataError.missingText(path: path, line: line)
            }
            return text.isEmpty ? nil : Array(text.utf8)
        }
    }
}

/// Reads a whole file with a one-line error naming it.
func readFile(_ path: String) throws -> [UInt8] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw DataError.noSuchFile(path) }
    guard !isDirectory.boolValue else { throw DataError.isDirectory(path) }
    guard let data = FileManager.default.contents(atPath: path) else { throw DataError.notReadable(path) }
    return [UInt8](data)
}

/// JSON Lines: one JSON object per non-blank line.
enum JSONLines {
    /// (1-based line number, object) for each non-blank line; a line that is not a JSON object is an
    /// error naming the file and the line.
    static func objects(_ bytes: [UInt8], path: String) throws -> [(Int, [String: Any])] {
        var out: [(Int, [String: Any])] = []
        for (i, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                throw DataError.notAJSONObject(path: path, line: i + 1)
            }
            out.append((i + 1, object))
        }
        return out
    }
}
