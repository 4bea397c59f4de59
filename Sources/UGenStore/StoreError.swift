import Foundation

/// A failure reading or writing a file of the store: the file (or `latest` pointer, or run folder) at
/// fault and what is wrong with it, one case per problem. `description` is one line naming the file
/// and the object.
public struct StoreError: Error, CustomStringConvertible, Equatable {
    /// nil when the problem names no file (a tensor that does not fit the model, a verifier's finding).
    public let path: String?
    public let problem: Problem
    /// Through a `latest` pointer: where the newest good checkpoint beside it is (else empty).
    public var alternative: String

    public init(_ path: String?, _ problem: Problem, alternative: String = "") {
        self.path = path; self.problem = problem; self.alternative = alternative
    }

    public var description: String { (path.map { "\($0): " } ?? "") + problem.description + alternative }

    public enum Problem: Equatable, Sendable, CustomStringConvertible {
        // HDF5 files and objects.
        case noSuchFile, notHDF5, cannotOpenFile, cannotCreateFile, flushFailed, cannotVisit
        case cannotCreateGroup(String), cannotRemove(String), missingGroup(String), notAGroup(String), cannotList(String)
        /// `notOurs`: said of a file that may be no ugen dataset at all.
        case missingDataset(String, notOurs: Bool)
        case notADataset(String), noContiguousStorage(String), notOneD(String)
        case elementCount(String, found: Int, expected: Int)
        case cannotRead(String)
        case sliceOutside(String, Range<Int>, length: Int)
        case cannotReadSlice(String, Range<Int>)
        case cannotCreateDataset(String), cannotExtend(String)
        case cannotWrite(String, diskFull: Bool)
        case missingObject(String), cannotOpenObject(String)
        case missingAttribute(String, on: String)
        case cannotReadAttribute(String, on: String?)
        case attributeNotNumeric(String, on: String), attributeNotString(String, on: String)
        case cannotCreateAttribute(String, on: String), cannotWriteAttribute(String, on: String)
        // Writing files in place.
        case cannotRename(from: String)
        case cannotOpenToSync, fsyncFailed, cannotUpdate, writerFinished
        // Schemas.
        case wrongFormat(found: String, expected: String)
        case wrongVersion(found: Int, expected: Int)
        case maskLength(mask: Int, tokens: Int)
        case cannotOpenTokensAndMask, mergesShape
        case codebookShape(codes: Int, patch: Int, channels: Int)
        case contentHash(stored: String, actual: String)
        case nonFinite(group: String, tensor: String)
        // Checkpoints and `latest` pointers.
        case noCheckpointToResume, pointerNotText, pointerEmpty, noSuchCheckpoint, folderWithoutLatest
        /// The pointer's text (shortened) is no checkpoint name.
        case pointerNotAName(String)
        case pointerTargetMissing(String)
        case tensorMissing(String), momentsMissing(String)
        case tensorShape(String, checkpoint: [Int], model: [Int])
        /// The checkpoint verifier's finding, which names the file itself (its report lists findings as text).
        case finding(String)
        // Gradient-check fixtures.
        case badConfig(String)
        case shape(String, found: [Int], expected: [Int])
        case batchShape([Int])
        case batchMismatch
        case idsOutside(String, vocabulary: Int)
        case wrongSize(String)

