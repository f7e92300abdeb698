-- One logged-access gate for every compliance action, and hardening of the unmask functions (issues 10 and 14).
--
-- The gate (what 0008 built for unmask, made generic): an action that reads or changes sealed data runs in two steps.
--   1. request: a SECURITY DEFINER function `<schema>.request_<action>_<kind>` decides what the access covers, then
--      calls audit.append_and_grant, which appends the access-log entry and records a grant naming exactly those
--      rows, keyed by the entry's seq and the action. No sealed byte is returned. The caller's transaction commits.
--   2. release: `<schema>.release_<action>_<kind>(seq)` calls audit.claim_grant, which passes only for a grant of
--      that action and kind, committed by an earlier transaction, claimed by the same login, once, within five
--      minutes; then it does the action on exactly the granted rows. An action that deletes instead writes its entry
--      in the same transaction as the deletion (audit.append_entry), so neither exists without the other.
-- A new action (lookup, forget, rewrap, retokenize, retention) adds its request/release pair here in a new migration,
-- and its Swift side goes through `LoggedAccessGate`; see SECURITY.md ("The logged-access gate").
--
-- Also here (issue 14):
-- - the token shape in one function, audit.is_token, that the Swift `Token` type mirrors;
-- - release_unmask_user returns exactly the rows its entry counted (seed rows without a message id by row address),
--   and no new row of user_logins may lack a message id;
-- - audit.record_denied, callable by logins outside compliance, becomes a procedure that commits its append, so its
--   caller cannot hold the log's append lock past the CALL, and it takes only fixed values for action and subject;
-- - a request no longer refuses everything when some rows are sealed to another vault key: it refuses only when no
--   row is sealed to the caller's key, and the client reports the others row by row.

