import CSodium
import Foundation

/// Ed25519 keys and signatures in minisign's file formats, so that what piivault signs can be checked with the stock
/// `minisign -V` as well as with piivault.
///
/// - Public key file: `untrusted comment: ...` then base64 of `"Ed" || key id (8) || public key (32)`.
/// - Secret key file: `untrusted comment: ...` then base64 of `"Ed" || kdf "\0\0" (not encrypted) || "B2" ||
///   salt (32) || opslimit (8) || memlimit (8) || key id (8) || secret key (64) || BLAKE2b-256 checksum (32)`.
/// - Signature file: `untrusted comment: ...`, base64 of `"ED" || key id || Ed25519(BLAKE2b-512(message))`,
///   `trusted comment: TEXT`, base64 of `Ed25519(signature || TEXT)` (the global signature).
public enum Minisign {
    static let signatureAlgorithm: [UInt8] = Array("Ed".utf8)
    static let prehashedAlgorithm: [UInt8] = Array("ED".utf8)
    static let noKDF: [UInt8] = [0, 0]
    static let checksumAlgorithm: [UInt8] = Array("B2".utf8)

    /// A public key and its key id.
    public struct PublicKey: Sendable, Equatable {
        public let keyID: [UInt8]
        public let bytes: [UInt8]

        /// The key id as minisign prints it: the 8 bytes as a little-endian number, upper-case hex.
        public var keyIDText: String {
            keyID.reversed().map { byte in
                let hex = String(byte, radix: 16, uppercase: true)
                return byte < 16 ? "0" + hex : hex
            }.joined()
        }

        /// The public key file's text.
        public var fileText: String {
            "untrusted comment: minisign public key \(keyIDText)\n"
                + Sodium.base64(signatureAlgorithm + keyID + bytes) + "\n"
        }

        /// Parses a public key file (or its base64 line alone).
        public init(fileText: String, file: String) throws {
            let lines = fileText.split(whereSeparator: \.isNewline).map(String.init)
                .filter { !$0.hasPrefix("untrusted comment:") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            guard lines.count == 1, let raw = Sodium.bytes(fromBase64: lines[0].trimmingCharacters(in: .whitespaces)),
                  raw.count == 42, Array(raw[0..<2]) == signatureAlgorithm
            else { throw MinisignError.malformed(file: file, what: "not a minisign public key") }
            keyID = Array(raw[2..<10])
            bytes = Array(raw[10..<42])
        }

        init(keyID: [UInt8], bytes: [UInt8]) {
            self.keyID = keyID
            self.bytes = bytes
        }
    }

    /// A secret key (in guarded memory) and its public half.
    public struct SecretKey: Sendable {
        public let keyID: [UInt8]
        let secret: SecretBytes
        public let publicKey: PublicKey

        /// Parses an unencrypted secret key file (`piivault audit keygen`, or `minisign -G -W`).
        public init(fileBytes: [UInt8], file: String) throws {
            var text = fileBytes
            defer { sodium_memzero(&text, text.count) }
            let lines = String(decoding: text, as: UTF8.self).split(whereSeparator: \.isNewline)
                .filter { !$0.hasPrefix("untrusted comment:") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            guard lines.count == 1, var raw = Sodium.bytes(fromBase64: lines[0].trimmingCharacters(in: .whitespaces))
            else { throw MinisignError.malformed(file: file, what: "not a minisign secret key") }
            defer { sodium_memzero(&raw, raw.count) }
            guard raw.count == 158, Array(raw[0..<2]) == signatureAlgorithm, Array(raw[4..<6]) == checksumAlgorithm
            else { throw MinisignError.malformed(file: file, what: "not a minisign secret key") }
            guard Array(raw[2..<4]) == noKDF else { throw MinisignError.encryptedSecretKey(file: file) }
            keyID = Array(raw[54..<62])
            let secretRange = 62..<126
            let storedChecksum = Array(raw[126..<158])
            var secretCopy = Array(raw[secretRange])
            defer { sodium_memzero(&secretCopy, secretCopy.count) }
            let checksum = Minisign.checksum(keyID: keyID, secret: secretCopy)
            // minisign leaves the checksum of an unencrypted key zero; anything else must match.
            guard storedChecksum == checksum || storedChecksum.allSatisfy({ $0 == 0 }) else {
                throw MinisignError.malformed(file: file, what: "its checksum does not match (damaged)")
            }
            secret = raw.withUnsafeBytes { SecretBytes(copying: UnsafeRawBufferPointer(rebasing: $0[secretRange])) }
            // An Ed25519 secret key is seed || public key.
            publicKey = PublicKey(keyID: keyID, bytes: Array(raw[94..<126]))
        }

        init(keyID: [UInt8], secret: SecretBytes, publicKey: PublicKey) {
            self.keyID = keyID
            self.secret = secret
            self.publicKey = publicKey
        }

        /// The secret key file's text (unencrypted: protect it with its mode, 0600, like the other key files).
        public func fileBytes() -> [UInt8] {
            var raw = signatureAlgorithm + noKDF + checksumAlgorithm + [UInt8](repeating: 0, count: 48) + keyID
            secret.withUnsafeBytes { raw.append(contentsOf: $0) }
            raw += secret.withUnsafeBytes { Minisign.checksum(keyID: keyID, secret: Array($0)) }
            defer { sodium_memzero(&raw, raw.count) }
            return Array(("untrusted comment: minisign secret key (piivault auditor key, not encrypted)\n"
                          + Sodium.base64(raw) + "\n").utf8)
        }
    }

