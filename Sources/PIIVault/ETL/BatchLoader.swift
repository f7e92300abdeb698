import Postgres

/// What loading one batch did.
struct LoadOutcome: Sendable {
    var loaded = 0
    var duplicates = 0
    var quarantined = 0
    var valuesSealed = 0
    /// Tokens whose values this batch sealed (now in the vault once it committed).
    var tokens: [String] = []

    mutating func add(_ other: LoadOutcome) {
        loaded += other.loaded
        duplicates += other.duplicates
        quarantined += other.quarantined
        valuesSealed += other.valuesSealed
        tokens += other.tokens
    }
}

/// Loads prepared batches, one transaction each. Logins and sealed values are first COPied straight into their
/// tables (the fast path: a nightly run rarely meets a row that is already there); when that COPY meets one (a
/// redelivered message, a value another batch or run sealed meanwhile), it is rolled back to a savepoint and the rows
/// go the idempotent way: COPY into a temporary table, then `INSERT ... ON CONFLICT DO NOTHING` (which needs only
/// INSERT privilege). Quarantined messages always take the idempotent way; they are few.
final class BatchLoader: @unchecked Sendable {
    let connection: PostgresConnection
    private var stagingReady = false

    init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// Which of `tokens` the vault already holds.
    func vaultHolds(_ tokens: [String]) async throws -> Set<String> {
        // Tokens are `ip.v1.<hex>`: an array literal of them needs no quoting, and is still a bound parameter.
        let literal = "{" + tokens.joined(separator: ",") + "}"
        let rows = try await connection.query("SELECT token FROM vault.secrets WHERE token = ANY(\(literal)::text[])")
        var present = Set<String>()
        for row in rows { present.insert(try row[0].requiredString()) }
        return present
    }

    /// Loads `batch` in one transaction. On a row-specific database error the batch is split in halves until the
    /// offending message is alone; it is then quarantined through `quarantine` and the rest loads.
    func load(
        _ batch: [PreparedMessage], dataKeyID: Int,
        quarantine: (SourceMessage, String) throws -> PreparedMessage
    ) async throws -> LoadOutcome {
        do {
            return try await loadOnce(batch, dataKeyID: dataKeyID)
        } catch let error as PostgresError where error.isRowSpecific {
            if batch.count == 1, case .login = batch[0].content {
                let reason = "rejected by the database: \(error.sqlState ?? "unknown")"
                    + (error.column.map { " in column \($0)" } ?? "")
                return try await loadOnce([try quarantine(batch[0].source, reason)], dataKeyID: dataKeyID)
            }
            if batch.count == 1 { throw error }
            let middle = batch.count / 2
            var outcome = try await load(Array(batch[..<middle]), dataKeyID: dataKeyID, quarantine: quarantine)
            outcome.add(try await load(Array(batch[middle...]), dataKeyID: dataKeyID, quarantine: quarantine))
            return outcome
        }
    }

    private func prepareStaging() async throws {
        guard !stagingReady else { return }
        try await connection.executeScript("""
            CREATE TEMPORARY TABLE IF NOT EXISTS piivault_stage_logins (
                message_id text, user_id text, device_type text, masked_ip text, masked_device_id text,
                locale text, app_version integer, app_version_text text, create_date date
            ) ON COMMIT DELETE ROWS;
            CREATE TEMPORARY TABLE IF NOT EXISTS piivault_stage_secrets (
                token text, field text, data_key_id bigint, sealed bytea
            ) ON COMMIT DELETE ROWS;
            CREATE TEMPORARY TABLE IF NOT EXISTS piivault_stage_quarantine (
                message_id text, reason text, sealed_body bytea
            ) ON COMMIT DELETE ROWS;
            """)
        stagingReady = true
    }

