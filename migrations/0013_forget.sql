-- `piivault forget` (issue 12): erase one data subject, in one transaction with its access-log entry.
--
-- The subject is named everywhere (log entry, tombstone, lock) by a keyed hash of the user id, computed by the client
-- with a subkey of the token key (crypto_kdf context "PIIV-TMB"); the id itself is only used to find the rows.

-- One row per forgotten user: the keyed hash of the user id. The ETL reads it (SELECT only) so that a redelivered or
-- replayed message of that user is not loaded again.
CREATE TABLE vault.tombstones (
    subject_hash text        PRIMARY KEY CHECK (subject_hash ~ '^[0-9a-f]{64}$'),
    forgotten_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON vault.tombstones FROM PUBLIC;
GRANT SELECT ON vault.tombstones TO piivault_etl;

-- The lock forget and the ETL's load both take for one user, so that they never interleave: a transaction-level
-- advisory lock on a 64-bit hash of the tombstone key. The ETL takes it for each user of a batch, in hash order
-- (no deadlock between two loads), before it inserts.
CREATE FUNCTION vault.lock_subjects(subject_hashes text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('piivault-subject:' || s.h, 0))
       FROM (SELECT DISTINCT h FROM unnest(subject_hashes) AS h WHERE h IS NOT NULL ORDER BY 1) AS s;
END
$$;

-- Erases the logins of user_id and every sealed value no remaining login references, keeps the tombstone, and
-- appends the `forget` entry, all in the caller's transaction: if the append fails, nothing is deleted. With dry_run
-- it only counts (no lock on the log, no entry, no change). Values another user's logins still reference stay.
CREATE FUNCTION vault.forget_user(
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
    IF NOT dry_run THEN
        PERFORM vault.lock_subjects(ARRAY[subject_hash]);
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
    RETURN QUERY SELECT entry.seq, n_rows, n_gone, n_kept;
END
$$;

REVOKE ALL ON FUNCTION vault.lock_subjects(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.forget_user(text, text, text, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.lock_subjects(text[]) TO piivault_etl;
GRANT EXECUTE ON FUNCTION vault.forget_user(text, text, text, text, text, boolean) TO piivault_compliance;

-- The run history counts the messages of forgotten users the ETL did not load.
ALTER TABLE public.etl_runs ADD COLUMN IF NOT EXISTS suppressed bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN public.etl_runs.suppressed IS 'messages of forgotten users (vault.tombstones): not loaded, deleted from the queue';
