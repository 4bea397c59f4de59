import XCTest

@testable import UGenKernels

/// Every backward pass against central finite differences of a scalar probe loss L = Σ out ⊙ R
/// (R random), so d(out) = R. Float32 forward passes are evaluated with a step of 1e-2 and compared by
/// relative error of the whole gradient vector.
final class FiniteDifferenceTests: XCTestCase {
    var rng = SplitMix64(seed: 42)

    func randomTensor(_ shape: [Int], scale: Double = 1) -> Tensor {
        let t = Tensor(shape)
        for i in 0..<t.count { t[i] = Float(rng.nextNormal() * scale) }
        return t
    }

    func dot(_ a: Tensor, _ b: Tensor) -> Double {
        var s = 0.0
        for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
        return s
    }

    /// Central differences of `loss` w.r.t. every element of `x`, compared with `analytic`.
    func assertGradient(
        _ name: String, x: Tensor, analytic: Tensor, eps: Float = 1e-2, tol: Double = 2e-3,
        loss: () -> Double, file: StaticString = #filePath, line: UInt = #line
    ) {
        var num = 0.0, den = 0.0
        for i in 0..<x.count {
            let orig = x[i]
            x[i] = orig + eps; let lp = loss()
            x[i] = orig - eps; let lm = loss()
            x[i] = orig
            let fd = (lp - lm) / Double(2 * eps)
            num += (fd - Double(analytic[i])) * (fd - Double(analytic[i]))
            den += fd * fd
        }
        let rel = (num / max(den, 1e-30)).squareRoot()
        XCTAssertLessThan(rel, tol, "\(name): relative error \(rel)", file: file, line: line)
        XCTAssertGreaterThan(den, 0, "\(name): gradient is identically zero", file: file, line: line)
    }

    func testLinear() {
        let (n, inF, outF) = (5, 7, 6)
        let x = randomTensor([n, inF]), w = randomTensor([outF, inF]), r = randomTensor([n, outF])
        let out = Tensor([n, outF]), dx = Tensor([n, inF]), dw = Tensor([outF, inF])
        func loss() -> Double { Linear.forward(out: out.data, x: x.data, w: w.data, n: n, inF: inF, outF: outF); return dot(out, r) }
        Linear.backward(dx: dx.data, dw: dw.data, dout: r.data, x: x.data, w: w.data, n: n, inF: inF, outF: outF)
        assertGradient("linear dx", x: x, analytic: dx, loss: loss)
        assertGradient("linear dw", x: w, analytic: dw, loss: loss)
        // dW accumulates: a second backward doubles it.
        let before = dw.array
        Linear.backward(dx: nil, dw: dw.data, dout: r.data, x: x.data, w: w.data, n: n, inF: inF, outF: outF)
        for i in 0..<dw.count { XCTAssertEqual(dw[i], 2 * before[i], accuracy: 1e-5 * max(1, abs(before[i]))) }
    }

    func testRMSNorm() {
        let (n, d) = (4, 8)
        let x = randomTensor([n, d]), w = randomTensor([d]), r = randomTensor([n, d])
        let y = Tensor([n, d]), rstd = Tensor([n]), dx = Tensor([n, d]), dw = Tensor([d])
        func loss() -> Double { RMSNorm.forward(y: y.data, rstd: rstd.data, x: x.data, w: w.data, n: n, d: d, eps: 1e-5); return dot(y, r) }
        _ = loss()
        RMSNorm.backward(dx: dx.data, dw: dw.data, dy: r.data, x: x.data, w: w.data, rstd: rstd.data, n: n, d: d)
        assertGradient("rmsnorm dx", x: x, analytic: dx, loss: loss)
        assertGradient("rmsnorm dw", x: w, analytic: dw, loss: loss)
    }

    func testRoPE() {
        let (rows, seqLen, heads, hd) = (6, 3, 2, 8)
        let ld = heads * hd + 4  // a strided row with extra columns the rotation must not touch
        let table = RoPETable(headDim: hd, maxLen: 8, theta: 100)
        let x = randomTensor([rows, ld]), r = randomTensor([rows, ld])
        let y = Tensor([rows, ld])
        func loss() -> Double {
            y.copy(from: x)
            RoPE.apply(y.data, rows: rows, seqLen: seqLen, ld: ld, col: 2, heads: heads, table: table)
            return dot(y, r)
        }
        let dx = Tensor([rows, ld]); dx.copy(from: r)
        RoPE.apply(dx.data, rows: rows, seqLen: seqLen, ld: ld, col: 2, heads: heads, table: table, inverse: true)
        assertGradient("rope", x: x, analytic: dx, loss: loss)
        // Position 0 is the identity; columns outside the heads are untouched.
        _ = loss()
        for c in 0..<ld { XCTAssertEqual(y[c], x[c]) }
        XCTAssertEqual(y[ld + 0], x[ld + 0]); XCTAssertEqual(y[ld + ld - 1], x[ld + ld - 1])
    }

