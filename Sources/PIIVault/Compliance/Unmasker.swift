import Foundation
import NIOConcurrencyHelpers
import Postgres

/// Recovers original values for a compliance officer (role `piivault_compliance`) through the `ComplianceRunner`:
/// `vault.request_unmask_*` appends the access-log entry and records which rows it grants, committed before
/// `vault.release_unmask_*` hands out the sealed rows of that grant, once. So:
/// - no sealed value leaves the database before its entry is committed, whatever the client does; if the append or
///   its commit fails, nothing is released;
/// - a request whose rows are all sealed to another vault key is refused at step 1 (one entry, no rows); rows sealed
///   to another key beside rows sealed to the caller's are withheld row by row and logged as a refusal;
/// - a value that does not open (moved between rows, damaged) is logged as a refusal after the grant's entry;
/// - with a token key, each opened value is checked against its token: one that does not match is `forged`,
///   withheld, and logged as a refusal;
/// - a login outside `piivault_compliance` is refused by Postgres, and the attempt is logged.
struct Unmasker {
    let session: ComplianceSession
    let secretKey: VaultSecretKey
    /// Checks values against their tokens with the key of each token's version; nil when the caller chose not to
    /// verify.
    let tokenKeys: TokenKeySet?
    /// The token versions met without a key to check them, collected over the access.
    let unverified = UnverifiedVersions()

    init(session: ComplianceSession, secretKey: VaultSecretKey, tokenKeys: TokenKeySet?) {
        self.session = session
        self.secretKey = secretKey
        self.tokenKeys = tokenKeys
    }

    func run(_ request: UnmaskRequest) async throws -> UnmaskReport {
        switch request.target {
        case .tokens(let tokens): return try await unmask(tokens: tokens, maxRows: request.maxRows)
        case .userID(let userID): return try await unmask(userID: userID, maxRows: request.maxRows)
        case .quarantined(let messageID): return try await unmask(quarantinedMessageID: messageID)
        }
    }

    // MARK: - The three requests

    private func unmask(tokens: [Token], maxRows: Int) async throws -> UnmaskReport {
        var seen = Set<String>()
        let wanted = tokens.map(\.description).filter { seen.insert($0).inserted }
        let subject = "tokens:" + wanted.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.joined(separator: ",")
        let grant = try await session.requestGrant("""
            SELECT * FROM vault.request_unmask_tokens(
                \(PostgresArray.texts(wanted))::text[], \(session.reason), \(session.caller.osUser),
                \(session.caller.clientHost), \(maxRows), \(secretKey.keyID.hex))
            """, deniedSubject: subject)
        try refuseIfRefused(grant)
        let opened = try await release(grant, "SELECT * FROM vault.release_unmask_tokens(\(grant.seq))",
                                       subject: subject) { rows, opener in
            var values: [String: UnmaskedValue] = [:]
            var withheld: [String] = []
            for row in rows {
                let token = try row["token"].requiredString()
                if let value = try opener.value(row, token: token, sealed: "sealed", dataKeyID: "data_key_id",
                                                keyID: "key_id", sealedKey: "sealed_key") {
                    values[token] = UnmaskedValue(token: token, field: try row["field"].requiredString(), value: value)
                } else {
                    withheld.append(token)
                }
            }
            return (values, withheld)
        }
        let (values, withheldTokens) = opened.rows
        let unknown = wanted.filter { values[$0] == nil && !withheldTokens.contains($0) }
        let result = UnmaskedTokens(values: wanted.compactMap { values[$0] }, unknownTokens: unknown)
        let shortfall = opened.shortfall
            ?? (unknown.isEmpty ? nil : .unknownTokens(unknown, asked: wanted.count, logSeq: grant.seq))
        return UnmaskReport(rows: result.values.isEmpty ? nil : .tokens(result), logSeq: grant.seq,
                            outcome: grant.outcome, shortfall: shortfall)
    }

