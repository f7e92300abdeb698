import Foundation
import Postgres

/// One row of the ETL's run history (`public.etl_runs`), as `piivault runs` shows it.
public struct ETLRunRecord: Sendable, Equatable {
    public var id: Int
    public var startedAt: String
    public var finishedAt: String?
    public var source: String
    public var received: Int
    public var loaded: Int
    public var duplicates: Int
    public var quarantined: Int
    public var valuesSealed: Int
    public var deleteFailures: Int
    /// Messages of forgotten users (tombstoned) the run did not load and deleted from the queue.
    public var suppressed: Int
    /// `running`, `completed`, `interrupted`, `failed`, or `abandoned` (also shown for a row still `running` whose
    /// process is gone: the transaction its lock session kept open has ended).
    public var outcome: String
    public var error: String?
    public var vaultKeyID: String?
    public var tokenKeyID: String?
    public var tokenKeyVersion: Int?
}

/// Reads the run history. Readable by the ETL role (the operator's) and the auditor's role.
public enum RunHistory {
    /// The last `count` runs, newest first.
    public static func last(_ count: Int, databaseURL: String) async throws -> [ETLRunRecord] {
        try await Database.withConnection(databaseURL) { connection in
            let rows: PostgresRows
            do {
                rows = try await connection.query("""
                    SELECT r.id, to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started,
                           to_char(r.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS finished,
                           r.source, r.received, r.loaded, r.duplicates, r.quarantined, r.values_sealed,
                           r.delete_failures, r.suppressed, r.vault_key_id, r.token_key_id, r.token_key_version,
                           r.outcome, r.error,
                           CASE WHEN r.outcome = 'running' AND NOT public.etl_run_is_live(r.live_xid)
                                THEN 1 ELSE 0 END AS dead
                      FROM public.etl_runs AS r
                     ORDER BY r.id DESC
                     LIMIT \(count)
                    """)
            } catch let error as PostgresError
                where error.code == .undefinedTable || error.code == .undefinedColumn || error.code == .undefinedFunction
            {
                throw ETLError.notMigrated
            }
            return try rows.map { row in
                // A `running` row whose lock session's transaction ended: its process died; the next run will mark it so.
                let dead = try row["dead"].requiredInt() == 1
                return ETLRunRecord(
                    id: try row["id"].requiredInt(), startedAt: try row["started"].requiredString(),
                    finishedAt: try row["finished"].string(), source: try row["source"].requiredString(),
                    received: try row["received"].requiredInt(), loaded: try row["loaded"].requiredInt(),
                    duplicates: try row["duplicates"].requiredInt(), quarantined: try row["quarantined"].requiredInt(),
                    valuesSealed: try row["values_sealed"].requiredInt(),
                    deleteFailures: try row["delete_failures"].requiredInt(),
                    suppressed: try row["suppressed"].requiredInt(),
                    outcome: dead ? "abandoned" : try row["outcome"].requiredString(),
                    error: dead ? "no live process holds this run: it ended without recording its end"
                        : try row["error"].string(),
                    vaultKeyID: try row["vault_key_id"].string(), tokenKeyID: try row["token_key_id"].string(),
                    tokenKeyVersion: try row["token_key_version"].int())
            }
        }
    }
}

/// The run history as `runs` prints it.
public struct RunHistoryRows: Renderable, Sendable {
    public let runs: [ETLRunRecord]

    public init(_ runs: [ETLRunRecord]) { self.runs = runs }

    public var tableRows: TextRows {
        TextRows(
            header: ["id", "started (UTC)", "finished (UTC)", "source", "received", "loaded", "dup", "quar",
                     "sealed", "supp", "outcome", "vault key", "tokens", "error"],
            rows: runs.map { run in
                [String(run.id), run.startedAt, run.finishedAt ?? "-", run.source, String(run.received),
                 String(run.loaded), String(run.duplicates), String(run.quarantined), String(run.valuesSealed),
                 String(run.suppressed), run.outcome, run.vaultKeyID ?? "-", run.tokenKeyVersion.map { "v\($0)" } ?? "-",
                 run.error ?? ""]
            })
    }

    public var csvRows: TextRows {
        TextRows(
            header: ["id", "started_at", "finished_at", "source", "received", "loaded", "duplicates", "quarantined",
                     "values_sealed", "delete_failures", "suppressed", "outcome", "error", "vault_key_id",
                     "token_key_id", "token_key_version"],
            rows: runs.map { run in
                [String(run.id), run.startedAt, run.finishedAt ?? "", run.source, String(run.received),
                 String(run.loaded), String(run.duplicates), String(run.quarantined), String(run.valuesSealed),
                 String(run.deleteFailures), String(run.suppressed), run.outcome, run.error ?? "", run.vaultKeyID ?? "",
                 run.tokenKeyID ?? "", run.tokenKeyVersion.map(String.init) ?? ""]
            })
    }

    public var jsonValue: Any {
        func nullable(_ value: (any Sendable)?) -> Any { value ?? NSNull() }
        return runs.map { run -> [String: Any] in
            [
                "id": run.id, "started_at": run.startedAt, "finished_at": nullable(run.finishedAt),
                "source": run.source, "received": run.received, "loaded": run.loaded,
                "duplicates": run.duplicates, "quarantined": run.quarantined, "values_sealed": run.valuesSealed,
                "delete_failures": run.deleteFailures, "suppressed": run.suppressed, "outcome": run.outcome,
                "error": nullable(run.error), "vault_key_id": nullable(run.vaultKeyID),
                "token_key_id": nullable(run.tokenKeyID), "token_key_version": nullable(run.tokenKeyVersion),
            ]
        }
    }
}

extension OutputFormat {
    /// Run-history `runs` rendered in this format, ending with a newline.
    public func render(_ runs: [ETLRunRecord]) -> String { render(RunHistoryRows(runs)) }
}
