-- `piivault rewrap`: re-seal the data keys sealed to an old vault key to a new one, through the gate of 10_audit.sql;
-- with `full`, also re-encrypt every value under fresh data keys sealed to the new key and delete the old data keys.
-- The live definitions (docs/ARCHITECTURE.md, "Migrations and definitions").
--
-- A run is long (thousands of batches, each its own transaction), so its grant cannot be claimed once per batch:
--   1. vault.request_rewrap appends the `rewrap` entry (both key ids, the count) and records the grant and the run
--      (audit.rewrap_runs) in one transaction, which the caller commits. No sealed byte is returned.
--   2. vault.start_rewrap claims the grant (audit.claim_grant: committed earlier, same login, once, within five
--      minutes) and binds the run to the calling session: it records the backend pid and a random nonce that only
--      that session knows (a session setting), so it lasts until the connection ends.
--   3. The batch functions (release_rewrap_*, replace_rewrap_*, add_rewrap_data_key, drop_rewrapped_data_keys) pass
--      only for that login, in that session (same pid and nonce: audit.rewrap_run). A killed run leaves its
--      grant useless; the rerun asks again (a new entry) and finishes what is left.
-- Every write is guarded by what it replaces (a data key still sealed to the old key id with the same sealed bytes; a
-- value still under the old data key), so a concurrent or stale write is never clobbered.

