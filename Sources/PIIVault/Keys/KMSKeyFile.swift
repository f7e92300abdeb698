import AWS
import CSodium
import Foundation
import KMS
import Logging

/// Where KMS requests go: the AWS settings of the process (credentials chain, region, `AWS_ENDPOINT_URL_KMS`,
/// `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, `AWS_CA_BUNDLE`), or an explicit transport in tests.
public struct KMSKeyService: Sendable {
    /// The environment and home directory the AWS settings are read from.
    public var environment: AWSEnvironment
    /// How requests are sent (nil: AsyncHTTPClient, verifying TLS as the AWS settings say).
    public var transport: (any HTTPTransport)?
    /// Where KMS calls and retries are logged (never with key material).
    public var logger: Logger

    /// Creates a service.
    public init(environment: AWSEnvironment, transport: (any HTTPTransport)? = nil,
                logger: Logger = Logger(label: "piivault.kms")) {
        self.environment = environment
        self.transport = transport
        self.logger = logger
    }

    /// This process's AWS settings (one service for the process, so that the key files a command opens share one
    /// credentials provider: a web identity or role is assumed once, not once per key file).
    public static let process = KMSKeyService(environment: .process)

    /// The credentials provider and transport of the first client, reused by the later ones.
    private let shared = SharedAWSPlumbing()

    /// A client for `kmsKeyID` (its ARN, when it is one, may give the region).
    func client(for kmsKeyID: String) throws -> KMSClient {
        let reused = shared.value
        let configuration = try KMSConfiguration.resolve(
            environment: environment, keyID: kmsKeyID, credentialsProvider: reused?.provider,
            transport: transport ?? reused?.transport, logger: logger)
        if reused == nil { shared.value = (configuration.credentialsProvider, configuration.transport) }
        return KMSClient(configuration: configuration, logger: logger)
    }
}

/// The credentials provider and transport a ``KMSKeyService`` has resolved, behind a lock.
private final class SharedAWSPlumbing: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: (provider: any AWSCredentialsProvider, transport: any HTTPTransport)?

    var value: (provider: any AWSCredentialsProvider, transport: any HTTPTransport)? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// The kinds of key a KMS-wrapped key file holds.
public enum WrappedKeyKind: String, Sendable {
    /// A token key: the wrapped payload is that of a `PIIVAULT-TOKEN-KEY-1` (32 bytes) or `-2` (68 bytes) file.
    case token
    /// A vault secret key: the wrapped payload is that of a `PIIVAULT-VAULT-SECRET-KEY-1` file (32 bytes).
    case vault

    /// The label of the wrapped form.
    var label: KeyFileLabel { self == .token ? .tokenKeyKMS : .vaultSecretKeyKMS }
}

/// A KMS-wrapped key file's key line: `LABEL KMS-KEY KEY-ID BASE64(CiphertextBlob)`, where KMS-KEY is the KMS key (its
/// ARN as KMS answered when wrapping; the form given for a multi-Region key, and in files from before December 2026:
/// key id, key ARN, alias name or alias ARN), KEY-ID piivault's key id (hex) of the key inside, and the blob
/// KMS `Encrypt` of exactly the payload of the plaintext key file of the same kind, under the encryption context
/// ``encryptionContext(kind:keyID:)``. KMS-KEY and KEY-ID are in clear: the context is needed to decrypt.
public struct KMSKeyFile: Sendable {
    /// Which key it holds.
    public let kind: WrappedKeyKind
    /// The KMS key that wraps it, as written in the file.
    public let kmsKeyID: String
    /// piivault's key id of the key inside (token key: of the master key; vault key: of its public key).
    public let keyID: KeyID
    /// KMS's ciphertext.
    public let ciphertextBlob: [UInt8]

    /// The encryption context of every wrapped key: `{"piivault:key": "token"|"vault", "piivault:key-id": HEX}`.
    /// An IAM policy can allow `kms:Decrypt` only for `kms:EncryptionContext:piivault:key` = `token`.
    public static func encryptionContext(kind: WrappedKeyKind, keyID: KeyID) -> [String: String] {
        ["piivault:key": kind.rawValue, "piivault:key-id": keyID.hex]
    }