    /// A fresh key pair with a random key id.
    public static func generateKeyPair() -> SecretKey {
        Sodium.ensureInitialized()
        var publicKey = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        let secret = SecretBytes(count: Int(crypto_sign_SECRETKEYBYTES)) { sk in
            _ = crypto_sign_keypair(&publicKey, sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        let keyID = Sodium.randomBytes(count: 8)
        return SecretKey(keyID: keyID, secret: secret, publicKey: PublicKey(keyID: keyID, bytes: publicKey))
    }

    /// A detached signature file for `message` (prehashed, as minisign signs by default), with `trustedComment`
    /// signed too. The trusted comment must be one line.
    public static func sign(_ message: [UInt8], trustedComment: String, with key: SecretKey) -> String {
        let signature = detached(blake2b512(message), key: key)
        let global = detached(signature + Array(trustedComment.utf8), key: key)
        return "untrusted comment: signature from piivault auditor key \(key.publicKey.keyIDText)\n"
            + Sodium.base64(prehashedAlgorithm + key.keyID + signature) + "\n"
            + "trusted comment: \(trustedComment)\n"
            + Sodium.base64(global) + "\n"
    }

    /// Checks a signature file against `message` and `publicKey`; returns the trusted comment.
    public static func verify(_ message: [UInt8], signatureFile: String, publicKey: PublicKey, file: String) throws
        -> String
    {
        let lines = signatureFile.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 4, lines[0].hasPrefix("untrusted comment:"), lines[2].hasPrefix("trusted comment: "),
              let raw = Sodium.bytes(fromBase64: lines[1].trimmingCharacters(in: .whitespaces)), raw.count == 74,
              let global = Sodium.bytes(fromBase64: lines[3].trimmingCharacters(in: .whitespaces)), global.count == 64
        else { throw MinisignError.malformed(file: file, what: "not a minisign signature") }
        let algorithm = Array(raw[0..<2])
        let keyID = Array(raw[2..<10])
        let signature = Array(raw[10..<74])
        guard keyID == publicKey.keyID else {
            throw MinisignError.otherKey(file: file, signedBy: PublicKey(keyID: keyID, bytes: []).keyIDText,
                                         expected: publicKey.keyIDText)
        }
        let signed: [UInt8]
        switch algorithm {
        case prehashedAlgorithm: signed = blake2b512(message)
        case signatureAlgorithm: signed = message
        default: throw MinisignError.malformed(file: file, what: "an unknown signature algorithm")
        }
        let trustedComment = String(lines[2].dropFirst("trusted comment: ".count))
        guard verifyDetached(signature, message: signed, publicKey: publicKey.bytes),
              verifyDetached(global, message: signature + Array(trustedComment.utf8), publicKey: publicKey.bytes)
        else { throw MinisignError.badSignature(file: file) }
        return trustedComment
    }

    // MARK: libsodium

    static func checksum(keyID: [UInt8], secret: [UInt8]) -> [UInt8] {
        generichash(signatureAlgorithm + keyID + secret, length: 32)
    }

    static func blake2b512(_ bytes: [UInt8]) -> [UInt8] { generichash(bytes, length: 64) }

    private static func generichash(_ bytes: [UInt8], length: Int) -> [UInt8] {
        Sodium.ensureInitialized()
        var out = [UInt8](repeating: 0, count: length)
        _ = crypto_generichash(&out, length, bytes, UInt64(bytes.count), nil, 0)
        return out
    }

    private static func detached(_ message: [UInt8], key: SecretKey) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: Int(crypto_sign_BYTES))
        key.secret.withUnsafeBytes { sk in
            _ = crypto_sign_detached(&signature, nil, message, UInt64(message.count),
                                     sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return signature
    }

    private static func verifyDetached(_ signature: [UInt8], message: [UInt8], publicKey: [UInt8]) -> Bool {
        Sodium.ensureInitialized()
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), publicKey) == 0
    }
}

/// A key or signature in minisign's formats could not be used. Messages name files, never key bytes.
public enum MinisignError: PIIVaultReportableError, Equatable {
    case malformed(file: String, what: String)
    case encryptedSecretKey(file: String)
    case otherKey(file: String, signedBy: String, expected: String)
    case badSignature(file: String)

    public var message: String {
        switch self {
        case let .malformed(file, what):
            return "\(file) is \(what); give the file written by `piivault audit keygen` or `audit checkpoint --sign`"
        case let .encryptedSecretKey(file):
            return "\(file) is passphrase-protected (minisign's scrypt), which piivault does not read; make an unprotected auditor key with `piivault audit keygen` (or `minisign -G -W`) and keep it with mode 0600"
        case let .otherKey(file, signedBy, expected):
            return "\(file) was signed by key \(signedBy), not by the auditor key \(expected); the checkpoint is not the auditor's"
        case let .badSignature(file):
            return "\(file): the signature does not match the checkpoint (changed after signing, or forged); do not trust this checkpoint"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .malformed: return .dataError
        case .encryptedSecretKey: return .dataError
        case .otherKey, .badSignature: return .failure
        }
    }
}
