-- `piivault unmask`: the live definitions (docs/ARCHITECTURE.md, "Migrations and definitions").
--
-- Unmasking runs through the gate of 10_audit.sql, so that no sealed value leaves the database before its access-log
-- entry is committed (a one-step function let a compliance login BEGIN, read the rows and ROLLBACK the entry):
--   1. vault.request_unmask_*  appends the entry (its row count and outcome decided here, from the rows found) and
--      records a grant naming exactly those rows; it returns no sealed bytes. The caller COMMITs.
--   2. vault.release_unmask_*  returns the sealed rows of a grant, only to the login that asked, only once, only
--      within five minutes, and only if the grant was committed by an earlier transaction.
-- The rows are fixed at step 1, so rows the ETL adds in between are never released under an entry that did not
-- count them. A request refuses only when no row is sealed to the caller's vault key (one entry); the client reports
-- rows sealed to other keys row by row. What was not found has an outcome of its own ('unknown tokens: ...',
-- 'not found: ...').

-- Unmask by tokens, step 1. Refused (one entry, no grant) over the row cap, or when every token found is sealed to
-- another vault key than the caller's; tokens sealed to another key beside tokens sealed to the caller's are
-- granted, and the client reports them row by row.
CREATE OR REPLACE FUNCTION vault.request_unmask_tokens(
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
    n_mine      integer;
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
    IF EXISTS (SELECT 1 FROM unnest(wanted) AS t WHERE NOT audit.is_token(t)) THEN
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
           min(k.key_id) FILTER (WHERE k.key_id <> vault_key_id),
           count(*) FILTER (WHERE k.key_id = vault_key_id)
      INTO found_keys, other_key, n_mine
      FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id
     WHERE s.token = ANY (wanted);
    IF other_key IS NOT NULL AND n_mine = 0 THEN
        entry := audit.refuse_key_mismatch(reason, subject, other_key, vault_key_id, os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, other_key;
        RETURN;
    END IF;
    n_found := cardinality(found_keys);
    result := CASE WHEN n_found = cardinality(wanted) THEN 'ok'
                   ELSE format('unknown tokens: %s of %s not in the vault', cardinality(wanted) - n_found,
                               cardinality(wanted)) END;
    entry := audit.append_and_grant('unmask', 'tokens', '', found_keys, reason, subject, n_found, result, os_user,
                                    client_host);
    RETURN QUERY SELECT entry.seq, entry.outcome, n_found, NULL::text;
END
$$;
REVOKE ALL ON FUNCTION vault.request_unmask_tokens(text[], text, text, text, integer, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.request_unmask_tokens(text[], text, text, text, integer, text) TO piivault_compliance;

-- Unmask by tokens, step 2.
CREATE OR REPLACE FUNCTION vault.release_unmask_tokens(grant_seq bigint)
RETURNS TABLE (token text, field text, data_key_id bigint, key_id text, sealed_key bytea, sealed bytea)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    g audit.access_grants;
BEGIN
    g := audit.claim_grant(grant_seq, 'unmask', 'tokens');
    RETURN QUERY
        SELECT s.token, s.field, s.data_key_id, k.key_id, k.sealed_key, s.sealed
          FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id
         WHERE s.token = ANY (g.keys)
         ORDER BY s.token;
END
$$;
REVOKE ALL ON FUNCTION vault.release_unmask_tokens(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.release_unmask_tokens(bigint) TO piivault_compliance;

-- Unmask by user id, step 1: every user_logins row of that user (refused above max_rows). The grant names each row:
-- by its message id, or for a seed row (no message id) by its row address as 'tid:(page,item)'. Seed rows cannot
-- be updated or added any more (constraint user_logins_message_id_required), so their addresses hold until deleted.
CREATE OR REPLACE FUNCTION vault.request_unmask_user(
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
    n_mine      bigint;
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
    SELECT count(*), coalesce(array_agg(coalesce(l.message_id, 'tid:' || l.ctid::text)), '{}')
      INTO n_found, ids
      FROM public.user_logins AS l WHERE l.user_id = wanted_user;
    IF n_found > max_rows THEN
        entry := audit.append_entry('unmask', reason, subject, 0,
            format('refused: over row cap (%s rows, cap %s)', n_found, max_rows), os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, NULL::text;
        RETURN;
    END IF;
    SELECT min(k.key_id) FILTER (WHERE k.key_id <> vault_key_id), count(*) FILTER (WHERE k.key_id = vault_key_id)
      INTO other_key, n_mine
      FROM public.user_logins AS l
      JOIN vault.secrets AS s ON s.token IN (l.masked_ip, l.masked_device_id)
      JOIN vault.data_keys AS k ON k.id = s.data_key_id
     WHERE l.user_id = wanted_user;
    IF other_key IS NOT NULL AND n_mine = 0 THEN
        entry := audit.refuse_key_mismatch(reason, subject, other_key, vault_key_id, os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, other_key;
        RETURN;
    END IF;
    entry := audit.append_and_grant('unmask', 'user', wanted_user, ids, reason, subject, n_found::integer,
        CASE WHEN n_found = 0 THEN 'not found: no logins for this user id' ELSE 'ok' END, os_user, client_host);
    RETURN QUERY SELECT entry.seq, entry.outcome, n_found::integer, NULL::text;
END
$$;
REVOKE ALL ON FUNCTION vault.request_unmask_user(text, text, text, text, integer, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.request_unmask_user(text, text, text, text, integer, text) TO piivault_compliance;

-- Unmask by user id, step 2: exactly the logins counted at step 1, with the sealed ip and device_id (NULL where a
-- token has no sealed value, e.g. a seed row).
CREATE OR REPLACE FUNCTION vault.release_unmask_user(grant_seq bigint)
RETURNS TABLE (
    user_id text, device_type text, masked_ip text, masked_device_id text, locale text, app_version integer,
    app_version_text text, create_date date, message_id text,
    ip_data_key_id bigint, ip_key_id text, ip_sealed_key bytea, ip_sealed bytea,
    device_data_key_id bigint, device_key_id text, device_sealed_key bytea, device_sealed bytea
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    g audit.access_grants;
BEGIN
    g := audit.claim_grant(grant_seq, 'unmask', 'user');
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
         WHERE l.user_id = g.wanted
           AND (l.message_id = ANY (g.keys) OR (l.message_id IS NULL AND 'tid:' || l.ctid::text = ANY (g.keys)))
         ORDER BY l.create_date NULLS LAST, l.message_id NULLS LAST;
END
$$;
REVOKE ALL ON FUNCTION vault.release_unmask_user(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.release_unmask_user(bigint) TO piivault_compliance;

-- Unmask a quarantined message, step 1.
CREATE OR REPLACE FUNCTION vault.request_unmask_quarantined(
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
    entry := audit.append_and_grant('unmask', 'quarantined', wanted_message,
        CASE WHEN n_found = 0 THEN '{}'::text[] ELSE ARRAY[wanted_message] END, reason, subject, n_found,
        CASE WHEN n_found = 0 THEN 'not found: no quarantined message with this id' ELSE 'ok' END, os_user,
        client_host);
    RETURN QUERY SELECT entry.seq, entry.outcome, n_found, NULL::text;
END
$$;
REVOKE ALL ON FUNCTION vault.request_unmask_quarantined(text, text, text, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.request_unmask_quarantined(text, text, text, text, text) TO piivault_compliance;

-- Unmask a quarantined message, step 2.
CREATE OR REPLACE FUNCTION vault.release_unmask_quarantined(grant_seq bigint)
RETURNS TABLE (
    message_id text, received_at timestamptz, quarantine_reason text, data_key_id bigint, key_id text,
    sealed_key bytea, sealed_body bytea
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    g audit.access_grants;
BEGIN
    g := audit.claim_grant(grant_seq, 'unmask', 'quarantined');
    RETURN QUERY
        SELECT q.message_id, q.received_at, q.reason, q.data_key_id, k.key_id, k.sealed_key, q.sealed_body
          FROM vault.quarantine AS q JOIN vault.data_keys AS k ON k.id = q.data_key_id
         WHERE q.message_id = ANY (g.keys);
END
$$;
REVOKE ALL ON FUNCTION vault.release_unmask_quarantined(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.release_unmask_quarantined(bigint) TO piivault_compliance;

-- The tokens whose values were sealed under one data key: the candidates `unmask` tries when a value does not open
-- under its own token, to tell a value moved from another row (it opens under that row's token) from a damaged one.
-- Tokens are what analysts see anyway; no sealed bytes leave, so this is not an access to log.
CREATE OR REPLACE FUNCTION vault.tokens_sealed_with(wanted_data_key_id bigint) RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
    SELECT s.token FROM vault.secrets AS s WHERE s.data_key_id = wanted_data_key_id ORDER BY s.token
$$;
REVOKE ALL ON FUNCTION vault.tokens_sealed_with(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.tokens_sealed_with(bigint) TO piivault_compliance;
