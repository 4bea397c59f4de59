import Foundation
import UGenSchema

/// One run of `CheckpointVerifier.verify`: the rules in the order the verifier's documentation lists them,
/// each part a method that adds its findings to `report`. A part returns nil when what follows cannot be
/// checked without it (the file is not a checkpoint, the model cannot be read); the report so far stands.
final class CheckpointVerification {
    let path: String
    let keepTensors: Bool
    private(set) var report: CheckpointReport

    init(_ path: String, keepTensors: Bool) {
        self.path = path; self.keepTensors = keepTensors
        report = CheckpointReport(path: path)
    }

    func finding(_ object: String, _ problem: String) { report.findings.append("\(path): \(object): \(problem)") }

    /// Every part in turn, stopping where the next one would have nothing to check.
    func run() {
        guard let f = openCheckpoint(), let (objects, root) = tree(f), root.contains("config") else { return }
        guard let model = model(f, objects: objects.count) else { return }
        let layout = layout(f, model)
        let groups = tensors(f, model)
        let optimizerStep = optimizer(f, root: root)
        guard root.contains("train"), let progress = train(f, model: model, layout: layout, optimizerStep: optimizerStep) else {
            return
        }
        report.progress = progress
        report.optimizerStep = optimizerStep
        if report.findings.isEmpty, keepTensors, let p = groups["/params"], let m = groups["/optimizer/m"],
            let v = groups["/optimizer/v"]
        {
            report.checkpoint = Checkpoint(
                model: model, vocabLayout: layout, params: p, adamM: m, adamV: v, optimizerStep: optimizerStep, progress: progress)
        }
    }

    /// The file opens as HDF5 and says it is a UGen checkpoint of the supported version.
    private func openCheckpoint() -> H5File? {
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size == 0 {
            report.findings.append("\(path): empty file (0 bytes), not a checkpoint")
            return nil
        }
        let f: H5File
        do { f = try H5File.open(path) } catch { report.findings.append("\(error)"); return nil }
        guard f.hasAttribute("format"), (try? f.stringAttribute("format")) == CheckpointFile.format else {
            report.findings.append("\(path): not a UGen checkpoint (attribute format is not \"\(CheckpointFile.format)\")")
            return nil
        }
        guard let v = try? f.intAttribute("version") else {
            finding("/", "attribute version is missing or not an integer")
            return nil
        }
        guard v == CheckpointFile.version else {
            report.findings.append("\(path): checkpoint version \(v) is not supported (expected \(CheckpointFile.version))")
            return nil
        }
        return f
    }

    /// The whole object tree and every attribute on it, as HDF5's tools read them (damage to a header that
    /// no reader of known objects would open, a time stamp or a link, is still damage), and the root's
    /// members. Returns every object and the root's members.
    private func tree(_ f: H5File) -> (objects: [String], root: [String])? {
        let everything: [String]
        do { everything = try f.visitAll() } catch { report.findings.append("\(error)"); return nil }
        for object in everything {
            guard let names = try? f.attributeNames(at: object) else {
                finding(object, "its attributes cannot be listed (a damaged object header)")
                continue
            }
            for a in names where (try? f.attributeBytes(a, at: object)) == nil || !f.attributeTypeIsPlain(a, at: object) {
                finding(object, "attribute \(a) cannot be read as stored (a damaged object header)")
            }
        }
        for object in everything where object.hasPrefix("/config/") { finding(object, "unexpected object (/config holds only attributes)") }
        let root: [String]
        do { root = try f.members(of: "/") } catch { report.findings.append("\(error)"); return nil }
        for name in root where !["config", "optimizer", "params", "train"].contains(name) {
            finding("/\(name)", "unexpected object (a checkpoint holds only /config, /params, /optimizer, /train)")
        }
        for name in ["config", "optimizer", "params", "train"] where !root.contains(name) { finding("/\(name)", "missing group") }
        return (everything, root)
    }

