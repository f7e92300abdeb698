-- The access log and the logged-access gate.
-- The live definitions (docs/ARCHITECTURE.md, "Migrations and definitions").
--
-- The access log is append-only and hash-chained. Every entry is appended by audit.append_entry, which computes the
-- chain inside Postgres:
--     hash(n) = sha256(hash(n-1) || audit.entry_bytes(entry n)),  hash(0) = 32 zero bytes.
--
-- The gate: an action that reads or changes sealed data runs in two steps.
--   1. request: a SECURITY DEFINER function `<schema>.request_<action>_<kind>` decides what the access covers, then
--      calls audit.append_and_grant, which appends the access-log entry and records a grant naming exactly those
--      rows, keyed by the entry's seq and the action. No sealed byte is returned. The caller's transaction commits.
--   2. release: `<schema>.release_<action>_<kind>(seq)` calls audit.claim_grant, which passes only for a grant of
--      that action and kind, committed by an earlier transaction, claimed by the same login, once, within five
--      minutes; then it does the action on exactly the granted rows. An action that deletes instead writes its entry
--      in the same transaction as the deletion (audit.append_entry), so neither exists without the other.
-- Refusals decided in SQL (over the row cap, a key mismatch) are returned as a row, not raised, because a raise would
-- roll back the entry that records the refusal.

