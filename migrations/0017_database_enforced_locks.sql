-- Locks and subjects the database enforces (issue 21).
--
-- 1. No advisory lock any more. `pg_advisory_lock` is open to every login, so an analyst or the auditor could hold the
--    ETL's run lock or the vault-wide value lock and stall the ETL, forget, retention and retokenize, or keep a
--    killed run looking `running`. Instead:
--    - the vault-wide value lock is a table lock on vault.vault_values_lock, a table nobody holds a privilege on:
--      only the SECURITY DEFINER functions below take it (SHARE for an ETL batch, EXCLUSIVE for forget, retention
--      and retokenize), so only piivault_etl (shared) and piivault_compliance (exclusive) can;
--    - an ETL run is alive while the transaction its lock session keeps open is in progress: the run row records
--      that transaction's id (public.etl_runs.live_xid) when it is inserted, and pg_xact_status tells anyone whether
--      it still runs. Nothing to take, so nobody can keep a killed run alive. Run rows are updated only through
--      SECURITY DEFINER functions (the ETL role loses UPDATE), so no login can row-lock one either;
--    - a rewrap or retokenize run is bound to its session by the pid and a random nonce only that session knows (a
--      setting of the session, kept in a table nobody may read), not by an advisory lock;
--    - the per-subject locks of 0013 are gone: forget_user takes the vault-wide lock exclusively itself, which
--      already keeps every ETL batch and every other erasure out;
--    - `piivault migrate` serialises on a table lock of public.piivault_migrations (Migrations.swift).
-- 2. forget_user checks the subject against the rows: the ETL records each login's keyed user-id hash
--    (public.user_logins.subject_hash) at load time, and forget refuses a hash that another user's rows carry or that
--    differs from the one these rows carry. Rows loaded before this migration carry none (see SECURITY.md).
-- 3. forget blanks the user id in audit.access_grants in its transaction.
-- 4. An entry appended by a superuser or by a login outside piivault_compliance (the owner) says so in its outcome.

-- 1. The vault-wide value lock: a table that holds no rows and on which nobody holds a privilege.
CREATE TABLE vault.vault_values_lock ();
REVOKE ALL ON vault.vault_values_lock FROM PUBLIC;
COMMENT ON TABLE vault.vault_values_lock IS 'no rows: its table lock is the vault-wide value lock (SHARE: ETL batch; EXCLUSIVE: forget, retention, retokenize)';

-- Run liveness: the id of the transaction the run's lock session keeps open for the life of the run.
ALTER TABLE public.etl_runs ADD COLUMN IF NOT EXISTS live_xid xid8;
COMMENT ON COLUMN public.etl_runs.live_xid IS 'the transaction the run keeps open while it lives (pg_xact_status); a running row whose transaction ended belongs to a dead process';
-- Nobody but the owner updates run rows (so no login can lock one with SELECT ... FOR UPDATE and hold back the
-- next run's sweep or a run's end): the ETL ends its run and marks dead runs through the two functions below.
REVOKE UPDATE ON public.etl_runs FROM piivault_etl;

-- Rewrap and retokenize runs: the nonce of the session that started each.
ALTER TABLE audit.rewrap_runs ADD COLUMN IF NOT EXISTS session_nonce text;
ALTER TABLE audit.retokenize_runs ADD COLUMN IF NOT EXISTS session_nonce text;

-- 2. The keyed hash of each login's user id (TombstoneHasher), written by the ETL with the row.
ALTER TABLE public.user_logins
    ADD COLUMN IF NOT EXISTS subject_hash text CHECK (subject_hash ~ '^[0-9a-f]{64}$');
COMMENT ON COLUMN public.user_logins.subject_hash IS 'keyed hash of user_id (the subject forget logs and tombstones); NULL for rows loaded before migration 0017';
CREATE INDEX IF NOT EXISTS user_logins_subject_hash_idx ON public.user_logins (subject_hash);

-- The per-subject advisory lock of 0013 is replaced by the vault-wide lock forget_user now takes itself.
DROP FUNCTION IF EXISTS vault.lock_subjects(text[]);

-- The advisory-lock namespaces of 0015 and 0016 are no longer used by any function.
DROP FUNCTION IF EXISTS audit.rewrap_lock_namespace();
DROP FUNCTION IF EXISTS audit.retokenize_lock_namespace();

-- The functions this change adds or replaces (the lock functions, etl_run_is_live, abandon_dead_etl_runs,
-- finish_etl_run, forget_user, the retention, rewrap and retokenize steps, append_entry) live in
-- migrations/definitions/, applied after this file.
