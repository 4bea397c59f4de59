import Foundation
import UGenKernels

/// Progressive vocabulary learning (Documentation/model.md, progressive-vocabulary.md): which visual ids are live at each step.
///
/// `progressive`: the first `textOnlySteps` steps draw text only and no visual id is active; then
/// `start` ids, taken from a seeded random order of the K codes, become active, and `add` more join
/// every `every` steps until all K are. `vanilla`: all K active from step 0, no text-only phase.
/// The activation order is the paper's seeded random permutation, or (`order: frequency`) the codes by
/// how often they occur in the training data, most frequent first (ties in the random order), so the
/// ids that most images need join first and rare ones are learned last.
/// The state at any step is a pure function of (config, step), so a checkpoint needs only the step;
/// the order is still recorded in checkpoints for inspection.
public struct VocabSchedule: Equatable, Sendable {
    public enum Kind: String, Sendable { case progressive, vanilla }
    public enum Order: String, Sendable { case random, frequency }
    /// Which of the three masking rules (progressive-vocabulary.md) apply to inactive ids — all of them, or
    /// one side only, for ablations: `softmaxAndLoss` keeps rules 1 and 3 (inactive ids enter the first stage
    /// as themselves); `inputsOnly` keeps rule 2 (inactive ids stay in the softmax and carry loss as targets).
    /// Rule 1 cannot go without rule 3: an inactive target's probability would be zero, its loss infinite.
    public enum Masking: String, Sendable { case all, softmaxAndLoss = "softmax-and-loss", inputsOnly = "inputs-only" }
    public let kind: Kind
    public let textOnlySteps: Int, start: Int, every: Int, add: Int, seed: Int
    /// Number of visual codes K, and the id of visual code 0 (= T + S).
    public let codebook: Int, firstVisualId: Int
    /// The id inactive visual ids are replaced by in the input stream.
    public let unkImageId: Int
    /// Codes in activation order: order[0] is the first to become active.
    public let order: [Int]
    public let masking: Masking

    public init(
        kind: Kind, textOnlySteps: Int, start: Int, every: Int, add: Int, seed: Int,
        codebook: Int, firstVisualId: Int, unkImageId: Int, codeCounts: [Int]? = nil, masking: Masking = .all
    ) {
        self.kind = kind; self.textOnlySteps = textOnlySteps; self.start = start; self.every = every
        self.add = add; self.seed = seed; self.codebook = codebook; self.firstVisualId = firstVisualId
        self.unkImageId = unkImageId; self.masking = masking
        var rng = SplitMix64(seed: fnv1a64("vocab-order/\(seed)"))
        var o = Array(0..<codebook)
        if codebook > 1 {
            for i in stride(from: codebook - 1, to: 0, by: -1) { o.swapAt(i, rng.nextInt(below: i + 1)) }
        }
        if let codeCounts {
            precondition(codeCounts.count == codebook, "one count per visual code")
            let rank = Dictionary(uniqueKeysWithValues: o.enumerated().map { ($1, $0) })
            o.sort { codeCounts[$0] != codeCounts[$1] ? codeCounts[$0] > codeCounts[$1] : rank[$0]! < rank[$1]! }
        }
        order = o
    }

    /// Whether only text examples are drawn at `step`.
    public func isTextOnly(step: Int) -> Bool { kind == .progressive && step < textOnlySteps }

    /// How many visual ids are active at `step`.
    public func activeCount(step: Int) -> Int {
        switch kind {
        case .vanilla: return codebook
        case .progressive:
            if step < textOnlySteps { return 0 }
            let grown = start + add * ((step - textOnlySteps) / every)
            return min(codebook, grown)
        }
    }

    /// The first step at which every visual id is active.
    public var allActiveStep: Int {
        if kind == .vanilla || codebook == 0 { return 0 }
        let remaining = max(0, codebook - start)
        return textOnlySteps + ((remaining + add - 1) / add) * every
    }

    /// Fills `inactive` (V bytes, 1 = inactive) and `tokenMap` (V ids: identity, except inactive visual ids
    /// → `<unk_img>`) for a step with `active` visual ids. Text ids and specials are always active.
    /// An ablated `masking` leaves one of the two tables as if every id were active.
    public func masks(active: Int, inactive: inout [UInt8], tokenMap: inout [Int32]) {
        for i in 0..<tokenMap.count { tokenMap[i] = Int32(i); inactive[i] = 0 }
        for rank in active..<codebook {
            let id = firstVisualId + order[rank]
            if masking != .inputsOnly { inactive[id] = 1 }
            if masking != .softmaxAndLoss { tokenMap[id] = Int32(unkImageId) }
        }
    }
}
