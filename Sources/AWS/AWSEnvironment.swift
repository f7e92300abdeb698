import Foundation

/// The process environment and home directory the AWS settings are read from (injectable for tests).
public struct AWSEnvironment: Sendable {
    /// The environment variables.
    public var variables: [String: String]
    /// Where `~/.aws` lives.
    public var homeDirectory: String

    /// Creates an environment from explicit values.
    public init(variables: [String: String], homeDirectory: String) {
        self.variables = variables
        self.homeDirectory = homeDirectory
    }

    /// This process's environment and the user's home directory (`HOME`, else the account's).
    public static var process: AWSEnvironment {
        let variables = ProcessInfo.processInfo.environment
        let home = variables["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return AWSEnvironment(variables: variables, homeDirectory: home)
    }

    /// A variable's value with surrounding blanks removed; nil when unset or empty.
    public subscript(_ name: String) -> String? {
        guard let value = variables[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }

    /// Whether a boolean variable is set to `true` (any case), as the SDKs read `AWS_EC2_METADATA_DISABLED`.
    public func isTrue(_ name: String) -> Bool { self[name]?.lowercased() == "true" }

    /// A path with a leading `~/` expanded to the home directory.
    public func expandingTilde(_ path: String) -> String {
        path.hasPrefix("~/") ? homeDirectory + "/" + path.dropFirst(2) : path
    }
}