        // Over 60 lines on purpose: one line per case, so every message users can see reads as one list.
        public var description: String {
            switch self {
            case .noSuchFile: "no such file"
            case .notHDF5: "not an HDF5 file (truncated or corrupted?)"
            case .cannotOpenFile: "cannot open HDF5 file (truncated or corrupted?)"
            case .cannotCreateFile: "cannot create HDF5 file"
            case .flushFailed: "flush failed"
            case .cannotVisit: "HDF5 cannot visit every object (a damaged object header or link)"
            case .cannotCreateGroup(let g): "cannot create group \(g)"
            case .cannotRemove(let o): "cannot remove \(o)"
            case .missingGroup(let g): "missing group \(g)"
            case .notAGroup(let g): "\(g) is not a group"
            case .cannotList(let g): "cannot list \(g)"
            case .missingDataset(let n, let notOurs): "missing dataset \(n)" + (notOurs ? " (not a ugen dataset?)" : "")
            case .notADataset(let n): "\(n) is not a dataset"
            case .noContiguousStorage(let n): "\(n) has no contiguous storage"
            case .notOneD(let n): "\(n) is not 1-D"
            case .elementCount(let n, let found, let expected): "\(n) has \(found) elements, expected \(expected)"
            case .cannotRead(let n): "cannot read \(n) (corrupted data?)"
            case .sliceOutside(let n, let r, let length): "slice \(r) outside \(n) of length \(length)"
            case .cannotReadSlice(let n, let r): "cannot read \(n)[\(r)] (corrupted data?)"
            case .cannotCreateDataset(let n): "cannot create dataset \(n)"
            case .cannotExtend(let n): "cannot extend \(n)"
            case .cannotWrite(let n, let diskFull): "cannot write \(n)" + (diskFull ? " (disk full?)" : "")
            case .missingObject(let o): "missing \(o)"
            case .cannotOpenObject(let o): "cannot open \(o)"
            case .missingAttribute(let a, let o): "missing attribute \(a) on \(o)"
            case .cannotReadAttribute(let a, let o): "cannot read attribute \(a)" + (o.map { " on \($0)" } ?? "")
            case .attributeNotNumeric(let a, let o): "attribute \(a) on \(o) is not numeric"
            case .attributeNotString(let a, let o): "attribute \(a) on \(o) is not a string"
            case .cannotCreateAttribute(let a, let o): "cannot create attribute \(a) on \(o)"
            case .cannotWriteAttribute(let a, let o): "cannot write attribute \(a) on \(o)"
            case .cannotRename(let from): "cannot rename \(from) into place"
            case .cannotOpenToSync: "cannot open to sync"
            case .fsyncFailed: "fsync failed"
            case .cannotUpdate: "cannot update"
            case .writerFinished: "writer already finished"
            case .wrongFormat(let found, let expected): "attribute format is '\(found)', expected '\(expected)'"
            case .wrongVersion(let found, let expected): "attribute version is \(found), this build reads version \(expected)"
            case .maskLength(let mask, let tokens): "/loss_mask has \(mask) elements, /tokens \(tokens)"
            case .cannotOpenTokensAndMask: "cannot open /tokens and /loss_mask"
            case .mergesShape: "/text/merges must be [M, 2]"
            case .codebookShape(let k, let p, let c): "/image/codebook does not hold \(k) codes of \(p)×\(p)×\(c)"
            case .contentHash(let stored, let actual):
                "attribute content_hash is \(stored) but the content hashes to \(actual) (corrupted?)"
            case .nonFinite(let g, let t): "not written: \(g)/\(t) holds a non-finite value (a checkpoint never stores NaN or Inf)"
            case .noCheckpointToResume: "no checkpoint to resume from (no such file)"
            case .pointerNotText: "unreadable (not UTF-8 text naming a checkpoint)"
            case .pointerEmpty: "empty, names no checkpoint"
            case .noSuchCheckpoint: "no such checkpoint"
            case .folderWithoutLatest: "a folder without checkpoints/latest"
            case .pointerNotAName(let shown): "unreadable: \(shown.debugDescription) is not a checkpoint name (step-XXXXXXXX.h5)"
            case .pointerTargetMissing(let name): "names \(name), which does not exist"
            case .tensorMissing(let n): "checkpoint has no tensor \(n)"
            case .momentsMissing(let n): "checkpoint has no moments for \(n)"
            case .tensorShape(let n, let ck, let model): "\(n): checkpoint shape \(ck), model shape \(model)"
            case .finding(let text): text
            case .badConfig(let reason): "/config: \(reason)"
            case .shape(let n, let found, let expected): "\(n) has shape \(found), expected \(expected)"
            case .batchShape(let shape): "/batch/inputs must be [B, T], is \(shape)"
            case .batchMismatch: "/batch tensors disagree in shape"
            case .idsOutside(let n, let v): "/batch/\(n) holds ids outside the vocabulary of \(v)"
            case .wrongSize(let n): "\(n) has the wrong size"
            }
        }
    }
}
