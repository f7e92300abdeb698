-- `piivault lookup`: which logins involve a given ip or device id, through the gate of 10_audit.sql; and the token
-- versions the vault holds. The live definitions (docs/ARCHITECTURE.md, "Migrations and definitions").

-- The version n of an `ip.vn.` / `dev.vn.` token; NULL for anything else.
CREATE OR REPLACE FUNCTION vault.token_version(token text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN token ~ '^(ip|dev)\.v[1-9][0-9]{0,8}\.' THEN substring(token from '^[a-z]+\.v([0-9]+)\.')::integer END
$$;
REVOKE ALL ON FUNCTION vault.token_version(text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.token_version(text) TO piivault_compliance;

-- The vault's tokens by field and version, as ranges of its primary key: one row per field and version present, the
-- tokens `ip.v3.*` being the keys from low 'ip.v3.' (included) to high 'ip.v3/' (excluded; '/' is the byte after
-- '.', and the key is in byte order, 0023). A loose scan of the primary key: one probe per row returned, instead of
-- an index of its own that every sealed value paid for (0025). A token of another form is stepped over one at a
-- time (the ETL writes no other form).
CREATE OR REPLACE FUNCTION vault.token_version_ranges() RETURNS TABLE (version integer, low text, high text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    ROWS 4
AS $$
    WITH RECURSIVE p(token) AS (
        SELECT min(s.token) FROM vault.secrets AS s
        UNION ALL
        SELECT (SELECT min(s.token) FROM vault.secrets AS s
                 WHERE s.token > p.token
                   AND s.token >= coalesce(substring(p.token from '^((?:ip|dev)\.v[1-9][0-9]{0,8})\.') || '/',
                                           p.token))
          FROM p WHERE p.token IS NOT NULL
    ), prefixes(prefix) AS (
        SELECT substring(p.token from '^((?:ip|dev)\.v[1-9][0-9]{0,8})\.') FROM p
    )
    SELECT substring(x.prefix from '\.v([0-9]+)$')::integer, x.prefix || '.', x.prefix || '/'
      FROM prefixes AS x WHERE x.prefix IS NOT NULL
$$;
REVOKE ALL ON FUNCTION vault.token_version_ranges()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- The versions tokens in the vault carry now (not the versions ETL runs used: lookup would keep asking for a version
-- retokenize had emptied).
CREATE OR REPLACE FUNCTION vault.token_versions() RETURNS SETOF integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
BEGIN
    RETURN QUERY SELECT DISTINCT r.version FROM vault.token_version_ranges() AS r ORDER BY 1;
END
$$;
REVOKE ALL ON FUNCTION vault.token_versions()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.token_versions() TO piivault_compliance;

-- Lookup, step 1: the logins whose ip or device id token is one of `tokens` (the client computed them from the
-- values; the values never reach the database or the log). Refused over max_rows. The grant names the rows as
-- release_unmask_user does (message id, or row address for a seed row).
CREATE OR REPLACE FUNCTION vault.request_lookup_tokens(
    tokens text[], reason text, os_user text, client_host text, max_rows integer
) RETURNS TABLE (log_seq bigint, outcome text, row_count integer, other_key_id text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    wanted  text[];
    digests bigint[];
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
    -- Through the digest indexes of migration 0022, then the tokens themselves.
    digests := ARRAY(SELECT hashtextextended(t, 0) FROM unnest(wanted) AS t);
    SELECT count(*), coalesce(array_agg(coalesce(l.message_id, 'tid:' || l.ctid::text)), '{}')
      INTO n_found, ids
      FROM public.user_logins AS l
     WHERE (hashtextextended(l.masked_ip, 0) = ANY (digests) AND l.masked_ip = ANY (wanted))
        OR (hashtextextended(l.masked_device_id, 0) = ANY (digests) AND l.masked_device_id = ANY (wanted));
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
REVOKE ALL ON FUNCTION vault.request_lookup_tokens(text[], text, text, text, integer)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.request_lookup_tokens(text[], text, text, text, integer) TO piivault_compliance;

-- Lookup, step 2: exactly the logins counted at step 1 (tokens only, no sealed value).
CREATE OR REPLACE FUNCTION vault.release_lookup_tokens(grant_seq bigint)
RETURNS TABLE (
    user_id text, device_type text, masked_ip text, masked_device_id text, locale text, app_version integer,
    app_version_text text, create_date date, message_id text
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
#variable_conflict use_variable
DECLARE
    g       audit.access_grants;
    wanted  text[];
    digests bigint[];
BEGIN
    g := audit.claim_grant(grant_seq, 'lookup', 'tokens');
    wanted := string_to_array(g.wanted, ',');
    digests := ARRAY(SELECT hashtextextended(t, 0) FROM unnest(wanted) AS t);
    RETURN QUERY
        SELECT l.user_id::text, l.device_type::text, l.masked_ip::text, l.masked_device_id::text, l.locale::text,
               l.app_version, l.app_version_text, l.create_date, l.message_id
          FROM public.user_logins AS l
         WHERE ((hashtextextended(l.masked_ip, 0) = ANY (digests) AND l.masked_ip = ANY (wanted))
                OR (hashtextextended(l.masked_device_id, 0) = ANY (digests) AND l.masked_device_id = ANY (wanted)))
           AND (l.message_id = ANY (g.keys) OR (l.message_id IS NULL AND 'tid:' || l.ctid::text = ANY (g.keys)))
         ORDER BY l.create_date NULLS LAST, l.message_id NULLS LAST;
END
$$;
REVOKE ALL ON FUNCTION vault.release_lookup_tokens(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.release_lookup_tokens(bigint) TO piivault_compliance;
