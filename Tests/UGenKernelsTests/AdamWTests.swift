import XCTest

@testable import UGenKernels

final class AdamWTests: XCTestCase {
    /// Against a hand-expanded float64 AdamW for two steps on a few values.
    func testMatchesTextbookAdamW() {
        let h = AdamWHyper(beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1)
        var p: [Float] = [0.5, -1.25, 2.0], m: [Float] = [0, 0, 0], v: [Float] = [0, 0, 0]
        var pd = p.map(Double.init), md = [0.0, 0, 0], vd = [0.0, 0, 0]
        let grads: [[Float]] = [[0.1, -0.2, 0.3], [-0.05, 0.4, 0.0]]
        for (t, g) in grads.enumerated() {
            AdamW.step(param: &p, grad: g, m: &m, v: &v, count: 3, lr: 0.01, t: t + 1, hyper: h, decay: true)
            for i in 0..<3 {
                let gi = Double(g[i])
                pd[i] *= 1 - 0.01 * 0.1
                md[i] = 0.9 * md[i] + 0.1 * gi
                vd[i] = 0.95 * vd[i] + 0.05 * gi * gi
                let mh = md[i] / (1 - pow(0.9, Double(t + 1))), vh = vd[i] / (1 - pow(0.95, Double(t + 1)))
                pd[i] -= 0.01 * mh / (vh.squareRoot() + 1e-8)
            }
        }
        for i in 0..<3 { XCTAssertEqual(Double(p[i]), pd[i], accuracy: 1e-6) }
    }

    func testClipScaleFollowsPyTorch() {
        XCTAssertEqual(AdamW.clipScale(globalNorm: 0.5, maxNorm: 1), 1)
        XCTAssertEqual(Double(AdamW.clipScale(globalNorm: 4, maxNorm: 1)), 1 / (4 + 1e-6), accuracy: 1e-7)
        XCTAssertEqual(AdamW.clipScale(globalNorm: 4, maxNorm: 0), 1, "0 disables clipping")
    }
}
