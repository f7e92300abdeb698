-- `piivault retention`: the live definitions (docs/ARCHITECTURE.md, "Migrations and definitions").
--
-- Retention deletes, in batches of short transactions (the ETL keeps loading beside it):
--   1. the `user_logins` rows whose create_date is before the cutoff (the UTC date DAYS days ago), recording the
--      tokens they carried in vault.retention_pending in the same transaction;
--   2. the sealed values of those tokens that no remaining login references;
--   3. the data keys no remaining sealed value or quarantined body was sealed with (crypto-shredding), except the keys
--      of ETL runs still running.
-- A run is one `retention` entry, appended with a grant before anything is deleted (audit.append_and_grant) and
-- committed; every batch function checks that grant (vault.retention_cutoff) and takes its cutoff from it, so nothing
-- is deleted without a committed entry, and the cutoff deleted by is the one logged. A run killed midway leaves its
-- recorded tokens in vault.retention_pending: the next run deletes what is left of all three steps.

-- The cutoff of a run: logins dated before it are deleted. The UTC date `days` days ago, so that the session's time
-- zone does not move it.
CREATE OR REPLACE FUNCTION vault.retention_cutoff_for(days integer) RETURNS date
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF days IS NULL OR days < 1 THEN
        RAISE EXCEPTION 'older_than_days must be 1 or more' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN (now() AT TIME ZONE 'UTC')::date - days;
END
$$;
REVOKE ALL ON FUNCTION vault.retention_cutoff_for(integer)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

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
REVOKE ALL ON FUNCTION vault.data_key_of_live_run(timestamptz)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- What a run with this cutoff would delete now: logins, sealed values, data keys. Used by the dry run and by the
-- request (its entry records these counts).
CREATE OR REPLACE FUNCTION vault.retention_counts(cutoff date)
RETURNS TABLE (logins bigint, sealed_values bigint, data_keys bigint)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH old AS (
        SELECT l.masked_ip, l.masked_device_id FROM public.user_logins AS l WHERE l.create_date < cutoff
    ), candidates AS (
        SELECT o.masked_ip AS token FROM old AS o WHERE o.masked_ip IS NOT NULL
        UNION SELECT o.masked_device_id FROM old AS o WHERE o.masked_device_id IS NOT NULL
        UNION SELECT p.token FROM vault.retention_pending AS p
    ), gone AS (
        SELECT s.token FROM vault.secrets AS s JOIN candidates AS c ON c.token = s.token
         WHERE NOT EXISTS (SELECT 1 FROM public.user_logins AS l
                            WHERE hashtextextended(l.masked_ip, 0) = hashtextextended(s.token, 0)
                              AND l.masked_ip = s.token AND (l.create_date >= cutoff OR l.create_date IS NULL))
           AND NOT EXISTS (SELECT 1 FROM public.user_logins AS l
                            WHERE hashtextextended(l.masked_device_id, 0) = hashtextextended(s.token, 0)
                              AND l.masked_device_id = s.token AND (l.create_date >= cutoff OR l.create_date IS NULL))
    ), used AS (
        SELECT DISTINCT s.data_key_id FROM vault.secrets AS s WHERE NOT EXISTS (SELECT 1 FROM gone AS g WHERE g.token = s.token)
        UNION SELECT q.data_key_id FROM vault.quarantine AS q
    )
    SELECT (SELECT count(*) FROM old), (SELECT count(*) FROM gone),
           (SELECT count(*) FROM vault.data_keys AS k
             WHERE NOT EXISTS (SELECT 1 FROM used AS u WHERE u.data_key_id = k.id)
               AND NOT vault.data_key_of_live_run(k.created_at))
