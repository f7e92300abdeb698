// piivault-bench: the project's benchmarks (`make bench`). Not tests: they measure and print.
import Foundation
import PIIVault

PIIVaultProcess.prepare()

/// The suites, by name. Add a suite here (for example `etl`) with a function taking its own arguments.
let suites: [String: ([String]) throws -> Void] = [
    "crypto": CryptoBench.run,
    "sqs-loop": SQSLoopBench.run,
    "data-keys": DataKeysBench.run,
]

let arguments = Array(CommandLine.arguments.dropFirst())
guard let suite = arguments.first else {
    FileHandle.standardError.write(Data("usage: piivault-bench SUITE [OPTIONS]  (suites: \(suites.keys.sorted().joined(separator: ", ")))\n".utf8))
    exit(64)
}
guard let body = suites[suite] else {
    FileHandle.standardError.write(Data("piivault-bench: unknown suite '\(suite)'\n".utf8))
    exit(64)
}
do {
    try body(Array(arguments.dropFirst()))
} catch {
    FileHandle.standardError.write(Data("piivault-bench: \(error)\n".utf8))
    exit(1)
}
