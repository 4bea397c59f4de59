import UGenCluster
import XCTest

/// Every schedule's op lists, checked as a pipeline would run them: each stage blocks on an activation
/// until the previous stage's forward has sent it, and on a gradient until the next stage's backward has.
final class ScheduleTests: XCTestCase {
    typealias Op = PipelineSchedule.Op

    /// Runs the stages' op lists with those dependencies (sends never block) and returns, per stage, the
    /// ops in the order they ran — or fails if some stage can never go on (a deadlock).
    func execute(_ schedule: PipelineSchedule, stages p: Int, microBatches m: Int) -> Bool {
        let lists = (0..<p).map { schedule.ops(stage: $0, stages: p, microBatches: m) }
        var next = [Int](repeating: 0, count: p)
        var forwardDone = Set<[Int]>(), inputGradDone = Set<[Int]>()
        var progress = true
        while progress {
            progress = false
            for s in 0..<p where next[s] < lists[s].count {
                switch lists[s][next[s]] {
                case .forward(let k):
                    guard s == 0 || forwardDone.contains([s - 1, k]) else { continue }
                    forwardDone.insert([s, k])
                case .backward(let k), .backwardInput(let k):
                    guard s == p - 1 || inputGradDone.contains([s + 1, k]) else { continue }
                    inputGradDone.insert([s, k])
                case .backwardWeights: break
                }
                next[s] += 1
                progress = true
            }
        }
        return zip(next, lists).allSatisfy { $0 == $1.count }
    }

    func testEveryScheduleRunsEachPassOnceInOrderWithoutDeadlock() {
        for schedule in PipelineSchedule.allCases {
            for p in 1...5 {
                for m in 1...12 {
                    XCTAssertTrue(execute(schedule, stages: p, microBatches: m), "\(schedule) p=\(p) m=\(m) deadlocks")
                    for s in 0..<p {
                        let ops = schedule.ops(stage: s, stages: p, microBatches: m)
                        var forwards: [Int] = [], inputs: [Int] = [], weights: [Int] = []
                        var live = Set<Int>()
                        let slots = schedule.slots(stage: s, stages: p, microBatches: m)
                        for op in ops {
                            switch op {
                            case .forward(let k):
                                forwards.append(k)
                                XCTAssertFalse(
                                    live.contains { $0 % slots == k % slots }, "\(schedule) p=\(p) m=\(m) s=\(s): slot reused while live")
                                live.insert(k)
                            case .backward(let k):
                                XCTAssertTrue(forwards.contains(k)); inputs.append(k); weights.append(k); live.remove(k)
                            case .backwardInput(let k):
                                XCTAssertTrue(forwards.contains(k)); inputs.append(k)
                            case .backwardWeights(let k):
                                XCTAssertTrue(inputs.contains(k)); weights.append(k); live.remove(k)
                            }
                        }
                        // Micro-batch order for each kind of pass: the gradients add up as in the single process.
                        XCTAssertEqual(forwards, Array(0..<m)); XCTAssertEqual(inputs, Array(0..<m)); XCTAssertEqual(weights, Array(0..<m))
                        XCTAssertTrue(live.isEmpty)
                    }
                }
            }
        }
    }

    func testZeroBubbleOrderForTwoStages() {
        let zb = PipelineSchedule.zeroBubble
        // Stage 0: three warm-up forwards, then B, F, W per micro-batch (nothing held back); a B right
        // before its own W is one whole backward.
        XCTAssertEqual(
            zb.ops(stage: 0, stages: 2, microBatches: 4),
            [
                .forward(0), .forward(1), .forward(2), .backwardInput(0), .forward(3), .backwardWeights(0),
                .backward(1), .backward(2), .backward(3),
            ])
        // One stage: the step's last B and W are one backward, so a replica's reduce overlaps all of it.
        XCTAssertEqual(zb.ops(stage: 0, stages: 1, microBatches: 1), [.forward(0), .backward(0)])
        // A lone stage holds no W back (no bubble to fill): with four micro-batches the last backward is whole too.
        XCTAssertEqual(
            zb.ops(stage: 0, stages: 1, microBatches: 4),
            [
                .forward(0), .backwardInput(0), .forward(1), .backwardWeights(0), .backwardInput(1), .forward(2),
                .backwardWeights(1), .backwardInput(2), .forward(3), .backwardWeights(2), .backward(3),
            ])
        // The last stage turns each forward around with B at once and holds two W back.
        XCTAssertEqual(
            zb.ops(stage: 1, stages: 2, microBatches: 4),
            [
                .forward(0), .backwardInput(0), .forward(1), .backwardInput(1), .forward(2),
                .backwardInput(2), .forward(3), .backwardWeights(0), .backwardInput(3), .backwardWeights(1),
                .backwardWeights(2), .backwardWeights(3),
            ])
        XCTAssertEqual(zb.slots(stage: 0, stages: 2, microBatches: 8), 4)
        XCTAssertEqual(zb.slots(stage: 1, stages: 2, microBatches: 8), 4)
        XCTAssertEqual(PipelineSchedule.oneFOneB.slots(stage: 0, stages: 4, microBatches: 8), 4)
        XCTAssertEqual(PipelineSchedule.gpipe.slots(stage: 1, stages: 2, microBatches: 8), 8)
    }
}
