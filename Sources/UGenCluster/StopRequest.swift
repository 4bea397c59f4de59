import Synchronization

/// SIGINT/SIGTERM asking the coordinator to save a checkpoint at the next step boundary, stop the
/// workers and exit. An atomic: the signal handler runs between any two instructions of the thread it
/// interrupts, and the coordinator's loops read the flag from their own thread.
public enum StopRequest {
    private static let flag = Atomic<Bool>(false)
    /// Safe inside a signal handler (one lock-free store).
    public static func set() { flag.store(true, ordering: .relaxed) }
    /// Withdraws the request (a process that runs several coordinators one after another, like the tests).
    public static func clear() { flag.store(false, ordering: .relaxed) }
    public static var isSet: Bool { flag.load(ordering: .relaxed) }
}
