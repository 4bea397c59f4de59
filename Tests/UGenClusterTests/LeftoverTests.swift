import Foundation
import UGenCluster
import UGenStore
import XCTest

/// Interrupted saves leave `step-….h5.tmp-PID` and `latest.tmp-PID`: they are
/// removed when a run starts, never count as checkpoints, and `keep_checkpoints` holds.
final class LeftoverTests: XCTestCase {
    /// The pid of a process that has exited (as a killed coordinator's is).
    func deadPID() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    func testLeftoversOfInterruptedSavesAreRemovedAtStartAndNeverCounted() throws {
        let tmp = try temporaryDirectory(self)
        let run = tmp + "/run", dir = run + "/checkpoints"
        try clusterRun(try tinyConfig(["train.steps=8", "train.checkpoint_every=1", "train.keep_checkpoints=2"]), run: run, stopAfter: 2)
        // What two kill -9s in the middle of saves leave: half-written files under temporary names.
        let pid = try deadPID()
        let half = try Data(contentsOf: URL(fileURLWithPath: dir + "/step-00000002.h5")).prefix(50_000)
        let leftovers = ["step-00000003.h5.tmp-\(pid)", "step-00000009.h5.tmp-\(pid)", "latest.tmp-\(pid)"]
        for name in leftovers { try half.write(to: URL(fileURLWithPath: dir + "/" + name)) }
        XCTAssertEqual(
            CheckpointFile.list(runDirectory: run).map { ($0 as NSString).lastPathComponent },
            ["step-00000001.h5", "step-00000002.h5"], "never counted as checkpoints")

        try clusterRun(
            try tinyConfig(["train.steps=8", "train.checkpoint_every=1", "train.keep_checkpoints=2"]), run: run, resume: "latest")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        XCTAssertEqual(names, ["latest", "step-00000007.h5", "step-00000008.h5"], "leftovers removed, keep_checkpoints = 2 holds")
        let removed = try events(run).filter { $0["kind"] as? String == "leftover_removed" }.compactMap { $0["path"] as? String }
        XCTAssertEqual(Set(removed), Set(leftovers.map { dir + "/" + $0 }))
    }
}