    /// `/config`'s model keys, a valid model, and not more tensors than the file has `objects`.
    private func model(_ f: H5File, objects: Int) -> ModelConfig? {
        CheckpointVerifier.checkAttributeChecksum(f, "/config", finding)
        var ints: [String: Int] = [:]
        var doubles: [String: Double] = [:]
        for k in CheckpointVerifier.modelKeys {
            do { ints[k] = try f.intAttribute(k, at: "/config") } catch { finding("/config", "attribute \(k) is missing or not a number") }
        }
        for k in CheckpointVerifier.modelDoubleKeys {
            do { doubles[k] = try f.doubleAttribute(k, at: "/config") } catch {
                finding("/config", "attribute \(k) is missing or not a number")
            }
        }
        let complete = ints.count == CheckpointVerifier.modelKeys.count && doubles.count == CheckpointVerifier.modelDoubleKeys.count
        guard report.findings.isEmpty || complete else { return nil }
        let model = ModelConfig(
            vocabSize: ints["vocab_size"]!, dModel: ints["d_model"]!, nLayers: ints["n_layers"]!,
            nHeads: ints["n_heads"]!, nKVHeads: ints["n_kv_heads"]!, ffnHidden: ints["ffn_hidden"]!,
            ropeTheta: doubles["rope_theta"]!, rmsEps: doubles["rms_eps"]!, maxSeqLen: ints["max_seq_len"]!)
        do { try model.validate() } catch { finding("/config", "\(error)"); return nil }
        // A damaged n_layers (2^40) must not make the verifier enumerate what it implies: a checkpoint
        // holds 3 tensors per name, so more names than the file has objects cannot be right.
        let names = 9 * Double(model.nLayers) + 3  // Double: no overflow on a damaged value
        guard names <= Double(objects) else {
            let implied = names < 9e18 ? Int(names).formatted() : "\(names)"
            finding("/config", "n_layers \(model.nLayers) implies \(implied) tensors per group; the file holds \(objects) objects in all")
            return nil
        }
        report.model = model
        return model
    }

    /// The vocabulary layout: `/config`'s other integer attributes, consistent with the model.
    private func layout(_ f: H5File, _ model: ModelConfig) -> [String: Int] {
        var layout: [String: Int] = [:]
        let known = Set(CheckpointVerifier.modelKeys + CheckpointVerifier.modelDoubleKeys + ["checksum"])
        for k in (try? f.attributeNames(at: "/config")) ?? [] where !known.contains(k) {
            do { layout[k] = try f.intAttribute(k, at: "/config") } catch { finding("/config", "attribute \(k) is not an integer") }
        }
        report.vocabLayout = layout
        if let lv = layout["vocab_size"], lv != model.vocabSize {
            finding("/config", "vocab_size is \(model.vocabSize) but the vocabulary layout says \(lv)")
        }
        if let t = layout["text_vocab"], let s = layout["n_specials"], let k = layout["codebook"], t &+ s &+ k != model.vocabSize {
            finding(
                "/config", "text_vocab + n_specials + codebook = \(t) + \(s) + \(k) = \(t &+ s &+ k), not vocab_size \(model.vocabSize)")
        }
        return layout
    }
}

extension CheckpointVerification {
    /// The tensors of `/params`, `/optimizer/m` and `/optimizer/v` as stored, against the config; returns
    /// each group's tensors that read well (none unless `keepTensors`).
    fileprivate func tensors(_ f: H5File, _ model: ModelConfig) -> [String: [NamedTensor]] {
        let expected = model.parameterShapes
        let known = Set(expected.map(\.name))
        var groups: [String: [NamedTensor]] = [:]
        for group in ["/params", "/optimizer/m", "/optimizer/v"] where f.exists(group) {
            let names: [String]
            do { names = try f.members(of: group) } catch { finding(group, "not a group"); continue }
            for n in names where !known.contains(n) {
                let p = "\(group)/\(n)"
                report.tensors.append(
                    .init(path: p, stored: try? f.shape(of: p), dtype: CheckpointVerifier.dtype(f, p), status: "UNEXPECTED"))
                finding(p, "unexpected tensor (the config, \(model.nLayers) layers, implies \(expected.count) tensors per group)")
            }
            var loaded: [NamedTensor] = []
            for (name, shape) in expected {
                let p = "\(group)/\(name)"
                guard names.contains(name) else {
                    report.tensors.append(.init(path: p, stored: nil, dtype: "-", status: "MISSING"))
                    finding(p, "missing tensor (the config implies shape \(shape))")
                    continue
                }
                let (tensor, status) = CheckpointVerifier.readTensor(f, p, name: name, shape: shape)
                report.tensors.append(
                    .init(path: p, stored: try? f.shape(of: p), dtype: CheckpointVerifier.dtype(f, p), status: status ?? "ok"))
                if let status { finding(p, status) } else if let tensor, keepTensors { loaded.append(tensor) }
            }
            groups[group] = loaded
        }
        return groups
    }

    /// `/optimizer`'s members and attributes; returns its step (0 when unreadable).
    fileprivate func optimizer(_ f: H5File, root: [String]) -> Int {
        if f.exists("/optimizer") {
            for n in (try? f.members(of: "/optimizer")) ?? [] where n != "m" && n != "v" {
                finding("/optimizer/\(n)", "unexpected object (the optimizer holds only m and v)")
            }
            for n in ["m", "v"] where !f.exists("/optimizer/\(n)") { finding("/optimizer/\(n)", "missing group") }
        }
        var optimizerStep = 0
        if root.contains("optimizer") {
            CheckpointVerifier.checkAttributeChecksum(f, "/optimizer", finding)
            do { optimizerStep = try f.intAttribute("step", at: "/optimizer") } catch {
                finding("/optimizer", "attribute step is missing or not an integer")
            }
        }
        return optimizerStep
    }

