import ArgumentParser
import Foundation
import UGenKernels
import UGenTraining

@main
struct UGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ugen",
        abstract: "The toolbox around UGen training: check, benchmark, tokenize, generate, inspect, export.",
        subcommands: [
            GradCheckCommand.self, BenchCommand.self, InspectCommand.self, ExportCommand.self, TokenizeCommand.self,
            PrepareDigitsCommand.self, ImageReportCommand.self,
            GenerateCommand.self, EvalCommand.self,
        ])
}

/// Prints `message` to stderr as one line and exits with `code`.
func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(("error: " + message + "\n").data(using: .utf8)!)
    exit(code)
}

struct GradCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradcheck",
        abstract: "Compare loss, logits and every gradient with a PyTorch reference file such as Tests/fixtures/tiny-llama-a.h5.")

    @Argument(help: "An HDF5 file with /config, /params, /batch and /expected/{plain,masked}.")
    var file: String

    @Option(help: "Matrix products in fp32, or bf16 operands with fp32 sums (tolerances follow the precision).")
    var precision: Precision = .fp32

    func run() throws {
        let rows: [GradCheck.Row]
        do { rows = try GradCheck.run(path: file, precision: precision) } catch { fail("\(error)") }
        print("case    quantity                                            rel.error   tolerance  ok")
        for r in rows {
            let q = r.quantity.padding(toLength: 50, withPad: " ", startingAt: 0)
            print(String(format: "%-7@ %@  %.3e   %.0e      %@", r.caseName, q, r.relativeError, r.tolerance, r.passed ? "yes" : "NO"))
        }
        let failed = rows.filter { !$0.passed }
        print("\(rows.count - failed.count) passed, \(failed.count) failed")
        if !failed.isEmpty { throw ExitCode(1) }
    }
}

extension Precision: ExpressibleByArgument {}
