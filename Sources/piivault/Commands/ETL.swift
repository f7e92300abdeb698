import ArgumentParser

struct ETL: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "etl", abstract: "Drain the login queue: tokenize, seal, load.")

    func run() async throws {
        try notImplemented("etl")
    }
}
