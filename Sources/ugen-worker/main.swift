import ArgumentParser
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ugen-worker", abstract: "A UGen cluster worker.")
}
Worker.main()
