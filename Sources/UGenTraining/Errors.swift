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

/// A trained model that cannot be used as asked (its tokenizer, its vocabulary, a prompt or an image that
/// does not fit): one case per mistake, printed as one line naming the file.
public enum GenerationError: Error, CustomStringConvertible, Equatable {
    case noDataDir(checkpoint: String)
    /// No tokenizer file; `fromConfig`: its path came from the checkpoint's config, not from --tokenizer.
    case noTokenizer(path: String, fromConfig: Bool)
    case vocabularyMismatch(tokenizer: String, t: Int, k: Int, v: Int, checkpoint: String, ckT: Int, ckK: Int, ckV: Int)
    case otherTokenizer(path: String, hash: String, checkpoint: String, recorded: String)
    case badVocabOrder(checkpoint: String, visualIds: Int)
    case noImageCodebook(tokenizer: String)
    case layoutMismatch(model: Int, layout: Int)
    case activeIdsOutside(String)
    case promptTooLong(tokens: Int, maxSeqLen: Int)
    case captionNotVisual
    case noVisualActive
    case captionTooLong(tokens: Int, imageTokens: Int, maxSeqLen: Int)
    /// A dataset made with another tokenizer than the model's.
    case datasetTokenizer(dataset: String, hash: String, tokenizer: String, current: String)
    case imageSize(source: String, width: Int, height: Int, tokenizerWidth: Int, tokenizerHeight: Int)
    case noHeldOutImages(pairs: String)

    public var description: String {
        switch self {
        case .noDataDir(let ck): "\(ck): the checkpoint's config names no data.dir; give --tokenizer DIR/tokenizer.h5"
        case .noTokenizer(let path, let fromConfig):
            "\(path): no tokenizer there\(fromConfig ? " (data.dir of the checkpoint's config); give --tokenizer" : "")"
        case .vocabularyMismatch(let tok, let t, let k, let v, let ck, let ckT, let ckK, let ckV):
            "\(tok): vocabulary T=\(t) K=\(k) (V=\(v)) does not match checkpoint \(ck) (T=\(ckT) K=\(ckK) V=\(ckV))"
        case .otherTokenizer(let path, let hash, let ck, let recorded):
            "\(path): tokenizer \(hash) is not the one checkpoint \(ck) was trained with "
                + "(\(recorded)): the ids would mean other things; give --tokenizer the run's data.dir/tokenizer.h5"
        case .badVocabOrder(let ck, let k): "\(ck): /train/vocab_order is not an ordering of the \(k) visual ids"
        case .noImageCodebook(let tok):
            "\(tok): has no learned image codebook (text only or external ids), so images cannot be encoded or decoded"
        case .layoutMismatch(let model, let layout):
            "the model's vocabulary (\(model)) does not match the tokenizer's layout (\(layout))"
        case .activeIdsOutside(let range): "active visual ids must lie in \(range)"
        case .promptTooLong(let n, let max): "prompt of \(n) tokens exceeds model.max_seq_len \(max)"
        case .captionNotVisual: "caption: the image must be visual ids only"
        case .noVisualActive: "no visual id is active yet (the checkpoint is still in the text-only phase)"
        case .captionTooLong(let n, let count, let max):
            "caption of \(n) tokens + \(count) image tokens exceeds model.max_seq_len \(max)"
        case .datasetTokenizer(let ds, let hash, let tok, let current): "\(ds): made with tokenizer \(hash), but \(tok) is \(current)"
        case .imageSize(let source, let w, let h, let tw, let th):
            "\(source): image is \(w)×\(h), the tokenizer's are \(tw)×\(th)"
        case .noHeldOutImages(let pairs):
            "\(pairs): none of its images is in the held-out split; is it the pairs file the dataset was tokenized from?"
        }
    }
}
