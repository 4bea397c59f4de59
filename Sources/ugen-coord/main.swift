import ArgumentParser
struct Coord: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ugen-coord", abstract: "The UGen cluster coordinator.")
}
Coord.main()
