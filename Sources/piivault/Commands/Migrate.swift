import ArgumentParser

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "migrate", abstract: "Apply the database migrations.")

    func run() async throws {
        try notImplemented("migrate")
    }
}
