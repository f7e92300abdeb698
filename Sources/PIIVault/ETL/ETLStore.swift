import Foundation
import Postgres

/// The keys a run uses, as its history row records them.
struct RunKeys: Sendable {
    let vaultKeyID: String
    let tokenKeyID: String
    let tokenKeyVersion: Int
}

/// All of an ETL run's SQL on its write session: the run history (`public.etl_runs`), data keys, and the load of
/// each batch in one transaction. An actor: the run's loop and the batch in flight share it, one call at a time.
///
/// Logins and sealed values are first COPied straight into their tables (the fast path: a nightly run rarely meets
/// a row that is already there); when that COPY meets one (a redelivered message, a value another batch or run sealed
/// meanwhile), it is rolled back to a savepoint and the rows go the idempotent way: COPY into a temporary table, then
/// `INSERT ... ON CONFLICT DO NOTHING` (which needs only INSERT privilege). Quarantined messages always take the
/// idempotent way; they are few.
actor ETLStore {
    private let connection: PostgresConnection
    private let databaseURL: String
    private var stagingReady = false
    /// The vault's erasure count (`vault.erasure_count`) when the run began, before any of its look-ups: a batch that
    /// finds the same count under the lock skips re-checking them.
    private var erasuresAtStart: Int?
    /// The state of the triggers that keep the erasure count when the run began (`vault.erasure_count_triggers`);
    /// nil when one of them was switched off or missing. The shared lock gives a batch a count only while they are
    /// in this state.
    private var erasureTriggersAtStart: Int?
    /// False when a trigger that keeps the erasure count was switched off or missing at the run's start: every batch
    /// then checks its look-ups again.
    var erasureCountIsKept: Bool { erasureTriggersAtStart != nil }
    /// The run's lock session: a connection whose transaction stays open for the life of the run. Its transaction id
    /// is recorded in the run's row (`live_xid`); while it is in progress the run is alive, and when the process dies
    /// the server ends it, so the next run sees the row's transaction ended and marks the run `abandoned`. Nothing
    /// to lock, so no other login can keep a dead run alive or make a run wait (`public.etl_run_is_live`, migration
    /// 0017).
    private var lockSession: PostgresConnection?

    /// The ETL's sessions' `application_name`: `forget` and `retention` name an ETL run holding a lock they wait on.
    static let applicationName = "piivault etl"

    private init(connection: PostgresConnection, databaseURL: String) {
        self.connection = connection
        self.databaseURL = databaseURL
    }

    /// Opens the run's write session.
    static func connect(_ databaseURL: String) async throws -> ETLStore {
        ETLStore(connection: try await Database.connect(databaseURL, applicationName: ETLStore.applicationName),
                 databaseURL: databaseURL)
    }

    func close() async {
        await endLockSession()
        await connection.close()
    }

    // MARK: Run history

    /// Marks runs left `running` by processes that died as `abandoned`, then opens the run's lock session and records
    /// a new run naming its transaction. Returns the run's id.
    func beginRun(source: String, keys: RunKeys) async throws -> Int {
        do {
            _ = try await connection.query("SELECT public.abandon_dead_etl_runs()")
            let count = try await connection.query(
                "SELECT c.erasures, vault.erasure_count_triggers() AS triggers FROM vault.erasure_count AS c"
            ).requiredFirst("vault.erasure_count")
            erasureTriggersAtStart = try count["triggers"].int()
            erasuresAtStart = erasureTriggersAtStart == nil ? nil : try count["erasures"].requiredInt()
            let liveXID = try await openLockSession()
            // The row is visible to others only once it commits, and by then its transaction is in progress. The
            // function checks that the transaction is the lock session's (this login's) and stamps the start.
            return try await connection.query("""
                SELECT public.begin_etl_run(\(source), \(keys.vaultKeyID), \(keys.tokenKeyID),
                                            \(keys.tokenKeyVersion), \(liveXID)::xid8) AS id
                """).requiredFirst("public.begin_etl_run")["id"].requiredInt()
        } catch let error as PostgresError where error.code == .undefinedTable || error.code == .undefinedFunction {
            throw ETLError.notMigrated
        }
    }

    func mergeFinishedRunPartitions() async throws -> Int {
        // READ COMMITTED whatever the login's default: the copy must see every erasure committed before the merge's
        // lock was granted (a REPEATABLE READ snapshot, taken before the wait, would bring deleted rows back).
        try await connection.transactionBegunWith(nil, isolation: "READ COMMITTED") { connection, _ in
            try await connection.query("SELECT public.merge_run_partitions() AS n")
                .requiredFirst("public.merge_run_partitions")["n"].requiredInt()
        }
    }

    /// Refuses a token key whose version the vault knows under another key id (and records a version it does not
    /// know yet): see `TokenKeyRegistry`.
    func checkTokenKey(version: Int, keyID: String) async throws {
        do {
            try await TokenKeyRegistry.check(version: version, keyID: keyID, on: connection)
        } catch let error as PostgresError where error.code == .undefinedTable || error.code == .undefinedFunction {
            throw ETLError.notMigrated
        }
    }

    /// Rows loaded before piivault recorded subject hashes (0017), or adopted from the seed's table: their users'
    /// hashes, recorded in rounds of this many users, so that forget can tie its subject to them.
    static let subjectHashRound = 10_000

    func recordMissingSubjectHashes(
        _ hash: @Sendable (String) -> String, while keepGoing: @Sendable () -> Bool
    ) async throws -> (recorded: Int, finished: Bool) {
        var recorded = 0
        var after: String?
        while keepGoing() {
            let users = try await connection.query(
                "SELECT u FROM vault.users_without_subject_hash(\(after), \(Self.subjectHashRound)) AS u"
            ).map { try $0["u"].requiredString() }
            guard let last = users.last else { return (recorded, true) }
            recorded += try await connection.query("""
                SELECT vault.record_subject_hashes(\(PostgresArray.texts(users))::text[],
                                                   \(PostgresArray.texts(users.map(hash)))::text[]) AS n
                """).requiredFirst("vault.record_subject_hashes")["n"].requiredInt()
            if users.count < Self.subjectHashRound { return (recorded, true) }
            after = last
        }
        return (recorded, false)
    }

    /// Opens the lock session and its transaction (kept open, never idle-timed-out); returns the transaction's id.
    private func openLockSession() async throws -> String {
        let session = try await Database.connect(databaseURL, applicationName: Self.applicationName)
        do {
            _ = try await session.execute("SET idle_in_transaction_session_timeout = 0")
            // READ COMMITTED whatever the login's default: the run's row is inserted by the write session after this
            // transaction's first statement, and `finish_etl_run` here must see it (a REPEATABLE READ snapshot would
            // not, and the run's end would never be recorded).
            _ = try await session.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            let xid = try await session.query("SELECT pg_current_xact_id()::text AS xid").requiredFirst("pg_current_xact_id")["xid"].requiredString()
            lockSession = session
            return xid
        } catch {
            await session.close()
            throw error
        }
    }

    /// Ends the lock session, its transaction with it (rolled back): the run is dead from now on.
    private func endLockSession() async {
        guard let session = lockSession else { return }
        lockSession = nil
        await session.close()
    }

    /// The vault key id of the latest run that sealed to a recorded key, if any.
    func lastVaultKeyID() async throws -> String? {
        do {
            return try await connection.query("""
                SELECT vault_key_id FROM public.etl_runs WHERE vault_key_id IS NOT NULL ORDER BY id DESC LIMIT 1
                """).first?["vault_key_id"].string()
        } catch let error as PostgresError where error.code == .undefinedTable || error.code == .undefinedColumn {
            throw ETLError.notMigrated
        }
    }

    /// Records the end of run `id` in its lock session's transaction and commits it: the row stops being `running`
    /// in the commit that ends the run's liveness (`public.finish_etl_run`). When the lock session is gone (the
    /// database restarted), records it once on a fresh connection (the function accepts that for a run whose
    /// transaction has ended); gives up quietly after that (the next run marks it `abandoned`).
    func finishRun(_ id: Int, summary: ETLSummary) async {
        let finish: PostgresQuery = """
            SELECT public.finish_etl_run(\(id), \(summary.received), \(summary.loaded), \(summary.duplicates),
                                         \(summary.quarantined), \(summary.valuesSealed), \(summary.deleteFailures),
                                         \(summary.suppressed), \(summary.outcome), \(summary.error))
            """
        if let session = lockSession {
            lockSession = nil
            var finished = false
            if let rows = try? await session.query(finish), (try? rows.first?[0].bool()) == true,
               (try? await session.execute("COMMIT")) != nil
            {
                finished = true
            }
            await session.close()
            if finished { return }
        }
        guard let fresh = try? await Database.connect(databaseURL, applicationName: Self.applicationName) else { return }
        _ = try? await fresh.query(finish)
        await fresh.close()
    }

    // MARK: Vault

    /// Stores a sealed data key; returns its `vault.data_keys` id.
    func storeDataKey(_ key: SealedDataKey) async throws -> Int {
        try await connection.query("""
            INSERT INTO vault.data_keys (key_id, sealed_key) VALUES (\(key.keyID.description), \(key.sealed)) RETURNING id
            """).requiredFirst("INSERT INTO vault.data_keys")["id"].requiredInt()
    }

    // MARK: Loading

    /// Inserts one encoded batch in one transaction; rows already present are counted as duplicates.
    func insert(_ batch: EncodedBatch, dataKeyID: Int) async throws -> LoadOutcome {
        try await prepareStaging()
        let secrets = batch.secrets, logins = batch.logins, quarantine = batch.quarantine
        let hashes = batch.subjectHashes, mustRecheck = batch.mustRecheck, erasuresAtStart = self.erasuresAtStart
        let lock = VaultValueLock.shared(triggersAtStart: erasureTriggersAtStart)
        // Round trips are what a database in another zone costs a batch, so statements go together where they can:
        // BEGIN with the lock; each SAVEPOINT with its COPY; a savepoint is never released (COMMIT ends them all).
        // READ COMMITTED whatever the login's default: the count the lock returns must be read by a snapshot taken
        // after the wait for the lock, which a REPEATABLE READ transaction would have taken before it.
        var outcome = try await connection.transactionBegunWith(
            lock.sql, isolation: "READ COMMITTED"
        ) { connection, lockRows in
            var outcome = LoadOutcome()
            // Shared with other ETL batches, exclusive to `forget` and `retention`: a user is never loaded while
            // being forgotten. (Not a lock per user: a batch of 10,000 users would take 10,000 entries of the server's
            // shared lock table, and a few processes at once would exhaust it.)
            let erasures = try lockRows.first?[0].int()
            // The batch's look-ups (tombstones, values in the vault) were made after the run began: when nothing was
            // erased since, they still hold, and checking them again would cost a fifth of the database's time.
            let recheck = mustRecheck || erasures == nil || erasures != erasuresAtStart
            if recheck && !hashes.isEmpty {
                let list = PostgresArray.commaSeparated(hashes)
                // The batch was prepared before the lock: a forget that committed meanwhile is seen only now. Fail
                // closed (nothing of the batch commits, its messages stay queued and the next run suppresses them)
                // rather than load a forgotten user's row.
                let forgotten = try await connection.query(
                    "SELECT count(*) FROM vault.tombstones WHERE subject_hash = ANY(string_to_array(\(list), ','))")
                let count = try forgotten.first?[0].requiredInt() ?? 0
                if count > 0 { throw UsersForgottenDuringLoad(count: count) }
            }
            if secrets.rowCount > 0 {
                if try await Self.copyUnlessPresent(
                    "COPY vault.secrets (token, field, data_key_id, sealed) FROM STDIN", data: secrets.bytes,
                    connection: connection)
                {
                    outcome.valuesSealed = secrets.rowCount
                } else {
                    try await connection.copyFromStdin(
                        "COPY pg_temp.piivault_stage_secrets (token, field, data_key_id, sealed) FROM STDIN", data: secrets.bytes)
                    outcome.valuesSealed = try await connection.execute("""
                        INSERT INTO vault.secrets (token, field, data_key_id, sealed)
                        SELECT token, field, data_key_id, sealed FROM pg_temp.piivault_stage_secrets ORDER BY token
                        ON CONFLICT DO NOTHING
                        """)
                }
            }
            if logins.rowCount > 0 {
                let columns = """
                    (message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version,
                     app_version_text, create_date, subject_hash, etl_run_id)
                    """
                if try await Self.copyUnlessPresent(
                    PostgresQuery(unsafeSQL: "COPY public.user_logins \(columns) FROM STDIN"), data: logins.bytes,
                    connection: connection)
                {
                    outcome.loaded = logins.rowCount
                } else {
                    try await connection.copyFromStdin(
                        PostgresQuery(unsafeSQL: "COPY pg_temp.piivault_stage_logins \(columns) FROM STDIN"), data: logins.bytes)
                    outcome.loaded = try await Self.insertNewLogins(connection: connection)
                }
                outcome.duplicates = logins.rowCount - outcome.loaded
            }
            if quarantine.rowCount > 0 {
                try await connection.copyFromStdin(
                    "COPY pg_temp.piivault_stage_quarantine (message_id, reason, sealed_body) FROM STDIN",
                    data: quarantine.bytes)
                outcome.quarantined = try await connection.execute("""
                    INSERT INTO vault.quarantine (message_id, reason, data_key_id, sealed_body)
                    SELECT message_id, reason, \(dataKeyID), sealed_body FROM pg_temp.piivault_stage_quarantine
                    ON CONFLICT DO NOTHING
                    """)
                outcome.duplicates += quarantine.rowCount - outcome.quarantined
            }
            // Every value the batch's logins reference is sealed (by this batch or an earlier one): a forget that
            // deleted one after the batch looked it up fails the batch closed (the next run seals it again).
            let referenced = recheck ? batch.referencedTokens : []
            if !referenced.isEmpty {
                let literal = PostgresArray.texts(referenced)
                let present = try await connection.query(
                    "SELECT count(*) FROM vault.secrets WHERE token = ANY(\(literal)::text[])").first?[0].requiredInt() ?? 0
                if present < referenced.count { throw ValuesErasedDuringLoad(count: referenced.count - present) }
            }
            return outcome
        }
        outcome.tokens = batch.tokens
        outcome.suppressed = batch.suppressed
        return outcome
    }

    private func prepareStaging() async throws {
        guard !stagingReady else { return }
        try await connection.executeScript("""
            CREATE TEMPORARY TABLE IF NOT EXISTS pg_temp.piivault_stage_logins (
                message_id text, user_id text, device_type text, masked_ip text, masked_device_id text,
                locale text, app_version integer, app_version_text text, create_date date, subject_hash text,
                etl_run_id bigint
            ) ON COMMIT DELETE ROWS;
            CREATE TEMPORARY TABLE IF NOT EXISTS pg_temp.piivault_stage_secrets (
                token text, field text, data_key_id bigint, sealed bytea
            ) ON COMMIT DELETE ROWS;
            CREATE TEMPORARY TABLE IF NOT EXISTS pg_temp.piivault_stage_quarantine (
                message_id text, reason text, sealed_body bytea
            ) ON COMMIT DELETE ROWS;
            """)
        stagingReady = true
    }

    /// Inserts the staged logins whose message ids are not loaded yet (public.login_message_ids, which a trigger on
    /// user_logins keeps); returns how many. Another process may load one of the same messages between the check and
    /// the insert: the trigger then refuses the insert (unique violation) once that process commits, and the insert is
    /// tried again, which now skips it.
    private static func insertNewLogins(connection: PostgresConnection) async throws -> Int {
        for attempt in 1... {
            do {
                return try await connection.queryScript("""
                    SAVEPOINT piivault_new_logins;
                    INSERT INTO public.user_logins (user_id, device_type, masked_ip, masked_device_id, locale,
                                                    app_version, create_date, message_id, app_version_text,
                                                    subject_hash, etl_run_id, loaded_at)
                    SELECT DISTINCT ON (s.message_id) s.user_id, s.device_type, s.masked_ip, s.masked_device_id,
                           s.locale, s.app_version, s.create_date, s.message_id, s.app_version_text, s.subject_hash,
                           s.etl_run_id, now()
                      FROM pg_temp.piivault_stage_logins AS s
                     WHERE NOT EXISTS (SELECT 1 FROM public.login_message_ids AS m WHERE m.message_id = s.message_id)
                     ORDER BY s.message_id
                    """).affectedRows
            } catch let error as PostgresError where error.code == .uniqueViolation && attempt < 3 {
                try await connection.execute("ROLLBACK TO SAVEPOINT piivault_new_logins")
            }
        }
        preconditionFailure("unreachable")
    }

    /// COPYs `data` straight into its table under a savepoint, set in the same round trip as the COPY starts. Returns
    /// false, with the transaction as it was before, when a row is already there (unique violation); other errors go
    /// up as they are. The savepoint is left in place: a later one of the same name hides it, and COMMIT ends both.
    private static func copyUnlessPresent(
        _ statement: PostgresQuery, data: [UInt8], connection: PostgresConnection
    ) async throws -> Bool {
        do {
            try await connection.copyFromStdin(
                PostgresQuery(unsafeSQL: "SAVEPOINT piivault_direct_copy; " + statement.sql), data: data)
        } catch let error as PostgresError where error.code == .uniqueViolation {
            try await connection.execute("ROLLBACK TO SAVEPOINT piivault_direct_copy")
            return false
        }
        return true
    }
}

