import Foundation
import UGenKernels

/// Multinomial logistic regression (softmax regression) on raw pixels: the judge that says which class a
/// generated image shows. Features are standardised with the training set's per-pixel mean and spread;
/// training is full-batch gradient descent with momentum and L2 weight decay, a fixed number of
/// iterations, every product through sgemm. Deterministic: same data, same weights.
public struct PixelClassifier: Sendable {
    public let features: Int
    public let classes: Int
    /// [features, classes], row-major.
    public private(set) var weights: [Float]
    public private(set) var bias: [Float]
    let mean: [Float], scale: [Float]

    public struct Options: Sendable {
        public var iterations = 400
        public var learningRate: Float = 0.5
        public var momentum: Float = 0.9
        public var l2: Float = 1e-3
        public init() {}
    }

    /// Fits on `x` ([n, features], row-major, any scale) with labels in 0..<classes.
    public init(x: [Float], labels: [Int], features d: Int, classes c: Int, options o: Options = Options()) {
        let n = labels.count
        precondition(n > 0 && x.count == n * d && c >= 2, "classifier: \(x.count) values for \(n) examples of \(d) features")
        precondition(labels.allSatisfy { (0..<c).contains($0) }, "classifier: label outside 0..<\(c)")
        features = d; classes = c
        var mu = [Float](repeating: 0, count: d), sd = [Float](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mu[j] += x[i * d + j] } }
        for j in 0..<d { mu[j] /= Float(n) }
        for i in 0..<n { for j in 0..<d { let t = x[i * d + j] - mu[j]; sd[j] += t * t } }
        let sc = sd.map { v -> Float in
            let s = (v / Float(n)).squareRoot(); return s > 1e-6 ? 1 / s : 0
        }
        mean = mu; scale = sc
        let z = Self.standardise(x, n: n, d: d, mean: mu, scale: sc)
        var w = [Float](repeating: 0, count: d * c), b = [Float](repeating: 0, count: c)
        var vw = w, vb = b
        var p = [Float](repeating: 0, count: n * c), gw = w
        for _ in 0..<o.iterations {
            Self.logits(z, n: n, d: d, c: c, w: w, b: b, into: &p)
            // p ← (softmax(p) − onehot) / n
            for i in 0..<n {
                var m = -Float.infinity
                for k in 0..<c { m = max(m, p[i * c + k]) }
                var s: Float = 0
                for k in 0..<c { let e = expf(p[i * c + k] - m); p[i * c + k] = e; s += e }
                for k in 0..<c { p[i * c + k] /= s * Float(n) }
                p[i * c + labels[i]] -= 1 / Float(n)
            }
            // gw = zᵀ p + l2·w
            z.withUnsafeBufferPointer { zz in
                p.withUnsafeBufferPointer { pp in
                    gw.withUnsafeMutableBufferPointer { g in
                        BLAS.gemm(
                            transA: true, m: d, n: c, k: n, a: zz.baseAddress!, lda: d, b: pp.baseAddress!, ldb: c,
                            c: g.baseAddress!, ldc: c)
                    }
                }
            }
            for j in 0..<(d * c) {
                vw[j] = o.momentum * vw[j] - o.learningRate * (gw[j] + o.l2 * w[j])
                w[j] += vw[j]
            }
            for k in 0..<c {
                var g: Float = 0
                for i in 0..<n { g += p[i * c + k] }
                vb[k] = o.momentum * vb[k] - o.learningRate * g
                b[k] += vb[k]
            }
        }
        weights = w; bias = b
    }

    static func standardise(_ x: [Float], n: Int, d: Int, mean: [Float], scale: [Float]) -> [Float] {
        var z = x
        for i in 0..<n { for j in 0..<d { z[i * d + j] = (x[i * d + j] - mean[j]) * scale[j] } }
        return z
    }

    static func logits(_ z: [Float], n: Int, d: Int, c: Int, w: [Float], b: [Float], into p: inout [Float]) {
        for i in 0..<n { for k in 0..<c { p[i * c + k] = b[k] } }
        z.withUnsafeBufferPointer { zz in
            w.withUnsafeBufferPointer { ww in
                p.withUnsafeMutableBufferPointer { pp in
                    BLAS.gemm(
                        m: n, n: c, k: d, a: zz.baseAddress!, lda: d, b: ww.baseAddress!, ldb: c, beta: 1,
                        c: pp.baseAddress!, ldc: c)
                }
            }
        }
    }

    /// The most likely class of each row of `x` ([n, features]).
    public func predict(_ x: [Float]) -> [Int] {
        let d = features, c = classes, n = x.count / d
        precondition(x.count == n * d, "classifier: \(x.count) values is not a whole number of \(d)-feature rows")
        if n == 0 { return [] }
        let z = Self.standardise(x, n: n, d: d, mean: mean, scale: scale)
        var p = [Float](repeating: 0, count: n * c)
        Self.logits(z, n: n, d: d, c: c, w: weights, b: bias, into: &p)
        return (0..<n).map { i in (0..<c).max { p[i * c + $0] < p[i * c + $1] || (p[i * c + $0] == p[i * c + $1] && $0 > $1) }! }
    }

    /// Fraction of rows whose prediction equals the label.
    public func accuracy(_ x: [Float], labels: [Int]) -> Double {
        guard !labels.isEmpty else { return .nan }
        let hits = zip(predict(x), labels).filter { $0 == $1 }.count
        return Double(hits) / Double(labels.count)
    }
}

