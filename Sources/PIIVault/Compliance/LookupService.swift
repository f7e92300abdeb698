import Foundation
import Postgres

/// One `lookup` call: values a data subject gave (ip addresses, device ids), why, and the row cap.
public struct LookupRequest: Sendable {
    /// The values, each with its field, in the order given. PII: never logged, printed or sent to the database.
    public let values: [(field: PIIField, value: String)]
    /// Why this access is needed (case or request number); logged. Required.
    public let reason: String
    /// More rows than this are refused (and the refusal logged).
    public let maxRows: Int

    public init(values: [(field: PIIField, value: String)], reason: String, maxRows: Int = 100) {
        self.values = values
        self.reason = reason
        self.maxRows = maxRows
    }
}

/// One login that a looked-up value appears in (tokens only).
public struct LookupMatch: Sendable, Equatable {
    /// 1-based position of the value in the request that matched (the value itself is not repeated).
    public let valueNumber: Int
    /// The value's token that matched.
    public let token: String
    public let userID: String
    public let deviceType: String?
    public let maskedIP: String?
    public let maskedDeviceID: String?
    public let locale: String?
    public let appVersion: Int?
    public let createDate: String?
    public let messageID: String?
}

/// What a lookup found, and the entry that logged it.
public struct LookupReport: Sendable {
    /// Each value's tokens (one per token key version), in the order the values were given.
    public let tokens: [[String]]
    public let matches: [LookupMatch]
    public let logSeq: Int
    public let outcome: String
    /// Token versions present in the vault for which no token key was given: values are not searched under them.
    public var versionsWithoutKey: [Int] = []
}

/// Why a lookup printed nothing, beyond a refusal.
public enum LookupError: PIIVaultReportableError, Equatable {
    /// A value is not a valid ip (or device id); not echoed.
    case invalidValue(number: Int, field: PIIField)
    /// None of the values is in any login; the access is logged.
    case notFound(logSeq: Int)

    public var message: String {
        switch self {
        case let .invalidValue(number, field):
            return "value \(number) is not a valid \(field == .ip ? "ip address" : "device id"); not shown, check it (nothing was asked of the database)"
        case .notFound(let seq):
            return "no logins involve these values (access logged as entry \(seq))"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .invalidValue: return .usage
        case .notFound: return .failure
        }
    }
}

/// `lookup`: the logins a data subject's ip addresses or device ids appear in. Each value is canonicalised as the
/// ETL does and tokenized under every token key version given (one key file per version: after a rotation, tokens of
/// older versions stay until `retokenize` moves them); versions present in the vault without a key are reported in
/// `LookupReport.versionsWithoutKey`. Only the tokens go to the database, through
/// the `ComplianceRunner` (action `lookup`, subject the tokens), and the rows come back only after the entry is
/// committed. Runs through the `ComplianceRunner`.
public struct LookupService: Sendable {
    public let databaseURL: String
    public let tokenKeys: TokenKeySet
    public let caller: AccessLogCaller
    /// Told, before the database is asked, of each token version present in the vault without a key given (one
    /// line, no PII), since values are not searched under it.
    public var warn: @Sendable (String) -> Void = { _ in }

    public init(databaseURL: String, tokenKey: TokenKey, caller: AccessLogCaller = .current) {
        self.databaseURL = databaseURL
        // One key is one version: no conflict possible.
        self.tokenKeys = try! TokenKeySet([tokenKey])
        self.caller = caller
    }

    /// With one token key per version.
    public init(databaseURL: String, tokenKeys: TokenKeySet, caller: AccessLogCaller = .current) {
        self.databaseURL = databaseURL
        self.tokenKeys = tokenKeys
        self.caller = caller
    }

