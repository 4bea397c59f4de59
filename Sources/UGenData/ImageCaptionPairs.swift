import Foundation

/// One line of a pairs file: an image (a PNG, or visual ids from a tokenizer that ran elsewhere) and its
/// caption. Each pair becomes one image→text and one text→image example.
public struct ImageCaptionPair: Sendable {
    public enum Image: Sendable {
        case png(PNGImage)
        case codes([Int])
    }

    public var image: Image
    public var caption: String
    /// `file:line`, for error messages.
    public var source: String
}

public enum ImageCaptionPairs {
    /// Reads a JSONL pairs file: lines `{"image": "path.png", "caption": "..."}` (path relative to the
    /// file's folder) or, with `externalCodebook` K, `{"image_ids": [...], "caption": "..."}` with ids in
    /// 0..<K. Images are loaded and checked here, so every error names the JSONL file and line.
    public static func read(_ path: String, externalCodebook: Int? = nil) throws -> [ImageCaptionPair] {
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
        var pairs: [ImageCaptionPair] = []
        for (line, object) in try JSONLines.objects(try readFile(path), path: path) {
            let source = "\(path):\(line)"
            guard let caption = object["caption"] as? String, !caption.isEmpty else {
                throw DataError.missingCaption(source: source)
            }
            if let ids = object["image_ids"] {
                guard let k = externalCodebook else {
                    throw DataError.imageIdsNeedCodebook(source: source)
                }
                guard let codes = ids as? [Int], !codes.isEmpty, codes.allSatisfy({ (0..<k).contains($0) }) else {
                    throw DataError.badImageIds(source: source, codebook: k)
                }
                pairs.append(ImageCaptionPair(image: .codes(codes), caption: caption, source: source))
            } else if let file = object["image"] as? String {
                guard externalCodebook == nil else {
                    throw DataError.imageWithExternalCodebook(source: source)
                }
                let imagePath = file.hasPrefix("/") ? file : folder.appendingPathComponent(file).path
                let image: PNGImage
                do { image = try PNGImage.read(imagePath) } catch let e as DataError { throw DataError.pairImage(source: source, e) }
                pairs.append(ImageCaptionPair(image: .png(image), caption: caption, source: source))
            } else {
                throw DataError.needsImage(source: source)
            }
        }
        guard !pairs.isEmpty else { throw DataError.empty(path: path, what: .pairs) }
        return pairs
    }
}