-- The trigger of audit.access_log that refuses UPDATE, DELETE and TRUNCATE. Triggers fire for every role, the table
-- owner and superusers included.
CREATE OR REPLACE FUNCTION audit.refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    RAISE EXCEPTION 'audit.access_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
REVOKE ALL ON FUNCTION audit.refuse_change()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- One field of bytes(entry): its UTF-8 bytes prefixed by their length as a 4-byte big-endian integer, so that no
-- two different entries serialise to the same bytes (a field cannot "borrow" characters from its neighbour).
CREATE OR REPLACE FUNCTION audit.length_prefixed(field text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT int4send(octet_length(convert_to(field, 'UTF8'))) || convert_to(field, 'UTF8')
$$;
REVOKE ALL ON FUNCTION audit.length_prefixed(text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION audit.length_prefixed(text) TO piivault_auditor;

-- bytes(entry): the ten fields in this order, each length-prefixed: seq (decimal), at (UTC,
-- YYYY-MM-DDTHH:MM:SS.ffffffZ, always 6 fractional digits), db_user, os_user, client_host, action, reason, subject,
-- row_count (decimal), outcome. An auditor recomputes it with any tool (Tests/crosscheck/verify_access_log.py).
-- YYYY has no era: a time moved to the same instant BC would print the same and keep its hash while leaving every
-- --since view, so a time before year 1 gets ' BC' and an infinite one its own text. The log never holds either
-- (append_entry stamps clock_timestamp()), so every real entry's bytes are as they always were.
CREATE OR REPLACE FUNCTION audit.entry_bytes(
    seq bigint, at timestamptz, db_user text, os_user text, client_host text, action text, reason text,
    subject text, row_count integer, outcome text
) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT audit.length_prefixed(seq::text)
        || audit.length_prefixed(coalesce(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                                          || CASE WHEN at < '0001-01-01 00:00:00+00' THEN ' BC' ELSE '' END,
                                          at::text))
        || audit.length_prefixed(db_user)
        || audit.length_prefixed(os_user)
        || audit.length_prefixed(client_host)
        || audit.length_prefixed(action)
        || audit.length_prefixed(reason)
        || audit.length_prefixed(subject)
        || audit.length_prefixed(row_count::text)
        || audit.length_prefixed(outcome)
$$;
REVOKE ALL ON FUNCTION audit.entry_bytes(bigint, timestamptz, text, text, text, text, text, text, integer, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION audit.entry_bytes(bigint, timestamptz, text, text, text, text, text, text, integer, text)
    TO piivault_auditor;

-- audit.append_entry: appends one entry and returns it (its action must be a row of audit.actions: 22023). The only writer of audit.access_log; not
-- callable by any piivault role directly, so a caller can never choose the sequence number, time, database user or
-- hash. An access the database cannot refuse (by a superuser, or by a login that is not a member of
-- piivault_compliance, such as the owner of these functions) is marked in its outcome, which the hash covers:
-- ' [outside piivault_compliance: superuser]' or ' [outside piivault_compliance: not a member]'. Refusals are not
-- marked (they give nothing), nor a direct call of this function (not an access: only the owner and superusers can
-- make one, and they can write the table directly anyway). The entry's bytes and hash are computed as before, so
-- old entries verify unchanged.
CREATE OR REPLACE FUNCTION audit.append_entry(
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
    superuser boolean;
    stack     text;
    gate      audit.action_policies;
    asked     text;
    problem   text;
    diverted  text;    -- the action of an access turned into a request
    executes  bigint;  -- the approved request this access executes
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'a reason is required for every access-log entry'
            USING HINT = 'give the reason for this access (case number, request id)';
    END IF;
    IF action IS NULL OR btrim(action) = '' THEN
        RAISE EXCEPTION 'an action is required for every access-log entry';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM audit.actions AS a WHERE a.action = action) THEN
        RAISE EXCEPTION 'unknown action %: the access log names only the actions of audit.actions', action
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF outcome IS NULL OR btrim(outcome) = '' THEN
        RAISE EXCEPTION 'an outcome is required for every access-log entry';
    END IF;
    IF row_count IS NULL OR row_count < 0 THEN
        RAISE EXCEPTION 'row_count must be zero or more';
    END IF;

    -- An access goes through a vault (or audit) function; only the owner and superusers may call this one directly,
    -- and they can write the table directly too, so a direct call is not marked.
    GET DIAGNOSTICS stack = PG_CONTEXT;

    -- EXCLUSIVE conflicts with itself and with INSERT's ROW EXCLUSIVE but not with readers: appends run one at a
    -- time until this transaction ends, so every append sees the previous head and the chain never forks. The
    -- primary key on seq is the second line of defence (a stale snapshot fails instead of forking).
    -- Taken before the policy is read: audit.set_policy holds it from its entry to its commit, so an access either
    -- comes before the change in the log or is judged by the changed policy (read after the wait, by a statement
    -- of its own), never logged after a policy it was not held to.
    LOCK TABLE audit.access_log IN EXCLUSIVE MODE;

    -- Dual control (15_dual_control.sql): an access of an action whose policy asks for approvals becomes a
    -- `request` entry when no request number is set in the session (the caller grants and deletes nothing: see
    -- audit.append_and_grant and the forget functions), and is refused unless the request set may be executed.
    IF outcome NOT LIKE 'refused%' AND split_part(stack, E'\n', 2) ~ '^PL/pgSQL function (vault|audit)\.' THEN
        gate := audit.effective_policy(action);
        IF coalesce(gate.approvals, 0) > 0 THEN
            asked := nullif(btrim(current_setting('piivault.approval_request', true)), '');
            IF asked IS NULL THEN
                diverted := action;
                action := 'request';
                outcome := format('pending: %s needs %s approval(s) by other compliance officers within %s',
                                  diverted, gate.approvals,
                                  extract(epoch FROM gate.approval_window)::bigint || 's');
            ELSE
                problem := audit.request_problem(asked, action, subject, gate.approvals);
                -- The approvers approved the request's reason too: its execution is logged under that reason, or
                -- refused, so that the entry an auditor reads says why the access was approved.
                IF problem IS NULL AND EXISTS (SELECT 1 FROM audit.access_log AS l
                                                WHERE l.seq = asked::bigint AND l.reason <> reason) THEN
                    problem := format('request %s was approved for another reason; give its own reason '
                                      '(piivault requests shows it)', asked);
                END IF;
                IF problem IS NULL THEN
                    executes := asked::bigint;
                    outcome := outcome || format(' [approved request %s]', executes);
                ELSE
                    outcome := 'refused: dual control: ' || problem;
                    row_count := 0;
                END IF;
            END IF;
        END IF;
    END IF;

    IF outcome NOT LIKE 'refused%' AND outcome NOT LIKE 'pending:%'
       AND split_part(stack, E'\n', 2) ~ '^PL/pgSQL function (vault|audit)\.'
       AND EXISTS (SELECT 1 FROM audit.action_policies AS p WHERE p.action = action) THEN
        SELECT r.rolsuper INTO superuser FROM pg_catalog.pg_roles AS r WHERE r.rolname = session_user;
        IF coalesce(superuser, false) THEN
            outcome := outcome || ' [outside piivault_compliance: superuser]';
        ELSIF NOT pg_catalog.pg_has_role(session_user, 'piivault_compliance', 'MEMBER') THEN
            outcome := outcome || ' [outside piivault_compliance: not a member]';
        END IF;
    END IF;

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
    IF diverted IS NOT NULL THEN
        INSERT INTO audit.approval_requests (id, action, requester, approvals_required, expires_at)
        VALUES (entry.seq, diverted, session_user, gate.approvals, entry.at + gate.approval_window);
    ELSIF executes IS NOT NULL THEN
        UPDATE audit.approval_requests AS r SET executed_seq = entry.seq WHERE r.id = executes;
    END IF;
    RETURN entry;
END
$$;
REVOKE ALL ON FUNCTION audit.append_entry(text, text, text, integer, text, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- Records a refusal decided by the client after (or instead of) an access: a data key sealed to another vault key,
-- a value that fails to open under its token (moved), an aborted run. The outcome always starts with "refused: ", so
-- this can never record a successful access, and the entry carries no rows. An idle transaction holding the append
-- lock must not stall every other officer, hence the lock timeout.
CREATE OR REPLACE FUNCTION audit.record_refusal(
    action text, reason text, subject text, outcome text, os_user text, client_host text
) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
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
REVOKE ALL ON FUNCTION audit.record_refusal(text, text, text, text, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION audit.record_refusal(text, text, text, text, text, text) TO piivault_compliance;

-- The token shape: `ip` or `dev`, `.v`, a version 1 to 999999999 without leading zeros, `.`, 64 lowercase hex digits.
-- The lengths are counted apart from the pattern: a counted repetition (`{64}`) makes PostgreSQL's matcher walk as
-- many states, about 10 us a call against 1.4 (migration 0029). The pattern allows exactly two dots, so split_part
-- finds the version (with its `v`) and the digest.
CREATE OR REPLACE FUNCTION audit.is_token(candidate text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(candidate ~ '^(ip|dev)\.v[1-9][0-9]*\.[0-9a-f]+$'
                    AND octet_length(split_part(candidate, '.', 2)) <= 10
                    AND octet_length(split_part(candidate, '.', 3)) = 64, false)
$$;
REVOKE ALL ON FUNCTION audit.is_token(text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- Raises unless `vault_key_id` looks like a key id: the request functions compare it with the data keys' key ids.
CREATE OR REPLACE FUNCTION audit.require_key_id(vault_key_id text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF vault_key_id IS NULL OR vault_key_id !~ '^[0-9a-f]{16}$' THEN
        RAISE EXCEPTION 'vault_key_id must be the key file''s key id (16 hex digits)';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION audit.require_key_id(text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- Appends the refusal of a request whose rows are sealed to `sealed_to`, not to the caller's `vault_key_id`.
CREATE OR REPLACE FUNCTION audit.refuse_key_mismatch(
    reason text, subject text, sealed_to text, vault_key_id text, os_user text, client_host text
) RETURNS audit.access_log
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT audit.append_entry('unmask', reason, subject, 0,
        format('refused: vault key mismatch (sealed to %s, key file is %s)', sealed_to, vault_key_id),
        os_user, client_host)
$$;
REVOKE ALL ON FUNCTION audit.refuse_key_mismatch(text, text, text, text, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- Step 1 of the gate: appends the entry of an access and records its grant, in the caller's transaction. Not
-- callable by any role: request functions use it.
CREATE OR REPLACE FUNCTION audit.append_and_grant(
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
    -- No grant for what dual control turned into a request or refused (the entry names another action, or a
    -- refusal), nor for any refusal.
    IF entry.action = action AND entry.outcome NOT LIKE 'refused%' THEN
        INSERT INTO audit.access_grants (seq, action, kind, db_user, wanted, keys)
        VALUES (entry.seq, action, kind, session_user, wanted, keys);
    END IF;
    RETURN entry;
END
$$;
REVOKE ALL ON FUNCTION audit.append_and_grant(text, text, text, text[], text, text, integer, text, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- Step 2 of the gate: the grant `grant_seq` of `wanted_action`/`wanted_kind`, locked and marked claimed; raises
-- (42501) unless it was committed by an earlier transaction, by this login, is unclaimed and under five minutes old.
CREATE OR REPLACE FUNCTION audit.claim_grant(grant_seq bigint, wanted_action text, wanted_kind text) RETURNS audit.access_grants
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
    PERFORM audit.require_approved_grant(grant_seq, wanted_action);
    SELECT l.at INTO asked_at FROM audit.access_log AS l WHERE l.seq = grant_seq;
    IF asked_at < clock_timestamp() - interval '5 minutes' THEN
        RAISE EXCEPTION '% grant % has expired; ask again', wanted_action, grant_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE audit.access_grants AS a SET claimed_at = clock_timestamp() WHERE a.seq = grant_seq;
    RETURN g;
END
$$;
REVOKE ALL ON FUNCTION audit.claim_grant(bigint, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- The refusal a login outside piivault_compliance records when the database refused it. Appending takes the log's
-- append lock until the appending transaction ends, so a login outside compliance must not append in a transaction
-- it keeps open (`BEGIN; <append>; SELECT pg_sleep(600)` stalled every unmask). It is therefore called only by the
-- procedure audit.record_denied, which appends and then COMMITs: called on its own, the COMMIT releases the lock
-- before CALL returns; called where it cannot commit (inside BEGIN ... COMMIT, a multi-statement query string, a
-- function), the COMMIT fails and the error rolls the append back, lock included. Either way the caller never holds
-- the lock past its CALL. (A procedure with SECURITY DEFINER may not COMMIT, so the two are split.)
-- Action and subject take fixed values only, so that no one can write text of their choosing (a value, say) into
-- the immutable log: the action is a row of audit.actions; the subject is one of that row's denied_subjects (the
-- kind of request: 'tokens', 'user_id', ...) or, where the row allows it, 'tokens:' and well-formed tokens.
CREATE OR REPLACE FUNCTION audit.append_denied(
    action text, reason text, subject text, os_user text, client_host text
) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '5s'
AS $$
#variable_conflict use_variable
DECLARE
    stack text;
    known audit.actions;
    entry audit.access_log;
BEGIN
    -- Line 1 is this function, line 2 its caller: it must be the procedure, which commits right after. Postgres names
    -- a routine there without its schema when the caller's search path showed it at the session's first call, so a
    -- login with `audit` on its path fails here: piivault sets the path before it calls (ComplianceRunner). Nothing
    -- looser is safe: a routine of the login's own named record_denied could rename itself before calling.
    GET DIAGNOSTICS stack = PG_CONTEXT;
    IF split_part(stack, E'\n', 2)
       !~ '^PL/pgSQL function audit\.record_denied\(text,text,text,text,text,bigint\) line [0-9]+ at assignment$' THEN
        RAISE EXCEPTION 'call audit.record_denied (CALL audit.record_denied(...)), not audit.append_denied'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO known FROM audit.actions AS a WHERE a.action = action;
    IF known.action IS NULL THEN
        RAISE EXCEPTION 'action must be one of %',
            (SELECT string_agg(a.action, ', ' ORDER BY a.action) FROM audit.actions AS a)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF subject IS NULL OR NOT (
           subject = ANY (known.denied_subjects)
           OR ('request:N' = ANY (known.denied_subjects) AND subject ~ '^request:[1-9][0-9]{0,17}$')
           OR (known.denied_tokens AND subject LIKE 'tokens:%' AND NOT EXISTS (
                   SELECT 1 FROM unnest(string_to_array(substr(subject, 8), ',')) AS t WHERE NOT audit.is_token(t))))
    THEN
        RAISE EXCEPTION 'subject of a refused % must be one of %', action,
            array_to_string(known.denied_subjects, ', ')
            || CASE WHEN known.denied_tokens THEN ', or tokens: followed by tokens' ELSE '' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    entry := audit.append_entry(action, coalesce(nullif(btrim(reason), ''), '(no reason given)'), subject, 0,
        'refused: not permitted (login is not a member of piivault_compliance)', os_user, client_host);
    RETURN entry.seq;
END
$$;
REVOKE ALL ON FUNCTION audit.append_denied(text, text, text, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION audit.append_denied(text, text, text, text, text)
    TO piivault_etl, piivault_analyst, piivault_auditor;

-- CALL audit.record_denied(action, reason, subject, os_user, client_host, NULL) returns the entry's seq. Not
-- SECURITY DEFINER and without SET clauses: either would forbid its COMMIT.
CREATE OR REPLACE PROCEDURE audit.record_denied(
    action text, reason text, subject text, os_user text, client_host text, INOUT seq bigint DEFAULT NULL
)
    LANGUAGE plpgsql
AS $$
BEGIN
    seq := audit.append_denied(action, reason, subject, os_user, client_host);
    COMMIT;
END
$$;
REVOKE ALL ON PROCEDURE audit.record_denied(text, text, text, text, text, bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON PROCEDURE audit.record_denied(text, text, text, text, text, bigint)
    TO piivault_etl, piivault_analyst, piivault_auditor;
