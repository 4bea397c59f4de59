import Foundation
import UGenData
import UGenKernels
import UGenModel
import UGenStore

/// Text → image: the teacher-forced image loss, and the class accuracy of sampled images as judged by a
/// softmax-regression classifier trained on the training split's images (decoded from their tokens, as
/// generated images are), whose own accuracy on the held-out images is measured first.
extension Evaluator {
    /// Pixels (0…1) of the images the given codes decode to, concatenated.
    static func pixels(_ images: [PNGImage]) -> [Float] { images.flatMap { $0.pixels.map { Float($0) / 255 } } }

    /// Decoded images and caption classes of every image example that names a class.
    func labelledImages(_ examples: [Example], vq: VQTokenizer) -> (images: [PNGImage], labels: [Int], codes: [[Int]], captions: [String]) {
        var images: [PNGImage] = [], labels: [Int] = [], codes: [[Int]] = [], captions: [String] = []
        let l = model.layout
        for e in examples {
            let (caption, image) = parts(e)
            guard image.count == vq.tokensPerImage, image.allSatisfy(l.isVisual) else { continue }
            let text = model.tokenizers.text.decodeText(caption)
            guard let label = classes?.parse(text) else { continue }
            let c = image.map(l.code(of:))
            images.append(vq.decode(c)); labels.append(label); codes.append(c); captions.append(text)
        }
        return (images, labels, codes, captions)
    }

    /// Image loss on `examples`; then the judge (trained on `trainPath`'s images, measured on all of
    /// `heldout`'s) and the judged accuracy of images drawn for `examples`' captions.
    func drawing(
        _ examples: [Example], heldout allHeldout: [Example], captionExamples: [Example], stage: Stage, vocab: StepVocab,
        trainPath: String, rawPairs: String?, options o: EvaluationOptions, judge: inout EvaluationReport.Judge?,
        notes: inout [String]
    ) throws -> EvaluationReport.TextToImage {
        let loss = teacherForced(examples, stage: stage, vocab: vocab)
        var result = EvaluationReport.TextToImage(
            examples: examples.count, loss: loss.tokens > 0 ? loss.mean : nil, scored: 0,
            imagesPerCaption: o.imagesPerCaption, judgeAccuracy: nil, perClassAccuracy: [], distinctImages: nil,
            visualTokensPerImage: model.tokensPerImage)
        guard !o.lossesOnly else { return result }
        guard let vq = model.tokenizers.image else {
            notes.append("text→image: \(model.tokenizerPath) has no learned codebook, so images cannot be decoded and judged")
            return result
        }
        // The judge: trained on the training split's images, measured on the held-out split's.
        log("judge: training on the images of \(trainPath)")
        let train = try DatasetReader(path: trainPath, expecting: model.layout)
        try checkHash(train)
        // Only training images whose caption names a class, evenly spaced, at most judgeMaxTrainImages.
        let trainExamples = try examplesByTask(train, only: .textToImage)[2].filter {
            classes?.parse(model.tokenizers.text.decodeText(parts($0).caption)) != nil
        }
        let trainSet = labelledImages(Self.spread(trainExamples, o.judgeMaxTrainImages), vq: vq)
        let heldout = labelledImages(allHeldout, vq: vq)
        guard let classes, Set(trainSet.labels).count >= 2, !heldout.labels.isEmpty else {
            notes.append(
                "text→image: captions do not name the classes of a known set (digits, Fashion-MNIST), or name only one, so there is "
                    + "no judge"
            )
            return result
        }
        let d = vq.imageWidth * vq.imageHeight * vq.channels
        let trainX = Self.pixels(trainSet.images)
        let classifier = PixelClassifier(x: trainX, labels: trainSet.labels, features: d, classes: classes.count, options: o.judge)
        var j = EvaluationReport.Judge(
            kind: "softmax regression on pixels (\(o.judge.iterations) iterations, L2 \(o.judge.l2))", trainImages: trainSet.labels.count,
            classes: classes.name, trainAccuracy: classifier.accuracy(trainX, labels: trainSet.labels),
            heldoutImages: heldout.labels.count,
            heldoutAccuracy: classifier.accuracy(Self.pixels(heldout.images), labels: heldout.labels),
            crossValidatedAccuracy: heldout.labels.count >= 1000
                ? nil
                : Self.crossValidated(trainX, labels: trainSet.labels, features: d, classes: classes.count, options: o.judge),
            rawHeldoutImages: nil, rawHeldoutAccuracy: nil, vqReconstructionMse: nil)
        if let rawPairs { try rawNumbers(rawPairs, heldoutCaptions: captionExamples, vq: vq, classifier: classifier, judge: &j) }
        judge = j
        log(
            String(
                format: "judge: %.1f%% on %d held-out images; drawing %d images", 100 * j.heldoutAccuracy, j.heldoutImages,
                examples.count * o.imagesPerCaption))

        // Generated images, one per held-out caption that names a class.
        if model.activeVisual?.isEmpty == true {
            notes.append("text→image: no visual id is active at step \(model.progress.step) (text-only phase), so no image was drawn")
            return result
        }
        try judgeDrawings(examples, classes: classes, vq: vq, classifier: classifier, options: o, into: &result)
        return result
    }

