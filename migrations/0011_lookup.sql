-- `piivault lookup` (issue 12): which logins involve a given ip or device id, through the logged-access gate of 0010.
--
-- Indexes for the data-subject requests: by user id (unmask --user-id, forget) and by token (lookup).
CREATE INDEX IF NOT EXISTS user_logins_user_id_idx ON public.user_logins (user_id);
CREATE INDEX IF NOT EXISTS user_logins_masked_ip_idx ON public.user_logins (masked_ip);
CREATE INDEX IF NOT EXISTS user_logins_masked_device_id_idx ON public.user_logins (masked_device_id);

-- The token key versions tokens may carry: those the ETL runs recorded (0012), and 1 (runs before that recorded
-- none). Versions only, no key material; lookup computes a value's token under each. PL/pgSQL, so that the column
-- (added by 0012, which may be applied after this file) is looked up when the function runs, not when it is created.
CREATE FUNCTION vault.token_versions() RETURNS SETOF integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
        SELECT 1
        UNION
        SELECT r.token_key_version FROM public.etl_runs AS r WHERE r.token_key_version IS NOT NULL
        ORDER BY 1;
END
$$;

-- Lookup, step 1: the logins whose ip or device id token is one of `tokens` (the client computed them from the
-- values; the values never reach the database or the log). Refused over max_rows. The grant names the rows as
-- release_unmask_user does (message id, or row address for a seed row).
CREATE FUNCTION vault.request_lookup_tokens(
    tokens text[], reason text, os_user text, client_host text, max_rows integer
) RETURNS TABLE (log_seq bigint, outcome text, row_count integer, other_key_id text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    wanted  text[];
    ids     text[];
    n_found bigint;
    subject text;
    entry   audit.access_log;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be 1 or more';
    END IF;
    SELECT coalesce(array_agg(DISTINCT t COLLATE "C" ORDER BY t COLLATE "C"), '{}') INTO wanted
      FROM unnest(tokens) AS t WHERE t IS NOT NULL;
    IF cardinality(wanted) = 0 THEN
        RAISE EXCEPTION 'at least one token is required';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(wanted) AS t WHERE NOT audit.is_token(t)) THEN
        RAISE EXCEPTION 'not a token: tokens look like ip.v1.<64 hex digits> or dev.v1.<64 hex digits>';
    END IF;
    subject := 'tokens:' || array_to_string(wanted, ',');
    SELECT count(*), coalesce(array_agg(coalesce(l.message_id, 'tid:' || l.ctid::text)), '{}')
      INTO n_found, ids
      FROM public.user_logins AS l
     WHERE l.masked_ip = ANY (wanted) OR l.masked_device_id = ANY (wanted);
    IF n_found > max_rows THEN
        entry := audit.append_entry('lookup', reason, subject, 0,
            format('refused: over row cap (%s rows, cap %s)', n_found, max_rows), os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, 0, NULL::text;
        RETURN;
    END IF;
    entry := audit.append_and_grant('lookup', 'tokens', array_to_string(wanted, ','), ids, reason, subject,
        n_found::integer, CASE WHEN n_found = 0 THEN 'not found: no logins with these tokens' ELSE 'ok' END,
        os_user, client_host);
    RETURN QUERY SELECT entry.seq, entry.outcome, n_found::integer, NULL::text;
END
$$;

-- Lookup, step 2: exactly the logins counted at step 1 (tokens only, no sealed value).
CREATE FUNCTION vault.release_lookup_tokens(grant_seq bigint)
RETURNS TABLE (
    user_id text, device_type text, masked_ip text, masked_device_id text, locale text, app_version integer,
    app_version_text text, create_date date, message_id text
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    g      audit.access_grants;
    wanted text[];
BEGIN
    g := audit.claim_grant(grant_seq, 'lookup', 'tokens');
    wanted := string_to_array(g.wanted, ',');
    RETURN QUERY
        SELECT l.user_id::text, l.device_type::text, l.masked_ip::text, l.masked_device_id::text, l.locale::text,
               l.app_version, l.app_version_text, l.create_date, l.message_id
          FROM public.user_logins AS l
         WHERE (l.masked_ip = ANY (wanted) OR l.masked_device_id = ANY (wanted))
           AND (l.message_id = ANY (g.keys) OR (l.message_id IS NULL AND 'tid:' || l.ctid::text = ANY (g.keys)))
         ORDER BY l.create_date NULLS LAST, l.message_id NULLS LAST;
END
$$;

REVOKE ALL ON FUNCTION vault.token_versions() FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.request_lookup_tokens(text[], text, text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION vault.release_lookup_tokens(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.token_versions() TO piivault_compliance;
GRANT EXECUTE ON FUNCTION vault.request_lookup_tokens(text[], text, text, text, integer) TO piivault_compliance;
GRANT EXECUTE ON FUNCTION vault.release_lookup_tokens(bigint) TO piivault_compliance;
