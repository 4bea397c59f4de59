import ArgumentParser
import Foundation
import UGenBench
import UGenCluster

/// The control-plane part of `ugen-coord bench`: one coordinator, N simulated workers, steps/s and CPU per step.
enum ControlPlaneBench {
    /// Runs the coordinator against each worker count in turn; prints the table (or returns the rows for --json).
    static func run(counts: [Int], options: ControlPlaneBenchmark.Options, root: String, say: (String) -> Void) throws
        -> [ControlPlaneBenchmark.Row]
    {
        var rows: [ControlPlaneBenchmark.Row] = []
        for n in counts {
            say(
                "control plane: \(n) simulated workers (\(options.stages) stages × \(n / options.stages) replicas), "
                    + "\(options.warmupSteps) + \(options.timedSteps) steps")
            let dir = root + "/control-plane-\(n)"
            rows.append(try ControlPlaneBenchmark.measure(workers: n, options, directory: dir))
            try? FileManager.default.removeItem(atPath: dir)
        }
        return rows
    }

    static func render(_ rows: [ControlPlaneBenchmark.Row], _ o: ControlPlaneBenchmark.Options) -> String {
        func f(_ x: Double, _ d: Int = 1) -> String { Bench.f(x, d) }
        let lpad = Bench.lpad
        var out = [
            "",
            "Control plane: a coordinator (CURVE) driving simulated workers that answer every step at once; "
                + "\(o.microBatches) micro-batches of one 64-token row per replica, \(o.timedSteps) timed steps after \(o.warmupSteps)",
        ]
        out.append(
            "workers  layout       steps/s  step ms median (max)  coordinator CPU ms/step  coordinator thread ms/step  simulated "
                + "workers' CPU ms/step"
        )
        for r in rows {
            out.append(
                lpad("\(r.workers)", 7) + "  " + Bench.pad("\(r.stages) × \(r.replicas)", 10) + lpad(f(r.stepsPerS), 9)
                    + lpad(f(r.stepMsMedian, 2), 16) + " (" + f(r.stepMsMax, 1) + ")"
                    + lpad(f(r.coordinatorCpuMsPerStep, 2), 20) + lpad(f(r.coordinatorThreadCpuMsPerStep, 2), 28)
                    + lpad(f(r.helperCpuMsPerStep, 2), 32))
        }
        out.append(
            "coordinator CPU = this process (its thread, ZeroMQ's I/O threads with CURVE, the ZAP handler); "
                + "the simulated workers run in one other process sharing the machine")
        return out.joined(separator: "\n")
    }
}

/// `ugen-coord simulate-workers`: the helper process of the control-plane benchmark (not for users).
struct SimulateWorkers: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate-workers", abstract: "Host simulated workers for `ugen-coord bench --control-plane` (internal).",
        shouldDisplay: false)

    @Option var coord: String
    @Option var coordKey: String?
    @Option(help: "File of the workers' CURVE secret keys, one a line.") var keys: String?
    @Option var count: Int
    @Option var seconds: Double = 600

    func run() throws {
        do {
            let pairs =
                try keys.map { path in
                    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { try CurveKeyPair(secretKey: String($0)) }
                } ?? []
            guard pairs.isEmpty || pairs.count >= count else { fail("\(keys ?? ""): \(pairs.count) keys for \(count) workers") }
            let sim = try SimulatedWorkers(.init(coordinator: coord, coordinatorKey: coordKey, keys: pairs, count: count))
            try sim.run(seconds: seconds)
        } catch { fail("simulate-workers: \(error)") }
    }
}
