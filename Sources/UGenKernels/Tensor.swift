import Foundation

/// A dense float32 array with a shape, row-major. Either owns 64-byte-aligned memory, or is a view into
/// another tensor's memory (used so q/k/v and gate/up weights can live in one fused matrix while keeping
/// their HuggingFace names). Allocated once per shape and reused: nothing in a training step allocates.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>
    private let owner: Tensor?
    private let owns: Bool
    /// The bf16 copy a bf16 run multiplies this tensor with (a weight, or a gradient that two products
    /// read): made by `refreshBF16()`, nil until then.
    public private(set) var bf16: UnsafeMutablePointer<UInt16>? = nil

    /// A new zero-filled tensor.
    public init(_ shape: [Int]) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        var raw: UnsafeMutableRawPointer? = nil
        posix_memalign(&raw, 64, max(count, 1) * MemoryLayout<Float>.stride)
        self.data = raw!.bindMemory(to: Float.self, capacity: max(count, 1))
        self.data.initialize(repeating: 0, count: max(count, 1))
        self.owner = nil
        self.owns = true
    }

    /// A view of `shape` starting `offset` elements into `base` (shares its memory, keeps it alive).
    public init(viewOf base: Tensor, offset: Int, shape: [Int]) {
        precondition(offset + shape.reduce(1, *) <= base.count, "view out of range")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = base.data + offset
        self.owner = base
        self.owns = false
    }

    public convenience init(_ shape: [Int], _ values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "value count does not match shape")
        self.init(shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    deinit {
        if owns { free(data) }
        bf16?.deallocate()
    }

    /// Rounds the values into the bf16 copy (allocated on the first call): after the values change.
    public func refreshBF16() {
        // By rows of the matrix, so the rows are spread over the threads (one long row would take one).
        let cols = shape.count == 2 ? shape[1] : count
        BF16.convert(data, ld: cols, rows: count / max(cols, 1), cols: cols, into: reserveBF16())
    }

    /// The bf16 copy's storage (allocated on the first call), for a kernel that writes the copy itself
    /// while the values are in cache (`CrossEntropy`'s logit gradients).
    public func reserveBF16() -> UnsafeMutablePointer<UInt16> {
        if bf16 == nil { bf16 = .allocate(capacity: max(count, 1)) }
        return bf16!
    }

    public func zero() { data.update(repeating: 0, count: count) }

    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy between tensors of different sizes")
        data.update(from: other.data, count: count)
    }

    /// self[i] += other[i]: element by element, so the result is the same bits whatever the order the
    /// two operands come in (IEEE addition is commutative): what the gradient tree and all-reduce rely on.
    public func add(_ other: Tensor) {
        precondition(other.count == count, "add between tensors of different sizes")
        addInPlace(data, other.data, count: count)
    }

    public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// Sum of squares in double, in the fixed order `Reduce` keeps (deterministic).
    public func sumOfSquares() -> Double { Reduce.sumOfSquares(data, count) }
}
