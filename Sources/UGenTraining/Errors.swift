import Foundation

/// A run configuration that cannot be used: one case per mistake, printed as one line naming the file
/// (`source`) and the key.
public indirect enum ConfigError: Error, CustomStringConvertible, Equatable {
    /// `key`'s value `got` is not `expected` ("an integer", "one of 1f1b, gpipe, zb", …).
    case badValue(key: String, expected: String, got: String)
    case notYAML(source: String, reason: String)
    case notAMapping(source: String)
    case notAGroup(source: String, group: String)
    /// A `--set` argument without `=`.
    case badOverride(String)
    case unreadable(path: String)
    case unknownKey(source: String, key: String)
    /// `error`, found in `source` (a file, `--set`).
    case inSource(String, ConfigError)
    /// A rule between keys is broken; the text names the keys and their values.
    case broken(rule: String)

    public var description: String {
        switch self {
        case .badValue(let key, let expected, let got): "\(key): expected \(expected), got \(got)"
        case .notYAML(let source, let reason): "\(source): not valid YAML: \(reason)"
        case .notAMapping(let source): "\(source): expected a mapping of groups"
        case .notAGroup(let source, let group):
            "\(source): \(group): expected a group of keys (model, data, train, vocab_schedule, cluster)"
        case .badOverride(let o): "--set \(o): expected group.key=value"
        case .unreadable(let path): "\(path): cannot read config file"
        case .unknownKey(let source, let key): "\(source): unknown config key '\(key)'"
        case .inSource(let source, let error): "\(source): \(error)"
        case .broken(let rule): rule
        }
    }
}

/// A run that cannot start or go on with the data and checkpoint it was given: one case per mismatch,
/// printed as one line naming the file.
public enum RunError: Error, CustomStringConvertible, Equatable {
    case noDataset(path: String, dataDir: String)
    case vocabularyMismatch(configured: Int, path: String, dataset: Int)
    /// The data stream was asked for another step than the one it is at.
    case dataStreamAt(batch: Int, asked: Int)
    case unrestorableDataState(state: String, reason: String)
    /// The checkpoint at `path` was trained with another tokenizer (`saved`) than the one `train` was made
    /// with (`current`), or on another dataset.
    case otherTokenizer(path: String, saved: String, train: String, dataDir: String, current: String)
    case otherDataset(path: String, saved: String, train: String, dataDir: String, current: String)
    case otherSetting(path: String, key: String, saved: String, current: String)
    /// The checkpoint's model differs (`path` nil: a checkpoint handed to the trainer directly).
    case otherModel(path: String?, difference: String)
    case missingTensor(String)
    /// The run stopped on a non-finite step; `latest` is the checkpoint it leaves.
    case stoppedNonFinite(reason: String, runDirectory: String, latest: String)

    public var description: String {
        switch self {
        case .noDataset(let path, let dir): "\(path): no dataset (data.dir = \(dir)); make one with `ugen tokenize` or `make data`"
        case .vocabularyMismatch(let configured, let path, let dataset):
            "model.vocab_size (\(configured)) does not match the vocabulary of \(path) (\(dataset))"
        case .dataStreamAt(let batch, let asked): "data stream is at batch \(batch), step \(asked) was asked for"
        case .unrestorableDataState(let state, let reason): "cannot restore the data stream from state \(state): \(reason)"
        case .otherTokenizer(let path, let saved, let train, let dir, let current):
            "\(path): checkpoint was trained with tokenizer \(saved), but \(train) (data.dir = \(dir)) "
                + "was made with tokenizer \(current): the token ids mean different things; pass --allow-data-change to resume anyway"
        case .otherDataset(let path, let saved, let train, let dir, let current):
            "\(path): checkpoint was trained on dataset \(saved), but \(train) (data.dir = \(dir)) "
                + "is dataset \(current) (same tokenizer, other examples); pass --allow-data-change to resume anyway"
        case .otherSetting(let path, let key, let saved, let current):
            "\(path): checkpoint was trained with \(key) = \(saved), this run has \(current)"
        case .otherModel(let path?, let d): "\(path): checkpoint has \(d)"
        case .otherModel(nil, let d): "checkpoint model has \(d)"
        case .missingTensor(let name): "checkpoint has no tensor \(name)"
        case .stoppedNonFinite(let reason, let dir, let latest): "\(reason); \(dir)/checkpoints/latest stays at \(latest)"
        }
    }
}