    func testAttentionGroupedQuery() {
        let probs = assertAttentionGradient(AttentionShape(batch: 2, seqLen: 5, heads: 4, kvHeads: 2, headDim: 4))
        // Causality: position 0's output depends only on position 0 (its probability row is [1, 0, 0…]).
        XCTAssertEqual(probs[0], 1)
        for j in 1..<5 { XCTAssertEqual(probs[j], 0) }
    }

    /// Long enough that the products are cut into uneven row blocks (three: 34, 34 and 32 rows), each
    /// skipping the keys after it: the gradient still matches finite differences, and every output row
    /// still sees exactly its own prefix.
    func testAttentionInCausalBlocks() {
        let s = AttentionShape(batch: 1, seqLen: 100, heads: 2, kvHeads: 1, headDim: 4)
        XCTAssertEqual(Array(Attention.causalBlocks(s.seqLen)), [0..<34, 34..<68, 68..<100])
        let probs = assertAttentionGradient(s)
        for h in 0..<s.heads {
            for i in [0, 33, 34, 67, 68, 99] {
                let row = probs.data + (h * s.seqLen + i) * s.seqLen
                XCTAssertEqual(Double((0...i).reduce(Float(0)) { $0 + row[$1] }), 1, accuracy: 1e-5)
                for j in (i + 1)..<s.seqLen { XCTAssertEqual(row[j], 0) }
            }
        }
    }

    /// Attention's d(qkv) against finite differences of ⟨out, r⟩ for random q/k/v and r; returns the
    /// saved probabilities [B, H, T, T] of that forward pass.
    private func assertAttentionGradient(_ s: AttentionShape, file: StaticString = #filePath, line: UInt = #line) -> Tensor {
        let n = s.batch * s.seqLen
        let qkv = randomTensor([n, s.qkvWidth], scale: 0.7), r = randomTensor([n, s.outWidth])
        let out = Tensor([n, s.outWidth]), probs = Tensor([s.probsCount])
        func loss() -> Double { Attention.forward(out: out.data, probs: probs.data, qkv: qkv.data, shape: s); return dot(out, r) }
        _ = loss()
        let dqkv = Tensor([n, s.qkvWidth]), scratch = Tensor([s.batch * s.seqLen * s.seqLen])
        Attention.backward(dqkv: dqkv.data, dout: r.data, qkv: qkv.data, probs: probs.data, scratch: scratch.data, shape: s)
        assertGradient("attention dqkv, T = \(s.seqLen)", x: qkv, analytic: dqkv, loss: loss, file: file, line: line)
        _ = loss()  // the probabilities of the unperturbed inputs
        return probs
    }

    func testSwiGLU() {
        let (n, f) = (3, 5)
        let gu = randomTensor([n, 2 * f]), r = randomTensor([n, f])
        let act = Tensor([n, f]), dgu = Tensor([n, 2 * f])
        func loss() -> Double { SwiGLU.forward(act: act.data, gateUp: gu.data, n: n, f: f); return dot(act, r) }
        SwiGLU.backward(dGateUp: dgu.data, dAct: r.data, gateUp: gu.data, n: n, f: f)
        assertGradient("swiglu", x: gu, analytic: dgu, loss: loss)
    }

    func testEmbeddingRepeatedTokens() {
        let (v, d, n) = (5, 3, 6)
        let w = randomTensor([v, d]), r = randomTensor([n, d])
        let tokens: [Int32] = [1, 3, 1, 0, 3, 1]
        let out = Tensor([n, d]), dw = Tensor([v, d])
        func loss() -> Double {
            tokens.withUnsafeBufferPointer { Embedding.forward(out: out.data, tokens: $0.baseAddress!, w: w.data, n: n, d: d) };
            return dot(out, r)
        }
        tokens.withUnsafeBufferPointer { Embedding.backward(dw: dw.data, dout: r.data, tokens: $0.baseAddress!, n: n, d: d) }
        assertGradient("embedding", x: w, analytic: dw, loss: loss)
    }

