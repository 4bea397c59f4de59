import Foundation

// Each operation's forward and backward, side by side. Activations are [N, width] row-major with
// N = batch × sequence positions. Backward functions *accumulate* parameter gradients (so micro-batches
// add up) and, where noted, accumulate into the input gradient too (the residual stream's `+=`).

// MARK: - Linear (no bias): out[N, outF] = x[N, inF] · Wᵀ, W is [outF, inF] as in HuggingFace

public enum Linear {
    /// In bf16, `wBF16` is W's bf16 copy (made once per optimizer step).
    public static func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
        wBF16: UnsafePointer<UInt16>? = nil, n: Int, inF: Int, outF: Int, precision: Precision = .fp32
    ) {
        BLAS.gemm(
            transB: true, m: n, n: outF, k: inF, a: x, lda: inF, b: w, ldb: inF, bBF16: wBF16, c: out, ldc: outF,
            precision: precision)
    }

    /// dx (+)= dout · W (beta 1 when `accumulate`), dW += doutᵀ · x.
    public static func backward(
        dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
        wBF16: UnsafePointer<UInt16>? = nil, n: Int, inF: Int, outF: Int, accumulate: Bool = false,
        precision: Precision = .fp32
    ) {
        if let dx {
            inputGradient(
                dx: dx, dout: dout, w: w, wBF16: wBF16, n: n, inF: inF, outF: outF, accumulate: accumulate,
                precision: precision)
        }
        weightGradient(dw: dw, dout: dout, x: x, n: n, inF: inF, outF: outF, precision: precision)
    }

    /// dx (+)= dout · W: the half of backward the previous layer waits for.
    /// `doutBF16`: dout's bf16 copy when the caller made one (the weight gradient reads it too).
    public static func inputGradient(
        dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, doutBF16: UnsafePointer<UInt16>? = nil,
        w: UnsafePointer<Float>, wBF16: UnsafePointer<UInt16>? = nil, n: Int, inF: Int, outF: Int, accumulate: Bool = false,
        precision: Precision = .fp32
    ) {
        BLAS.gemm(
            m: n, n: inF, k: outF, a: dout, lda: outF, aBF16: doutBF16, b: w, ldb: inF, bBF16: wBF16, beta: accumulate ? 1 : 0,
            c: dx, ldc: inF, precision: precision)
    }

    /// dW += doutᵀ · x: the half nothing else waits for, which a pipeline schedule may run later.
    public static func weightGradient(
        dw: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, doutBF16: UnsafePointer<UInt16>? = nil,
        x: UnsafePointer<Float>, n: Int, inF: Int, outF: Int, precision: Precision = .fp32
    ) {
        BLAS.gemm(
            transA: true, m: outF, n: inF, k: n, a: dout, lda: outF, aBF16: doutBF16, b: x, ldb: inF, beta: 1, c: dw,
            ldc: inF, precision: precision)
    }
}

// MARK: - RMSNorm: y = x / sqrt(mean(x²) + eps) · w

public enum RMSNorm {
    /// Writes y and the per-row reciprocal rms `rstd` (kept for backward).
    public static func forward(
        y: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        x: UnsafePointer<Float>, w: UnsafePointer<Float>, n: Int, d: Int, eps: Float
    ) {
        Parallel.rows(n) { range in
            for r in range {
                let xr = x + r * d, yr = y + r * d
                // The mean square in double lanes (`Reduce`): one running float sum is a chain of d
                // dependent additions, which took most of the norm's time.
                let meanSquare = Float(Reduce.sumOfSquares(xr, d) / Double(d))
                let s = 1 / (meanSquare + eps).squareRoot()
                rstd[r] = s
                for j in 0..<d { yr[j] = xr[j] * s * w[j] }
            }
        }
    }

    /// dx += rstd·(dy·w) − x·rstd³·mean(dy·w·x);  dw += Σ_rows dy·x·rstd.
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dw: UnsafeMutablePointer<Float>,
        dy: UnsafePointer<Float>, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
        rstd: UnsafePointer<Float>, n: Int, d: Int
    ) {
        Parallel.rows(n) { range in
            for r in range {
                let xr = x + r * d, dyr = dy + r * d, dxr = dx + r * d
                let s = rstd[r]
                let dot = Float(Reduce.dot(dyr, w, xr, d))
                let c = dot * s * s * s / Float(d)
                for j in 0..<d { dxr[j] += dyr[j] * w[j] * s - xr[j] * c }
            }
        }
        // The weight gradient sums over rows, in row order for each column (deterministic); the
        // threads take column ranges.
        Parallel.columns(d) { cols in
            for r in 0..<n {
                let xr = x + r * d, dyr = dy + r * d
                let s = rstd[r]
                for j in cols { dw[j] += dyr[j] * xr[j] * s }
            }
        }
    }
}

