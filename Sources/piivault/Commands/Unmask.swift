import ArgumentParser

struct Unmask: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unmask", abstract: "Recover original values (compliance; every access is logged).")

    func run() async throws {
        try notImplemented("unmask")
    }
}