    func testCrossEntropyWithInactiveIds() {
        let (n, v) = (4, 9)
        let logits = randomTensor([n, v], scale: 2)
        let targets: [Int32] = [2, 5, 0, 8]
        let mask: [Float] = [1, 0, 1, 1]
        var inactive = [UInt8](repeating: 0, count: v); inactive[3] = 1; inactive[7] = 1
        let scale: Float = 1 / 3
        let work = Tensor([n, v]), tokenLoss = Tensor([n]), grad = Tensor([n, v])
        func loss() -> Double {
            work.copy(from: logits)
            targets.withUnsafeBufferPointer { t in
                mask.withUnsafeBufferPointer { m in
                    inactive.withUnsafeBufferPointer { ia in
                        CrossEntropy.forwardBackward(
                            logits: work.data, tokenLoss: tokenLoss.data, targets: t.baseAddress!, mask: m.baseAddress!,
                            inactive: ia.baseAddress!, gradScale: scale, n: n, v: v)
                    }
                }
            }
            var s = 0.0
            for r in 0..<n { s += Double(mask[r]) * Double(tokenLoss[r]) }
            return s * Double(scale)
        }
        _ = loss(); grad.copy(from: work)
        assertGradient("cross-entropy", x: logits, analytic: grad, eps: 1e-2, tol: 3e-3, loss: loss)
        for r in 0..<n {
            XCTAssertEqual(grad[r * v + 3], 0, "inactive id gets no gradient"); XCTAssertEqual(grad[r * v + 7], 0)
        }
        for j in 0..<v { XCTAssertEqual(grad[1 * v + j], 0, "masked position gets no gradient") }
        // The loss of a row equals −log softmax over the active ids only.
        var z = 0.0
        for j in 0..<v where inactive[j] == 0 { z += exp(Double(logits[j])) }
        XCTAssertEqual(Double(tokenLoss[0]), log(z) - Double(logits[2]), accuracy: 1e-5)
    }

    /// A target far below the best logit (its probability underflows float32) still has a finite
    /// loss: log Σ e^(z − max) − (z_t − max), not log of a zero probability.
    func testCrossEntropyOfAnUnderflowingTarget() {
        let v = 5
        let logits: [Float] = [100, -150, 0, 1, 2]
        var work = logits, tokenLoss: [Float] = [0]
        let targets: [Int32] = [1], mask: [Float] = [1]
        CrossEntropy.forwardBackward(
            logits: &work, tokenLoss: &tokenLoss, targets: targets, mask: mask, inactive: nil,
            gradScale: 1, n: 1, v: v)
        let exact = log(logits.map { exp(Double($0) - 100) }.reduce(0, +)) + 250
        XCTAssertTrue(tokenLoss[0].isFinite)
        XCTAssertEqual(Double(tokenLoss[0]), exact, accuracy: 1e-4)
        XCTAssertEqual(work[1], -1, "softmax 0 at the target: gradient 0 − 1")
        XCTAssertEqual(work[0], 1, accuracy: 1e-6, "the best logit takes all the probability")
    }
}

/// The vectorised exponential against the exact one.
final class FastExpTests: XCTestCase {
    func testWithinTwoUlpOfTheExactExponential() {
        var worstUlp: Float = 0
        var x: Float = -87.3
        var inputs: [Float] = []
        while x < 88.37 { inputs.append(x); x += 0.0137 }
        inputs += [0, -0.0, 1e-8, -1e-8, 0.5 * Float(M_LN2), -0.5 * Float(M_LN2)]
        var out = [Float](repeating: 0, count: inputs.count)
        inputs.withUnsafeBufferPointer { i in
            out.withUnsafeMutableBufferPointer { o in
                FastExp.apply(i.baseAddress!, o.baseAddress!, count: inputs.count) { FastExp.exp($0) }
            }
        }
        for (xi, yi) in zip(inputs, out) {
            let exact = Float(Foundation.exp(Double(xi)))
            worstUlp = max(worstUlp, abs(yi - exact) / exact.ulp)
        }
        XCTAssertLessThanOrEqual(worstUlp, 2, "worst error in ulp over \(inputs.count) points")
        XCTAssertEqual(FastExp.exp(-Float.infinity), 0)
        XCTAssertEqual(FastExp.exp(-100), 0)
        XCTAssertEqual(FastExp.exp(100), .infinity)
        XCTAssertEqual(FastExp.exp(0), 1)
        // Over an array (the vectorised loop, and its remainder) every element gets the bits of the one-value
        // function, wherever it stands, in place or not.
        let xs: [Float] = (0..<37).map { -Float($0) * 0.37 + 3 }
        var applied = [Float](repeating: 0, count: xs.count), inPlace = xs
        xs.withUnsafeBufferPointer { x in
            applied.withUnsafeMutableBufferPointer { FastExp.apply(x.baseAddress!, $0.baseAddress!, count: xs.count) { FastExp.exp($0) } }
        }
        inPlace.withUnsafeMutableBufferPointer { FastExp.applyInPlace($0.baseAddress!, count: xs.count) { FastExp.exp($0) } }
        XCTAssertEqual(applied, xs.map { FastExp.exp($0) })
        XCTAssertEqual(inPlace, applied)
    }
}
