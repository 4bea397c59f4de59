import Foundation
import UGenData
import UGenKernels
import UGenModel
import UGenStore

/// How `ugen eval` measures a checkpoint on a held-out split.
public struct EvaluationOptions: Sendable {
    /// At most this many examples per task (nil: all of them), spread evenly over the split (so a held-out
    /// split that lists one dataset's images after another's is sampled from both).
    public var maxText: Int?
    public var maxCaptions: Int?
    public var maxImages: Int?
    /// Captions are decoded greedily, at most this many tokens.
    public var captionMaxTokens = 24
    /// Images are sampled, `imagesPerCaption` per held-out caption (sample k of example i with seed
    /// `seed + i·imagesPerCaption + k`, so a subset of examples gives the same images).
    public var imagesPerCaption = 1
    public var imageTemperature = 1.0
    public var imageTopK = 0
    public var imageTopP = 1.0
    public var seed: UInt64 = 1
    /// Rows per forward pass of the teacher-forced losses.
    public var rows = 8
    public var judge = PixelClassifier.Options()
    /// The judge learns from at most this many training images (spread evenly over the split).
    public var judgeMaxTrainImages = 6000
    /// Only the teacher-forced losses: no generated captions or images, no judge, no ranking (learning curves).
    public var lossesOnly = false
    /// Ranking: at most this many held-out examples per image task, each scored against `rankCandidates` − 1
    /// distractors (0 examples: no ranking).
    public var rankExamples = 200
    public var rankCandidates = 10
    public init() {}
}

/// Everything `ugen eval` measures; encoded as the JSON report (null = not measured). Its keys are the
/// properties in snake_case (`json()` and `init(json:)` convert them).
public struct EvaluationReport: Codable, Sendable {
    public struct Text: Codable, Sendable {
        public var examples: Int
        /// Scored targets: every text token and `<eos>`.
        public var tokens: Int
        /// UTF-8 bytes of the scored text tokens.
        public var bytes: Int
        /// Mean cross-entropy per token (nats).
        public var loss: Double
        public var perplexity: Double
        /// Total cross-entropy in bits over the bytes of the text.
        public var bitsPerByte: Double
    }
    public struct CaptionSample: Codable, Sendable {
        public var reference: String
        public var generated: String
        public var correct: Bool
    }
    public struct ImageToText: Codable, Sendable {
        public var examples: Int
        /// Teacher-forced loss on the caption and `<eos>`.
        public var loss: Double?
        /// Examples whose reference caption names a class (the ones scored for accuracy).
        public var scored: Int
        /// Fraction of scored examples whose generated caption names exactly the right class.
        public var captionAccuracy: Double?
        /// Fraction whose generated caption names exactly one class, right or wrong.
        public var namesAClass: Double?
        public var perClassAccuracy: [Double?]
        public var samples: [CaptionSample]
    }
    public struct TextToImage: Codable, Sendable {
        public var examples: Int
        /// Teacher-forced loss on the visual tokens and `<eoi>`.
        public var loss: Double?
        /// Generated images judged (`imagesPerCaption` for each caption that names a class).
        public var scored: Int
        public var imagesPerCaption: Int
        /// Fraction of generated images the judge assigns to the caption's class.
        public var judgeAccuracy: Double?
        public var perClassAccuracy: [Double?]
        /// Distinct generated token sequences / images generated (1 = all different).
        public var distinctImages: Double?
        public var visualTokensPerImage: Int
    }
    /// Does the model prefer the true pairing? For each held-out example the true caption (image→text) or
    /// image (text→image) and up to `candidates` − 1 distractors taken from other held-out examples (seeded;
    /// distinct captions, distinct images) are scored by the model's log-likelihood of the candidate given
    /// the other half; the true one must score strictly highest.
    public struct Ranking: Codable, Sendable {
        public var examples: Int
        /// Candidates per example, the true one included (fewer when the split has fewer distinct ones).
        public var candidates: Int
        /// Fraction of examples whose true candidate is ranked first (chance: 1 / candidates).
        public var top1Accuracy: Double
        /// Mean rank of the true candidate (1 = first).
        public var meanRank: Double
    }
    public struct Judge: Codable, Sendable {
        public var kind: String
        public var trainImages: Int
        /// The classes it tells apart (`CaptionClasses.name`: digits, Fashion-MNIST).
        public var classes: String
        public var trainAccuracy: Double
        /// Held-out real images of the classes (val split) as the image tokenizer reconstructs them — the
        /// judge's stated accuracy, and the ceiling for generated images, which live in the same space.
        public var heldoutImages: Int
        public var heldoutAccuracy: Double
        /// 5-fold cross-validated accuracy over the training images, when the held-out split has under 1,000
        /// labelled images (a larger held-out sample than a small val; nil when val is large enough itself).
        public var crossValidatedAccuracy: Double?
        /// With the raw images (`--images PAIRS.jsonl`): the held-out images' original pixels.
        public var rawHeldoutImages: Int?
        public var rawHeldoutAccuracy: Double?
        /// Mean squared error (0–255 scale) between held-out originals and their VQ reconstructions.
        public var vqReconstructionMse: Double?
    }
    public var checkpoint: String
    public var step: Int
    public var vocabKind: String
    public var activeVisualIds: Int
    public var codebook: Int
    public var tokenizer: String
    public var data: String
    public var text: Text?
    public var img2txt: ImageToText?
    public var txt2img: TextToImage?
    public var judge: Judge?
    /// Ranking the true caption among `candidates` by p(caption | image), and the true image by p(image | caption).
    public var img2txtRanking: Ranking?
    public var txt2imgRanking: Ranking?
    /// The classes captions are scored by (`CaptionClasses.name`), nil when the captions name none.
    public var classes: String?
    public var notes: [String]
    public var seconds: Double
}

