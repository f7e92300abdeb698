-- `piivault retokenize`: move every sealed value and every login row from older token key versions to the version of
-- a new token key, through the gate of 10_audit.sql.
-- The live definitions (docs/ARCHITECTURE.md, "Migrations and definitions").
--
-- One run: request_retokenize appends the run's `retokenize` entry (subject: the versions; outcome: the counts) and
-- records a grant of kind 'versions' in audit.access_grants (wanted: the target version; keys: token key id, vault
-- key id). start_retokenize claims the grant (audit.claim_grant: committed earlier, this login, once, within five
-- minutes) and binds the run to this session (its pid and a random nonce only that session knows, a session
-- setting that lasts until the connection ends). Then, batch after batch, each in its own transaction: release_retokenize_values hands out a batch of
-- sealed values of older versions (only in that session, until the run finishes); the client opens them, computes
-- the new tokens, seals the values again bound to the new tokens under a new data key (add_retokenize_data_key) and
-- hands the mappings to apply_retokenize_batch, which inserts the new values (keeping a value the ETL already sealed
-- under the new version), rewrites the logins' tokens and deletes the old values no login references.
-- finish_retokenize ends the run. A run killed midway leaves whole batches done and its grant dies with its
-- connection; the next run (a new entry) moves the rest.

-- vault.start_retokenize (replaces 0016's): step 2 of a retokenize run: claims the grant and binds the run to this
-- session, by its pid and a random nonce kept in a setting of this session (piivault.retokenize_session) and in
-- audit.retokenize_runs, which nobody may read.
CREATE OR REPLACE FUNCTION vault.start_retokenize(grant_seq bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
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
REVOKE ALL ON FUNCTION vault.start_retokenize(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
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
    -- A run started before its action's policy asked for approvals stops at its next batch (dual control).
    PERFORM audit.require_approved_grant(grant_seq, 'retokenize');
    RETURN g;
END
$$;
REVOKE ALL ON FUNCTION vault.retokenize_grant(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- Step 1: the run's entry. Refused (one entry, no grant) when the vault holds tokens of a newer version than the
-- target, or when values of older versions are sealed to another vault key than the caller's (other_key_id names
-- one: rewrap them first).
CREATE OR REPLACE FUNCTION vault.request_retokenize(
    target_version integer, token_key_id text, vault_key_id text, reason text, os_user text, client_host text
) RETURNS TABLE (log_seq bigint, outcome text, row_count integer, other_key_id text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    old_versions integer[];
    newest       integer;
    n_values     integer;
    n_rows       bigint;
    n_other      integer;
    other_key    text;
    subject      text;
    entry        audit.access_log;
BEGIN
    IF target_version IS NULL OR target_version < 1 OR target_version > 999999999 THEN
        RAISE EXCEPTION 'target_version must be 1 to 999999999';
    END IF;
    IF token_key_id IS NULL OR token_key_id !~ '^[0-9a-f]{16}$' OR vault_key_id IS NULL
       OR vault_key_id !~ '^[0-9a-f]{16}$' THEN
        RAISE EXCEPTION 'token_key_id and vault_key_id are key ids (16 lowercase hex digits)';
    END IF;
    SELECT coalesce(array_agg(v ORDER BY v), '{}') INTO old_versions
      FROM vault.token_versions() AS v WHERE v < target_version;
    SELECT max(v) INTO newest FROM vault.token_versions() AS v;
    subject := format('token_versions:%s->v%s',
                      coalesce(nullif(array_to_string(ARRAY(SELECT 'v' || v FROM unnest(old_versions) AS v), ','), ''),
                               'none'),
                      target_version);
    IF newest > target_version THEN
        entry := audit.append_entry('retokenize', reason, subject, 0,
            format('refused: the vault holds tokens of a newer token key version (v%s); retokenize to the newest key',
                   newest), os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, NULL::text;
        RETURN;
    END IF;
    SELECT count(*)::integer, count(*) FILTER (WHERE k.key_id <> vault_key_id)::integer,
           min(k.key_id) FILTER (WHERE k.key_id <> vault_key_id)
      INTO n_values, n_other, other_key
      FROM vault.token_version_ranges() AS r
      JOIN vault.secrets AS s ON s.token >= r.low AND s.token < r.high
      JOIN vault.data_keys AS k ON k.id = s.data_key_id
     WHERE r.version < target_version;
    IF n_other > 0 THEN
        entry := audit.append_entry('retokenize', reason, subject, 0,
            format('refused: vault key mismatch (%s values of older versions sealed to %s, key file is %s)',
                   n_other, other_key, vault_key_id), os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, other_key;
        RETURN;
    END IF;
    -- No newer version is present (refused above), so a login to move carries a token not of the target version.
    -- Plain regular expressions rather than vault.token_version (a SQL function with SET, so never inlined): cheaper per row.
    SELECT count(*) INTO n_rows FROM public.user_logins AS l
     WHERE (l.masked_ip ~ '^(ip|dev)\.v[1-9][0-9]{0,8}\.' AND l.masked_ip !~ ('^(ip|dev)\.v' || target_version || '\.'))
        OR (l.masked_device_id ~ '^(ip|dev)\.v[1-9][0-9]{0,8}\.'
            AND l.masked_device_id !~ ('^(ip|dev)\.v' || target_version || '\.'));
    entry := audit.append_and_grant('retokenize', 'versions', target_version::text,
        ARRAY[token_key_id, vault_key_id], reason, subject, n_values,
        format('ok: %s values and %s logins to move to v%s (token key %s)', n_values, n_rows, target_version,
               token_key_id),
        os_user, client_host);
    RETURN QUERY SELECT entry.seq, entry.outcome, n_values, NULL::text;
END
$$;
REVOKE ALL ON FUNCTION vault.request_retokenize(integer, text, text, text, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.request_retokenize(integer, text, text, text, text, text) TO piivault_compliance;

-- Step 2, per batch: up to max_rows sealed values of older versions, with their data keys.
CREATE OR REPLACE FUNCTION vault.release_retokenize_values(grant_seq bigint, max_rows integer)
RETURNS TABLE (token text, field text, sealed bytea, data_key_id bigint, key_id text, sealed_key bytea)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    g     audit.access_grants;
    t     integer;
    r     record;
    wants integer := max_rows;
    got   integer;
BEGIN
    g := vault.retokenize_grant(grant_seq);
    t := g.wanted::integer;
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 100000 THEN
        RAISE EXCEPTION 'max_rows must be 1 to 100000';
    END IF;
    -- Range by range of the primary key, oldest version first: no sort of every older value per batch.
    FOR r IN SELECT x.low, x.high FROM vault.token_version_ranges() AS x WHERE x.version < t ORDER BY x.version, x.low
    LOOP
        RETURN QUERY
            SELECT s.token, s.field, s.sealed, s.data_key_id, k.key_id, k.sealed_key
              FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id
             WHERE s.token >= r.low AND s.token < r.high
             ORDER BY s.token
             LIMIT wants;
        GET DIAGNOSTICS got = ROW_COUNT;
        wants := wants - got;
        EXIT WHEN wants < 1;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION vault.release_retokenize_values(bigint, integer)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.release_retokenize_values(bigint, integer) TO piivault_compliance;

-- A data key of the run (sealed to the vault key the grant names), for the values it seals again.
CREATE OR REPLACE FUNCTION vault.add_retokenize_data_key(grant_seq bigint, key_id text, sealed_key bytea) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    g  audit.access_grants;
    id bigint;
BEGIN
    g := vault.retokenize_grant(grant_seq);
    IF key_id IS DISTINCT FROM g.keys[2] THEN
        RAISE EXCEPTION 'the data key must be sealed to vault key % (the run''s)', g.keys[2];
    END IF;
    IF octet_length(sealed_key) IS DISTINCT FROM 80 THEN
        RAISE EXCEPTION 'a sealed data key is 80 bytes';
    END IF;
    INSERT INTO vault.data_keys (key_id, sealed_key) VALUES (key_id, sealed_key) RETURNING data_keys.id INTO id;
    RETURN id;
END
$$;
REVOKE ALL ON FUNCTION vault.add_retokenize_data_key(bigint, text, bytea)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.add_retokenize_data_key(bigint, text, bytea) TO piivault_compliance;

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
    lo_digests bigint[];
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

    PERFORM vault.require_read_committed();
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
    lo_digests := ARRAY(SELECT hashtextextended(o, 0) FROM unnest(lo) AS o);  -- the digest indexes of 0022
    UPDATE public.user_logins AS l
       SET masked_ip = coalesce(map ->> l.masked_ip, l.masked_ip),
           masked_device_id = coalesce(map ->> l.masked_device_id, l.masked_device_id)
     WHERE (hashtextextended(l.masked_ip, 0) = ANY (lo_digests) AND l.masked_ip = ANY (lo))
        OR (hashtextextended(l.masked_device_id, 0) = ANY (lo_digests) AND l.masked_device_id = ANY (lo));
    GET DIAGNOSTICS n_rows = ROW_COUNT;

    DELETE FROM vault.secrets AS s
     WHERE s.token = ANY (lo)
       AND NOT EXISTS (SELECT 1 FROM public.user_logins AS o
                        WHERE (hashtextextended(o.masked_ip, 0) = hashtextextended(s.token, 0) AND o.masked_ip = s.token)
                           OR (hashtextextended(o.masked_device_id, 0) = hashtextextended(s.token, 0)
                               AND o.masked_device_id = s.token));
    GET DIAGNOSTICS n_del = ROW_COUNT;
    -- A value retention has marked (its logins deleted, the value not yet considered: a run stopped or still going)
    -- keeps its mark under the new token, so the next retention run deletes it; nothing else would ever reach it.
    INSERT INTO vault.retention_pending (token)
    SELECT m.n FROM unnest(lo, ln) AS m(o, n) JOIN vault.retention_pending AS p ON p.token = m.o
    ON CONFLICT DO NOTHING;
    DELETE FROM vault.retention_pending AS p WHERE p.token = ANY (lo);
    IF n_del <> n_live THEN
        -- Every login was rewritten above under the lock; a reference left means something this function does not
        -- know about. Fail the batch rather than leave two tokens for one value.
        RAISE EXCEPTION 'retokenize: % old values are still referenced after their logins were rewritten', n_live - n_del;
    END IF;
    RETURN QUERY SELECT n_ins, n_live - n_ins, n_in - n_live, n_rows;
END
$$;
REVOKE ALL ON FUNCTION vault.apply_retokenize_batch(bigint, text[], text[], bytea[], bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.apply_retokenize_batch(bigint, text[], text[], bytea[], bigint) TO piivault_compliance;

-- End of a run: closes the grant when no value of an older version remains; returns how many remain.
CREATE OR REPLACE FUNCTION vault.finish_retokenize(grant_seq bigint) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    g         audit.access_grants;
    remaining integer;
BEGIN
    g := vault.retokenize_grant(grant_seq);
    SELECT count(*)::integer INTO remaining
      FROM vault.token_version_ranges() AS r
      JOIN vault.secrets AS s ON s.token >= r.low AND s.token < r.high
     WHERE r.version < g.wanted::integer;
    IF remaining = 0 THEN
        UPDATE audit.retokenize_runs AS w SET finished_at = clock_timestamp() WHERE w.seq = grant_seq;
    END IF;
    RETURN remaining;
END
$$;
REVOKE ALL ON FUNCTION vault.finish_retokenize(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.finish_retokenize(bigint) TO piivault_compliance;
