/// A failure turning raw files into tokens or reading a dataset. `description` is one line that names the
/// file (and line, for JSONL), so `ugen tokenize` can print it as is.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