    private func unmask(userID: String, maxRows: Int) async throws -> UnmaskReport {
        let grant = try await session.requestGrant("""
            SELECT * FROM vault.request_unmask_user(\(userID), \(session.reason), \(session.caller.osUser),
                                                    \(session.caller.clientHost), \(maxRows), \(secretKey.keyID.hex))
            """, deniedSubject: "user_id")
        try refuseIfRefused(grant)
        let subject = "user_id:" + userID
        let opened = try await release(
            grant, "SELECT *, create_date::text AS create_date_text FROM vault.release_unmask_user(\(grant.seq))",
            subject: subject
        ) { rows, opener in
            try rows.map { row in
                let maskedIP = try row["masked_ip"].string()
                let maskedDeviceID = try row["masked_device_id"].string()
                var ip: String?
                var ipWithheld = false
                if let maskedIP, !row["ip_sealed"].isNull {
                    ip = try opener.value(row, token: maskedIP, sealed: "ip_sealed", dataKeyID: "ip_data_key_id",
                                          keyID: "ip_key_id", sealedKey: "ip_sealed_key")
                    ipWithheld = ip == nil
                }
                var deviceID: String?
                var deviceIDWithheld = false
                if let maskedDeviceID, !row["device_sealed"].isNull {
                    deviceID = try opener.value(
                        row, token: maskedDeviceID, sealed: "device_sealed", dataKeyID: "device_data_key_id",
                        keyID: "device_key_id", sealedKey: "device_sealed_key")
                    deviceIDWithheld = deviceID == nil
                }
                return UnmaskedLogin(
                    userID: try row["user_id"].requiredString(), deviceType: try row["device_type"].string(),
                    maskedIP: maskedIP, ip: ip, ipWithheld: ipWithheld, maskedDeviceID: maskedDeviceID,
                    deviceID: deviceID, deviceIDWithheld: deviceIDWithheld, locale: try row["locale"].string(),
                    appVersion: try row["app_version"].int(), appVersionText: try row["app_version_text"].string(),
                    createDate: try row["create_date_text"].string(), messageID: try row["message_id"].string())
            }
        }
        let logins = opened.rows
        return UnmaskReport(
            rows: logins.isEmpty ? nil : .logins(logins), logSeq: grant.seq, outcome: grant.outcome,
            shortfall: opened.shortfall ?? (logins.isEmpty ? .noLogins(userID: userID, logSeq: grant.seq) : nil))
    }

    private func unmask(quarantinedMessageID messageID: String) async throws -> UnmaskReport {
        let grant = try await session.requestGrant("""
            SELECT * FROM vault.request_unmask_quarantined(\(messageID), \(session.reason), \(session.caller.osUser),
                                                           \(session.caller.clientHost), \(secretKey.keyID.hex))
            """, deniedSubject: "message_id")
        try refuseIfRefused(grant)
        let opened = try await release(
            grant, "SELECT *, to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS received_at_text FROM vault.release_unmask_quarantined(\(grant.seq))",
            subject: "message_id:" + messageID
        ) { rows, opener -> UnmaskedMessage? in
            guard let row = rows.first else { return nil }
            let body = try opener.ring.openBody(
                try row["sealed_body"].requiredBytes(), messageID: messageID,
                dataKey: try DataKeyReference(row, id: "data_key_id", keyID: "key_id", sealed: "sealed_key"))
            return UnmaskedMessage(
                messageID: messageID, receivedAt: try row["received_at_text"].requiredString(),
                reason: try row["quarantine_reason"].requiredString(), body: body)
        }
        guard let message = opened.rows else {
            return UnmaskReport(rows: nil, logSeq: grant.seq, outcome: grant.outcome,
                                shortfall: .noQuarantinedMessage(messageID: messageID, logSeq: grant.seq))
        }
        return UnmaskReport(rows: .message(message), logSeq: grant.seq, outcome: grant.outcome, shortfall: nil)
    }