/// The run's read session for vault look-ups. Separate from the write session: look-ups run while a batch's
/// transaction is open, and must see only committed rows (a batch that rolls back must not hide a value from the
/// next one).
actor VaultLookup {
    private let connection: PostgresConnection

    private init(connection: PostgresConnection) {
        self.connection = connection
    }

    static func connect(_ databaseURL: String) async throws -> VaultLookup {
        let connection = try await Database.connect(databaseURL, applicationName: ETLStore.applicationName)
        do {
            // Its one query asks for a few thousand tokens at a time; as vault.secrets grows, the planner would rather
            // scan the whole table with a hashed ANY than probe the primary key, which makes a run quadratic
            // (measured: most of the database's time at 400k sealed values). This session does nothing else.
            try await connection.execute("SET enable_seqscan = off")
        } catch {
            await connection.close()
            throw error
        }
        return VaultLookup(connection: connection)
    }

    func close() async {
        await connection.close()
    }

    /// Which of `hashes` (keyed user-id hashes) name forgotten users (`vault.tombstones`).
    func tombstoned(_ hashes: [String]) async throws -> Set<String> {
        let list = PostgresArray.commaSeparated(hashes)
        let rows = try await connection.query(
            "SELECT subject_hash FROM vault.tombstones WHERE subject_hash = ANY(string_to_array(\(list), ','))")
        var found = Set<String>()
        for row in rows { found.insert(try row[0].requiredString()) }
        return found
    }

    /// Which of `tokens` the vault already holds.
    func vaultHolds(_ tokens: [String]) async throws -> Set<String> {
        let list = PostgresArray.commaSeparated(tokens)
        let rows = try await connection.query(
            "SELECT token FROM vault.secrets WHERE token = ANY(string_to_array(\(list), ','))")
        var present = Set<String>(minimumCapacity: rows.count)
        for row in rows { present.insert(try row[0].requiredString()) }
        return present
    }
}

/// A user of the batch was erased by `piivault forget` between the batch's preparation and its insert; nothing of
/// the batch was committed.
struct UsersForgottenDuringLoad: PIIVaultReportableError {
    let count: Int
    var message: String {
        "\(count) user(s) of a batch were erased by piivault forget while it loaded; the batch was rolled back and its messages stay queued: run the ETL again (it will suppress them)"
    }
    var exitCode: PIIVaultExitCode { .failure }
}

/// A sealed value the batch's logins reference was erased by `piivault forget` or `retention` after the batch looked it
/// up; nothing of the batch was committed.
struct ValuesErasedDuringLoad: PIIVaultReportableError {
    let count: Int
    var message: String {
        "\(count) sealed value(s) a batch relies on were erased by piivault forget or retention while it loaded; the batch was rolled back and its messages stay queued: run the ETL again (it will seal them again)"
    }
    var exitCode: PIIVaultExitCode { .failure }
}