-- Step 1. Counts the data keys sealed to old_key_id (and, for a full run, their values), those sealed to other
-- keys than old and new (left alone), appends the entry and records the grant. With dry_run: counts only, no entry.
CREATE OR REPLACE FUNCTION vault.request_rewrap(
    old_key_id text, new_key_id text, full_rewrap boolean, reason text, os_user text, client_host text,
    dry_run boolean
) RETURNS TABLE (
    log_seq bigint, outcome text, row_count integer, other_key_id text,
    data_keys integer, sealed_values bigint, quarantined_values bigint, other_data_keys integer, other_key_ids text
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    n_keys   integer;
    last_id  bigint;
    n_values bigint := 0;
    n_bodies bigint := 0;
    n_other  integer;
    others   text;
    subject  text;
    result   text;
    entry    audit.access_log;
BEGIN
    PERFORM audit.require_key_id(old_key_id);
    PERFORM audit.require_key_id(new_key_id);
    IF old_key_id = new_key_id THEN
        RAISE EXCEPTION 'the new vault key is the old one (key id %); rewrap needs another key', old_key_id;
    END IF;
    IF full_rewrap IS NULL OR dry_run IS NULL THEN
        RAISE EXCEPTION 'full_rewrap and dry_run must be true or false';
    END IF;
    SELECT count(*)::integer, coalesce(max(k.id), 0) INTO n_keys, last_id
      FROM vault.data_keys AS k WHERE k.key_id = old_key_id;
    SELECT count(*)::integer, string_agg(DISTINCT k.key_id, ',' ORDER BY k.key_id) INTO n_other, others
      FROM vault.data_keys AS k WHERE k.key_id NOT IN (old_key_id, new_key_id);
    IF full_rewrap THEN
        SELECT count(*) INTO n_values FROM vault.secrets AS s
         WHERE s.data_key_id IN (SELECT k.id FROM vault.data_keys AS k WHERE k.key_id = old_key_id);
        SELECT count(*) INTO n_bodies FROM vault.quarantine AS q
         WHERE q.data_key_id IN (SELECT k.id FROM vault.data_keys AS k WHERE k.key_id = old_key_id);
    END IF;
    IF dry_run THEN
        RETURN QUERY SELECT NULL::bigint, 'dry run'::text, n_keys, NULL::text, n_keys, n_values, n_bodies, n_other,
                            others;
        RETURN;
    END IF;
    subject := format('vault_key:%s->%s data_keys:%s', old_key_id, new_key_id, n_keys)
               || CASE WHEN full_rewrap THEN format(' values:%s full', n_values + n_bodies) ELSE '' END;
    result := CASE WHEN n_keys = 0 THEN format('not found: no data keys sealed to %s', old_key_id) ELSE 'ok' END
              || CASE WHEN n_other > 0 THEN format(' (%s data keys sealed to other keys left alone: %s)', n_other, others)
                      ELSE '' END;
    entry := audit.append_and_grant('rewrap', CASE WHEN full_rewrap THEN 'full' ELSE 'keys' END,
        old_key_id || '->' || new_key_id, ARRAY[old_key_id, new_key_id, last_id::text], reason, subject, n_keys,
        result, os_user, client_host);
    INSERT INTO audit.rewrap_runs (seq, db_user, old_key_id, new_key_id, full_rewrap, last_data_key_id)
    VALUES (entry.seq, session_user, old_key_id, new_key_id, full_rewrap, last_id);
    RETURN QUERY SELECT entry.seq, entry.outcome, n_keys, NULL::text, n_keys, n_values, n_bodies, n_other, others;
END
$$;
REVOKE ALL ON FUNCTION vault.request_rewrap(text, text, boolean, text, text, text, boolean)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.request_rewrap(text, text, boolean, text, text, text, boolean) TO piivault_compliance;

-- vault.start_rewrap (replaces 0015's): step 2 of a rewrap: claims the grant and binds the run to this session, by
-- its pid and a random nonce kept in a setting of this session (piivault.rewrap_session) and in audit.rewrap_runs,
-- which nobody may read. Another session, even of the same login and later with the same pid, does not know it.
CREATE OR REPLACE FUNCTION vault.start_rewrap(grant_seq bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
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
REVOKE ALL ON FUNCTION vault.start_rewrap(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
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
    -- A run started before its action's policy asked for approvals stops at its next batch (dual control).
    PERFORM audit.require_approved_grant(grant_seq, 'rewrap');
    RETURN r;
END
$$;
REVOKE ALL ON FUNCTION audit.rewrap_run(bigint, boolean)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- The next data keys of the run still sealed to the old key, after `after_id`, with their sealed bytes.
CREATE OR REPLACE FUNCTION vault.release_rewrap_keys(grant_seq bigint, after_id bigint, batch_size integer)
RETURNS TABLE (id bigint, sealed_key bytea)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    r audit.rewrap_runs;
BEGIN
    r := audit.rewrap_run(grant_seq, false);
    RETURN QUERY
        SELECT k.id, k.sealed_key FROM vault.data_keys AS k
         WHERE k.key_id = r.old_key_id AND k.id > after_id AND k.id <= r.last_data_key_id
         ORDER BY k.id LIMIT batch_size;
END
$$;
REVOKE ALL ON FUNCTION vault.release_rewrap_keys(bigint, bigint, integer)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.release_rewrap_keys(bigint, bigint, integer) TO piivault_compliance;

-- Replaces sealed data keys: ids[i] gets new_sealed[i] and the run's new key id, only if it is still sealed to the
-- old key id with exactly old_sealed[i]. Returns how many were replaced. An ETL batch sealing under one of these keys
-- holds its row until it commits (06_data_keys.sql): a wait bounded by lock_timeout, not forever.
CREATE OR REPLACE FUNCTION vault.replace_rewrap_keys(grant_seq bigint, ids bigint[], old_sealed bytea[], new_sealed bytea[])
RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    r      audit.rewrap_runs;
    n_done integer;
BEGIN
    r := audit.rewrap_run(grant_seq, false);
    IF EXISTS (SELECT 1 FROM unnest(new_sealed) AS b WHERE b IS NULL OR octet_length(b) <> 80) THEN
        RAISE EXCEPTION 'a sealed data key is 80 bytes (crypto_box_seal of 32 bytes)';
    END IF;
    UPDATE vault.data_keys AS k SET sealed_key = v.now_sealed, key_id = r.new_key_id
      FROM unnest(ids, old_sealed, new_sealed) AS v(kid, was_sealed, now_sealed)
     WHERE k.id = v.kid AND k.key_id = r.old_key_id AND k.sealed_key = v.was_sealed AND k.id <= r.last_data_key_id;
    GET DIAGNOSTICS n_done = ROW_COUNT;
    RETURN n_done;
END
$$;
REVOKE ALL ON FUNCTION vault.replace_rewrap_keys(bigint, bigint[], bytea[], bytea[])
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.replace_rewrap_keys(bigint, bigint[], bytea[], bytea[]) TO piivault_compliance;

-- Full run: stores a data key created for this run, sealed to the new key; values may move only to such keys.
CREATE OR REPLACE FUNCTION vault.add_rewrap_data_key(grant_seq bigint, sealed_key bytea) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    r      audit.rewrap_runs;
    new_id bigint;
BEGIN
    r := audit.rewrap_run(grant_seq, true);
    IF sealed_key IS NULL OR octet_length(sealed_key) <> 80 THEN
        RAISE EXCEPTION 'a sealed data key is 80 bytes (crypto_box_seal of 32 bytes)';
    END IF;
    INSERT INTO vault.data_keys (key_id, sealed_key) VALUES (r.new_key_id, sealed_key) RETURNING data_keys.id INTO new_id;
    UPDATE audit.rewrap_runs AS w SET new_data_keys = w.new_data_keys || new_id WHERE w.seq = grant_seq;
    RETURN new_id;
END
$$;
REVOKE ALL ON FUNCTION vault.add_rewrap_data_key(bigint, bytea)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.add_rewrap_data_key(bigint, bytea) TO piivault_compliance;

-- Full run: the next values (kind 'secret': vault.secrets by token; 'quarantine': vault.quarantine bodies by
-- message id) under the run's old data keys, after (after_data_key_id, after_ref), with their sealed data keys.
CREATE OR REPLACE FUNCTION vault.release_rewrap_values(
    grant_seq bigint, kind text, after_data_key_id bigint, after_ref text, batch_size integer
) RETURNS TABLE (ref text, data_key_id bigint, sealed_key bytea, sealed bytea)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    r audit.rewrap_runs;
BEGIN
    r := audit.rewrap_run(grant_seq, true);
    IF kind = 'secret' THEN
        RETURN QUERY
            SELECT s.token, s.data_key_id, k.sealed_key, s.sealed
              FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id
             WHERE k.key_id = r.old_key_id AND k.id <= r.last_data_key_id
               AND (s.data_key_id, s.token COLLATE "C") > (after_data_key_id, after_ref COLLATE "C")
             ORDER BY s.data_key_id, s.token COLLATE "C" LIMIT batch_size;
    ELSIF kind = 'quarantine' THEN
        RETURN QUERY
            SELECT q.message_id, q.data_key_id, k.sealed_key, q.sealed_body
              FROM vault.quarantine AS q JOIN vault.data_keys AS k ON k.id = q.data_key_id
             WHERE k.key_id = r.old_key_id AND k.id <= r.last_data_key_id
               AND (q.data_key_id, q.message_id COLLATE "C") > (after_data_key_id, after_ref COLLATE "C")
             ORDER BY q.data_key_id, q.message_id COLLATE "C" LIMIT batch_size;
    ELSE
        RAISE EXCEPTION 'kind must be secret or quarantine';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION vault.release_rewrap_values(bigint, text, bigint, text, integer)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.release_rewrap_values(bigint, text, bigint, text, integer) TO piivault_compliance;

-- Full run: moves values to a data key of this run: refs[i] gets sealed[i] under new_data_key_id, only if it is still
-- under old_data_key_ids[i], one of the run's old data keys. Returns how many moved.
CREATE OR REPLACE FUNCTION vault.replace_rewrap_values(
    grant_seq bigint, kind text, refs text[], old_data_key_ids bigint[], new_data_key_id bigint, sealed bytea[]
) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    r      audit.rewrap_runs;
    n_done integer;
BEGIN
    r := audit.rewrap_run(grant_seq, true);
    IF new_data_key_id IS NULL OR NOT new_data_key_id = ANY (r.new_data_keys) THEN
        RAISE EXCEPTION 'data key % was not created by rewrap run %', new_data_key_id, grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF kind = 'secret' THEN
        UPDATE vault.secrets AS s SET sealed = v.bytes, data_key_id = new_data_key_id
          FROM unnest(refs, old_data_key_ids, sealed) AS v(ref, old_id, bytes)
          JOIN vault.data_keys AS k ON k.id = v.old_id
         WHERE s.token = v.ref AND s.data_key_id = v.old_id AND k.key_id = r.old_key_id AND k.id <= r.last_data_key_id;
    ELSIF kind = 'quarantine' THEN
        UPDATE vault.quarantine AS q SET sealed_body = v.bytes, data_key_id = new_data_key_id
          FROM unnest(refs, old_data_key_ids, sealed) AS v(ref, old_id, bytes)
          JOIN vault.data_keys AS k ON k.id = v.old_id
         WHERE q.message_id = v.ref AND q.data_key_id = v.old_id AND k.key_id = r.old_key_id
           AND k.id <= r.last_data_key_id;
    ELSE
        RAISE EXCEPTION 'kind must be secret or quarantine';
    END IF;
    GET DIAGNOSTICS n_done = ROW_COUNT;
    RETURN n_done;
END
$$;
REVOKE ALL ON FUNCTION vault.replace_rewrap_values(bigint, text, text[], bigint[], bigint, bytea[])
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.replace_rewrap_values(bigint, text, text[], bigint[], bigint, bytea[])
    TO piivault_compliance;

-- vault.drop_rewrapped_data_keys (replaces 0015's): full run: deletes the run's old data keys that no value
-- references any more. Kept (and counted) while an ETL run that seals to the old key is running: it may still hold
-- one of them in memory and seal values under it. Waits on a batch's row of a key at most lock_timeout.
CREATE OR REPLACE FUNCTION vault.drop_rewrapped_data_keys(grant_seq bigint)
RETURNS TABLE (deleted integer, in_use integer, etl_running boolean)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
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
    -- Every data key still sealed to the old key, also those an ETL run still sealing to it stored after the request
    -- (the run above leaves them alone): the old vault key may be destroyed only when this is 0.
    SELECT count(*)::integer INTO n_left FROM vault.data_keys AS k WHERE k.key_id = r.old_key_id;
    RETURN QUERY SELECT n_gone, n_left, running;
END
$$;
REVOKE ALL ON FUNCTION vault.drop_rewrapped_data_keys(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.drop_rewrapped_data_keys(bigint) TO piivault_compliance;
