-- What `piivault unmask` needs beyond 0007: outcomes of their own for what was not found, the tokens sealed under a
-- data key (to tell a value moved between rows from a damaged one), and a logged refusal for callers who are not
-- compliance officers. 0007 is applied as it is; the functions it made are replaced here with the same signatures,
-- so their grants stay. Every call now returns at least one row: when nothing matched (or the row cap refused), a
-- single row with only log_seq and outcome set, so the caller always learns which entry records its access.

-- Like 0007's, but a request naming tokens the vault does not hold is logged as
-- 'unknown tokens: K of N not in the vault' instead of 'ok' (the rows that exist are still returned).
CREATE OR REPLACE FUNCTION vault.unmask_tokens(
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
    IF cardinality(wanted) = 0 THEN
        RAISE EXCEPTION 'at least one token is required';
    END IF;
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
    entry := audit.append_entry('unmask', reason, subject, found,
        CASE WHEN found = cardinality(wanted) THEN 'ok'
             ELSE format('unknown tokens: %s of %s not in the vault', cardinality(wanted) - found, cardinality(wanted))
        END,
        os_user, client_host);
    RETURN QUERY
        SELECT s.token, s.field, s.data_key_id, k.key_id, k.sealed_key, s.sealed, entry.seq, entry.outcome
          FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id
         WHERE s.token = ANY (wanted)
         ORDER BY s.token;
    IF found = 0 THEN  -- still tell the caller which entry records the access
        RETURN QUERY SELECT NULL::text, NULL::text, NULL::bigint, NULL::text, NULL::bytea, NULL::bytea,
                            entry.seq, entry.outcome;
    END IF;
END
$$;

-- Like 0007's, but a user id with no logins is logged as 'not found: no logins for this user id'.
CREATE OR REPLACE FUNCTION vault.unmask_user(
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
    entry := audit.append_entry('unmask', reason, subject, found::integer,
        CASE WHEN found = 0 THEN 'not found: no logins for this user id' ELSE 'ok' END, os_user, client_host);
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
    IF found = 0 THEN
        RETURN QUERY SELECT NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::integer, NULL::text,
                            NULL::date, NULL::text, NULL::bigint, NULL::text, NULL::bytea, NULL::bytea,
                            NULL::bigint, NULL::text, NULL::bytea, NULL::bytea, entry.seq, entry.outcome;
    END IF;
END
$$;

-- Like 0007's, but an unknown message id is logged as 'not found: no quarantined message with this id'.
CREATE OR REPLACE FUNCTION vault.unmask_quarantined(
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
    entry := audit.append_entry('unmask', reason, 'message_id:' || wanted_message, found,
        CASE WHEN found = 0 THEN 'not found: no quarantined message with this id' ELSE 'ok' END, os_user,
        client_host);
    RETURN QUERY
        SELECT q.message_id, q.received_at, q.reason, q.data_key_id, k.key_id, k.sealed_key, q.sealed_body,
               entry.seq, entry.outcome
          FROM vault.quarantine AS q JOIN vault.data_keys AS k ON k.id = q.data_key_id
         WHERE q.message_id = wanted_message;
    IF found = 0 THEN
        RETURN QUERY SELECT NULL::text, NULL::timestamptz, NULL::text, NULL::bigint, NULL::text, NULL::bytea,
                            NULL::bytea, entry.seq, entry.outcome;
    END IF;
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

REVOKE ALL ON FUNCTION vault.tokens_sealed_with(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.record_denied(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.tokens_sealed_with(bigint) TO piivault_compliance;
GRANT USAGE ON SCHEMA audit TO piivault_etl, piivault_analyst;
GRANT EXECUTE ON FUNCTION audit.record_denied(text, text, text, text, text)
    TO piivault_etl, piivault_analyst, piivault_auditor;
