-- The access log's writer and the compliance functions that read sealed values (docs/ACCESS-LOG.md).
--
-- Every entry is appended by audit.append_entry, which computes the hash chain inside Postgres:
--     hash(n) = sha256(hash(n-1) || audit.entry_bytes(entry n)),  hash(0) = 32 zero bytes.
-- Compliance reads sealed values only through the vault.unmask_* functions below; each appends exactly one entry in
-- the same transaction as it returns its rows, so a rolled-back access leaves no data behind and a committed one
-- always has its entry. Refusals (over the row cap) are returned as a row, not raised, because a raise would roll
-- back the entry that records the refusal.

-- One field of bytes(entry): its UTF-8 bytes prefixed by their length as a 4-byte big-endian integer, so that no
-- two different entries serialise to the same bytes (a field cannot "borrow" characters from its neighbour).
CREATE FUNCTION audit.length_prefixed(field text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT int4send(octet_length(convert_to(field, 'UTF8'))) || convert_to(field, 'UTF8')
$$;

-- bytes(entry): the ten fields in this order, each length-prefixed: seq (decimal), at (UTC,
-- YYYY-MM-DDTHH:MM:SS.ffffffZ, always 6 fractional digits), db_user, os_user, client_host, action, reason, subject,
-- row_count (decimal), outcome. An auditor recomputes it with any tool (Tests/crosscheck/verify_access_log.py).
CREATE FUNCTION audit.entry_bytes(
    seq bigint, at timestamptz, db_user text, os_user text, client_host text, action text, reason text,
    subject text, row_count integer, outcome text
) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT audit.length_prefixed(seq::text)
        || audit.length_prefixed(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || audit.length_prefixed(db_user)
        || audit.length_prefixed(os_user)
        || audit.length_prefixed(client_host)
        || audit.length_prefixed(action)
        || audit.length_prefixed(reason)
        || audit.length_prefixed(subject)
        || audit.length_prefixed(row_count::text)
        || audit.length_prefixed(outcome)
$$;

-- Appends one entry and returns it. The only writer of audit.access_log; not callable by any piivault role
-- directly (compliance appends through vault.unmask_* and audit.record_refusal), so a caller can never choose the
-- sequence number, time, database user or hash.
CREATE FUNCTION audit.append_entry(
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

-- Records a refusal decided by the client after (or instead of) an access: a data key sealed to another vault key,
-- a value that fails to open under its token (moved), an aborted run. The outcome always starts with "refused: ", so
-- this can never record a successful access, and the entry carries no rows.
CREATE FUNCTION audit.record_refusal(
    action text, reason text, subject text, outcome text, os_user text, client_host text
) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    entry audit.access_log;
BEGIN
    IF outcome IS NULL OR btrim(outcome) = '' THEN
        RAISE EXCEPTION 'a refusal needs an outcome saying why';
    END IF;
    entry := audit.append_entry(action, reason, subject, 0,
        CASE WHEN outcome LIKE 'refused: %' THEN outcome ELSE 'refused: ' || outcome END, os_user, client_host);
    RETURN entry.seq;
END
$$;

-- Sealed values of tokens. Returns one row per requested token that exists, with the sealed data key it was
-- encrypted under. More distinct tokens than max_rows: nothing is returned but one row with only log_seq and
-- outcome ('refused: over row cap ...'), and the refusal is logged. Every row carries the entry's seq and outcome.
CREATE FUNCTION vault.unmask_tokens(
    tokens text[], reason text, os_user text, client_host text, max_rows integer
) RETURNS TABLE (
    token text, field text, data_key_id bigint, key_id text, sealed_key bytea, sealed bytea,
    log_seq bigint, outcome text
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    wanted   text[];
    subject  text;
    found    integer;
    entry    audit.access_log;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be 1 or more';
    END IF;
    SELECT coalesce(array_agg(DISTINCT t ORDER BY t), '{}') INTO wanted FROM unnest(tokens) AS t WHERE t IS NOT NULL;
    subject := 'tokens:' || array_to_string(wanted, ',');
    IF cardinality(wanted) > max_rows THEN
        entry := audit.append_entry('unmask', reason, subject, 0,
            format('refused: over row cap (%s tokens asked, cap %s)', cardinality(wanted), max_rows),
            os_user, client_host);
        RETURN QUERY SELECT NULL::text, NULL::text, NULL::bigint, NULL::text, NULL::bytea, NULL::bytea,
                            entry.seq, entry.outcome;
        RETURN;
    END IF;
    SELECT count(*) INTO found FROM vault.secrets AS s WHERE s.token = ANY (wanted);
    entry := audit.append_entry('unmask', reason, subject, found, 'ok', os_user, client_host);
    RETURN QUERY
        SELECT s.token, s.field, s.data_key_id, k.key_id, k.sealed_key, s.sealed, entry.seq, entry.outcome
          FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id
         WHERE s.token = ANY (wanted)
         ORDER BY s.token;
END
$$;

-- Every user_logins row of one user, with the sealed ip and device_id joined from vault.secrets (NULL where a token
-- has no sealed value, for example a seed row). More rows than max_rows: refused as in vault.unmask_tokens.
CREATE FUNCTION vault.unmask_user(
    wanted_user_id text, reason text, os_user text, client_host text, max_rows integer
) RETURNS TABLE (
    user_id text, device_type text, masked_ip text, masked_device_id text, locale text, app_version integer,
    app_version_text text, create_date date, message_id text,
    ip_data_key_id bigint, ip_key_id text, ip_sealed_key bytea, ip_sealed bytea,
    device_data_key_id bigint, device_key_id text, device_sealed_key bytea, device_sealed bytea,
    log_seq bigint, outcome text
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    wanted_user text := wanted_user_id;
    subject     text;
    found       bigint;
    entry       audit.access_log;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be 1 or more';
    END IF;
    IF wanted_user IS NULL THEN
        RAISE EXCEPTION 'a user id is required';
    END IF;
    subject := 'user_id:' || wanted_user;
    SELECT count(*) INTO found FROM public.user_logins AS l WHERE l.user_id = wanted_user;
    IF found > max_rows THEN
        entry := audit.append_entry('unmask', reason, subject, 0,
            format('refused: over row cap (%s rows, cap %s)', found, max_rows), os_user, client_host);
        RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::integer, NULL::text,
                            NULL::date, NULL::text, NULL::bigint, NULL::text, NULL::bytea, NULL::bytea,
                            NULL::bigint, NULL::text, NULL::bytea, NULL::bytea, entry.seq, entry.outcome;
        RETURN;
    END IF;
    entry := audit.append_entry('unmask', reason, subject, found::integer, 'ok', os_user, client_host);
    RETURN QUERY
        SELECT l.user_id::text, l.device_type::text, l.masked_ip::text, l.masked_device_id::text, l.locale::text,
               l.app_version, l.app_version_text, l.create_date, l.message_id,
               si.data_key_id, ki.key_id, ki.sealed_key, si.sealed,
               sd.data_key_id, kd.key_id, kd.sealed_key, sd.sealed,
               entry.seq, entry.outcome
          FROM public.user_logins AS l
          LEFT JOIN vault.secrets AS si ON si.token = l.masked_ip
          LEFT JOIN vault.data_keys AS ki ON ki.id = si.data_key_id
          LEFT JOIN vault.secrets AS sd ON sd.token = l.masked_device_id
          LEFT JOIN vault.data_keys AS kd ON kd.id = sd.data_key_id
         WHERE l.user_id = wanted_user
         ORDER BY l.create_date NULLS LAST, l.message_id NULLS LAST;
END
$$;

-- The sealed body of one quarantined message with its data key. One message at most, so no row cap.
CREATE FUNCTION vault.unmask_quarantined(
    wanted_message_id text, reason text, os_user text, client_host text
) RETURNS TABLE (
    message_id text, received_at timestamptz, quarantine_reason text, data_key_id bigint, key_id text,
    sealed_key bytea, sealed_body bytea, log_seq bigint, outcome text
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    wanted_message text := wanted_message_id;
    found          integer;
    entry          audit.access_log;
BEGIN
    IF wanted_message IS NULL THEN
        RAISE EXCEPTION 'a message id is required';
    END IF;
    SELECT count(*) INTO found FROM vault.quarantine AS q WHERE q.message_id = wanted_message;
    entry := audit.append_entry('unmask', reason, 'message_id:' || wanted_message, found, 'ok', os_user,
                                client_host);
    RETURN QUERY
        SELECT q.message_id, q.received_at, q.reason, q.data_key_id, k.key_id, k.sealed_key, q.sealed_body,
               entry.seq, entry.outcome
          FROM vault.quarantine AS q JOIN vault.data_keys AS k ON k.id = q.data_key_id
         WHERE q.message_id = wanted_message;
END
$$;

-- Functions are executable by PUBLIC by default; take that away and grant exactly what DESIGN.md's table allows.
REVOKE ALL ON FUNCTION audit.length_prefixed(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.entry_bytes(bigint, timestamptz, text, text, text, text, text, text, integer, text)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.append_entry(text, text, text, integer, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.record_refusal(text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.unmask_tokens(text[], text, text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.unmask_user(text, text, text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.unmask_quarantined(text, text, text, text) FROM PUBLIC;

-- Compliance: the reading functions and client-side refusals; never append_entry itself.
GRANT USAGE ON SCHEMA vault, audit TO piivault_compliance;
GRANT EXECUTE ON FUNCTION audit.record_refusal(text, text, text, text, text, text) TO piivault_compliance;
GRANT EXECUTE ON FUNCTION vault.unmask_tokens(text[], text, text, text, integer) TO piivault_compliance;
GRANT EXECUTE ON FUNCTION vault.unmask_user(text, text, text, text, integer) TO piivault_compliance;
GRANT EXECUTE ON FUNCTION vault.unmask_quarantined(text, text, text, text) TO piivault_compliance;

-- Auditor: may recompute bytes(entry) in SQL as a cross-check; reads the log itself (granted in 0006).
GRANT EXECUTE ON FUNCTION audit.length_prefixed(text) TO piivault_auditor;
GRANT EXECUTE ON FUNCTION audit.entry_bytes(bigint, timestamptz, text, text, text, text, text, text, integer, text)
    TO piivault_auditor;