    /// The file's text.
    func render(comments: [String]) -> [UInt8] {
        var text: [UInt8] = []
        for comment in comments { text += Array("# \(comment)\n".utf8) }
        text += Array("\(kind.label.rawValue) \(kmsKeyID) \(keyID.hex) \(Data(ciphertextBlob).base64EncodedString())\n".utf8)
        return text
    }

    /// Parses a wrapped key file's text (comments, then one key line).
    static func parse(_ text: [UInt8], file: String) throws -> KMSKeyFile {
        let lines = text.split(separator: UInt8(ascii: "\n")).map {
            String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard let line = lines.first else { throw KeyFileError.truncated(file: file) }
        guard lines.count == 1 else { throw KeyFileError.extraContent(file: file) }
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let label = fields.first.flatMap(KeyFileLabel.init(rawValue:)),
              label == .tokenKeyKMS || label == .vaultSecretKeyKMS
        else {
            throw KeyFileError.wrongLabel(file: file, expected: "\(KeyFileLabel.tokenKeyKMS.rawValue) or \(KeyFileLabel.vaultSecretKeyKMS.rawValue)",
                                          found: nil)
        }
        guard fields.count == 4 else { throw KeyFileError.truncated(file: file) }
        guard isValidKMSKeyID(fields[1]) else { throw KMSKeyFileError.malformed(file: file, what: "its KMS key is not a KMS key id, ARN or alias") }
        guard let keyID = KeyID(hex: fields[2]) else {
            throw KMSKeyFileError.malformed(file: file, what: "its key id is not 16 hex digits")
        }
        guard let blob = Data(base64Encoded: fields[3]), !blob.isEmpty else { throw KeyFileError.badBase64(file: file) }
        return KMSKeyFile(kind: label == .tokenKeyKMS ? .token : .vault, kmsKeyID: fields[1], keyID: keyID,
                          ciphertextBlob: Array(blob))
    }

    /// Whether `text` can stand for a KMS key in a key line and a request: a key id, ARN, alias name or alias ARN
    /// (printable ASCII, no blanks, at most 2048 characters).
    public static func isValidKMSKeyID(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 2048 && text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }

    /// Decrypts the payload with KMS (under the file's context) into guarded memory, and checks that the key inside
    /// has the key id the file names.
    func unwrap(file: String, kms: KMSKeyService) async throws -> SecretBytes {
        let context = Self.encryptionContext(kind: kind, keyID: keyID)
        var result: KMSDecryptResult
        do {
            result = try await kms.client(for: kmsKeyID).decrypt(ciphertextBlob: ciphertextBlob, keyID: kmsKeyID,
                                                                 context: context)
        } catch let error as KMSError {
            throw KMSKeyFileError.kms(file: file, kmsKeyID: kmsKeyID, error: error)
        }
        defer { sodium_memzero(&result.plaintextBase64, result.plaintextBase64.count) }
        let payload = try KeyFile.decodeBase64(result.plaintextBase64, file: file)
        let found = try Self.keyID(of: payload, kind: kind, file: file)
        guard found == keyID else {
            throw KMSKeyFileError.keyIDMismatch(file: file, named: keyID, found: found)
        }
        return payload
    }

    /// Wraps `payload` (the plaintext key file's payload, of `kind`) under `kmsKeyID`.
    static func wrap(payload: SecretBytes, kind: WrappedKeyKind, kmsKeyID: String, file: String,
                     kms: KMSKeyService) async throws -> KMSKeyFile {
        guard isValidKMSKeyID(kmsKeyID) else {
            throw KMSKeyFileError.badKMSKeyID(kmsKeyID: kmsKeyID)
        }
        let keyID = try keyID(of: payload, kind: kind, file: file)
        var encoded = payload.withUnsafeBytes { KeyFile.encodeBase64($0) }
        defer { sodium_memzero(&encoded, encoded.count) }
        do {
            let result = try await kms.client(for: kmsKeyID).encrypt(
                keyID: kmsKeyID, plaintextBase64: encoded, context: encryptionContext(kind: kind, keyID: keyID))
            // The key ARN KMS encrypted with, not the name given: an alias may later be pointed at another key (a
            // manual rotation), after which Decrypt by the alias fails. (The name given stays in the file's
            // comments.) Not for a multi-Region key (mrk-): its ARN names one region, and the name given lets each
            // region's job use its own replica.
            let answered = result.keyID
            let arn = isValidKMSKeyID(answered) && answered.hasPrefix("arn:") && !answered.contains(":key/mrk-")
                ? answered : kmsKeyID
            return KMSKeyFile(kind: kind, kmsKeyID: arn, keyID: keyID, ciphertextBlob: result.ciphertextBlob)
        } catch let error as KMSError {
            throw KMSKeyFileError.kms(file: file, kmsKeyID: kmsKeyID, error: error, wrapping: true)
        }
    }

    /// piivault's key id of a payload of `kind` (checking its length).
    static func keyID(of payload: SecretBytes, kind: WrappedKeyKind, file: String) throws -> KeyID {
        switch kind {
        case .token: return try tokenKey(from: payload, file: file).keyID
        case .vault: return try vaultSecretKey(from: payload, file: file).keyID
        }
    }

    /// The token key of a plaintext token key payload: 32 bytes (`-1`) or 68 bytes (`-2`).
    static func tokenKey(from payload: SecretBytes, file: String) throws -> TokenKey {
        if payload.count == TokenKeyPayload.byteCount { return try TokenKeyPayload.decode(payload, file: file) }
        guard payload.count == TokenKey.byteCount else {
            throw KeyFileError.wrongLength(file: file, expected: TokenKey.byteCount, found: payload.count)
        }
        return try TokenKey(bytes: payload)
    }

    /// The vault secret key of a plaintext vault secret key payload (32 bytes).
    static func vaultSecretKey(from payload: SecretBytes, file: String) throws -> VaultSecretKey {
        guard payload.count == VaultSecretKey.byteCount else {
            throw KeyFileError.wrongLength(file: file, expected: VaultSecretKey.byteCount, found: payload.count)
        }
        return try VaultSecretKey(bytes: payload)
    }
}

/// Why a KMS-wrapped key file could not be opened or written.
public enum KMSKeyFileError: PIIVaultReportableError, Equatable {
    /// KMS failed or refused to open (`Decrypt`) or wrap (`Encrypt`) the key of `file`; `error` says how.
    case kms(file: String, kmsKeyID: String, error: KMSError, wrapping: Bool = false)
    /// KMS decrypted a key whose key id is not the one the file names (the file was assembled from parts).
    case keyIDMismatch(file: String, named: KeyID, found: KeyID)
    /// The key line is malformed.
    case malformed(file: String, what: String)
    /// `--kms-key-id` is not a usable KMS key.
    case badKMSKeyID(kmsKeyID: String)
    /// The file is already KMS-wrapped (`keys wrap`), or not (`keys unwrap`).
    case wrongForm(file: String, what: String)

