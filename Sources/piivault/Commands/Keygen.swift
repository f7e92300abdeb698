import ArgumentParser

struct Keygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keygen", abstract: "Create token and vault key files.")

    func run() async throws {
        try notImplemented("keygen")
    }
}
