import ArgumentParser
import Foundation
import UGenStore

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Summarise a checkpoint (config, step, tensors, checksums) or a dataset/tokenizer file.")

    @Argument(help: "An HDF5 file written by UGen (checkpoint, dataset, tokenizer), or any HDF5 file.")
    var file: String

    func run() throws {
        do {
            let text = try Inspector.summary(path: file)
            print(text, terminator: "")
            if text.contains("FAILED their checksum") { throw ExitCode(2) }
        } catch let e as ExitCode { throw e } catch { fail("\(error)") }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write a checkpoint as model.safetensors + config.json (HuggingFace LlamaForCausalLM).")

    @Option(help: "The checkpoint to export (RUN/checkpoints/step-….h5).") var checkpoint: String
    @Option(help: "Output folder.") var out: String

    func run() throws {
        do {
            let ck = try CheckpointFile.read(checkpoint)
            try SafetensorsExport.write(ck, to: out)
            print("wrote \(out)/model.safetensors (\(ck.params.count) tensors, step \(ck.progress.step)) and \(out)/config.json")
        } catch { fail("\(error)") }
    }
}
