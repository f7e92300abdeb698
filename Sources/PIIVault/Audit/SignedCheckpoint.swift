import CSodium
import Foundation

/// A checkpoint of the access log signed with the auditor's own Ed25519 key: a short text statement (`FILE`) and a
/// minisign signature beside it (`FILE.minisig`). Whoever owns the database can rewrite the chain consistently, but
/// cannot produce a checkpoint the auditor did not sign; `audit verify --checkpoint` checks both the signature and
/// that the log still extends the signed head. The stock tool checks the signature too:
/// `minisign -V -p auditor.pub -m FILE`.
public struct SignedCheckpoint: Sendable, Equatable {
    /// The head of the chain when the checkpoint was taken.
    public var head: AccessLogAnchor
    /// When, in UTC (`YYYY-MM-DDTHH:MM:SSZ`).
    public var takenAt: String
    /// Which database: `NAME on HOST:PORT` as the server reports it.
    public var database: String
    /// The database's identity (`DatabaseIdentity`), which verification compares; nil in checkpoints taken before
    /// it was recorded (their statements have no `database-id` line and verify as before).
    public var databaseID: String?

    static let title = "piivault access-log checkpoint"

    public init(head: AccessLogAnchor, takenAt: String, database: String, databaseID: String?) {
        self.head = head
        self.takenAt = takenAt
        self.database = database
        self.databaseID = databaseID
    }

    /// The statement's text: what is signed, byte for byte.
    public var statement: String {
        "\(Self.title)\nhead: \(head)\ntime: \(takenAt)\ndatabase: \(database)\n"
            + (databaseID.map { "database-id: \($0)\n" } ?? "")
    }

    /// One line, signed as minisign's trusted comment (what `minisign -V` prints).
    public var trustedComment: String {
        "piivault checkpoint \(head) at \(takenAt) of \(database)"
    }

    /// Parses a statement written by ``statement``.
    public init(statement: String, file: String) throws {
        var fields: [String: String] = [:]
        let lines = statement.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first.map(String.init) == Self.title else {
            throw MinisignError.malformed(file: file, what: "not a piivault checkpoint")
        }
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else {
                throw MinisignError.malformed(file: file, what: "not a piivault checkpoint")
            }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let headText = fields["head"], let head = AccessLogAnchor(parsing: headText), let time = fields["time"],
              let database = fields["database"]
        else { throw MinisignError.malformed(file: file, what: "not a piivault checkpoint (head, time or database missing)") }
        self.init(head: head, takenAt: time, database: database, databaseID: fields["database-id"])
    }

    /// The signature file's text for this checkpoint.
    public func signature(with key: Minisign.SecretKey) -> String {
        Minisign.sign(Array(statement.utf8), trustedComment: trustedComment, with: key)
    }

    /// Reads `path` and `path.minisig`, checks the signature with `publicKey`, and returns the checkpoint.
    public static func load(path: String, publicKey: Minisign.PublicKey) throws -> SignedCheckpoint {
        let signaturePath = path + ".minisig"
        guard let statementData = FileManager.default.contents(atPath: path) else {
            throw MinisignError.malformed(file: path, what: "not readable")
        }
        guard let signatureData = FileManager.default.contents(atPath: signaturePath) else {
            throw MinisignError.malformed(file: signaturePath, what: "missing or not readable (the signature belongs beside the checkpoint)")
        }
        let statementBytes = Array(statementData)
        let trusted = try Minisign.verify(
            statementBytes, signatureFile: String(decoding: signatureData, as: UTF8.self), publicKey: publicKey,
            file: signaturePath)
        let checkpoint = try SignedCheckpoint(statement: String(decoding: statementBytes, as: UTF8.self), file: path)
        // The trusted comment is signed as well; it must say the same as the statement.
        guard trusted == checkpoint.trustedComment else { throw MinisignError.badSignature(file: signaturePath) }
        return checkpoint
    }

    /// The current UTC time in the statement's form.
    public static func now() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date())
    }
}

/// The auditor's key files: `piivault audit keygen` writes them like the vault's (`O_EXCL`, 0600 / 0644).
public enum AuditorKeys {
    /// Writes `auditor.key` (secret, 0600) and `auditor.pub` (0644) into `directory`; refuses if either exists.
    public static func generate(in directory: String) throws -> (secretKey: String, publicKey: String, keyID: String) {
        try KeyGeneration.createDirectoryIfMissing(directory)  // as `piivault keygen` does
        let secretPath = (directory as NSString).appendingPathComponent("auditor.key")
        let publicPath = (directory as NSString).appendingPathComponent("auditor.pub")
        let existing = [secretPath, publicPath].filter { FileManager.default.fileExists(atPath: $0) }
        guard existing.isEmpty else { throw KeyFileError.alreadyExists(files: existing) }
        let key = Minisign.generateKeyPair()
        var created: [String] = []
        do {
            try KeyGeneration.writeNew(path: secretPath, contents: key.fileBytes(), mode: 0o600) { created.append(secretPath) }
            try KeyGeneration.writeNew(path: publicPath, contents: Array(key.publicKey.fileText.utf8), mode: 0o644) {
                created.append(publicPath)
            }
        } catch {
            for path in created { try? FileManager.default.removeItem(atPath: path) }
            throw error
        }
        return (secretPath, publicPath, key.publicKey.keyIDText)
    }

    /// Loads `auditor.key`, refusing it when others can read it or another user owns it, like every secret key file.
    public static func loadSecretKey(path: String) throws -> Minisign.SecretKey {
        var bytes = try KeyLoading.readKeyFile(path: path, protection: .secret)
        defer { sodium_memzero(&bytes, bytes.count) }
        return try Minisign.SecretKey(fileBytes: bytes, file: path)
    }

    /// Loads `auditor.pub`: readable by anyone, but refused when others can write it or another user than the
    /// caller or root owns it (whoever writes it decides which checkpoints verify), like `vault.pub`.
    public static func loadPublicKey(path: String) throws -> Minisign.PublicKey {
        let bytes = try KeyLoading.readKeyFile(path: path, protection: .publicKey)
        return try Minisign.PublicKey(fileText: String(decoding: bytes, as: UTF8.self), file: path)
    }
}
