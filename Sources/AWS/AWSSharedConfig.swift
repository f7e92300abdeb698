import Foundation

/// One profile of the shared files: the settings of `[profile NAME]` (or `[default]`) in the config file, with the
/// keys of `[NAME]` in the credentials file on top, as the AWS CLI merges them.
public struct AWSProfile: Sendable {
    /// The profile's name.
    public let name: String
    /// Its settings, keys lower-cased (`aws_access_key_id`, `region`, `role_arn`, ...).
    public let settings: [String: String]

    /// Creates a profile.
    public init(name: String, settings: [String: String]) {
        self.name = name
        self.settings = settings
    }

    /// A setting's value; nil when absent or empty.
    public subscript(_ key: String) -> String? {
        guard let value = settings[key.lowercased()], !value.isEmpty else { return nil }
        return value
    }
}

/// The shared config and credentials files (`~/.aws/config`, `~/.aws/credentials`, or `AWS_CONFIG_FILE`,
/// `AWS_SHARED_CREDENTIALS_FILE`) and the selected profile (`AWS_PROFILE`, `AWS_DEFAULT_PROFILE`, else `default`).
public struct AWSSharedConfig: Sendable {
    /// The credentials file's path (it may not exist).
    public let credentialsPath: String
    /// The config file's path (it may not exist).
    public let configPath: String
    /// The selected profile's name.
    public let profileName: String
    /// Whether the profile was chosen explicitly (argument or variable) rather than defaulted.
    public let profileIsExplicit: Bool
    private let credentialsSections: [String: [String: String]]
    private let configSections: [String: [String: String]]

    /// Reads both files. Missing files are empty; an unreadable file is an error.
    ///
    /// - Parameter profile: a profile name that overrides `AWS_PROFILE`.
    public static func load(environment: AWSEnvironment, profile: String? = nil) throws -> AWSSharedConfig {
        let home = URL(fileURLWithPath: environment.homeDirectory)
        let credentialsPath = environment["AWS_SHARED_CREDENTIALS_FILE"].map(environment.expandingTilde)
            ?? home.appendingPathComponent(".aws/credentials").path
        let configPath = environment["AWS_CONFIG_FILE"].map(environment.expandingTilde)
            ?? home.appendingPathComponent(".aws/config").path
        let explicit = profile.flatMap { $0.isEmpty ? nil : $0 } ?? environment["AWS_PROFILE"]
            ?? environment["AWS_DEFAULT_PROFILE"]
        return AWSSharedConfig(
            credentialsPath: credentialsPath, configPath: configPath, profileName: explicit ?? "default",
            profileIsExplicit: explicit != nil, credentialsSections: try readINI(credentialsPath) ?? [:],
            configSections: try readINI(configPath) ?? [:])
    }

    /// Creates a configuration from already parsed files (for tests).
    public init(credentialsPath: String = "credentials", configPath: String = "config", profileName: String = "default",
                profileIsExplicit: Bool = false, credentialsSections: [String: [String: String]],
                configSections: [String: [String: String]]) {
        self.credentialsPath = credentialsPath
        self.configPath = configPath
        self.profileName = profileName
        self.profileIsExplicit = profileIsExplicit
        self.credentialsSections = credentialsSections
        self.configSections = configSections
    }

    /// The selected profile, nil when neither file has it.
    public var selectedProfile: AWSProfile? { profile(named: profileName) }

    /// A profile by name, nil when neither file has it. The credentials file names sections `[name]`; the config file
    /// `[profile name]`, except `[default]`.
    public func profile(named name: String) -> AWSProfile? {
        let fromConfig = configSections["profile \(name)"] ?? (name == "default" ? configSections["default"] : nil)
        let fromCredentials = credentialsSections[name]
        guard fromConfig != nil || fromCredentials != nil else { return nil }
        return AWSProfile(name: name, settings: (fromConfig ?? [:]).merging(fromCredentials ?? [:]) { $1 })
    }

    /// `"name" in <credentials path> or <config path>`, for messages.
    public var filesDescription: String { "\(credentialsPath) or \(configPath)" }

    /// Reads an AWS shared INI file (see ``parseINI(_:)``). A missing file is nil, not an error.
    public static func readINI(_ path: String) throws -> [String: [String: String]]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw AWSError(kind: .configuration, message: "cannot read \(path); check its permissions")
        }
        return parseINI(text)
    }

    /// Parses the text of an AWS shared INI file: `[section]`, `key = value`; comments start with `#` or `;`
    /// (also after a value, when preceded by a blank); indented lines (nested settings such as `s3 =` blocks) are
    /// ignored; keys are lower-cased.
    public static func parseINI(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String?
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            if rawLine.first == " " || rawLine.first == "\t" { continue }
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().split(separator: " ", omittingEmptySubsequences: true)
                    .joined(separator: " ")
                current = name
                if sections[name] == nil { sections[name] = [:] }
                continue
            }
            guard let current, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            // An inline comment needs a blank before it, so that `;` or `#` inside a value survives.
            for marker in [" #", " ;", "\t#", "\t;"] {
                if let range = value.range(of: marker) { value = String(value[..<range.lowerBound]) }
            }
            sections[current]?[key] = value.trimmingCharacters(in: .whitespaces)
        }
        return sections
    }
}