/// A set of named classes that captions can name — the digits of `ugen prepare-digits`, the ten kinds of
/// Fashion-MNIST — and how to read which one a caption names. A class has one or more names, each a
/// sequence of words; a caption is read left to right, the longest name matching first, so "t-shirt" is a
/// t-shirt and not a shirt. A caption that names no class, or two different ones, names none (nil), so a
/// rambling caption is not lucky; words inside words do not count ("someone" is not "one").
public struct CaptionClasses: Sendable {
    public let name: String
    /// names[class] = that class's names, each as its words.
    public let names: [[[String]]]
    public var count: Int { names.count }
    /// Every name with its class, longest first.
    private let byLength: [(words: [String], label: Int)]

    public init(name: String, names: [[String]]) {
        self.name = name
        self.names = names.map { $0.map(Self.words) }
        byLength = self.names.enumerated().flatMap { label, ns in ns.map { ($0, label) } }.sorted { $0.words.count > $1.words.count }
    }

    static func words(_ text: String) -> [String] {
        text.lowercased().split(whereSeparator: { !($0.isLetter || $0.isNumber) }).map(String.init)
    }

    public static let digits = CaptionClasses(name: "digits", names: CaptionClass.words.enumerated().map { [$1, String($0)] })
    /// Fashion-MNIST's classes in label order, as cluster/data/images.py names them in captions.
    public static let fashion = CaptionClasses(
        name: "Fashion-MNIST",
        names: [
            ["t-shirt", "t-shirt/top"], ["trousers", "trouser"], ["pullover"], ["dress"], ["coat"], ["sandal"], ["shirt"],
            ["sneaker"], ["bag"], ["ankle boot"],
        ])
    public static let known = [digits, fashion]

    public func parse(_ caption: String) -> Int? {
        let w = Self.words(caption)
        var found = Set<Int>(), i = 0
        outer: while i < w.count {
            for n in byLength where i + n.words.count <= w.count && w[i..<(i + n.words.count)].elementsEqual(n.words) {
                found.insert(n.label); i += n.words.count
                continue outer
            }
            i += 1
        }
        return found.count == 1 ? found.first : nil
    }

    /// The known set that names a class in most of `captions`, if it names one in at least a tenth of them.
    public static func detect(_ captions: [String]) -> CaptionClasses? {
        let scored = known.map { set in (set, captions.filter { set.parse($0) != nil }.count) }
        guard let best = scored.max(by: { $0.1 < $1.1 }), best.1 > 0, best.1 * 10 >= captions.count else { return nil }
        return best.0
    }
}

/// The digit class a caption names: "a handwritten seven", "the digit 7 written by hand" → 7 (`CaptionClasses.digits`).
public enum CaptionClass {
    public static let words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

    public static func parse(_ caption: String) -> Int? { CaptionClasses.digits.parse(caption) }
}
