import ArgumentParser
import Foundation
import UGenBench
import UGenData
import UGenKernels
import UGenTraining

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Use a trained UGen: continue text, caption an image, or draw images for a caption (PNG).",
        discussion: """
            Exactly one of --prompt, --image, --caption (with --out) or --bench. Decoding uses the key/value cache and only \
            ever emits legal ids: text (or <eos>) outside an image, the checkpoint's active visual ids inside one; an image \
            always has exactly the tokenizer's number of visual tokens.

              ugen generate --checkpoint runs/demo/checkpoints/latest --prompt "You will"
              ugen generate --checkpoint runs/demo/checkpoints/latest --image data/images/emoji/images/00001.png --greedy
              ugen generate --checkpoint runs/demo/checkpoints/latest --caption "red apple" --out apple.png --grid 8
              ugen generate --checkpoint runs/demo/checkpoints/latest --bench
            """)

    @Option(help: "A checkpoint file, RUN/checkpoints/latest, or a run folder.") var checkpoint: String
    @Option(help: "tokenizer.h5 (default: data.dir/tokenizer.h5 of the config the checkpoint was trained with).") var tokenizer: String?

    @Option(help: "Continue this text.") var prompt: String?
    @Option(help: "Caption this PNG (it must have the tokenizer's image size).") var image: String?
    @Option(help: "Draw an image for this caption (needs --out).") var caption: String?
    @Option(help: "Where to write the PNG for --caption.") var out: String?
    @Option(help: "Draw N samples for --caption, side by side in one PNG.") var grid = 1
    @Option(help: "Enlarge the images this many times (nearest neighbour).") var scale = 4
    @Flag(help: "No caption written beside the images in the PNG.") var noLabel = false
    @Flag(help: "Measure tokens/s with and without the key/value cache (greedy; checks both give the same tokens).") var bench = false
    @Option(help: "Tokens to generate in --bench.") var benchTokens = 64

    @Option(help: "Sampling temperature.") var temperature = 1.0
    @Option(help: "Keep the k most likely ids (0: all).") var topK = 0
    @Option(help: "Keep the smallest set of ids whose probability reaches p (1: all).") var topP = 1.0
    @Option(help: "Sampling seed.") var seed: UInt64 = 0
    @Flag(help: "Always take the most likely legal id.") var greedy = false
    @Option(help: "Most text tokens to generate.") var maxTokens = 64
    @Option(help: "BLAS threads.") var threads = 1
    @Option(help: "Matrix products in fp32, or bf16 operands with fp32 sums.") var precision: Precision = .fp32

    func validate() throws {
        let modes = [prompt != nil, image != nil, caption != nil, bench].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("give exactly one of --prompt, --image, --caption, --bench") }
        if caption != nil && out == nil { throw ValidationError("--caption needs --out FILE.png") }
        if out != nil && caption == nil { throw ValidationError("--out goes with --caption") }
        guard grid >= 1, scale >= 1, maxTokens >= 1, benchTokens >= 1, threads >= 1 else {
            throw ValidationError("--grid, --scale, --max-tokens, --bench-tokens and --threads must be at least 1")
        }
        guard temperature >= 0, topK >= 0, topP > 0, topP <= 1 else {
            throw ValidationError("--temperature must be ≥ 0, --top-k ≥ 0, --top-p in (0, 1]")
        }
    }

    func run() throws {
        BLAS.setThreads(threads)
        do {
            let model = try TrainedModel(checkpoint: checkpoint, tokenizer: tokenizer)
            model.precision = precision
            let bpe = model.tokenizers.text
            var sampler = Sampler(temperature: temperature, topK: topK, topP: topP, greedy: greedy, seed: seed)
            if let prompt {
                let ids = try model.generator().continueText(bpe.encode(prompt), maxNew: maxTokens, sampler: &sampler)
                print(prompt + bpe.decodeText(ids))
            } else if let image {
                let vq = try model.imageTokenizer()
                let png = try PNGImage.read(image)
                guard png.width == vq.imageWidth, png.height == vq.imageHeight else {
                    fail(
                        "\(image): image is \(png.width)×\(png.height), "
                            + "the tokenizer (\(model.tokenizerPath)) takes \(vq.imageWidth)×\(vq.imageHeight)")
                }
                let ids = vq.encode(png).map(model.layout.visualId(code:))
                print(bpe.decodeText(try model.generator().caption(visualIds: ids, maxNew: maxTokens, sampler: &sampler)))
            } else if let caption, let out {
                let vq = try model.imageTokenizer()
                let gen = try model.generator()
                var images: [PNGImage] = []
                for _ in 0..<grid {
                    let ids = try gen.image(caption: bpe.encode(caption), count: vq.tokensPerImage, sampler: &sampler)
                    images.append(vq.decode(ids.map(model.layout.code(of:))))
                }
                let row = PNGImage.sideBySide(images, scale: scale)
                let sheet = noLabel ? row : row.labelled(caption, scale: max(1, scale / 2))
                try sheet.write(out)
                print(
                    "wrote \(out): \(grid) image\(grid == 1 ? "" : "s") of \(vq.imageWidth)×\(vq.imageHeight) "
                        + "(\(vq.tokensPerImage) visual tokens each), "
                        + "\(sheet.width)×\(sheet.height) px\(noLabel ? "" : ", the caption at the left")")
            } else {
                let promptIds = [model.layout.bos] + bpe.encode("The ")
                let n = min(benchTokens, model.model.maxSeqLen - promptIds.count)
                let r = try GenerationBenchmark.run(model, prompt: promptIds, newTokens: n)
                print(
                    "decoding        tokens/s   (\(r.newTokens) greedy tokens after a \(r.promptTokens)-token prompt, "
                        + "\(threads) BLAS thread\(threads == 1 ? "" : "s"))")
                print(String(format: "with cache    %10.1f", r.cachedTokensPerS))
                print(String(format: "without cache %10.1f", r.uncachedTokensPerS))
                print(String(format: "speed-up      %10.1f×", r.speedup))
                print("same tokens   \(r.sameTokens ? "yes" : "NO") (max logit difference \(String(format: "%.2e", r.maxLogitDifference)))")
                if !r.sameTokens { throw ExitCode(1) }
            }
        } catch let e as ExitCode { throw e } catch { fail("\(error)") }
    }
}
