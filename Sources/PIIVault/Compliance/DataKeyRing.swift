import Postgres

/// A sealed data key as a `vault.release_unmask_*` row carries it.
struct DataKeyReference {
    let id: Int
    let keyID: String
    let sealed: [UInt8]

    init(_ row: PostgresRow, id: String, keyID: String, sealed: String) throws {
        self.id = try row[id].requiredInt()
        self.keyID = try row[keyID].requiredString()
        self.sealed = try row[sealed].requiredBytes()
    }
}

/// Why a value did not open inside the access transaction. Thrown to roll the access back; `Unmasker` then logs a
/// refusal in its place.
enum OpenFailure: Error {
    /// Decided without another look at the database (wrong vault key, damaged data key or body).
    case refused(ComplianceError)
    /// A value that does not open under its token: moved or damaged, to be told apart with the data key's tokens.
    case value(token: String, dataKeyID: Int, sealed: [UInt8], opener: DataKeyOpener)
}

/// Opens each data key once (`crypto_box_seal_open` once per data key, then the values: SECURITY.md) and keeps the
/// openers for the length of one access.
final class DataKeyRing {
    private let secretKey: VaultSecretKey
    private var openers: [Int: DataKeyOpener] = [:]

    init(secretKey: VaultSecretKey) {
        self.secretKey = secretKey
    }

    /// The canonical value sealed for `token`.
    func openValue(_ sealed: [UInt8], token: String, dataKey: DataKeyReference) throws -> String {
        let opener = try self.opener(for: dataKey)
        do {
            return try opener.openString(sealed, token: token)
        } catch {
            throw OpenFailure.value(token: token, dataKeyID: dataKey.id, sealed: sealed, opener: opener)
        }
    }

    /// The body of a quarantined message, sealed with its message id as additional data.
    func openBody(_ sealed: [UInt8], messageID: String, dataKey: DataKeyReference) throws -> [UInt8] {
        do {
            return try opener(for: dataKey).openQuarantined(sealed, messageID: messageID)
        } catch let failure as OpenFailure {
            throw failure
        } catch {
            throw OpenFailure.refused(.valueDamaged(subject: "quarantined message \(messageID)", logSeq: 0))
        }
    }

    private func opener(for dataKey: DataKeyReference) throws -> DataKeyOpener {
        if let opener = openers[dataKey.id] { return opener }
        guard let recorded = KeyID(hex: dataKey.keyID) else {
            throw OpenFailure.refused(.dataKeyDamaged(keyID: dataKey.keyID, logSeq: 0))
        }
        do {
            let opener = try DataKeyOpener(sealedDataKey: SealedDataKey(keyID: recorded, sealed: dataKey.sealed),
                                           secretKey: secretKey)
            openers[dataKey.id] = opener
            return opener
        } catch SealingError.wrongVaultKey(let recorded, let given) {
            throw OpenFailure.refused(.wrongVaultKey(recorded: recorded.hex, given: given, logSeq: 0))
        } catch {
            throw OpenFailure.refused(.dataKeyDamaged(keyID: recorded.hex, logSeq: 0))
        }
    }
}
