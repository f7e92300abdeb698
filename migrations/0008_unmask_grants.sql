-- Unmasking in two steps, so that no sealed value leaves the database before its access-log entry is committed.
--
-- 0007's vault.unmask_* functions returned the sealed rows from the same call that appended the entry, in the
-- caller's transaction: a compliance login in psql could BEGIN, call one, read the rows and ROLLBACK, and the entry
-- was gone. They are replaced here by two steps:
--   1. vault.request_unmask_*  appends the entry (its row count and outcome decided here, from the rows found) and
--      records a grant naming exactly those rows; it returns no sealed bytes. The caller COMMITs.
--   2. vault.release_unmask_*  returns the sealed rows of a grant, only to the login that asked, only once, only
--      within five minutes, and only if the grant was committed by an earlier transaction.
-- The rows are fixed at step 1, so rows the ETL adds in between are never released under an entry that did not
-- count them. A data key sealed to another vault key than the caller's is refused at step 1 (one entry). What was not
-- found has an outcome of its own ('unknown tokens: ...', 'not found: ...'). Also here: the tokens sealed under a
-- data key (to tell a value moved between rows from a damaged one) and a logged refusal for callers who are not
-- compliance officers.

CREATE TABLE audit.unmask_grants (
    seq         bigint      PRIMARY KEY,  -- the entry's seq (no foreign key: TRUNCATE of the log must meet its own trigger)
    db_user     text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('tokens', 'user', 'quarantined')),
    -- the user id or message id asked for; '' for tokens
    wanted      text        NOT NULL,
    -- the rows granted: tokens found; message ids of the user's logins (rows without one are seed rows, which
    -- never grow); the quarantined message id
    keys        text[]      NOT NULL,
    created_xid xid8        NOT NULL DEFAULT pg_current_xact_id(),
    redeemed_at timestamptz
);
REVOKE ALL ON audit.unmask_grants FROM PUBLIC;

-- Appends the entry of an access and records its grant. Not callable by any role: the request functions use it.
CREATE FUNCTION audit.grant_access(
    kind text, wanted text, keys text[], reason text, subject text, row_count integer, outcome text, os_user text,
    client_host text
) RETURNS audit.access_log
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    entry audit.access_log;
BEGIN
    entry := audit.append_entry('unmask', reason, subject, row_count, outcome, os_user, client_host);
    INSERT INTO audit.unmask_grants (seq, db_user, kind, wanted, keys) VALUES (entry.seq, session_user, kind, wanted, keys);
    RETURN entry;
END
$$;

-- The grant `grant_seq` of kind `wanted_kind`, locked and marked released; raises unless it may be released now.
CREATE FUNCTION audit.redeem_grant(grant_seq bigint, wanted_kind text) RETURNS audit.unmask_grants
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    g        audit.unmask_grants;
    asked_at timestamptz;
BEGIN
    SELECT * INTO g FROM audit.unmask_grants AS u WHERE u.seq = grant_seq FOR UPDATE;
    IF g.seq IS NULL OR g.db_user <> session_user OR g.kind <> wanted_kind THEN
        RAISE EXCEPTION 'no unmask grant % of this kind for this login', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF g.created_xid = pg_current_xact_id_if_assigned() THEN
        RAISE EXCEPTION 'the access-log entry % must be committed before its values are released', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF g.redeemed_at IS NOT NULL THEN
        RAISE EXCEPTION 'unmask grant % was already released; ask again', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT l.at INTO asked_at FROM audit.access_log AS l WHERE l.seq = grant_seq;
    IF asked_at < clock_timestamp() - interval '5 minutes' THEN
        RAISE EXCEPTION 'unmask grant % has expired; ask again', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE audit.unmask_grants AS u SET redeemed_at = clock_timestamp() WHERE u.seq = grant_seq;
    RETURN g;
END
$$;

