// piivault-bench: the project's benchmarks (`make bench`). Not tests: they measure and print.
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
guard let suite = arguments.first else {
    FileHandle.standardError.write(Data("usage: piivault-bench SUITE [OPTIONS]\n".utf8))
    exit(64)
}
FileHandle.standardError.write(Data("piivault-bench: unknown suite '\(suite)'\n".utf8))
exit(64)
