-- `piivault forget`: erase one data subject (or one quarantined body), in one transaction with its access-log entry.
-- The live definitions (docs/ARCHITECTURE.md, "Migrations and definitions").
--
-- The subject is named everywhere (log entry, tombstone, lock) by a keyed hash of the user id, computed by the client
-- with a subkey of the token key (crypto_kdf context "PIIV-TMB"); the id itself is only used to find the rows.

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
    asked    text := nullif(btrim(current_setting('piivault.approval_request', true)), '');
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
        PERFORM vault.require_read_committed();
        LOCK TABLE vault.vault_values_lock IN EXCLUSIVE MODE;
        -- The user's rows, locked before they are counted: a retention batch deleting some of them (it takes row
        -- locks, not the vault lock) commits first and they are counted gone, or skips them; the entry's counts
        -- are then what the DELETE below removes.
        PERFORM 1 FROM public.user_logins AS l WHERE l.user_id = user_id FOR UPDATE;
    END IF;

    -- An approved request runs for the user it was asked for (0032): its logged subject, the hash, names the rows
    -- only where they carry it. Refused and logged like the other dual-control refusals.
    IF NOT dry_run AND asked ~ '^[1-9][0-9]{0,17}$' AND EXISTS (
           SELECT 1 FROM audit.approval_requests AS r
            WHERE r.id = asked::bigint AND r.action = 'forget' AND r.user_id IS DISTINCT FROM user_id) THEN
        entry := audit.append_entry('forget', reason, 'user_hash:' || subject_hash, 0,
            format('refused: dual control: request %s was asked for another user', asked), os_user, client_host);
        RETURN QUERY SELECT entry.seq, 0, 0, 0;
        RETURN;
    END IF;
    -- Under dual control the approvers approve a hash: rows without one (loaded before 0017, or adopted from the
    -- seed's table) cannot be tied to it, so a request naming any user id with such rows could erase them under an
    -- approval for another subject. Refused until the policy allows a forget without approvals (a logged change).
    -- A dry run changes and logs nothing, and needs no approval: it counts.
    IF NOT dry_run AND coalesce((audit.effective_policy('forget')).approvals, 0) > 0
       AND EXISTS (SELECT 1 FROM public.user_logins AS l WHERE l.user_id = user_id AND l.subject_hash IS NULL) THEN
        RAISE EXCEPTION 'rows of this user carry no subject hash (loaded before piivault recorded one), so dual control cannot tie a request to them; nothing was deleted or logged'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'the next ETL run records their hashes (vault.record_subject_hashes); or the policy owner can set the forget policy to 0 approvals for this erasure (logged), then back';
    END IF;
    IF EXISTS (SELECT 1 FROM public.user_logins AS l WHERE l.user_id = user_id AND l.subject_hash <> subject_hash)
       OR EXISTS (SELECT 1 FROM public.user_logins AS l
                   WHERE hashtextextended(l.subject_hash, 0) = hashtextextended(subject_hash, 0)
                     AND l.subject_hash = subject_hash AND l.user_id IS DISTINCT FROM user_id) THEN
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
                    WHERE ((hashtextextended(o.masked_ip, 0) = hashtextextended(s.token, 0) AND o.masked_ip = s.token)
                           OR (hashtextextended(o.masked_device_id, 0) = hashtextextended(s.token, 0)
                               AND o.masked_device_id = s.token))
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
    -- Dual control turned the access into a request (which keeps the user it is for), or refused it: nothing is
    -- deleted.
    IF entry.action = 'request' THEN
        UPDATE audit.approval_requests AS r SET user_id = forget_user.user_id WHERE r.id = entry.seq;
    END IF;
    IF entry.action <> 'forget' OR entry.outcome LIKE 'refused%' THEN
        RETURN QUERY SELECT entry.seq, 0, 0, 0;
        RETURN;
    END IF;
    DELETE FROM public.user_logins AS l WHERE l.user_id = user_id;
    DELETE FROM vault.secrets AS s
     WHERE s.token = ANY (tokens)
       AND NOT EXISTS (SELECT 1 FROM public.user_logins AS o
                        WHERE (hashtextextended(o.masked_ip, 0) = hashtextextended(s.token, 0) AND o.masked_ip = s.token)
                           OR (hashtextextended(o.masked_device_id, 0) = hashtextextended(s.token, 0)
                               AND o.masked_device_id = s.token));
    INSERT INTO vault.tombstones (subject_hash) VALUES (subject_hash) ON CONFLICT DO NOTHING;
    -- Earlier accesses by user id (unmask --user-id) recorded the id in their grants: the access log keeps it (it is
    -- append-only), the grants do not. A grant not released yet cannot be any more.
    -- Only those grants: the other kinds' `wanted` (a retention cutoff, a token version, a message id) may be spelled
    -- like a user id.
    UPDATE audit.access_grants AS g SET wanted = '', claimed_at = coalesce(g.claimed_at, clock_timestamp())
     WHERE g.action = 'unmask' AND g.kind = 'user' AND g.wanted = user_id;
    UPDATE audit.approval_requests AS r SET user_id = '' WHERE r.action = 'forget' AND r.user_id = forget_user.user_id;
    RETURN QUERY SELECT entry.seq, n_rows, n_gone, n_kept;
END
$$;
REVOKE ALL ON FUNCTION vault.forget_user(text, text, text, text, text, boolean)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.forget_user(text, text, text, text, text, boolean) TO piivault_compliance;

-- `forget --quarantined MESSAGE_ID`: deletes one quarantined body and appends its `forget` entry (subject
-- `message_id:<id>`) in the same transaction, entry first, so a failed append deletes nothing. An id not in
-- quarantine is logged as not found (row_count 0) and deletes nothing. With dry_run it only counts (no entry).
CREATE OR REPLACE FUNCTION vault.forget_quarantined(
    wanted_message_id text, reason text, os_user text, client_host text, dry_run boolean
) RETURNS TABLE (log_seq bigint, bodies_deleted integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    n     integer;
    entry audit.access_log;
BEGIN
    IF wanted_message_id IS NULL OR wanted_message_id = '' THEN
        RAISE EXCEPTION 'a message id is required';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'a reason is required for every access-log entry';
    END IF;
    SELECT count(*)::integer INTO n FROM vault.quarantine AS q WHERE q.message_id = wanted_message_id;
    IF dry_run THEN
        RETURN QUERY SELECT NULL::bigint, n;
        RETURN;
    END IF;
    entry := audit.append_entry('forget', reason, 'message_id:' || wanted_message_id, n,
        CASE WHEN n = 0 THEN 'not found: no quarantined message with this id' ELSE 'ok: 1 quarantined body deleted' END,
        os_user, client_host);
    IF entry.action <> 'forget' OR entry.outcome LIKE 'refused%' THEN
        RETURN QUERY SELECT entry.seq, 0;  -- dual control: a request, or refused; nothing deleted
        RETURN;
    END IF;
    DELETE FROM vault.quarantine AS q WHERE q.message_id = wanted_message_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT entry.seq, n;
END
$$;
REVOKE ALL ON FUNCTION vault.forget_quarantined(text, text, text, text, boolean)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.forget_quarantined(text, text, text, text, boolean) TO piivault_compliance;

-- Up to max_users user ids after after_user_id (NULL: from the first), in order, whose rows carry no subject hash
-- (loaded before 0017, or adopted from the seed's table; the partial index of 0033). The ETL records their hashes
-- before each run: it holds the token key, which the database does not, and is what records the hash of every row it
-- loads. Paged by key, so that each round starts where the last ended instead of at the index's start.
CREATE OR REPLACE FUNCTION vault.users_without_subject_hash(after_user_id text, max_users integer) RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT l.user_id FROM public.user_logins AS l
     WHERE l.subject_hash IS NULL AND l.user_id IS NOT NULL
       AND (after_user_id IS NULL OR l.user_id > after_user_id)
     ORDER BY l.user_id
     LIMIT greatest(max_users, 0)
$$;
REVOKE ALL ON FUNCTION vault.users_without_subject_hash(text, integer)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.users_without_subject_hash(text, integer) TO piivault_etl;

-- Records subject_hash hashes[i] on the rows of user user_ids[i] that carry none (a row that has one keeps it).
-- Returns the rows updated. The ETL's, as for the rows it loads: the database can hold it only to the hash's form.
CREATE OR REPLACE FUNCTION vault.record_subject_hashes(user_ids text[], hashes text[]) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
DECLARE
    n integer;
BEGIN
    IF user_ids IS NULL OR hashes IS NULL OR cardinality(user_ids) <> cardinality(hashes) THEN
        RAISE EXCEPTION 'user_ids and hashes must be arrays of the same length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(hashes) AS h WHERE h IS NULL OR octet_length(h) <> 64 OR h !~ '^[0-9a-f]+$') THEN
        RAISE EXCEPTION 'each hash must be 64 lowercase hex digits (the keyed hash of the user id)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE public.user_logins AS l SET subject_hash = u.hash
      FROM unnest(user_ids, hashes) AS u(user_id, hash)
     WHERE l.user_id = u.user_id AND l.subject_hash IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION vault.record_subject_hashes(text[], text[])
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.record_subject_hashes(text[], text[]) TO piivault_etl;