-- The token shape: `ip` or `dev`, `.v`, a version 1 to 999999999 without leading zeros, `.`, 64 lowercase hex digits.
CREATE FUNCTION audit.is_token(candidate text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(candidate ~ '^(ip|dev)\.v[1-9][0-9]{0,8}\.[0-9a-f]{64}$', false)
$$;

-- Grants of every action. Replaces audit.unmask_grants (a grant lives five minutes, so none is carried over: a
-- request made before this migration must be asked again).
CREATE TABLE audit.access_grants (
    seq         bigint      PRIMARY KEY,  -- the entry's seq (no foreign key: TRUNCATE of the log must meet its own trigger)
    action      text        NOT NULL,     -- the entry's action: unmask, lookup, forget, ...
    kind        text        NOT NULL,     -- how the request named its rows: tokens, user, quarantined, ...
    db_user     text        NOT NULL,
    -- what was asked for (a user id, a message id; '' for tokens)
    wanted      text        NOT NULL,
    -- the rows granted, as the action's release function identifies them
    keys        text[]      NOT NULL,
    created_xid xid8        NOT NULL DEFAULT pg_current_xact_id(),
    claimed_at  timestamptz
);
REVOKE ALL ON audit.access_grants FROM PUBLIC;

-- Step 1 of the gate: appends the entry of an access and records its grant, in the caller's transaction. Not
-- callable by any role: request functions use it.
CREATE FUNCTION audit.append_and_grant(
    action text, kind text, wanted text, keys text[], reason text, subject text, row_count integer, outcome text,
    os_user text, client_host text
) RETURNS audit.access_log
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    entry audit.access_log;
BEGIN
    entry := audit.append_entry(action, reason, subject, row_count, outcome, os_user, client_host);
    INSERT INTO audit.access_grants (seq, action, kind, db_user, wanted, keys)
    VALUES (entry.seq, action, kind, session_user, wanted, keys);
    RETURN entry;
END
$$;

-- Step 2 of the gate: the grant `grant_seq` of `wanted_action`/`wanted_kind`, locked and marked claimed; raises
-- (42501) unless it was committed by an earlier transaction, by this login, is unclaimed and under five minutes old.
CREATE FUNCTION audit.claim_grant(grant_seq bigint, wanted_action text, wanted_kind text) RETURNS audit.access_grants
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    g        audit.access_grants;
    asked_at timestamptz;
BEGIN
    SELECT * INTO g FROM audit.access_grants AS a WHERE a.seq = grant_seq FOR UPDATE;
    IF g.seq IS NULL OR g.db_user <> session_user OR g.action <> wanted_action OR g.kind <> wanted_kind THEN
        RAISE EXCEPTION 'no % grant % of this kind for this login', wanted_action, grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF g.created_xid = pg_current_xact_id_if_assigned() THEN
        RAISE EXCEPTION 'the access-log entry % must be committed before its values are released', grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF g.claimed_at IS NOT NULL THEN
        RAISE EXCEPTION '% grant % was already released; ask again', wanted_action, grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT l.at INTO asked_at FROM audit.access_log AS l WHERE l.seq = grant_seq;
    IF asked_at < clock_timestamp() - interval '5 minutes' THEN
        RAISE EXCEPTION '% grant % has expired; ask again', wanted_action, grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE audit.access_grants AS a SET claimed_at = clock_timestamp() WHERE a.seq = grant_seq;
    RETURN g;
END
$$;

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

-- Unmask by tokens, step 2.
CREATE OR REPLACE FUNCTION vault.release_unmask_tokens(grant_seq bigint)
RETURNS TABLE (token text, field text, data_key_id bigint, key_id text, sealed_key bytea, sealed bytea)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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

-- Unmask by user id, step 1: every user_logins row of that user (refused above max_rows). The grant names each row:
-- by its message id, or for a seed row (no message id) by its row address as 'tid:(page,item)'. Seed rows cannot
-- be updated or added any more (the check below), so their addresses hold until they are deleted.
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

-- Unmask a quarantined message, step 2.
CREATE OR REPLACE FUNCTION vault.release_unmask_quarantined(grant_seq bigint)
RETURNS TABLE (
    message_id text, received_at timestamptz, quarantine_reason text, data_key_id bigint, key_id text,
    sealed_key bytea, sealed_body bytea
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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

DROP FUNCTION audit.grant_access(text, text, text[], text, text, integer, text, text, text);
DROP FUNCTION audit.redeem_grant(bigint, text);
DROP TABLE audit.unmask_grants;

-- Every new login row carries its message id (the ETL always sets one), so that a grant can name its rows. Seed
-- rows adopted from an existing table keep their NULL (NOT VALID: existing rows are not checked).
ALTER TABLE public.user_logins
    ADD CONSTRAINT user_logins_message_id_required CHECK (message_id IS NOT NULL) NOT VALID;

-- The refusal a login outside piivault_compliance records when the database refused it. Appending takes the log's
-- append lock until the appending transaction ends, so a login outside compliance must not append in a transaction
-- it keeps open (`BEGIN; <append>; SELECT pg_sleep(600)` stalled every unmask). 0008's function is therefore
-- replaced by a procedure, audit.record_denied, that appends and then COMMITs: called on its own, the COMMIT
-- releases the lock before CALL returns; called where it cannot commit (inside BEGIN ... COMMIT, a multi-statement
-- query string, a function), the COMMIT fails and the error rolls the append back, lock included. Either way the
-- caller never holds the lock past its CALL. The append itself is audit.append_denied, which refuses to run unless
-- audit.record_denied called it (a procedure with SECURITY DEFINER may not COMMIT, so the two are split).
-- Action and subject take fixed values only, so that no one can write text of their choosing (a value, say) into
-- the immutable log: the action is a compliance action's name; the subject is the kind of request ('tokens',
-- 'user_id', 'message_id') or 'tokens:' and well-formed tokens.
DROP FUNCTION audit.record_denied(text, text, text, text, text);

CREATE FUNCTION audit.append_denied(
    action text, reason text, subject text, os_user text, client_host text
) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '5s'
AS $$
#variable_conflict use_variable
DECLARE
    stack text;
    entry audit.access_log;
BEGIN
    -- Line 1 is this function, line 2 its caller: it must be the procedure, which commits right after.
    GET DIAGNOSTICS stack = PG_CONTEXT;
    IF split_part(stack, E'\n', 2)
       !~ '^PL/pgSQL function audit\.record_denied\(text,text,text,text,text,bigint\) line [0-9]+ at assignment$' THEN
        RAISE EXCEPTION 'call audit.record_denied (CALL audit.record_denied(...)), not audit.append_denied'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF action IS NULL OR action NOT IN ('unmask', 'lookup', 'forget', 'rewrap', 'retokenize', 'retention') THEN
        RAISE EXCEPTION 'action must be one of unmask, lookup, forget, rewrap, retokenize, retention'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF subject IS NULL OR NOT (
           subject IN ('tokens', 'user_id', 'message_id')
           OR (subject LIKE 'tokens:%' AND NOT EXISTS (
                   SELECT 1 FROM unnest(string_to_array(substr(subject, 8), ',')) AS t WHERE NOT audit.is_token(t))))
    THEN
        RAISE EXCEPTION 'subject must be tokens, user_id or message_id, or tokens: followed by tokens'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    entry := audit.append_entry(action, coalesce(nullif(btrim(reason), ''), '(no reason given)'), subject, 0,
        'refused: not permitted (login is not a member of piivault_compliance)', os_user, client_host);
    RETURN entry.seq;
END
$$;

-- CALL audit.record_denied(action, reason, subject, os_user, client_host, NULL) returns the entry's seq. Not
-- SECURITY DEFINER and without SET clauses: either would forbid its COMMIT.
CREATE PROCEDURE audit.record_denied(
    action text, reason text, subject text, os_user text, client_host text, INOUT seq bigint DEFAULT NULL
)
    LANGUAGE plpgsql
AS $$
BEGIN
    seq := audit.append_denied(action, reason, subject, os_user, client_host);
    COMMIT;
END
$$;

REVOKE ALL ON FUNCTION audit.is_token(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.append_and_grant(text, text, text, text[], text, text, integer, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.claim_grant(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.append_denied(text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE audit.record_denied(text, text, text, text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.append_denied(text, text, text, text, text)
    TO piivault_etl, piivault_analyst, piivault_auditor;
GRANT EXECUTE ON PROCEDURE audit.record_denied(text, text, text, text, text, bigint)
    TO piivault_etl, piivault_analyst, piivault_auditor;