/// Measures a trained model on a held-out split, per task:
///
/// - text: teacher-forced loss, perplexity, bits per byte;
/// - image→text: teacher-forced caption loss, and caption accuracy — does the greedily generated caption
///   name the right class (the class the reference caption names);
/// - text→image: teacher-forced image loss, and the class accuracy of sampled images as judged by a
///   softmax-regression classifier trained on the training split's images (decoded from their tokens),
///   whose own accuracy on held-out images is measured first.
public final class Evaluator {
    public let model: TrainedModel
    let log: (String) -> Void
    /// The classes the held-out captions name (detected in `run`), which caption and image accuracy score.
    var classes: CaptionClasses?

    public init(model: TrainedModel, log: @escaping (String) -> Void = { _ in }) {
        self.model = model
        self.log = log
    }

    /// Evaluates on `valPath`; the judge trains on `trainPath` (default: train.h5 beside it). `rawPairs`
    /// (the pairs file the dataset was tokenized from) adds the raw-pixel and reconstruction numbers.
    public func run(
        valPath: String, trainPath: String? = nil, rawPairs: String? = nil,
        options o: EvaluationOptions = EvaluationOptions()
    ) throws -> EvaluationReport {
        let start = Date()
        let layout = model.layout
        let val = try DatasetReader(path: valPath, expecting: layout)
        try checkHash(val)
        var notes: [String] = []
        var report = EvaluationReport(
            checkpoint: model.checkpointPath, step: model.progress.step, vocabKind: model.progress.vocabKind,
            activeVisualIds: model.activeVisual?.count ?? layout.codebookSize, codebook: layout.codebookSize,
            tokenizer: model.tokenizerPath, data: valPath, text: nil, img2txt: nil, txt2img: nil, judge: nil,
            img2txtRanking: nil, txt2imgRanking: nil, classes: nil, notes: [], seconds: 0)

        let byTask = try examplesByTask(val)
        let text = Self.spread(byTask[0], o.maxText), captions = Self.spread(byTask[1], o.maxCaptions)
        let drawings = Self.spread(byTask[2], o.maxImages)
        classes = CaptionClasses.detect(byTask[1].map { model.tokenizers.text.decodeText(parts($0).caption) })
        report.classes = classes?.name
        let stage = try model.stage(rows: o.rows, seqLen: model.model.maxSeqLen)
        let vocab = model.stepVocab

        if !text.isEmpty {
            report.text = textLoss(text, stage: stage, vocab: vocab, notes: &notes)
        } else {
            notes.append("text: no text examples in \(valPath)")
        }

        if !captions.isEmpty {
            log("image→text: loss and \(captions.count) greedy captions")
            report.img2txt = try captioning(captions, stage: stage, vocab: vocab, options: o)
        } else {
            notes.append("image→text: no such examples in \(valPath)")
        }

        if !drawings.isEmpty {
            report.txt2img = try drawing(
                drawings, heldout: byTask[2], captionExamples: byTask[1], stage: stage, vocab: vocab,
                trainPath: trainPath
                    ?? ((valPath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("train.h5"),
                rawPairs: rawPairs, options: o, judge: &report.judge, notes: &notes)
        } else {
            notes.append("text→image: no such examples in \(valPath)")
        }

        if o.rankExamples > 0 && !o.lossesOnly { rank(captions, drawings, stage: stage, vocab: vocab, options: o, into: &report) }

        report.notes = notes
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    /// Ranks the true caption (image→text) and the true image (text→image) among distractors.
    private func rank(
        _ captions: [Example], _ drawings: [Example], stage: Stage, vocab: StepVocab, options o: EvaluationOptions,
        into report: inout EvaluationReport
    ) {
        for (task, examples) in [(ExampleTask.imageToText, captions), (.textToImage, drawings)] where !examples.isEmpty {
            log(
                "ranking: \(task == .imageToText ? "captions" : "images") of \(min(o.rankExamples, examples.count)) examples "
                    + "among \(o.rankCandidates)"
            )
            let r = ranking(examples, task: task, stage: stage, vocab: vocab, options: o)
            if task == .imageToText { report.img2txtRanking = r } else { report.txt2imgRanking = r }
        }
    }

    /// The text examples' teacher-forced loss, perplexity and bits per byte.
    private func textLoss(_ text: [Example], stage: Stage, vocab: StepVocab, notes: inout [String]) -> EvaluationReport.Text {
        log("text: teacher-forced loss on \(text.count) examples")
        let s = teacherForced(text, stage: stage, vocab: vocab)
        if s.truncated > 0 {
            notes.append(
                "text: \(s.truncated) examples longer than max_seq_len+1 were scored on their first \(model.model.maxSeqLen + 1) tokens")
        }
        return .init(
            examples: text.count, tokens: s.tokens, bytes: s.bytes, loss: s.mean, perplexity: exp(s.mean),
            bitsPerByte: s.bytes > 0 ? s.nats / M_LN2 / Double(s.bytes) : .infinity)
    }

    /// At most `n` of `examples`, evenly spaced (all when n is nil or not smaller).
    static func spread(_ examples: [Example], _ n: Int?) -> [Example] {
        guard let n, n < examples.count else { return examples }
        return (0..<n).map { examples[$0 * examples.count / n] }
    }

    func checkHash(_ r: DatasetReader) throws {
        guard r.tokenizerHash == model.tokenizers.hash else {
            throw GenerationError.datasetTokenizer(
                dataset: r.path, hash: r.tokenizerHash, tokenizer: model.tokenizerPath,
                current: model.tokenizers.hash)
        }
    }

    /// Examples of each task (index = task code), in file order.
    func examplesByTask(_ r: DatasetReader, only: ExampleTask? = nil) throws -> [[Example]] {
        var out: [[Example]] = [[], [], []]
        var i = 0
        while i < r.count {
            let end = min(r.count, i + 2048)
            if only == nil || (i..<end).contains(where: { r.task(of: $0) == only }) {
                for e in try r.examples(i..<end) where only == nil || e.task == only { out[Int(e.task.rawValue)].append(e) }
            }
            i = end
        }
        return out
    }

    // MARK: Teacher-forced loss

    struct LossSum {
        var nats = 0.0, tokens = 0, bytes = 0, truncated = 0
        var mean: Double { tokens > 0 ? nats / Double(tokens) : .nan }
    }

    /// Mean next-token loss over the examples' loss-masked targets, one example per row, under the
    /// checkpoint's vocabulary masks. Examples longer than max_seq_len + 1 are scored on their start.
    func teacherForced(_ examples: [Example], stage: Stage, vocab: StepVocab) -> LossSum {
        let seqLen = stage.seqLen, layout = model.layout, bpe = model.tokenizers.text
        var sum = LossSum()
        sum.truncated = examples.filter { $0.tokens.count > seqLen + 1 }.count
        lossBatches(examples, stage: stage, vocab: vocab) { _, targets, effective, loss in
            for i in 0..<targets.count where effective[i] != 0 {
                sum.nats += Double(loss[i])
                sum.tokens += 1
                if layout.isText(targets[i]) { sum.bytes += bpe.bytes(of: targets[i]).count }
            }
        }
        return sum
    }

    /// Per example: the summed loss (nats) over its loss-masked targets — −log p(targets | the rest) — one
    /// example per row, under the checkpoint's vocabulary masks.
    func exampleNats(_ examples: [Example], stage: Stage, vocab: StepVocab) -> [Double] {
        let rows = stage.rows, seqLen = stage.seqLen
        var out = [Double](repeating: 0, count: examples.count)
        lossBatches(examples, stage: stage, vocab: vocab) { batchStart, _, effective, loss in
            for r in 0..<min(rows, examples.count - batchStart) {
                for j in 0..<seqLen where effective[r * seqLen + j] != 0 { out[batchStart + r] += Double(loss[r * seqLen + j]) }
            }
        }
        return out
    }

    /// Runs the examples through `stage` a batch of R at a time (one example per row, its first S + 1 tokens
    /// as inputs and next-token targets, padded), under the vocabulary masks, and hands `body` each batch's
    /// first example index, targets, effective loss mask and per-position losses.
    private func lossBatches(
        _ examples: [Example], stage: Stage, vocab: StepVocab,
        _ body: (_ batchStart: Int, _ targets: [Int32], _ effective: Tensor, _ loss: Tensor) -> Void
    ) {
        let rows = stage.rows, seqLen = stage.seqLen, layout = model.layout
        var inputs = [Int32](repeating: layout.pad, count: rows * seqLen), targets = inputs,
            mask = [Float](repeating: 0, count: rows * seqLen)
        let a = stage.activations(0)
        for batchStart in stride(from: 0, to: examples.count, by: rows) {
            for i in 0..<(rows * seqLen) { inputs[i] = layout.pad; targets[i] = layout.pad; mask[i] = 0 }
            for (r, e) in examples[batchStart..<min(examples.count, batchStart + rows)].enumerated() {
                let length = min(e.tokens.count, seqLen + 1)
                for j in 0..<(length - 1) {
                    inputs[r * seqLen + j] = e.tokens[j]
                    targets[r * seqLen + j] = e.tokens[j + 1]
                    mask[r * seqLen + j] = Float(e.mask[j + 1])
                }
            }
            let batch = MicroBatch(tokens: inputs, targets: targets, mask: mask, tokenMap: vocab.tokenMap, inactive: vocab.inactive)
            stage.forward(a, batch)
            stage.crossEntropy(a, batch, gradScale: 0)
            body(batchStart, targets, stage.lastEffectiveMask, a.tokenLoss!)
        }
    }

    /// Ranks each example's true caption (image→text) or image (text→image) among distractors from the other
    /// examples, by the model's log-likelihood of it given the other half (Ranking).
    func ranking(_ all: [Example], task: ExampleTask, stage: Stage, vocab: StepVocab, options o: EvaluationOptions)
        -> EvaluationReport.Ranking
    {
        let l = model.layout
        let pairs = all.map(parts).filter { !$0.image.isEmpty }
        let examples = Array(pairs.prefix(o.rankExamples))
        // Distinct candidates of the varied half: captions for image→text, images for text→image, each with the
        // class its caption names (when CaptionClass reads one): a distractor of the truth's class would be a
        // second right answer ("handwritten 3" for "the digit 3 written by hand"), so it is skipped.
        let bpe = model.tokenizers.text
        var pool: [(candidate: [Int32], label: Int?)] = [], seen = Set<[Int32]>()
        for p in pairs {
            let c = task == .imageToText ? p.caption : p.image
            if seen.insert(c).inserted { pool.append((c, classes?.parse(bpe.decodeText(p.caption)))) }
        }
        var rng = SplitMix64(seed: o.seed ^ (task == .imageToText ? 0x52_414E_4B31 : 0x52_414E_4B32))  // "RANK1/2"
        var top1 = 0, rankSum = 0, candidates = 0
        for p in examples {
            let truth = task == .imageToText ? p.caption : p.image
            let label = classes?.parse(bpe.decodeText(p.caption))
            var chosen = [truth], chosenSet: Set<[Int32]> = [truth]
            var order = Array(pool.indices)
            var k = 0
            while chosen.count < o.rankCandidates && k < order.count {  // a seeded partial shuffle of the pool
                order.swapAt(k, k + rng.nextInt(below: order.count - k))
                let d = pool[order[k]]
                if label == nil || d.label != label, chosenSet.insert(d.candidate).inserted { chosen.append(d.candidate) }
                k += 1
            }
            let scored = chosen.map { c -> Example in
                let codes = (task == .imageToText ? p.image : c).map(l.code(of:))
                return task == .imageToText
                    ? l.imageToTextExample(codes: codes, caption: c)
                    : l.textToImageExample(caption: p.caption, codes: codes)
            }
            let nats = exampleNats(scored, stage: stage, vocab: vocab)
            let rank = 1 + nats.dropFirst().filter { $0 <= nats[0] }.count  // ties count against the truth
            if rank == 1 { top1 += 1 }
            rankSum += rank
            candidates = max(candidates, chosen.count)
        }
        let n = Double(max(examples.count, 1))
        return .init(examples: examples.count, candidates: candidates, top1Accuracy: Double(top1) / n, meanRank: Double(rankSum) / n)
    }

    // MARK: Image → text

    /// The caption (text ids) and image (visual ids) of an image example.
    func parts(_ e: Example) -> (caption: [Int32], image: [Int32]) {
        let l = model.layout
        guard let b = e.tokens.firstIndex(of: l.boi), let x = e.tokens[b...].firstIndex(of: l.eoi) else {
            return (e.tokens.filter(l.isText), [])
        }
        let image = Array(e.tokens[(b + 1)..<x])
        let caption = (Array(e.tokens[..<b]) + Array(e.tokens[(x + 1)...])).filter(l.isText)
        return (caption, image)
    }

    func captioning(_ examples: [Example], stage: Stage, vocab: StepVocab, options o: EvaluationOptions) throws
        -> EvaluationReport.ImageToText
    {
        let loss = teacherForced(examples, stage: stage, vocab: vocab)
        var result = EvaluationReport.ImageToText(
            examples: examples.count, loss: loss.tokens > 0 ? loss.mean : nil, scored: 0,
            captionAccuracy: nil, namesAClass: nil, perClassAccuracy: [], samples: [])
        guard !o.lossesOnly else { return result }
        let gen = try model.generator()
        let bpe = model.tokenizers.text
        var scored = 0, right = 0, named = 0
        var perClass = [(Int, Int)](repeating: (0, 0), count: classes?.count ?? 0)
        var samples: [EvaluationReport.CaptionSample] = []
        for e in examples {
            let (caption, image) = parts(e)
            guard !image.isEmpty else { continue }
            let reference = bpe.decodeText(caption)
            var sampler = Sampler(greedy: true)
            let generated = bpe.decodeText(try gen.caption(visualIds: image, maxNew: o.captionMaxTokens, sampler: &sampler))
            guard let classes, let want = classes.parse(reference) else { continue }
            let got = classes.parse(generated)
            scored += 1
            if got != nil { named += 1 }
            perClass[want].1 += 1
            if got == want { right += 1; perClass[want].0 += 1 }
            if samples.count < 12 { samples.append(.init(reference: reference, generated: generated, correct: got == want)) }
        }
        result.scored = scored
        result.captionAccuracy = scored > 0 ? Double(right) / Double(scored) : nil
        result.namesAClass = scored > 0 ? Double(named) / Double(scored) : nil
        result.perClassAccuracy = perClass.map { $0.1 > 0 ? Double($0.0) / Double($0.1) : nil }
        result.samples = samples
        return result
    }
}

extension EvaluationReport {
    /// The JSON report (sorted keys, pretty-printed).
    public func json() throws -> Data {
        let enc = JSONEncoder()
        enc.keyEncodingStrategy = .convertToSnakeCase
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try enc.encode(self)
    }

    /// Reads a report `json()` wrote.
    public init(json: Data) throws {
        let dec = JSONDecoder()
        dec.keyDecodingStrategy = .convertFromSnakeCase
        dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        self = try dec.decode(EvaluationReport.self, from: json)
    }

    /// The human-readable table.
    public var table: String {
        func pct(_ v: Double?) -> String { v.map { String(format: "%.1f%%", 100 * $0) } ?? "—" }
        func num(_ v: Double?, _ f: String = "%.4f") -> String { v.map { String(format: f, $0) } ?? "—" }
        var out = "checkpoint  \(checkpoint) (step \(step), \(vocabKind), \(activeVisualIds)/\(codebook) visual ids active)\n"
        out += "data        \(data)\n\n"
        out += "task         examples  metric                        value\n"
        if let t = text {
            out += String(format: "text         %8d  loss (nats/token)             %@\n", t.examples, num(t.loss))
            out += "                       perplexity                    \(num(t.perplexity, "%.2f"))\n"
            out += "                       bits per byte                 \(num(t.bitsPerByte))\n"
        }
        if let c = img2txt {
            out += String(format: "image→text   %8d  caption loss (nats/token)     %@\n", c.examples, num(c.loss))
            out += "                       caption accuracy              \(pct(c.captionAccuracy)) of \(c.scored)\n"
            out += "                       names a class                 \(pct(c.namesAClass))\n"
        }
        if let g = txt2img {
            out += String(format: "text→image   %8d  image loss (nats/token)       %@\n", g.examples, num(g.loss))
            out += "                       judged class accuracy         \(pct(g.judgeAccuracy)) of \(g.scored)\n"
            out += "                       distinct images               \(pct(g.distinctImages))\n"
        }
        if let j = judge {
            out += "\njudge       \(j.kind)\n"
            out += "            train accuracy \(pct(j.trainAccuracy)) on \(j.trainImages) images; "
            out += "held-out (VQ-reconstructed real images, \(j.classes)) \(pct(j.heldoutAccuracy)) on \(j.heldoutImages)"
            out += j.crossValidatedAccuracy.map { "; 5-fold cross-validated \(pct($0))\n" } ?? "\n"
            if let r = j.rawHeldoutAccuracy {
                out +=
                    "            held-out originals \(pct(r)) on \(j.rawHeldoutImages ?? 0); VQ reconstruction MSE "
                    + "\(num(j.vqReconstructionMse, "%.1f")) (0–255 scale)\n"
            }
        }
        for (name, r) in [("image→text", img2txtRanking), ("text→image", txt2imgRanking)] {
            guard let r else { continue }
            out += String(
                format: "%@ %8d  true %@ first among %d   %@ (chance %.1f%%), mean rank %.2f\n",
                name.padding(toLength: 12, withPad: " ", startingAt: 0), r.examples,
                name == "image→text" ? "caption" : "image  ", r.candidates, pct(r.top1Accuracy),
                100 / Double(max(r.candidates, 1)), r.meanRank)
        }
        if let c = img2txt, !c.samples.isEmpty {
            out += "\ncaption samples (reference → generated):\n"
            for s in c.samples.prefix(5) { out += "  \(s.correct ? "✓" : "✗") \(s.reference) → \(s.generated)\n" }
        }
        for n in notes { out += "note: \(n)\n" }
        out += String(format: "time        %.1f s\n", seconds)
        return out
    }
}
