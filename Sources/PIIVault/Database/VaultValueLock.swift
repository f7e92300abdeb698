import Postgres

/// The vault-wide value lock between erasure and loading, for values users share: forget takes it exclusively,
/// each ETL batch insert shared. The shared lock returns the vault's erasure count (`vault.erasure_count`, which every
/// erasing statement raises); when it differs from the count at the run's start, the batch checks, under the lock,
/// that every sealed value its logins reference is in the vault and that none of its users was forgotten. So forget
/// never deletes a value a batch in flight relies on, and a batch never commits a token whose value a forget deleted
/// after the batch looked it up (it fails closed instead). A table lock on
/// `vault.vault_values_lock`, a table nobody holds a privilege on, taken only through these two functions
/// (`migrations/definitions/05_locks.sql`): only piivault_etl can take it shared and only piivault_compliance
/// exclusively, so no other login can make a batch or an erasure wait. Held until the transaction ends.
enum VaultValueLock {
    static let exclusive: PostgresQuery = "SELECT vault.lock_vault_values_exclusive()"
    /// The shared lock for a batch of a run that found the erasure count's triggers in state `triggersAtStart`
    /// (nil: not kept; the lock then returns no count). An integer, so the statement can go with the batch's BEGIN.
    static func shared(triggersAtStart: Int?) -> PostgresQuery {
        PostgresQuery(unsafeSQL: "SELECT vault.lock_vault_values_shared(\(triggersAtStart.map(String.init) ?? "NULL"))")
    }
}
