import Postgres

/// How many sessions of this test's database wait for the vault-wide value lock. `pg_locks` is cluster-wide and every
/// test database is a copy of one template, so the table has the same oid in all of them: without the database
/// filter, a waiter in another test's database counts too.
let vaultLockWaitersQuery: PostgresQuery = """
    SELECT count(*) FROM pg_locks
     WHERE locktype = 'relation' AND NOT granted AND relation = 'vault.vault_values_lock'::regclass
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    """