    /// Canonicalises every value first (an invalid one is refused before the database), then looks them up.
    public func run(_ request: LookupRequest) async throws -> LookupReport {
        var canonical: [(PIIField, String)] = []
        for (index, item) in request.values.enumerated() {
            do {
                canonical.append((item.field, try Canonical.canonicalize(item.value, as: item.field)))
            } catch {
                throw LookupError.invalidValue(number: index + 1, field: item.field)
            }
        }
        return try await ComplianceRunner(databaseURL: databaseURL, caller: caller, action: "lookup")
            .run(reason: request.reason) { session in
                try await self.checkTokenKeys(session.connection)
                let versionsWithoutKey = try await self.versionsWithoutKey(session.connection)
                for version in versionsWithoutKey {
                    warn("the vault holds tokens of token key version \(version), but no token key of that version was given: values are not searched under it; add --token-key for version \(version), or run retokenize")
                }
                let tokenizers = tokenKeys.versions.compactMap { tokenKeys[$0].map { Tokenizer(key: $0) } }
                let tokens = canonical.map { field, value in tokenizers.map { $0.token(forCanonical: value, field: field) } }
                var valueOfToken: [String: Int] = [:]
                for (index, list) in tokens.enumerated() {
                    for token in list where valueOfToken[token] == nil { valueOfToken[token] = index + 1 }
                }
                let all = Array(valueOfToken.keys).sorted()
                let grant = try await session.requestGrant("""
                    SELECT * FROM vault.request_lookup_tokens(\(PostgresArray.texts(all))::text[], \(request.reason),
                                                              \(caller.osUser), \(caller.clientHost), \(request.maxRows))
                    """, deniedSubject: "tokens:" + all.joined(separator: ","))
                if grant.isRefused { throw ComplianceError.overRowCap(outcome: grant.outcome, logSeq: grant.seq) }
                guard grant.rowCount > 0 else { throw LookupError.notFound(logSeq: grant.seq) }
                let valueNumbers = valueOfToken
                let matches = try await session.release(
                    "SELECT *, create_date::text AS create_date_text FROM vault.release_lookup_tokens(\(grant.seq))"
                ) { rows in
                    try rows.map { row -> LookupMatch in
                        let ip = try row["masked_ip"].string()
                        let device = try row["masked_device_id"].string()
                        let token = [ip, device].compactMap { $0 }.first { valueNumbers[$0] != nil } ?? ""
                        return LookupMatch(
                            valueNumber: valueNumbers[token] ?? 0, token: token, userID: try row["user_id"].requiredString(),
                            deviceType: try row["device_type"].string(), maskedIP: ip, maskedDeviceID: device,
                            locale: try row["locale"].string(), appVersion: try row["app_version"].int(),
                            createDate: try row["create_date_text"].string(), messageID: try row["message_id"].string())
                    }
                }
                return LookupReport(
                    tokens: tokens,
                    matches: matches.sorted { ($0.valueNumber, $0.createDate ?? "") < ($1.valueNumber, $1.createDate ?? "") },
                    logSeq: grant.seq, outcome: grant.outcome, versionsWithoutKey: versionsWithoutKey)
            }
    }

    /// Refuses a token key whose version the vault knows under another key id, before anything is logged: its tokens
    /// match no row, and "no logins involve these values" would be a wrong answer to a data subject's request. A
    /// login outside compliance may not read the registry: the request step after it records the attempt.
    private func checkTokenKeys(_ connection: PostgresConnection) async throws {
        for version in tokenKeys.versions {
            guard let given = tokenKeys[version]?.keyID.description else { continue }
            let known: (accepted: String?, others: [String])
            do {
                known = try await TokenKeyRegistry.known(version: version, on: connection)
            } catch let error as PostgresError where error.isPermissionDenied {
                return
            }
            // A key earlier runs used beside the accepted one (recorded, not accepted: 0020) still finds their rows.
            if let accepted = known.accepted, accepted != given, !known.others.contains(given) {
                throw TokenKeyMismatch(version: version, given: given, known: accepted)
            }
        }
    }

    /// Token versions present in the vault without a key given. A login outside compliance may not ask
    /// (`vault.token_versions`): none, and the request step after it records the attempt.
    private func versionsWithoutKey(_ connection: PostgresConnection) async throws -> [Int] {
        let present: [Int]
        do {
            present = try await connection.query("SELECT v FROM vault.token_versions() AS v")
                .map { try $0["v"].requiredInt() }.filter { (1...Token.maximumVersion).contains($0) }
        } catch let error as PostgresError where error.isPermissionDenied {
            return []
        }
        return Set(present).subtracting(tokenKeys.versions).sorted()
    }
}

/// `lookup`: one row per matching login, with the number of the value that matched and its token.
extension LookupReport: Renderable {
    public var tableRows: TextRows {
        TextRows(
            header: ["value", "token", "user_id", "create_date", "device_type", "locale", "app_version", "masked_ip",
                     "masked_device_id", "message_id"],
            rows: matches.map { m in
                [String(m.valueNumber), m.token, m.userID, m.createDate ?? "", m.deviceType ?? "", m.locale ?? "",
                 m.appVersion.map(String.init) ?? "", m.maskedIP ?? "", m.maskedDeviceID ?? "", m.messageID ?? ""]
            })
    }

    /// Typed as `unmask --format json` types them: numbers as numbers, absent values as null.
    public var jsonValue: Any {
        matches.map { m -> [String: Any] in
            ["value": m.valueNumber, "token": m.token, "user_id": m.userID, "create_date": m.createDate ?? NSNull(),
             "device_type": m.deviceType ?? NSNull(), "locale": m.locale ?? NSNull(),
             "app_version": m.appVersion ?? NSNull(), "masked_ip": m.maskedIP ?? NSNull(),
             "masked_device_id": m.maskedDeviceID ?? NSNull(), "message_id": m.messageID ?? NSNull()]
        }
    }
}
