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

    @Argument(help: "An HDF5 file written by UGen (checkpoint, dataset, tokenizer), RUN/checkpoints/latest, a run folder, or any HDF5 file.")
    var file: String

    func run() throws {
        do {
            let i = try Inspector.inspect(file)
            print(i.text, terminator: "")
            for f in i.findings { FileHandle.standardError.write(("error: " + f + "\n").data(using: .utf8)!) }
            if !i.findings.isEmpty { throw ExitCode(2) }
        } catch let e as ExitCode { throw e } catch { fail("\(error)", code: 2) }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write a checkpoint as model.safetensors + config.json (HuggingFace LlamaForCausalLM).")

    @Option(help: "The checkpoint to export (RUN/checkpoints/step-….h5).") var checkpoint: String
    @Option(help: "Output folder.") var out: String

    func run() throws {
        do {
            let ck = try CheckpointFile.load(checkpoint).checkpoint
            try SafetensorsExport.write(ck, to: out)
            print("wrote \(out)/model.safetensors (\(ck.params.count) tensors, step \(ck.progress.step)) and \(out)/config.json")
        } catch { fail("\(error)") }
    }
}