-- Raises unless `vault_key_id` looks like a key id: the request functions compare it with the data keys' key ids.
CREATE FUNCTION audit.require_key_id(vault_key_id text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF vault_key_id IS NULL OR vault_key_id !~ '^[0-9a-f]{16}$' THEN
        RAISE EXCEPTION 'vault_key_id must be the key file''s key id (16 hex digits)';
    END IF;
END
$$;

-- Appends the refusal of a request whose rows are sealed to `sealed_to`, not to the caller's `vault_key_id`.
CREATE FUNCTION audit.refuse_key_mismatch(
    reason text, subject text, sealed_to text, vault_key_id text, os_user text, client_host text
) RETURNS audit.access_log
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT audit.append_entry('unmask', reason, subject, 0,
        format('refused: vault key mismatch (sealed to %s, key file is %s)', sealed_to, vault_key_id),
        os_user, client_host)
$$;

-- Step 1 for tokens. Returns the entry's seq, outcome and row count, and (for a key mismatch) the other key id.
CREATE FUNCTION vault.request_unmask_tokens(
    tokens text[], reason text, os_user text, client_host text, max_rows integer, vault_key_id text
) RETURNS TABLE (log_seq bigint, outcome text, row_count integer, other_key_id text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    wanted      text[];
    found_keys  text[];
    other_key   text;
    n_found     integer;
    subject     text;
    result      text;
    entry       audit.access_log;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be 1 or more';
    END IF;
    PERFORM audit.require_key_id(vault_key_id);
    SELECT coalesce(array_agg(DISTINCT t COLLATE "C" ORDER BY t COLLATE "C"), '{}') INTO wanted
      FROM unnest(tokens) AS t WHERE t IS NOT NULL;
    IF cardinality(wanted) = 0 THEN
        RAISE EXCEPTION 'at least one token is required';
    END IF;
    -- Only well-formed tokens reach the log: a value typed by mistake must not be written down for ever.
    IF EXISTS (SELECT 1 FROM unnest(wanted) AS t WHERE t !~ '^(ip|dev)\.v[0-9]+\.[0-9a-f]{64}$') THEN
        RAISE EXCEPTION 'not a token: tokens look like ip.v1.<64 hex digits> or dev.v1.<64 hex digits>';
    END IF;
    subject := 'tokens:' || array_to_string(wanted, ',');
    IF cardinality(wanted) > max_rows THEN
        entry := audit.append_entry('unmask', reason, subject, 0,
            format('refused: over row cap (%s tokens asked, cap %s)', cardinality(wanted), max_rows),
            os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, NULL::text;
        RETURN;
    END IF;
    SELECT coalesce(array_agg(s.token ORDER BY s.token COLLATE "C"), '{}'),
           min(k.key_id) FILTER (WHERE k.key_id <> vault_key_id)
      INTO found_keys, other_key
      FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id
     WHERE s.token = ANY (wanted);
    IF other_key IS NOT NULL THEN
        entry := audit.refuse_key_mismatch(reason, subject, other_key, vault_key_id, os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, other_key;
        RETURN;
    END IF;
    n_found := cardinality(found_keys);
    result := CASE WHEN n_found = cardinality(wanted) THEN 'ok'
                   ELSE format('unknown tokens: %s of %s not in the vault', cardinality(wanted) - n_found,
                               cardinality(wanted)) END;
    entry := audit.grant_access('tokens', '', found_keys, reason, subject, n_found, result, os_user, client_host);
    RETURN QUERY SELECT entry.seq, entry.outcome, n_found, NULL::text;
END
$$;

-- Step 2 for tokens.
CREATE FUNCTION vault.release_unmask_tokens(grant_seq bigint)
RETURNS TABLE (token text, field text, data_key_id bigint, key_id text, sealed_key bytea, sealed bytea)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    g audit.unmask_grants;
BEGIN
    g := audit.redeem_grant(grant_seq, 'tokens');
    RETURN QUERY
        SELECT s.token, s.field, s.data_key_id, k.key_id, k.sealed_key, s.sealed
          FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id
         WHERE s.token = ANY (g.keys)
         ORDER BY s.token;
END
$$;

-- Step 1 for a user id: every user_logins row of that user (refused above max_rows).
CREATE FUNCTION vault.request_unmask_user(
    wanted_user_id text, reason text, os_user text, client_host text, max_rows integer, vault_key_id text
) RETURNS TABLE (log_seq bigint, outcome text, row_count integer, other_key_id text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    wanted_user text := wanted_user_id;
    subject     text;
    n_found     bigint;
    ids         text[];
    other_key   text;
    entry       audit.access_log;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be 1 or more';
    END IF;
    IF wanted_user IS NULL THEN
        RAISE EXCEPTION 'a user id is required';
    END IF;
    PERFORM audit.require_key_id(vault_key_id);
    subject := 'user_id:' || wanted_user;
    SELECT count(*), coalesce(array_agg(l.message_id) FILTER (WHERE l.message_id IS NOT NULL), '{}')
      INTO n_found, ids
      FROM public.user_logins AS l WHERE l.user_id = wanted_user;
    IF n_found > max_rows THEN
        entry := audit.append_entry('unmask', reason, subject, 0,
            format('refused: over row cap (%s rows, cap %s)', n_found, max_rows), os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, NULL::text;
        RETURN;
    END IF;
    SELECT min(k.key_id) INTO other_key
      FROM public.user_logins AS l
      JOIN vault.secrets AS s ON s.token IN (l.masked_ip, l.masked_device_id)
      JOIN vault.data_keys AS k ON k.id = s.data_key_id
     WHERE l.user_id = wanted_user AND k.key_id <> vault_key_id;
    IF other_key IS NOT NULL THEN
        entry := audit.refuse_key_mismatch(reason, subject, other_key, vault_key_id, os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, other_key;
        RETURN;
    END IF;
    entry := audit.grant_access('user', wanted_user, ids, reason, subject, n_found::integer,
        CASE WHEN n_found = 0 THEN 'not found: no logins for this user id' ELSE 'ok' END, os_user, client_host);
    RETURN QUERY SELECT entry.seq, entry.outcome, n_found::integer, NULL::text;
END
$$;

-- Step 2 for a user id: the logins counted at step 1, with the sealed ip and device_id (NULL where a token has no
-- sealed value, e.g. a seed row).
CREATE FUNCTION vault.release_unmask_user(grant_seq bigint)
RETURNS TABLE (
    user_id text, device_type text, masked_ip text, masked_device_id text, locale text, app_version integer,
    app_version_text text, create_date date, message_id text,
    ip_data_key_id bigint, ip_key_id text, ip_sealed_key bytea, ip_sealed bytea,
    device_data_key_id bigint, device_key_id text, device_sealed_key bytea, device_sealed bytea
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    g audit.unmask_grants;
BEGIN
    g := audit.redeem_grant(grant_seq, 'user');
    RETURN QUERY
        SELECT l.user_id::text, l.device_type::text, l.masked_ip::text, l.masked_device_id::text, l.locale::text,
               l.app_version, l.app_version_text, l.create_date, l.message_id,
               si.data_key_id, ki.key_id, ki.sealed_key, si.sealed,
               sd.data_key_id, kd.key_id, kd.sealed_key, sd.sealed
          FROM public.user_logins AS l
          LEFT JOIN vault.secrets AS si ON si.token = l.masked_ip
          LEFT JOIN vault.data_keys AS ki ON ki.id = si.data_key_id
          LEFT JOIN vault.secrets AS sd ON sd.token = l.masked_device_id
          LEFT JOIN vault.data_keys AS kd ON kd.id = sd.data_key_id
         WHERE l.user_id = g.wanted AND (l.message_id = ANY (g.keys) OR l.message_id IS NULL)
         ORDER BY l.create_date NULLS LAST, l.message_id NULLS LAST;
END
$$;

-- Step 1 for a quarantined message.
CREATE FUNCTION vault.request_unmask_quarantined(
    wanted_message_id text, reason text, os_user text, client_host text, vault_key_id text
) RETURNS TABLE (log_seq bigint, outcome text, row_count integer, other_key_id text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    wanted_message text := wanted_message_id;
    subject        text;
    sealed_to      text;
    n_found        integer;
    entry          audit.access_log;
BEGIN
    IF wanted_message IS NULL THEN
        RAISE EXCEPTION 'a message id is required';
    END IF;
    PERFORM audit.require_key_id(vault_key_id);
    subject := 'message_id:' || wanted_message;
    SELECT count(*), min(k.key_id) INTO n_found, sealed_to
      FROM vault.quarantine AS q JOIN vault.data_keys AS k ON k.id = q.data_key_id
     WHERE q.message_id = wanted_message;
    IF sealed_to IS NOT NULL AND sealed_to <> vault_key_id THEN
        entry := audit.refuse_key_mismatch(reason, subject, sealed_to, vault_key_id, os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, sealed_to;
        RETURN;
    END IF;
    entry := audit.grant_access('quarantined', wanted_message,
        CASE WHEN n_found = 0 THEN '{}'::text[] ELSE ARRAY[wanted_message] END, reason, subject, n_found,
        CASE WHEN n_found = 0 THEN 'not found: no quarantined message with this id' ELSE 'ok' END, os_user,
        client_host);
    RETURN QUERY SELECT entry.seq, entry.outcome, n_found, NULL::text;
END
$$;

-- Step 2 for a quarantined message.
CREATE FUNCTION vault.release_unmask_quarantined(grant_seq bigint)
RETURNS TABLE (
    message_id text, received_at timestamptz, quarantine_reason text, data_key_id bigint, key_id text,
    sealed_key bytea, sealed_body bytea
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    g audit.unmask_grants;
BEGIN
    g := audit.redeem_grant(grant_seq, 'quarantined');
    RETURN QUERY
        SELECT q.message_id, q.received_at, q.reason, q.data_key_id, k.key_id, k.sealed_key, q.sealed_body
          FROM vault.quarantine AS q JOIN vault.data_keys AS k ON k.id = q.data_key_id
         WHERE q.message_id = ANY (g.keys);
END
$$;

-- The tokens whose values were sealed under one data key: the candidates `unmask` tries when a value does not open
-- under its own token, to tell a value moved from another row (it opens under that row's token) from a damaged one.
-- Tokens are what analysts see anyway; no sealed bytes leave, so this is not an access to log.
CREATE FUNCTION vault.tokens_sealed_with(wanted_data_key_id bigint) RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.token FROM vault.secrets AS s WHERE s.data_key_id = wanted_data_key_id ORDER BY s.token
$$;

-- Records that a login outside piivault_compliance tried to read sealed values (the database refused it), so that
-- the attempt is on the log under the login's own name. It can only ever write a refusal with no rows.
CREATE FUNCTION audit.record_denied(
    action text, reason text, subject text, os_user text, client_host text
) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    entry audit.access_log;
BEGIN
    entry := audit.append_entry(action, coalesce(nullif(btrim(reason), ''), '(no reason given)'), subject, 0,
        'refused: not permitted (login is not a member of piivault_compliance)', os_user, client_host);
    RETURN entry.seq;
END
$$;

-- 0007's one-step functions are gone: they are what made a rolled-back read possible.
DROP FUNCTION vault.unmask_tokens(text[], text, text, text, integer);
DROP FUNCTION vault.unmask_user(text, text, text, text, integer);
DROP FUNCTION vault.unmask_quarantined(text, text, text, text);

-- An idle transaction holding the append lock must not stall every other officer.
ALTER FUNCTION audit.record_refusal(text, text, text, text, text, text) SET lock_timeout = '10s';
ALTER FUNCTION audit.record_denied(text, text, text, text, text) SET lock_timeout = '10s';

REVOKE ALL ON FUNCTION audit.require_key_id(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.refuse_key_mismatch(text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.grant_access(text, text, text[], text, text, integer, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.redeem_grant(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.request_unmask_tokens(text[], text, text, text, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.release_unmask_tokens(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.request_unmask_user(text, text, text, text, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.release_unmask_user(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.request_unmask_quarantined(text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.release_unmask_quarantined(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.request_unmask_tokens(text[], text, text, text, integer, text) TO piivault_compliance;
GRANT EXECUTE ON FUNCTION vault.release_unmask_tokens(bigint) TO piivault_compliance;
GRANT EXECUTE ON FUNCTION vault.request_unmask_user(text, text, text, text, integer, text) TO piivault_compliance;
GRANT EXECUTE ON FUNCTION vault.release_unmask_user(bigint) TO piivault_compliance;
GRANT EXECUTE ON FUNCTION vault.request_unmask_quarantined(text, text, text, text, text) TO piivault_compliance;
GRANT EXECUTE ON FUNCTION vault.release_unmask_quarantined(bigint) TO piivault_compliance;

REVOKE ALL ON FUNCTION vault.tokens_sealed_with(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.record_denied(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.tokens_sealed_with(bigint) TO piivault_compliance;
GRANT USAGE ON SCHEMA audit TO piivault_etl, piivault_analyst;
GRANT EXECUTE ON FUNCTION audit.record_denied(text, text, text, text, text)
    TO piivault_etl, piivault_analyst, piivault_auditor;
