import ArgumentParser
import Foundation
import UGenKernels
import UGenTraining

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract:
            "Measure a checkpoint per task on a held-out split: text loss/perplexity/bits per byte, caption accuracy, judged image "
            + "accuracy.",
        discussion: """
            text        teacher-forced loss, perplexity and bits per byte on the text examples
            image→text  caption loss; greedy captions scored by the class they name (right class, and only it): digits,
                        or Fashion-MNIST's ten kinds, whichever the held-out captions name
            text→image  image loss; one sampled image per held-out caption, judged by a softmax-regression classifier
                        trained on the training split's images (decoded from their tokens); the judge's accuracy on the
                        held-out images is measured and printed first. --images PAIRS.jsonl (the raw pairs the data was
                        tokenized from) adds its accuracy on the original pixels and the VQ reconstruction error.
            ranking     for --rank-examples held-out examples of each image task: is the true caption the most likely
                        of --rank-candidates (the rest other held-out captions) given the image, and the true image the
                        most likely given the caption; top-1 accuracy (chance 1/candidates) and mean rank.

              ugen eval --checkpoint runs/demo/checkpoints/latest --data data/tokenized/val.h5 \
            --images data/digits/pairs.jsonl --json eval.json
            """)

    @Option(help: "A checkpoint file, RUN/checkpoints/latest, or a run folder.") var checkpoint: String
    @Option(help: "The held-out split (val.h5).") var data: String
    @Option(help: "The training split the judge learns from (default: train.h5 beside --data).") var train: String?
    @Option(help: "tokenizer.h5 (default: data.dir/tokenizer.h5 of the checkpoint's config).") var tokenizer: String?
    @Option(help: "The raw pairs file (JSONL with PNG paths) the dataset was tokenized from.") var images: String?
    @Option(help: "Write the report as JSON here.") var json: String?
    @Option(help: "At most this many text examples (evenly spaced over the split).") var maxText: Int?
    @Option(help: "At most this many image→text examples (evenly spaced).") var maxCaptions: Int?
    @Option(help: "At most this many text→image examples (evenly spaced).") var maxImages: Int?
    @Option(help: "The judge learns from at most this many training images.") var judgeTrainImages = 6000
    @Flag(help: "Only the teacher-forced losses (no generation, judge or ranking): a point of a learning curve.") var lossesOnly = false
    @Option(help: "Images sampled per held-out caption.") var imagesPerCaption = 1
    @Option(help: "Temperature for sampling images.") var imageTemperature = 1.0
    @Option(help: "Top-k for sampling images (0: all).") var imageTopK = 0
    @Option(help: "Seed for sampling images (example i uses seed + i).") var seed: UInt64 = 1
    @Option(help: "Held-out examples per image task ranked against distractors (0: no ranking).") var rankExamples = 200
    @Option(help: "Candidates per ranked example, the true one included.") var rankCandidates = 10
    @Option(help: "BLAS threads.") var threads = 1
    @Option(help: "Matrix products in fp32, or bf16 operands with fp32 sums.") var precision: Precision = .fp32
    @Flag(help: "No progress lines on stderr.") var quiet = false

    func validate() throws {
        guard imagesPerCaption >= 1, threads >= 1, imageTemperature >= 0, imageTopK >= 0 else {
            throw ValidationError("--images-per-caption and --threads must be ≥ 1, --image-temperature and --image-top-k ≥ 0")
        }
        for (name, v) in [("--max-text", maxText), ("--max-captions", maxCaptions), ("--max-images", maxImages)] where (v ?? 0) < 0 {
            throw ValidationError("\(name) must be ≥ 0")
        }
    }

    func run() throws {
        BLAS.setThreads(threads)
        var o = EvaluationOptions()
        o.maxText = maxText; o.maxCaptions = maxCaptions; o.maxImages = maxImages
        o.rankExamples = max(0, rankExamples); o.rankCandidates = max(2, rankCandidates)
        o.judgeMaxTrainImages = max(1, judgeTrainImages); o.lossesOnly = lossesOnly
        o.imagesPerCaption = imagesPerCaption; o.imageTemperature = imageTemperature; o.imageTopK = imageTopK; o.seed = seed
        let quiet = quiet
        do {
            let model = try TrainedModel(checkpoint: checkpoint, tokenizer: tokenizer)
            model.precision = precision
            let evaluator = Evaluator(model: model) { line in
                if !quiet { FileHandle.standardError.write(("eval: " + line + "\n").data(using: .utf8)!) }
            }
            let report = try evaluator.run(valPath: data, trainPath: train, rawPairs: images, options: o)
            print(report.table, terminator: "")
            if let json {
                do { try report.json().write(to: URL(fileURLWithPath: json)) } catch { fail("\(json): cannot write the JSON report") }
                print("wrote \(json)")
            }
        } catch { fail("\(error)") }
    }
}