    // MARK: - Through the gate

    /// A refusal decided at step 1 (over the row cap, every row sealed to another vault key) prints nothing.
    private func refuseIfRefused(_ grant: AccessGrant) throws {
        if let otherKey = grant.otherKeyID {
            throw ComplianceError.wrongVaultKey(recorded: otherKey, given: secretKey.keyID, logSeq: grant.seq)
        }
        if grant.isRefused { throw ComplianceError.overRowCap(outcome: grant.outcome, logSeq: grant.seq) }
    }

    /// Step 2: releases the grant's rows and opens them inside that transaction with `open`. A value that does not
    /// open rolls the release back and is logged as a refusal (and thrown); values withheld row by row (forged,
    /// sealed to another vault key) are logged as one refusal and returned as the shortfall.
    private func release<Rows: Sendable>(
        _ grant: AccessGrant, _ call: PostgresQuery, subject: String,
        open: ([PostgresRow], ValueOpener) throws -> Rows
    ) async throws -> (rows: Rows, shortfall: UnmaskShortfall?) {
        let opener = ValueOpener(secretKey: secretKey, tokenKeys: tokenKeys)
        defer { unverified.add(opener.unverifiedVersions) }
        let rows: Rows
        if grant.rowCount == 0 {
            rows = try open([], opener)
        } else {
            do {
                rows = try await session.release(call) { try open(Array($0), opener) }
            } catch let failure as OpenFailure {
                // The values were released under entry `seq` but do not open: log why, then report it.
                let refusal = try await diagnose(failure)
                let refusalSeq = try await session.recordRefusal(subject: subject, outcome: refusal.loggedOutcome ?? "")
                throw refusal.logged(as: refusalSeq)
            }
        }
        guard !opener.forged.isEmpty || !opener.otherKey.isEmpty else { return (rows, nil) }
        let (forged, otherTokenKey) = try await separatingOtherTokenKeys(opener.forged)
        var outcomes: [String] = []
        if !forged.isEmpty {
            outcomes.append("forged value (\(forged.joined(separator: ", ")) not the value of its token)")
        }
        if !otherTokenKey.isEmpty {
            outcomes.append("token key mismatch (\(otherTokenKey.map(\.token).joined(separator: ", ")) tokenized under another token key of its version)")
        }
        if !opener.otherKey.isEmpty {
            let keys = Set(opener.otherKey.map(\.keyID)).sorted().joined(separator: ", ")
            outcomes.append("vault key mismatch (\(opener.otherKey.count) values sealed to \(keys), key file is \(secretKey.keyID))")
        }
        let seq = try await session.recordRefusal(subject: subject, outcome: outcomes.joined(separator: "; "))
        return (rows, .withheld(forged: forged, otherKey: opener.otherKey, otherTokenKey: otherTokenKey, refusalSeq: seq))
    }

    /// Of the tokens whose values opened but did not match, those that another token key of their version explains
    /// (the key given is not the one the vault accepts for that version, or earlier runs used another key of it):
    /// a wrong key or a wrongly loaded value, not a forgery.
    private func separatingOtherTokenKeys(_ mismatched: [String]) async throws
        -> (forged: [String], otherTokenKey: [UnmaskShortfall.OtherTokenKeyRow]) {
        guard let tokenKeys, !mismatched.isEmpty else { return (mismatched, []) }
        var known: [Int: (accepted: String?, others: [String])] = [:]
        var forged: [String] = []
        var other: [UnmaskShortfall.OtherTokenKeyRow] = []
        for token in mismatched {
            guard let version = Token(parsing: token)?.version, let given = tokenKeys[version]?.keyID.description else {
                forged.append(token)
                continue
            }
            if known[version] == nil {
                known[version] = try await TokenKeyRegistry.known(version: version, on: session.connection)
            }
            let (accepted, others) = known[version] ?? (nil, [])
            if let accepted, accepted != given {
                other.append(.init(token: token, givenKeyID: given, acceptedKeyID: accepted, unacceptedKeyIDs: others))
            } else if !others.filter({ $0 != given }).isEmpty {
                other.append(.init(token: token, givenKeyID: given, acceptedKeyID: nil,
                                   unacceptedKeyIDs: others.filter { $0 != given }))
            } else {
                forged.append(token)
            }
        }
        return (forged, other)
    }

