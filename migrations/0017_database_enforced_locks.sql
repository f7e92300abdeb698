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

-- ---------------------------------------------------------------------------------------------------------------
-- Functions. Each block below is a function's complete live definition.
-- ---------------------------------------------------------------------------------------------------------------

-- vault.lock_vault_values_shared: an ETL batch's share of the vault-wide value lock, until its transaction ends.
-- Many batches hold it at once; forget, retention and retokenize (EXCLUSIVE) wait for them, and they for those.
CREATE OR REPLACE FUNCTION vault.lock_vault_values_shared() RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE vault.vault_values_lock IN SHARE MODE;
END
$$;
REVOKE ALL ON FUNCTION vault.lock_vault_values_shared() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.lock_vault_values_shared() TO piivault_etl;

-- vault.lock_vault_values_exclusive: the vault-wide value lock for an erasure (forget takes it before its function,
-- so that its wait is bounded by the caller's lock_timeout), until the transaction ends.
CREATE OR REPLACE FUNCTION vault.lock_vault_values_exclusive() RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE vault.vault_values_lock IN EXCLUSIVE MODE;
END
$$;
REVOKE ALL ON FUNCTION vault.lock_vault_values_exclusive() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.lock_vault_values_exclusive() TO piivault_compliance;

-- vault.vault_lock_holders: the sessions other than this one holding the vault-wide value lock, for the message of a
-- lock timeout ("busy, held by pid N"). pg_locks shows table locks to every login; this only names the table.
CREATE OR REPLACE FUNCTION vault.vault_lock_holders()
RETURNS TABLE (pid integer, application_name text, login text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT l.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, '?')
      FROM pg_catalog.pg_locks AS l
      LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database AS d WHERE d.datname = current_database())
       AND l.relation = (SELECT c.oid FROM pg_catalog.pg_class AS c
                          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                         WHERE n.nspname = 'vault' AND c.relname = 'vault_values_lock')
     ORDER BY 1
$$;
REVOKE ALL ON FUNCTION vault.vault_lock_holders() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.vault_lock_holders() TO piivault_compliance;

-- public.etl_run_is_live: whether the run whose row recorded live_xid still runs: its lock session's transaction is
-- in progress. A transaction id not yet assigned when this statement began (one only a forged row could name) and one
-- too old for the commit log to know count as ended.
CREATE OR REPLACE FUNCTION public.etl_run_is_live(live_xid xid8) RETURNS boolean
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN live_xid IS NULL OR live_xid >= pg_snapshot_xmax(pg_current_snapshot()) THEN false
                ELSE coalesce(pg_xact_status(live_xid) = 'in progress', false) END
$$;
REVOKE ALL ON FUNCTION public.etl_run_is_live(xid8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.etl_run_is_live(xid8) TO piivault_etl, piivault_auditor, piivault_compliance;

-- public.abandon_dead_etl_runs: marks every run left `running` whose lock session's transaction has ended (its
-- process died, or its connection was lost) as `abandoned`. The next run calls it at its start. Returns how many.
CREATE OR REPLACE FUNCTION public.abandon_dead_etl_runs() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE public.etl_runs AS r
       SET outcome = 'abandoned', finished_at = now(),
           error = 'the process ended without recording its end (killed, or its database connection was lost)'
     WHERE r.outcome = 'running' AND NOT public.etl_run_is_live(r.live_xid);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION public.abandon_dead_etl_runs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.abandon_dead_etl_runs() TO piivault_etl;

-- public.finish_etl_run: records the end of run `run_id` (its counts, outcome and error). A live run only in its lock
-- session, inside the transaction the row names (live_xid), which the caller commits right after: so no other login
-- can end a live run, and the row stops being `running` in the same commit that ends its liveness. A run whose
-- transaction has ended (its lock session was lost, as when the database restarts) may be ended from any ETL
-- session, as the next run's sweep would mark it. Returns false when nothing changed.
CREATE OR REPLACE FUNCTION public.finish_etl_run(
    run_id bigint, received bigint, loaded bigint, duplicates bigint, quarantined bigint, values_sealed bigint,
    delete_failures bigint, suppressed bigint, outcome text, error text
) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    n integer;
BEGIN
    IF outcome IS NULL OR outcome NOT IN ('completed', 'interrupted', 'failed') THEN
        RAISE EXCEPTION 'outcome must be completed, interrupted or failed' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE public.etl_runs AS r
       SET finished_at = now(), received = finish_etl_run.received, loaded = finish_etl_run.loaded,
           duplicates = finish_etl_run.duplicates, quarantined = finish_etl_run.quarantined,
           values_sealed = finish_etl_run.values_sealed, delete_failures = finish_etl_run.delete_failures,
           suppressed = finish_etl_run.suppressed, outcome = finish_etl_run.outcome, error = finish_etl_run.error
     WHERE r.id = run_id AND r.outcome = 'running'
       AND (r.live_xid = pg_current_xact_id() OR NOT public.etl_run_is_live(r.live_xid));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n = 1;