$$;
REVOKE ALL ON FUNCTION vault.retention_counts(date)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- Dry run: the cutoff and the counts, nothing logged, nothing changed.
CREATE OR REPLACE FUNCTION vault.preview_retention(older_than_days integer)
RETURNS TABLE (cutoff date, logins bigint, sealed_values bigint, data_keys bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    c date := vault.retention_cutoff_for(older_than_days);
BEGIN
    RETURN QUERY SELECT c, n.logins, n.sealed_values, n.data_keys FROM vault.retention_counts(c) AS n;
END
$$;
REVOKE ALL ON FUNCTION vault.preview_retention(integer)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.preview_retention(integer) TO piivault_compliance;

-- The request of a run: appends the `retention` entry (subject `create_date_before:<cutoff>`, the counts it will
-- delete as seen now) and records its grant (action retention, kind cutoff, the cutoff as `wanted`). Nothing is
-- deleted here; the caller commits, then runs the batches under this seq. A failed append raises: no grant, so no
-- batch can run.
CREATE OR REPLACE FUNCTION vault.request_retention(older_than_days integer, reason text, os_user text, client_host text)
RETURNS TABLE (log_seq bigint, cutoff date, logins bigint, sealed_values bigint, data_keys bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    c     date := vault.retention_cutoff_for(older_than_days);
    n     record;
    entry audit.access_log;
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'a reason is required for every access-log entry';
    END IF;
    -- Counted before the append: the log's append lock is held only for the append.
    SELECT * INTO n FROM vault.retention_counts(c);
    entry := audit.append_and_grant('retention', 'cutoff', c::text, '{}', reason, 'create_date_before:' || c::text,
        least(n.logins, 2147483647)::integer,
        format('ok: deleting %s logins dated before %s, then %s sealed values and %s data keys no longer used',
               n.logins, c, n.sealed_values, n.data_keys),
        os_user, client_host);
    RETURN QUERY SELECT entry.seq, c, n.logins, n.sealed_values, n.data_keys;
END
$$;
REVOKE ALL ON FUNCTION vault.request_retention(integer, text, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.request_retention(integer, text, text, text) TO piivault_compliance;

-- The cutoff of retention grant `grant_seq`; raises (42501) unless it is a retention grant of this login, committed
-- by an earlier transaction, not finished, and under a day old (a run of any size finishes well within that).
CREATE OR REPLACE FUNCTION vault.retention_cutoff(grant_seq bigint) RETURNS date
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    g        audit.access_grants;
    asked_at timestamptz;
BEGIN
    SELECT * INTO g FROM audit.access_grants AS a WHERE a.seq = grant_seq;
    IF g.seq IS NULL OR g.db_user <> session_user OR g.action <> 'retention' OR g.kind <> 'cutoff' THEN
        RAISE EXCEPTION 'no retention grant % for this login', grant_seq USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF g.created_xid = pg_current_xact_id_if_assigned() THEN
        RAISE EXCEPTION 'the access-log entry % must be committed before anything is deleted', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF g.claimed_at IS NOT NULL THEN
        RAISE EXCEPTION 'retention run % has finished; start a new one', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM audit.require_approved_grant(grant_seq, 'retention');
    SELECT l.at INTO asked_at FROM audit.access_log AS l WHERE l.seq = grant_seq;
    IF asked_at < clock_timestamp() - interval '1 day' THEN
        RAISE EXCEPTION 'retention grant % has expired; start a new run', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN g.wanted::date;
END
$$;
REVOKE ALL ON FUNCTION vault.retention_cutoff(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- Step 1, one batch: deletes up to batch_size logins dated before the grant's cutoff and records their tokens in
-- vault.retention_pending, in the caller's (short) transaction. Row locks on the deleted rows only: the ETL's inserts
-- do not wait. Rows another session holds locked (a retokenize batch rewriting their tokens, a forget) are skipped
-- while there are others; when only such rows are left, the batch waits for them (lock_timeout) instead of returning
-- 0 with old logins in place. Returns the number of logins deleted (0: step 1 is done).
CREATE OR REPLACE FUNCTION vault.retention_delete_logins(grant_seq bigint, batch_size integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    c date := vault.retention_cutoff(grant_seq);
    n integer;
    run bigint;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be 1 or more';
    END IF;
    FOR attempt IN 1..2 LOOP
        -- One run's rows a batch (0035): the run of a free old row, named as a constant so that the DELETE is planned
        -- on that run's partition alone, where a ctid names one row (ctids repeat from one partition to the next).
        SELECT o.etl_run_id INTO run FROM public.user_logins AS o WHERE o.create_date < c LIMIT 1 FOR UPDATE SKIP LOCKED;
        n := 0;
        IF run IS NOT NULL THEN
            EXECUTE format($delete$
                WITH gone AS (
                    DELETE FROM public.user_logins AS l
                     WHERE l.etl_run_id = %1$s
                       AND l.ctid = ANY (ARRAY(SELECT o.ctid FROM public.user_logins AS o
                                                WHERE o.etl_run_id = %1$s AND o.create_date < $1
                                                LIMIT $2 FOR UPDATE SKIP LOCKED))
                       AND l.create_date < $1
                    RETURNING l.masked_ip, l.masked_device_id
                ), recorded AS (
                    INSERT INTO vault.retention_pending (token)
                    SELECT DISTINCT t.token FROM gone AS g, LATERAL (VALUES (g.masked_ip), (g.masked_device_id)) AS t(token)
                     WHERE t.token IS NOT NULL
                    ON CONFLICT DO NOTHING
                )
                SELECT count(*)::integer FROM gone
                $delete$, run) INTO n USING c, batch_size;
        END IF;
        EXIT WHEN n > 0 OR attempt = 2
               OR NOT EXISTS (SELECT 1 FROM public.user_logins AS o WHERE o.create_date < c);
        -- Only locked rows are left: wait for one of their sessions (one row, so that this wait never holds a row
        -- another session waits for), then take what is free (rows this transaction locked are not skipped; rows
        -- the other session deleted are gone).
        PERFORM 1 FROM public.user_logins AS o WHERE o.create_date < c LIMIT 1 FOR UPDATE;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION vault.retention_delete_logins(bigint, integer)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.retention_delete_logins(bigint, integer) TO piivault_compliance;

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
    PERFORM vault.require_read_committed();
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
           AND NOT EXISTS (SELECT 1 FROM public.user_logins AS l
                            WHERE hashtextextended(l.masked_ip, 0) = hashtextextended(s.token, 0) AND l.masked_ip = s.token)
           AND NOT EXISTS (SELECT 1 FROM public.user_logins AS l
                            WHERE hashtextextended(l.masked_device_id, 0) = hashtextextended(s.token, 0)
                              AND l.masked_device_id = s.token)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM batch)::integer, (SELECT count(*) FROM gone)::integer INTO taken, deleted;
    RETURN QUERY SELECT taken, deleted;
END
$$;
REVOKE ALL ON FUNCTION vault.retention_delete_values(bigint, integer)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
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
    PERFORM vault.require_read_committed();
    LOCK TABLE vault.vault_values_lock IN EXCLUSIVE MODE;
    DELETE FROM vault.data_keys AS k
     WHERE NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.data_key_id = k.id)
       AND NOT EXISTS (SELECT 1 FROM vault.quarantine AS q WHERE q.data_key_id = k.id)
       AND NOT vault.data_key_of_live_run(k.created_at);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION vault.retention_delete_data_keys(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.retention_delete_data_keys(bigint) TO piivault_compliance;

-- The end of a run: its grant can no longer be used.
CREATE OR REPLACE FUNCTION vault.finish_retention(grant_seq bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
BEGIN
    PERFORM vault.retention_cutoff(grant_seq);
    UPDATE audit.access_grants AS a SET claimed_at = clock_timestamp() WHERE a.seq = grant_seq;
END
$$;
REVOKE ALL ON FUNCTION vault.finish_retention(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.finish_retention(bigint) TO piivault_compliance;