// MARK: - RoPE, HuggingFace rotate-half: pairs (i, i + hd/2) rotate by angle pos · theta^(-2i/hd)

public struct RoPETable {
    public let headDim: Int
    public let cos: [Float]
    public let sin: [Float]  // [maxLen, headDim/2]

    public init(headDim: Int, maxLen: Int, theta: Double) {
        self.headDim = headDim
        let half = headDim / 2
        var c = [Float](repeating: 0, count: maxLen * half), s = c
        for p in 0..<maxLen {
            for i in 0..<half {
                // Angles in double, rounded once: the closest float32 table to the exact one.
                let angle = Double(p) / pow(theta, Double(2 * i) / Double(headDim))
                c[p * half + i] = Float(Foundation.cos(angle))
                s[p * half + i] = Float(Foundation.sin(angle))
            }
        }
        self.cos = c
        self.sin = s
    }
}

public enum RoPE {
    /// Rotates `heads` heads of width hd, found at column `col` of rows with stride `ld`, in place.
    /// Row r is at position `startPosition + r % seqLen`. `inverse` rotates back (the backward pass).
    public static func apply(
        _ x: UnsafeMutablePointer<Float>, rows n: Int, seqLen: Int, ld: Int, col: Int,
        heads: Int, table: RoPETable, inverse: Bool = false, startPosition: Int = 0
    ) {
        let hd = table.headDim, half = hd / 2
        let sign: Float = inverse ? -1 : 1
        table.cos.withUnsafeBufferPointer { cosT in
            table.sin.withUnsafeBufferPointer { sinT in
                Parallel.rows(n) { range in
                    for r in range {
                        let pos = startPosition + r % seqLen
                        let c = cosT.baseAddress! + pos * half, s = sinT.baseAddress! + pos * half
                        for h in 0..<heads {
                            let v = x + r * ld + col + h * hd
                            for i in 0..<half {
                                let a = v[i], b = v[i + half]
                                let si = sign * s[i]
                                v[i] = a * c[i] - b * si
                                v[i + half] = b * c[i] + a * si
                            }
                        }
                    }
                }
            }
        }
    }
}

// MARK: - SwiGLU: act = silu(gate) · up, with gate and up side by side in one [N, 2f] buffer

public enum SwiGLU {
    public static func forward(act: UnsafeMutablePointer<Float>, gateUp: UnsafePointer<Float>, n: Int, f: Int) {
        Parallel.rows(n) { range in
            for r in range {
                let g = gateUp + r * 2 * f, u = g + f, a = act + r * f
                FastExp.apply(g, a, count: f) { 1 / (1 + FastExp.exp(-$0)) }  // a = sigmoid(g) for now
                for j in 0..<f { a[j] = g[j] * a[j] * u[j] }
            }
        }
    }

    /// Writes d(gate) and d(up) into `dGateUp` from d(act).
    public static func backward(
        dGateUp: UnsafeMutablePointer<Float>, dAct: UnsafePointer<Float>,
        gateUp: UnsafePointer<Float>, n: Int, f: Int
    ) {
        Parallel.rows(n) { range in
            for r in range {
                let g = gateUp + r * 2 * f, u = g + f, da = dAct + r * f
                let dg = dGateUp + r * 2 * f, du = dg + f
                FastExp.apply(g, dg, count: f) { 1 / (1 + FastExp.exp(-$0)) }  // dg = sigmoid(g) for now
                for j in 0..<f {
                    let sig = dg[j]
                    let silu = g[j] * sig
                    du[j] = da[j] * silu
                    dg[j] = da[j] * u[j] * sig * (1 + g[j] * (1 - sig))
                }
            }
        }
    }
}

// MARK: - Token embedding: out[r] = W[token[r]]

public enum Embedding {
    public static func forward(
        out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>,
        w: UnsafePointer<Float>, n: Int, d: Int
    ) {
        for r in 0..<n { (out + r * d).update(from: w + Int(tokens[r]) * d, count: d) }
    }

    /// dW[token[r]] += dout[r], in row order (deterministic when a token repeats); the threads take
    /// column ranges.
    public static func backward(
        dw: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        tokens: UnsafePointer<Int32>, n: Int, d: Int
    ) {
        Parallel.columns(d) { cols in
            for r in 0..<n {
                let dst = dw + Int(tokens[r]) * d, src = dout + r * d
                for j in cols { dst[j] += src[j] }
            }
        }
    }
}

// MARK: - Small helpers

@inline(__always)
public func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { y[i] += x[i] }
}

@inline(__always)
public func add(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { out[i] = a[i] + b[i] }
}
