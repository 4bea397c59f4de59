import Foundation
import UGenBench
import UGenCluster
import XCTest

/// The control-plane benchmark's simulated workers speak the protocol well enough for a real CURVE
/// coordinator to drive them through a whole run (join, assignment, every step, the final checkpoint,
/// shutdown), and the benchmark measures what it says.
final class ControlPlaneTests: XCTestCase {
    func testCoordinatorDrivesSimulatedWorkersToTheEnd() throws {
        let dir = try temporaryDirectory(self)
        var o = ControlPlaneBenchmark.Options()
        o.dataDir = try ClusterDataset.path()
        o.stages = 2
        o.warmupSteps = 2
        o.timedSteps = 6
        o.helper = [coordExecutable, "simulate-workers"]
        let row = try ControlPlaneBenchmark.measure(workers: 8, o, directory: dir)
        XCTAssertEqual(row.workers, 8)
        XCTAssertEqual(row.replicas, 4)
        XCTAssertEqual(row.timedSteps, 6)
        XCTAssertTrue(row.stepsPerS.isFinite && row.stepsPerS > 0, "steps/s \(row.stepsPerS)")
        XCTAssertTrue(row.coordinatorCpuMsPerStep > 0 && row.coordinatorThreadCpuMsPerStep > 0)
        XCTAssertLessThanOrEqual(row.coordinatorThreadCpuMsPerStep, row.coordinatorCpuMsPerStep * 1.01)
        // The run really went through: every step logged, a checkpoint written from the simulated tensors.
        let metrics = try String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8)
        XCTAssertEqual(metrics.split(separator: "\n").count, 8)
        let events = try String(contentsOfFile: dir + "/run/events.jsonl", encoding: .utf8)
        XCTAssertTrue(events.contains("\"kind\":\"finished\",\"step\":8"), events)
        XCTAssertEqual(events.components(separatedBy: "\"kind\":\"join\"").count - 1, 8)
    }
}

extension ControlPlaneTests {
    /// A helper that dies before its workers join stops the benchmark with an error (the coordinator
    /// would otherwise wait for its workers for ever).
    func testAHelperThatDiesEndsTheBenchmarkWithAnError() throws {
        let dir = try temporaryDirectory(self)
        var o = ControlPlaneBenchmark.Options()
        o.dataDir = try ClusterDataset.path()
        o.helper = ["/bin/false"]
        let start = Date()
        XCTAssertThrowsError(try ControlPlaneBenchmark.measure(workers: 4, o, directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("ended early") || "\(error)".contains("exited"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    }
}