    /// Tells a value moved from another row from a damaged one, by trying the tokens sealed under the same data key.
    private func diagnose(_ failure: OpenFailure) async throws -> ComplianceError {
        switch failure {
        case .refused(let error):
            return error
        case let .value(token, dataKeyID, sealed, opener):
            let candidates = try await session.connection.query(
                "SELECT t FROM vault.tokens_sealed_with(\(dataKeyID)) AS t").map { try $0["t"].requiredString() }
            if case .moved(let original) = opener.diagnose(sealed, expectedToken: token, candidates: candidates) {
                return .valueMoved(token: token, originalToken: original, logSeq: 0)
            }
            return .valueDamaged(subject: "token \(token)", logSeq: 0)
        }
    }
}

/// Opens released values for one access and keeps what it withheld: values sealed to another vault key than the
/// caller's (not opened) and values that open but are not the values of their tokens (forged). Used inside one
/// access only, by one task (not Sendable: its state is owned by that access).
final class ValueOpener {
    let ring: DataKeyRing
    private let secretKeyID: String
    private let tokenKeys: TokenKeySet?
    private var tokenizers: [Int: Tokenizer] = [:]
    /// Versions of tokens whose values could not be checked: no key of that version was given.
    private(set) var unverifiedVersions: Set<Int> = []
    private(set) var forged: [String] = []
    private(set) var otherKey: [UnmaskShortfall.OtherKeyRow] = []

    init(secretKey: VaultSecretKey, tokenKeys: TokenKeySet?) {
        ring = DataKeyRing(secretKey: secretKey)
        secretKeyID = secretKey.keyID.hex
        self.tokenKeys = tokenKeys
    }

    /// The value sealed for `token` in `row`, or nil when it is withheld (another vault key, forged).
    func value(_ row: PostgresRow, token: String, sealed: String, dataKeyID: String, keyID: String,
               sealedKey: String) throws -> String? {
        let reference = try DataKeyReference(row, id: dataKeyID, keyID: keyID, sealed: sealedKey)
        guard reference.keyID == secretKeyID else {
            otherKey.append(.init(token: token, keyID: reference.keyID))
            return nil
        }
        let value = try ring.openValue(try row[sealed].requiredBytes(), token: token, dataKey: reference)
        guard let tokenKeys else { return value }
        // The token is the HMAC of the canonical value under the token key (of the token's version): a value that
        // does not give its own token back was not sealed by an ETL run that held token.key.
        guard let parsed = Token(parsing: token) else {
            forged.append(token)
            return nil
        }
        guard let tokenKey = tokenKeys[parsed.version] else {
            // A version without its key (an older version before retokenize, say): reported, not checked.
            unverifiedVersions.insert(parsed.version)
            return value
        }
        let tokenizer = tokenizers[parsed.version] ?? Tokenizer(key: tokenKey)
        tokenizers[parsed.version] = tokenizer
        guard tokenizer.token(forCanonical: value, field: parsed.field) == token else {
            forged.append(token)
            return nil
        }
        return value
    }
}

/// The token versions an access met without a key to check their values. A class so that the value-type `Unmasker`
/// can collect into it; behind a mutex because the type must be Sendable (an access runs on one task).
final class UnverifiedVersions: Sendable {
    private let versions = NIOLockedValueBox<Set<Int>>([])

    func add(_ more: Set<Int>) { versions.withLockedValue { $0.formUnion(more) } }

    var sorted: [Int] { versions.withLockedValue { $0.sorted() } }
}