    /// Draws `imagesPerCaption` images (seeded) for each of `examples`' captions that names a class, and
    /// scores them with the judge: accuracy overall and by class, and how many are distinct.
    private func judgeDrawings(
        _ examples: [Example], classes: CaptionClasses, vq: VQTokenizer, classifier: PixelClassifier, options o: EvaluationOptions,
        into result: inout EvaluationReport.TextToImage
    ) throws {
        let gen = try model.generator()
        var generated: [PNGImage] = [], labels: [Int] = [], seen = Set<[Int32]>()
        for (i, e) in examples.enumerated() {
            let caption = parts(e).caption
            guard let label = classes.parse(model.tokenizers.text.decodeText(caption)) else { continue }
            for k in 0..<o.imagesPerCaption {
                var sampler = Sampler(
                    temperature: o.imageTemperature, topK: o.imageTopK, topP: o.imageTopP,
                    seed: o.seed &+ UInt64(i * o.imagesPerCaption + k))
                let ids = try gen.image(caption: caption, count: vq.tokensPerImage, sampler: &sampler)
                precondition(ids.count == vq.tokensPerImage && ids.allSatisfy(model.layout.isVisual), "an image of illegal ids")
                seen.insert(ids)
                generated.append(vq.decode(ids.map(model.layout.code(of:))))
                labels.append(label)
            }
        }
        let predicted = classifier.predict(Self.pixels(generated))
        var perClass = [(Int, Int)](repeating: (0, 0), count: classes.count)
        for (p, l) in zip(predicted, labels) { perClass[l].1 += 1; if p == l { perClass[l].0 += 1 } }
        result.scored = labels.count
        result.judgeAccuracy = labels.isEmpty ? nil : Double(zip(predicted, labels).filter { $0 == $1 }.count) / Double(labels.count)
        result.perClassAccuracy = perClass.map { $0.1 > 0 ? Double($0.0) / Double($0.1) : nil }
        result.distinctImages = labels.isEmpty ? nil : Double(seen.count) / Double(labels.count)
    }

    /// k-fold cross-validated accuracy (example i in fold i mod k).
    static func crossValidated(
        _ x: [Float], labels: [Int], features d: Int, classes: Int, folds k: Int = 5,
        options: PixelClassifier.Options
    ) -> Double {
        var right = 0
        for f in 0..<k {
            var tx: [Float] = [], tl: [Int] = [], hx: [Float] = [], hl: [Int] = []
            for (i, l) in labels.enumerated() {
                if i % k == f { hx += x[(i * d)..<((i + 1) * d)]; hl.append(l) } else { tx += x[(i * d)..<((i + 1) * d)]; tl.append(l) }
            }
            guard !hl.isEmpty, !tl.isEmpty else { continue }
            let c = PixelClassifier(x: tx, labels: tl, features: d, classes: classes, options: options)
            right += zip(c.predict(hx), hl).filter { $0 == $1 }.count
        }
        return Double(right) / Double(max(labels.count, 1))
    }

    /// Finds the held-out originals in the raw pairs file (an original is held out when its VQ codes and
    /// caption equal a val image→text example's), then measures the judge on their pixels and the VQ
    /// reconstruction error.
    func rawNumbers(
        _ path: String, heldoutCaptions: [Example], vq: VQTokenizer, classifier: PixelClassifier,
        judge j: inout EvaluationReport.Judge
    ) throws {
        let pairs = try ImageCaptionPairs.read(path)
        var keys = Set<String>()
        for e in heldoutCaptions {
            let (caption, image) = parts(e)
            guard image.count == vq.tokensPerImage else { continue }
            keys.insert(
                image.map { String(model.layout.code(of: $0)) }.joined(separator: ",") + "|" + model.tokenizers.text.decodeText(caption))
        }
        var raw: [PNGImage] = [], labels: [Int] = [], mse = 0.0
        for p in pairs {
            guard case .png(let png) = p.image, let label = classes?.parse(p.caption) else { continue }
            // As `ugen tokenize --image-size` did: a smaller image is centred on the tokenizer's black canvas.
            guard png.width <= vq.imageWidth, png.height <= vq.imageHeight else {
                throw GenerationError.imageSize(
                    source: p.source, width: png.width, height: png.height,
                    tokenizerWidth: vq.imageWidth, tokenizerHeight: vq.imageHeight)
            }
            let image = png.centred(inWidth: vq.imageWidth, height: vq.imageHeight).converted(toChannels: vq.channels)
            let codes = vq.encode(image)
            guard keys.contains(codes.map(String.init).joined(separator: ",") + "|" + p.caption) else { continue }
            raw.append(image); labels.append(label)
            mse += image.meanSquaredError(to: vq.decode(codes))
        }
        guard !raw.isEmpty else {
            throw GenerationError.noHeldOutImages(pairs: path)
        }
        j.rawHeldoutImages = raw.count
        j.rawHeldoutAccuracy = classifier.accuracy(Self.pixels(raw), labels: labels)
        j.vqReconstructionMse = mse / Double(raw.count)
    }
}