END
$$;
REVOKE ALL ON FUNCTION public.finish_etl_run(bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.finish_etl_run(bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, text, text)
    TO piivault_etl;

-- vault.data_key_of_live_run (replaces 0014's): whether data key `key_created` may belong to an ETL run that is
-- still loading: a run marked running whose lock session's transaction is in progress and that started before the
-- key was made. The ETL stores a data key after its run row commits, so a key of a live run always satisfies this;
-- such a key may still be empty because its first batch has not committed yet, and must not be destroyed.
CREATE OR REPLACE FUNCTION vault.data_key_of_live_run(key_created timestamptz) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT 1 FROM public.etl_runs AS r
         WHERE r.outcome = 'running' AND r.started_at <= key_created AND public.etl_run_is_live(r.live_xid))
$$;
REVOKE ALL ON FUNCTION vault.data_key_of_live_run(timestamptz) FROM PUBLIC;

-- vault.forget_user (replaces 0013's): erases the logins of user_id and every sealed value no remaining login
-- references, keeps the tombstone, blanks the user id in the grants of earlier accesses, and appends the `forget`
-- entry, all in the caller's transaction: if the append fails, nothing is deleted. With dry_run it only counts (no
-- lock, no entry, no change). Values another user's logins still reference stay.
-- The subject is checked against the rows (refused, 22023, before anything is counted or logged): no row of user_id
-- may carry another keyed hash than subject_hash, and no row of another user may carry subject_hash. The database
-- cannot compute the keyed hash; it can only hold the client to the hash the ETL recorded with the rows.
-- Takes the vault-wide value lock exclusively: no ETL batch is between its look-up of the vault and its commit, and
-- no other erasure runs beside this one.
CREATE OR REPLACE FUNCTION vault.forget_user(
    subject_hash text, user_id text, reason text, os_user text, client_host text, dry_run boolean
) RETURNS TABLE (log_seq bigint, rows_deleted integer, values_deleted integer, values_kept integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    n_rows   integer;
    n_gone   integer;
    n_kept   integer;
    tokens   text[];
    entry    audit.access_log;
BEGIN
    IF subject_hash IS NULL OR subject_hash !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'subject_hash must be 64 lowercase hex digits (the keyed hash of the user id)';
    END IF;
    IF user_id IS NULL OR user_id = '' THEN
        RAISE EXCEPTION 'user_id is required';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'a reason is required for every access-log entry';
    END IF;
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must be true or false';
    END IF;
    IF NOT dry_run THEN
        LOCK TABLE vault.vault_values_lock IN EXCLUSIVE MODE;
    END IF;

    IF EXISTS (SELECT 1 FROM public.user_logins AS l WHERE l.user_id = user_id AND l.subject_hash <> subject_hash)
       OR EXISTS (SELECT 1 FROM public.user_logins AS l
                   WHERE l.subject_hash = subject_hash AND l.user_id IS DISTINCT FROM user_id) THEN
        RAISE EXCEPTION 'the subject hash does not name the user of these rows; nothing was deleted or logged'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'compute it from the user id with the token key (piivault forget --user-id does)';
    END IF;

    SELECT count(*)::integer INTO n_rows FROM public.user_logins AS l WHERE l.user_id = user_id;
    SELECT coalesce(array_agg(DISTINCT t), '{}') INTO tokens
      FROM public.user_logins AS l, LATERAL (VALUES (l.masked_ip), (l.masked_device_id)) AS v(t)
     WHERE l.user_id = user_id AND t IS NOT NULL;
    -- Kept: sealed values of this user that another user's logins also reference.
    SELECT count(*)::integer INTO n_kept
      FROM vault.secrets AS s
     WHERE s.token = ANY (tokens)
       AND EXISTS (SELECT 1 FROM public.user_logins AS o
                    WHERE (o.masked_ip = s.token OR o.masked_device_id = s.token)
                      AND o.user_id IS DISTINCT FROM user_id);
    SELECT count(*)::integer - n_kept INTO n_gone FROM vault.secrets AS s WHERE s.token = ANY (tokens);

    IF dry_run THEN
        RETURN QUERY SELECT NULL::bigint, n_rows, n_gone, n_kept;
        RETURN;
    END IF;

    -- The entry first: a failed append raises and nothing below runs (and the whole transaction rolls back).
    entry := audit.append_entry('forget', reason, 'user_hash:' || subject_hash, n_rows,
        format('ok: %s rows deleted, %s values deleted, %s values kept (shared with other users)',
               n_rows, n_gone, n_kept),
        os_user, client_host);
    DELETE FROM public.user_logins AS l WHERE l.user_id = user_id;
    DELETE FROM vault.secrets AS s
     WHERE s.token = ANY (tokens)
       AND NOT EXISTS (SELECT 1 FROM public.user_logins AS o WHERE o.masked_ip = s.token OR o.masked_device_id = s.token);
    INSERT INTO vault.tombstones (subject_hash) VALUES (subject_hash) ON CONFLICT DO NOTHING;
    -- Earlier accesses by user id (unmask --user-id) recorded the id in their grants: the access log keeps it (it is
    -- append-only), the grants do not. A grant not released yet cannot be any more.
    UPDATE audit.access_grants AS g SET wanted = '', claimed_at = coalesce(g.claimed_at, clock_timestamp())
     WHERE g.wanted = user_id;
    RETURN QUERY SELECT entry.seq, n_rows, n_gone, n_kept;
END
$$;
REVOKE ALL ON FUNCTION vault.forget_user(text, text, text, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.forget_user(text, text, text, text, text, boolean) TO piivault_compliance;

-- vault.retention_delete_values (replaces 0014's): step 2 of a retention run, one batch: takes up to batch_size
-- recorded tokens and deletes their sealed values that no login references any more. Under the vault-wide value lock,
-- exclusively (every ETL batch insert takes it shared): no ETL batch is between its look-up of the vault and its
-- commit, so every login a batch inserted is visible here and keeps its value; a batch that looked a value up before
-- this deleted it finds it missing under its own lock and fails closed (its messages stay queued; the next run seals
-- the value again). Returns the tokens taken (0: step 2 is done) and the values deleted.
CREATE OR REPLACE FUNCTION vault.retention_delete_values(grant_seq bigint, batch_size integer)
RETURNS TABLE (tokens_taken integer, values_deleted integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    taken   integer;
    deleted integer;
BEGIN
    PERFORM vault.retention_cutoff(grant_seq);
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be 1 or more';
    END IF;
    LOCK TABLE vault.vault_values_lock IN EXCLUSIVE MODE;
    -- A new statement, so a new snapshot: it sees every batch that committed before the lock was granted.
    WITH batch AS (
        DELETE FROM vault.retention_pending AS p
         WHERE p.token IN (SELECT q.token FROM vault.retention_pending AS q ORDER BY q.token
                            LIMIT batch_size FOR UPDATE SKIP LOCKED)
        RETURNING p.token
    ), gone AS (
        DELETE FROM vault.secrets AS s USING batch AS b
         WHERE s.token = b.token
           AND NOT EXISTS (SELECT 1 FROM public.user_logins AS l WHERE l.masked_ip = s.token)
           AND NOT EXISTS (SELECT 1 FROM public.user_logins AS l WHERE l.masked_device_id = s.token)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM batch)::integer, (SELECT count(*) FROM gone)::integer INTO taken, deleted;
    RETURN QUERY SELECT taken, deleted;
END
$$;
REVOKE ALL ON FUNCTION vault.retention_delete_values(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.retention_delete_values(bigint, integer) TO piivault_compliance;

-- vault.retention_delete_data_keys (replaces 0014's): step 3 of a retention run: deletes every data key no sealed
-- value and no quarantined body uses, except the keys of live ETL runs. Under the vault-wide value lock
-- (exclusively), so no batch that seals with a key is in flight. Returns the number deleted.
CREATE OR REPLACE FUNCTION vault.retention_delete_data_keys(grant_seq bigint) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    n integer;
BEGIN
    PERFORM vault.retention_cutoff(grant_seq);
    LOCK TABLE vault.vault_values_lock IN EXCLUSIVE MODE;
    DELETE FROM vault.data_keys AS k
     WHERE NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.data_key_id = k.id)
       AND NOT EXISTS (SELECT 1 FROM vault.quarantine AS q WHERE q.data_key_id = k.id)
       AND NOT vault.data_key_of_live_run(k.created_at);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION vault.retention_delete_data_keys(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.retention_delete_data_keys(bigint) TO piivault_compliance;

-- vault.start_rewrap (replaces 0015's): step 2 of a rewrap: claims the grant and binds the run to this session, by
-- its pid and a random nonce kept in a setting of this session (piivault.rewrap_session) and in audit.rewrap_runs,
-- which nobody may read. Another session, even of the same login and later with the same pid, does not know it.
CREATE OR REPLACE FUNCTION vault.start_rewrap(grant_seq bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r     audit.rewrap_runs;
    nonce text := gen_random_uuid()::text;
BEGIN
    SELECT * INTO r FROM audit.rewrap_runs AS w WHERE w.seq = grant_seq;
    IF r.seq IS NULL THEN
        RAISE EXCEPTION 'no rewrap grant %', grant_seq USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM audit.claim_grant(grant_seq, 'rewrap', CASE WHEN r.full_rewrap THEN 'full' ELSE 'keys' END);
    PERFORM set_config('piivault.rewrap_session', nonce, false);
    UPDATE audit.rewrap_runs AS w
       SET backend_pid = pg_backend_pid(), started_at = clock_timestamp(), session_nonce = nonce
     WHERE w.seq = grant_seq;
END
$$;
REVOKE ALL ON FUNCTION vault.start_rewrap(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.start_rewrap(bigint) TO piivault_compliance;

-- audit.rewrap_run (replaces 0015's): the run `grant_seq`, if this login started it in this session (its pid and
-- the session's nonce); else 42501.
CREATE OR REPLACE FUNCTION audit.rewrap_run(grant_seq bigint, need_full boolean) RETURNS audit.rewrap_runs
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r audit.rewrap_runs;
BEGIN
    SELECT * INTO r FROM audit.rewrap_runs AS w WHERE w.seq = grant_seq;
    IF r.seq IS NULL OR r.db_user <> session_user OR r.backend_pid IS DISTINCT FROM pg_backend_pid()
       OR r.session_nonce IS NULL
       OR r.session_nonce IS DISTINCT FROM current_setting('piivault.rewrap_session', true)
    THEN
        RAISE EXCEPTION 'rewrap grant % was not started by this login in this session; run rewrap again', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF need_full AND NOT r.full_rewrap THEN
        RAISE EXCEPTION 'rewrap grant % is not a full rewrap', grant_seq USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN r;
END
$$;
REVOKE ALL ON FUNCTION audit.rewrap_run(bigint, boolean) FROM PUBLIC;

-- vault.drop_rewrapped_data_keys (replaces 0015's): full run: deletes the run's old data keys that no value
-- references any more. Kept (and counted) while an ETL run that seals to the old key is running: it may still hold
-- one of them in memory and seal values under it.
CREATE OR REPLACE FUNCTION vault.drop_rewrapped_data_keys(grant_seq bigint)
RETURNS TABLE (deleted integer, in_use integer, etl_running boolean)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r       audit.rewrap_runs;
    n_gone  integer := 0;
    n_left  integer;
    running boolean;
BEGIN
    r := audit.rewrap_run(grant_seq, true);
    SELECT EXISTS (
        SELECT 1 FROM public.etl_runs AS e
         WHERE e.outcome = 'running' AND e.vault_key_id = r.old_key_id AND public.etl_run_is_live(e.live_xid))
      INTO running;
    IF NOT running THEN
        DELETE FROM vault.data_keys AS k
         WHERE k.key_id = r.old_key_id AND k.id <= r.last_data_key_id
           AND NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.data_key_id = k.id)
           AND NOT EXISTS (SELECT 1 FROM vault.quarantine AS q WHERE q.data_key_id = k.id);
        GET DIAGNOSTICS n_gone = ROW_COUNT;
    END IF;
    SELECT count(*)::integer INTO n_left FROM vault.data_keys AS k
     WHERE k.key_id = r.old_key_id AND k.id <= r.last_data_key_id;
    RETURN QUERY SELECT n_gone, n_left, running;
END
$$;
REVOKE ALL ON FUNCTION vault.drop_rewrapped_data_keys(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.drop_rewrapped_data_keys(bigint) TO piivault_compliance;

-- vault.start_retokenize (replaces 0016's): step 2 of a retokenize run: claims the grant and binds the run to this
-- session, by its pid and a random nonce kept in a setting of this session (piivault.retokenize_session) and in
-- audit.retokenize_runs, which nobody may read.
CREATE OR REPLACE FUNCTION vault.start_retokenize(grant_seq bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    nonce text := gen_random_uuid()::text;
BEGIN
    PERFORM audit.claim_grant(grant_seq, 'retokenize', 'versions');
    PERFORM set_config('piivault.retokenize_session', nonce, false);
    INSERT INTO audit.retokenize_runs (seq, backend_pid, session_nonce) VALUES (grant_seq, pg_backend_pid(), nonce);
END
$$;
REVOKE ALL ON FUNCTION vault.start_retokenize(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.start_retokenize(bigint) TO piivault_compliance;

-- vault.retokenize_grant (replaces 0016's): the grant of run `grant_seq`, if this login started it in this session
-- (its pid and the session's nonce) and the run has not finished; else 42501. Callable by the batch functions only.
CREATE OR REPLACE FUNCTION vault.retokenize_grant(grant_seq bigint) RETURNS audit.access_grants
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    g audit.access_grants;
    r audit.retokenize_runs;
BEGIN
    SELECT * INTO g FROM audit.access_grants AS a WHERE a.seq = grant_seq;
    SELECT * INTO r FROM audit.retokenize_runs AS w WHERE w.seq = grant_seq;
    IF g.seq IS NULL OR r.seq IS NULL OR g.db_user <> session_user OR g.action <> 'retokenize'
       OR g.kind <> 'versions' OR r.backend_pid <> pg_backend_pid() OR r.session_nonce IS NULL
       OR r.session_nonce IS DISTINCT FROM current_setting('piivault.retokenize_session', true)
    THEN
        RAISE EXCEPTION 'retokenize grant % was not started by this login in this session; run retokenize again', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF r.finished_at IS NOT NULL THEN
        RAISE EXCEPTION 'retokenize run % has finished; run retokenize again', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN g;
END
$$;
REVOKE ALL ON FUNCTION vault.retokenize_grant(bigint) FROM PUBLIC;

-- vault.apply_retokenize_batch (replaces 0016's): step 2 of a retokenize run, per batch: applies (old token, new
-- token, new sealed value) mappings under data key `data_key_id`, in the caller's transaction. Under the vault-wide
-- value lock, exclusively (as forget takes it): no ETL batch is between its look-up of the vault and its commit, so
-- no uncommitted login can reference an old value deleted here. A mapping whose old value is gone (erased by forget,
-- moved by another run) is skipped. A new value the vault already holds (the ETL sealed it under the new version) is
-- kept, and the logins join it. Old values are deleted once no login references them.
CREATE OR REPLACE FUNCTION vault.apply_retokenize_batch(
    grant_seq bigint, old_tokens text[], new_tokens text[], new_sealed bytea[], data_key_id bigint
) RETURNS TABLE (values_moved integer, values_joined integer, values_skipped integer, logins_updated integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '60s'
AS $$
#variable_conflict use_variable
DECLARE
    g         audit.access_grants;
    t         integer;
    lo        text[];
    ln        text[];
    ls        bytea[];
    lf        text[];
    n_in      integer;
    n_live    integer;
    n_ins     integer;
    map       jsonb;
    n_rows    integer;
    n_del     integer;
BEGIN
    g := vault.retokenize_grant(grant_seq);
    t := g.wanted::integer;
    n_in := coalesce(cardinality(old_tokens), 0);
    IF n_in = 0 OR n_in <> coalesce(cardinality(new_tokens), 0) OR n_in <> coalesce(cardinality(new_sealed), 0) THEN
        RAISE EXCEPTION 'old_tokens, new_tokens and new_sealed must be non-empty and of one length';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(old_tokens, new_tokens, new_sealed) AS m(o, n, s)
                WHERE NOT audit.is_token(m.o) OR NOT audit.is_token(m.n) OR m.s IS NULL
                   OR vault.token_version(m.o) >= t OR vault.token_version(m.n) <> t
                   OR split_part(m.o, '.', 1) <> split_part(m.n, '.', 1)) THEN
        RAISE EXCEPTION 'each mapping must take a token of an older version to a token of v% of the same field', t;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM vault.data_keys AS k WHERE k.id = data_key_id AND k.key_id = g.keys[2]) THEN
        RAISE EXCEPTION 'data key % is not sealed to the run''s vault key %', data_key_id, g.keys[2];
    END IF;

    LOCK TABLE vault.vault_values_lock IN EXCLUSIVE MODE;
    PERFORM 1 FROM vault.secrets AS s WHERE s.token = ANY (old_tokens) ORDER BY s.token FOR UPDATE;
    SELECT coalesce(array_agg(m.o ORDER BY m.o), '{}'), coalesce(array_agg(m.n ORDER BY m.o), '{}'),
           coalesce(array_agg(m.s ORDER BY m.o), '{}'), coalesce(array_agg(s.field ORDER BY m.o), '{}')
      INTO lo, ln, ls, lf
      FROM unnest(old_tokens, new_tokens, new_sealed) AS m(o, n, s)
      JOIN vault.secrets AS s ON s.token = m.o;
    n_live := cardinality(lo);
    IF n_live = 0 THEN
        RETURN QUERY SELECT 0, 0, n_in, 0;
        RETURN;
    END IF;

    INSERT INTO vault.secrets (token, field, data_key_id, sealed)
    SELECT m.n, m.f, data_key_id, m.s FROM unnest(ln, lf, ls) AS m(n, f, s)
    ON CONFLICT (token) DO NOTHING;
    GET DIAGNOSTICS n_ins = ROW_COUNT;

    -- One UPDATE for both columns (each row version written once, not twice), the new tokens looked up in a jsonb
    -- object (old token -> new token).
    SELECT jsonb_object_agg(m.o, m.n) INTO map FROM unnest(lo, ln) AS m(o, n);
    UPDATE public.user_logins AS l
       SET masked_ip = coalesce(map ->> l.masked_ip, l.masked_ip),
           masked_device_id = coalesce(map ->> l.masked_device_id, l.masked_device_id)
     WHERE l.masked_ip = ANY (lo) OR l.masked_device_id = ANY (lo);
    GET DIAGNOSTICS n_rows = ROW_COUNT;

    DELETE FROM vault.secrets AS s
     WHERE s.token = ANY (lo)
       AND NOT EXISTS (SELECT 1 FROM public.user_logins AS o WHERE o.masked_ip = s.token OR o.masked_device_id = s.token);
    GET DIAGNOSTICS n_del = ROW_COUNT;
    IF n_del <> n_live THEN
        -- Every login was rewritten above under the lock; a reference left means something this function does not
        -- know about. Fail the batch rather than leave two tokens for one value.
        RAISE EXCEPTION 'retokenize: % old values are still referenced after their logins were rewritten', n_live - n_del;
    END IF;
    RETURN QUERY SELECT n_ins, n_live - n_ins, n_in - n_live, n_rows;
END
$$;
REVOKE ALL ON FUNCTION vault.apply_retokenize_batch(bigint, text[], text[], bytea[], bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.apply_retokenize_batch(bigint, text[], text[], bytea[], bigint) TO piivault_compliance;

-- The advisory-lock namespaces of 0015 and 0016 are no longer used by any function.
DROP FUNCTION IF EXISTS audit.rewrap_lock_namespace();
DROP FUNCTION IF EXISTS audit.retokenize_lock_namespace();

-- audit.append_entry (replaces 0007's): appends one entry and returns it. The only writer of audit.access_log; not
-- callable by any piivault role directly, so a caller can never choose the sequence number, time, database user or
-- hash. An access the database cannot refuse (by a superuser, or by a login that is not a member of
-- piivault_compliance, such as the owner of these functions) is marked in its outcome, which the hash covers:
-- ' [outside piivault_compliance: superuser]' or ' [outside piivault_compliance: not a member]'. Refusals are not
-- marked (they give nothing), nor a direct call of this function (not an access: only the owner and superusers can
-- make one, and they can write the table directly anyway). The entry's bytes and hash are computed as before, so
-- old entries verify unchanged.
CREATE OR REPLACE FUNCTION audit.append_entry(
    action text, reason text, subject text, row_count integer, outcome text, os_user text, client_host text
) RETURNS audit.access_log
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    head_seq  bigint;
    head_hash bytea;
    entry     audit.access_log;
    superuser boolean;
    stack     text;
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'a reason is required for every access-log entry'
            USING HINT = 'give the reason for this access (case number, request id)';
    END IF;
    IF action IS NULL OR btrim(action) = '' THEN
        RAISE EXCEPTION 'an action is required for every access-log entry';
    END IF;
    IF outcome IS NULL OR btrim(outcome) = '' THEN
        RAISE EXCEPTION 'an outcome is required for every access-log entry';
    END IF;
    IF row_count IS NULL OR row_count < 0 THEN
        RAISE EXCEPTION 'row_count must be zero or more';
    END IF;

    -- An access goes through a vault (or audit) function; only the owner and superusers may call this one directly,
    -- and they can write the table directly too, so a direct call is not marked.
    GET DIAGNOSTICS stack = PG_CONTEXT;
    IF outcome NOT LIKE 'refused%' AND split_part(stack, E'\n', 2) ~ '^PL/pgSQL function (vault|audit)\.' THEN
        SELECT r.rolsuper INTO superuser FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user;
        IF coalesce(superuser, false) THEN
            outcome := outcome || ' [outside piivault_compliance: superuser]';
        ELSIF NOT pg_catalog.pg_has_role(session_user, 'piivault_compliance', 'MEMBER') THEN
            outcome := outcome || ' [outside piivault_compliance: not a member]';
        END IF;
    END IF;

    -- EXCLUSIVE conflicts with itself and with INSERT's ROW EXCLUSIVE but not with readers: appends run one at a
    -- time until this transaction ends, so every append sees the previous head and the chain never forks. The
    -- primary key on seq is the second line of defence (a stale snapshot fails instead of forking).
    LOCK TABLE audit.access_log IN EXCLUSIVE MODE;

    SELECT l.seq, l.hash INTO head_seq, head_hash FROM audit.access_log AS l ORDER BY l.seq DESC LIMIT 1;
    IF head_seq IS NULL THEN
        head_seq := 0;
        head_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    END IF;

    entry.seq := head_seq + 1;
    -- clock_timestamp(), not now(): taken after the lock, so times follow the sequence. timestamptz keeps
    -- microseconds, exactly what the serialisation prints, so re-serialising a stored entry gives the same bytes.
    entry.at := date_trunc('microseconds', clock_timestamp());
    entry.db_user := session_user;  -- the login, not the definer
    entry.os_user := coalesce(os_user, '');
    entry.client_host := coalesce(client_host, '');
    entry.action := action;
    entry.reason := reason;
    entry.subject := coalesce(subject, '');
    entry.row_count := row_count;
    entry.outcome := outcome;
    entry.prev_hash := head_hash;
    entry.hash := sha256(head_hash || audit.entry_bytes(
        entry.seq, entry.at, entry.db_user, entry.os_user, entry.client_host, entry.action, entry.reason,
        entry.subject, entry.row_count, entry.outcome));

    INSERT INTO audit.access_log (seq, at, db_user, os_user, client_host, action, reason, subject, row_count,
                                  outcome, prev_hash, hash)
    VALUES (entry.seq, entry.at, entry.db_user, entry.os_user, entry.client_host, entry.action, entry.reason,
            entry.subject, entry.row_count, entry.outcome, entry.prev_hash, entry.hash);
    RETURN entry;
END
$$;
REVOKE ALL ON FUNCTION audit.append_entry(text, text, text, integer, text, text, text) FROM PUBLIC;
