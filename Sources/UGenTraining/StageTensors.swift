import Foundation
import UGenModel
import UGenStore

/// Moving a stage's tensors to and from checkpoint form. A stage exports only the parameters it holds;
/// a checkpoint holds all of them, so any partition can save, and any other partition can resume.
extension Stage {
    public func exportParameters() -> [NamedTensor] {
        parameters.map { NamedTensor(name: $0.name, shape: $0.value.shape, values: $0.value.array) }
    }

    public func exportMoments(_ state: AdamWState) -> (m: [NamedTensor], v: [NamedTensor]) {
        (
            zip(parameters, state.m).map { NamedTensor(name: $0.name, shape: $1.shape, values: $1.array) },
            zip(parameters, state.v).map { NamedTensor(name: $0.name, shape: $1.shape, values: $1.array) }
        )
    }

    /// Loads this stage's parameters (and, when given, moments and step) from tensors found by name.
    public func importTensors(
        params: [NamedTensor], m: [NamedTensor]? = nil, v: [NamedTensor]? = nil,
        into state: AdamWState? = nil, optimizerStep: Int = 0
    ) throws {
        func index(_ ts: [NamedTensor]) -> [String: NamedTensor] { Dictionary(ts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) }
        let p = index(params), mm = m.map(index), vv = v.map(index)
        for (i, param) in parameters.enumerated() {
            guard let t = p[param.name] else { throw StoreError(nil, .tensorMissing(param.name)) }
            guard t.shape == param.value.shape else {
                throw StoreError(nil, .tensorShape(param.name, checkpoint: t.shape, model: param.value.shape))
            }
            t.values.withUnsafeBufferPointer { param.value.data.update(from: $0.baseAddress!, count: t.values.count) }
            if let state, let mm, let vv {
                guard let a = mm[param.name], let b = vv[param.name] else { throw StoreError(nil, .momentsMissing(param.name)) }
                a.values.withUnsafeBufferPointer { state.m[i].data.update(from: $0.baseAddress!, count: a.values.count) }
                b.values.withUnsafeBufferPointer { state.v[i].data.update(from: $0.baseAddress!, count: b.values.count) }
            }
        }
        state?.step = optimizerStep
        refreshLowPrecisionWeights()
    }
}
