import CZeroMQ
import Foundation
import Logging

/// Workers the coordinator starts on its own machine (`--local-workers N`): `ugen-worker join`
/// processes next to the coordinator's executable, restarted when they die (up to `maxRestarts` in
/// all, as torchrun does), stopped when the run ends.
public final class LocalWorkers {
    /// Called by a local worker at its start: the kernel kills it when its coordinator dies (even by
    /// SIGKILL), so no orphan outlives the run. Remote workers do not call it: they wait for a restart.
    public static func dieWithParent() { _ = ugen_die_with_parent(SIGKILL) }

    private let executable: String
    private let arguments: (Int) -> [String]
    private var processes: [Process] = []
    private var restarts = 0
    private let maxRestarts: Int
    private let log: Logger

    private let curve: (coordinator: String, workers: [CurveKeyPair])?
    private let logDirectory: String?

    init(
        count: Int, executable: String?, coordinator: String, threads: Int, secret: String, maxRestarts: Int,
        curve: (String, [CurveKeyPair])?, logDirectory: String? = nil, log: Logger
    ) throws {
        self.curve = curve
        self.logDirectory = logDirectory
        let exe = executable ?? Self.besideSelf("ugen-worker")
        guard FileManager.default.isExecutableFile(atPath: exe) else {
            throw SetupError.workerExecutableNotFound(path: exe)
        }
        self.executable = exe
        self.maxRestarts = maxRestarts
        self.log = log
        arguments = { i in
            ["join", "--coord", coordinator, "--threads", String(threads), "--name", "local-\(i)"]
                + (secret.isEmpty ? [] : ["--secret", secret])
        }
        for i in 0..<count { processes.append(try start(i)) }
        lock.withLock { _pids = processes.map(\.processIdentifier) }
    }

    /// A sibling of the running executable.
    static func besideSelf(_ name: String) -> String {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let path = me.deletingLastPathComponent().appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
        let proc = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return proc.deletingLastPathComponent().appendingPathComponent(name).path
    }

    private func start(_ i: Int) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments(i)
        var env = ProcessInfo.processInfo.environment
        env["UGEN_LOCAL_WORKER"] = "1"  // ignore the terminal's Ctrl-C: the coordinator stops it cleanly; die with it
        env["UGEN_COORD_PID"] = String(getpid())
        if let curve {  // keys made for this run, handed over in the environment (not on the command line)
            env["UGEN_CURVE_SECRET_KEY"] = curve.workers[i].secretKey
            env["UGEN_COORD_PUBLIC_KEY"] = curve.coordinator
        }
        p.environment = env
        if let logDirectory {  // appended to, so a restarted worker's output follows its predecessor's
            let path = logDirectory + "/worker-\(i).log"
            if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
            let file = FileHandle(forWritingAtPath: path)
            file?.seekToEndOfFile()
            p.standardOutput = file
            p.standardError = file
        }
        try p.run()
        log.info("started local worker \(i) (pid \(p.processIdentifier))")
        return p
    }

    /// Restarts workers that exited, while restarts remain.
    func restartDead() {
        for i in processes.indices where !processes[i].isRunning {
            guard restarts < maxRestarts else { continue }
            restarts += 1
            log.warning("local worker \(i) exited (status \(processes[i].terminationStatus)); restart \(restarts)/\(maxRestarts)")
            if let p = try? start(i) { processes[i] = p }
            lock.withLock { _pids = processes.map(\.processIdentifier) }
        }
    }

    private let lock = NSLock()
    private var _pids: [Int32] = []
    /// The workers' process ids (readable from any thread).
    var pids: [Int32] { lock.withLock { _pids } }

    /// Waits up to `seconds` for the workers to exit by themselves.
    func waitAll(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline && processes.contains(where: \.isRunning) { usleep(20_000) }
    }

    func stopAll() {
        for p in processes where p.isRunning { p.terminate() }
        waitAll(seconds: 2)
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
    }
}