    /// `/train`: progress and the vocabulary schedule, read, then checked against their ranges; nil when
    /// an attribute is missing.
    fileprivate func train(_ f: H5File, model: ModelConfig, layout: [String: Int], optimizerStep: Int) -> TrainingProgress? {
        CheckpointVerifier.checkAttributeChecksum(f, "/train", finding)
        var ints: [String: Int] = [:], strings: [String: String] = [:]
        for k in CheckpointVerifier.trainInts {
            do { ints[k] = try f.intAttribute(k, at: "/train") } catch { finding("/train", "attribute \(k) is missing or not an integer") }
        }
        for k in CheckpointVerifier.trainStrings {
            do { strings[k] = try f.stringAttribute(k, at: "/train") } catch {
                finding("/train", "attribute \(k) is missing or not a string")
            }
        }
        for n in (try? f.members(of: "/train")) ?? [] where n != "vocab_order" {
            finding("/train/\(n)", "unexpected object (/train holds only vocab_order)")
        }
        let order = vocabOrder(f)
        var rng: [String: UInt64] = [:]
        for k in (try? f.attributeNames(at: "/train")) ?? [] where k.hasPrefix("rng.") {
            do { rng[String(k.dropFirst(4))] = try f.attribute(k, at: "/train", as: UInt64.self)[0] } catch {
                finding("/train", "attribute \(k) is not a number")
            }
        }
        guard ints.count == CheckpointVerifier.trainInts.count, strings.count == CheckpointVerifier.trainStrings.count else { return nil }
        let progress = TrainingProgress(
            step: ints["step"]!, tokensSeen: ints["tokens_seen"]!, dataSeed: ints["data_seed"]!,
            dataState: strings["data_state"]!, vocabKind: strings["vocab_kind"]!, vocabActive: ints["vocab_active"]!, vocabOrder: order,
            rngStates: rng, configYAML: strings["config"]!, tokenizerHash: (try? f.stringAttribute("tokenizer_hash", at: "/train")) ?? "",
            datasetHash: (try? f.stringAttribute("dataset_hash", at: "/train")) ?? "")
        checkRanges(f, progress, model: model, layout: layout, optimizerStep: optimizerStep)
        return progress
    }

    /// `/train/vocab_order`: an int32 vector with a matching checksum (empty when it is not).
    private func vocabOrder(_ f: H5File) -> [Int32] {
        let p = "/train/vocab_order"
        guard f.isDataset(p) else { finding(p, "missing dataset"); return [] }
        let shape = (try? f.shape(of: p)) ?? []
        let t = try? f.storedType(of: p)
        guard shape.count == 1 else { finding(p, "has shape \(shape), expected one dimension"); return [] }
        guard let t, t.bytes == 4, !t.isFloat, t.isSigned else {
            finding(p, "stored as \(CheckpointVerifier.dtype(f, p)), expected int32")
            return []
        }
        do {
            let order: [Int32] = try f.read(p)
            if let problem = CheckpointVerifier.checksumProblem(f, p, order) { finding(p, problem) }
            return order
        } catch {
            report.findings.append("\(error)")
            return []
        }
    }

    /// The progress's values inside their ranges, and the stored run config's model equal to `/config`'s.
    private func checkRanges(_ f: H5File, _ p: TrainingProgress, model: ModelConfig, layout: [String: Int], optimizerStep: Int) {
        let step = p.step, active = p.vocabActive, kind = p.vocabKind
        if step < 0 { finding("/train", "step is \(step), negative") }
        if p.tokensSeen < 0 { finding("/train", "tokens_seen is \(p.tokensSeen), negative") }
        if let lrStep = try? f.intAttribute("lr_step", at: "/train"), lrStep != step {
            finding("/train", "lr_step is \(lrStep) but step is \(step)")
        }
        if optimizerStep < 0 || optimizerStep > step {
            finding("/optimizer", "step is \(optimizerStep), outside 0...\(step) (the training step)")
        }
        if !["progressive", "vanilla"].contains(kind) { finding("/train", "vocab_kind is \"\(kind)\", expected progressive or vanilla") }
        if (try? JSONSerialization.jsonObject(with: Data(p.dataState.utf8))) as? [String: Any] == nil {
            finding("/train", "data_state is not a JSON object")
        }
        let k = layout["codebook"] ?? p.vocabOrder.count
        if active < 0 || active > max(k, p.vocabOrder.count) {
            finding("/train", "vocab_active is \(active), outside 0...\(k) (the codebook)")
        }
        if let problem = CheckpointVerifier.scheduleProblem(order: p.vocabOrder, active: active, layout: layout) {
            finding("/train/vocab_order", problem)
        }
        if let problem = CheckpointVerifier.configProblem(p.configYAML, model) { finding("/config", problem) }
    }
}