    private func loadOnce(_ batch: [PreparedMessage], dataKeyID: Int) async throws -> LoadOutcome {
        try await prepareStaging()
        var logins = CopyTextWriter(reservingCapacity: batch.count * 240)
        var secrets = CopyTextWriter(reservingCapacity: batch.count * 300)
        var quarantine = CopyTextWriter()
        var tokens: [String] = []
        for message in batch {
            switch message.content {
            case .login(let login, let sealed):
                logins.append(login.messageID)
                logins.append(login.userID)
                logins.append(login.deviceType)
                logins.append(login.ipToken)
                logins.append(login.deviceToken)
                logins.append(login.locale)
                logins.append(login.appVersion)
                logins.append(login.appVersionText)
                logins.append(login.createDate)
                logins.endRow()
                for secret in sealed {
                    tokens.append(secret.token)
                    secrets.append(secret.token)
                    secrets.append(secret.field.rawValue)
                    secrets.append(dataKeyID)
                    secrets.append(bytes: secret.sealed)
                    secrets.endRow()
                }
            case .quarantine(let entry):
                quarantine.append(entry.messageID)
                quarantine.append(entry.reason)
                quarantine.append(bytes: entry.sealedBody)
                quarantine.endRow()
            }
        }
        let (loginCount, secretCount, quarantineCount) = (logins.rowCount, secrets.rowCount, quarantine.rowCount)
        let result = try await connection.transaction { connection in
            var outcome = LoadOutcome()
            if secretCount > 0 {
                if try await Self.copyUnlessPresent(
                    "COPY vault.secrets (token, field, data_key_id, sealed) FROM STDIN", data: secrets.bytes,
                    connection: connection)
                {
                    outcome.valuesSealed = secretCount
                } else {
                    try await connection.copyFromStdin(
                        "COPY piivault_stage_secrets (token, field, data_key_id, sealed) FROM STDIN", data: secrets.bytes)
                    outcome.valuesSealed = try await connection.execute("""
                        INSERT INTO vault.secrets (token, field, data_key_id, sealed)
                        SELECT token, field, data_key_id, sealed FROM piivault_stage_secrets
                        ON CONFLICT DO NOTHING
                        """)
                }
            }
            if loginCount > 0 {
                let columns = """
                    (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
                     app_version_text, create_date)
                    """
                if try await Self.copyUnlessPresent(
                    PostgresQuery(unsafeSQL: "COPY public.user_logins \(columns) FROM STDIN"), data: logins.bytes,
                    connection: connection)
                {
                    outcome.loaded = loginCount
                } else {
                    try await connection.copyFromStdin(
                        PostgresQuery(unsafeSQL: "COPY piivault_stage_logins \(columns) FROM STDIN"), data: logins.bytes)
                    outcome.loaded = try await connection.execute("""
                        INSERT INTO public.user_logins (user_id, device_type, masked_ip, masked_device_id, locale,
                                                        app_version, create_date, message_id, app_version_text,
                                                        loaded_at)
                        SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date,
                               message_id, app_version_text, now()
                          FROM piivault_stage_logins
                        ON CONFLICT DO NOTHING
                        """)
                }
                outcome.duplicates = loginCount - outcome.loaded
            }
            if quarantineCount > 0 {
                try await connection.copyFromStdin(
                    "COPY piivault_stage_quarantine (message_id, reason, sealed_body) FROM STDIN",
                    data: quarantine.bytes)
                outcome.quarantined = try await connection.execute("""
                    INSERT INTO vault.quarantine (message_id, reason, data_key_id, sealed_body)
                    SELECT message_id, reason, \(dataKeyID), sealed_body FROM piivault_stage_quarantine
                    ON CONFLICT DO NOTHING
                    """)
                outcome.duplicates += quarantineCount - outcome.quarantined
            }
            return outcome
        }
        var outcome = result
        outcome.tokens = tokens
        return outcome
    }

    /// COPYs `data` straight into its table under a savepoint. Returns false, with the transaction as it was before,
    /// when a row is already there (unique violation); other errors go up as they are.
    private static func copyUnlessPresent(
        _ statement: PostgresQuery, data: [UInt8], connection: PostgresConnection
    ) async throws -> Bool {
        try await connection.execute("SAVEPOINT piivault_direct_copy")
        do {
            try await connection.copyFromStdin(statement, data: data)
        } catch let error as PostgresError where error.sqlState == "23505" {
            try await connection.execute("ROLLBACK TO SAVEPOINT piivault_direct_copy")
            return false
        }
        try await connection.execute("RELEASE SAVEPOINT piivault_direct_copy")
        return true
    }
}