    public static func == (lhs: KMSKeyFileError, rhs: KMSKeyFileError) -> Bool { lhs.message == rhs.message }

    public var message: String {
        switch self {
        case let .kms(file, kmsKeyID, error, wrapping):
            switch error.kind {
            case .refused:
                return "KMS key \(kmsKeyID) refused to \(wrapping ? "wrap the key for" : "open") \(file): \(error.message)"
            default:
                return "cannot \(wrapping ? "wrap the key for" : "open") \(file) with KMS key \(kmsKeyID): \(error.message)"
            }
        case let .keyIDMismatch(file, named, found):
            return "\(file) names key id \(named), but KMS returned the key \(found); the file was altered: restore it from your copy"
        case let .malformed(file, what):
            return "\(file) is damaged: \(what)"
        case let .badKMSKeyID(kmsKeyID):
            return "--kms-key-id \"\(kmsKeyID.prefix(80))\" is not a KMS key; give a key id, key ARN, alias name (alias/...) or alias ARN"
        case let .wrongForm(file, what):
            return "\(file) \(what)"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case let .kms(_, _, error, _):
            switch error.kind {
            case .refused, .badCredentials: return .noPermission
            case .throttled, .serverError, .connection, .tlsVerification, .timeout: return .unavailable
            case .invalidRequest, .invalidResponse: return .failure
            }
        case .keyIDMismatch: return .noPermission
        case .malformed: return .dataError
        case .badKMSKeyID, .wrongForm: return .usage
        }
    }
}
