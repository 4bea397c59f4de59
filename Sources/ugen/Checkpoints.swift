import ArgumentParser
import Foundation
import UGenStore

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Verify and summarise a checkpoint (stored shapes, checksums, schedule state) or a dataset/tokenizer file.",
        discussion: """
            A checkpoint goes through the same verifier as loading, resuming, export and generate. The summary goes \
            to standard output; every finding goes to standard error as one line naming the file, the tensor or key, \
            and what is wrong, and the exit status is 2. The first finding is exactly what resume refuses with.
            """)

    @Argument(
        help: ArgumentHelp(
            "An HDF5 file written by UGen (checkpoint, dataset, tokenizer), "
                + "RUN/checkpoints/latest, a run folder, or any HDF5 file."))
    var file: String

    func run() throws {
        do {
            let i = try Inspector.inspect(file)
            print(i.text, terminator: "")
            for f in i.findings.prefix(20) { FileHandle.standardError.write(("error: " + f + "\n").data(using: .utf8)!) }
            if i.findings.count > 20 {
                let more = "error: \(file): \(i.findings.count - 20) more findings (the table above lists every tensor)\n"
                FileHandle.standardError.write(more.data(using: .utf8)!)
            }
            if !i.findings.isEmpty { throw ExitCode(2) }
        } catch let e as ExitCode { throw e } catch { fail("\(error)", code: 2) }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write a checkpoint as model.safetensors + config.json (HuggingFace LlamaForCausalLM).")

    @Option(help: "The checkpoint to export (RUN/checkpoints/step-….h5).") var checkpoint: String
    @Option(help: "Output folder.") var out: String
    @Flag(
        help: ArgumentHelp(
            "Write generation_config.json with the checkpoint's inactive visual ids as "
                + "suppress_tokens, so transformers' generate() never emits them."))
    var suppressInactive = false
    @Flag(
        help: ArgumentHelp(
            "Write each inactive visual id's lm_head row as the mean of the active visual rows, so greedy "
                + "decoding never picks it (sampling can: see --suppress-inactive)."))
    var meanInactiveRows = false

    func run() throws {
        do {
            let ck = try CheckpointFile.load(checkpoint).checkpoint
            try SafetensorsExport.write(ck, to: out, suppressInactive: suppressInactive, meanInactiveRows: meanInactiveRows)
            print(
                "wrote \(out)/model.safetensors (\(ck.params.count) tensors, step \(ck.progress.step)) and \(out)/config.json"
                    + (suppressInactive ? " and \(out)/generation_config.json" : ""))
            if let v = SafetensorsExport.visualIds(ck), !v.inactive.isEmpty {
                let total = v.active.count + v.inactive.count
                print(
                    "vocabulary schedule: \(v.active.count) of \(total) visual ids active (config.json ugen_vocab_schedule)"
                        + (suppressInactive
                            ? "; the \(v.inactive.count) inactive ones are suppress_tokens"
                            : "; --suppress-inactive keeps generate() from emitting the \(v.inactive.count) inactive ones"))
            }
        } catch { fail("\(error)") }
    }
}
