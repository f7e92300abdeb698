/// Token keys by version, for the commands that meet tokens of several versions (`lookup`, `unmask`): during a token
/// key rotation the vault holds `ip.v1.` beside `ip.v2.` tokens until `retokenize` has moved them all.
public struct TokenKeySet: Sendable {
    /// The keys, by their version.
    public let byVersion: [Int: TokenKey]

    /// Refuses two keys of one version with different key ids (two different keys cannot both be version N).
    public init(_ keys: [TokenKey]) throws {
        var byVersion: [Int: TokenKey] = [:]
        for key in keys {
            if let other = byVersion[key.version], other.keyID != key.keyID {
                throw TokenKeySetError.twoKeysForVersion(key.version, other.keyID.hex, key.keyID.hex)
            }
            byVersion[key.version] = key
        }
        self.byVersion = byVersion
    }

    /// The versions given, ascending.
    public var versions: [Int] { byVersion.keys.sorted() }

    /// The key of `version`, if given.
    public subscript(version: Int) -> TokenKey? { byVersion[version] }
}

/// Two token key files of the same version but different keys.
public enum TokenKeySetError: PIIVaultReportableError, Equatable {
    case twoKeysForVersion(Int, String, String)

    public var message: String {
        switch self {
        case let .twoKeysForVersion(version, a, b):
            return "two different token keys (\(a), \(b)) both claim version \(version); give one key per version"
        }
    }

    public var exitCode: PIIVaultExitCode { .usage }
}
