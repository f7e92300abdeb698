-- Dual control: policies, requests, approvals. The live definitions (docs/ARCHITECTURE.md, "Migrations and
-- definitions"); the tables are migration 0021's. SECURITY.md, "Dual control", has the guarantees and the procedure.
--
-- The policy is applied in audit.append_entry, which every access of an action passes through: when the action's
-- policy asks for approvals, an access without a request number (session setting piivault.approval_request) is
-- turned into a `request` entry (outcome 'pending: ...') and the access does not happen (no grant, nothing
-- deleted); an access with one is refused ('refused: dual control: ...') unless that request is of this action,
-- this login's, approved, unexpired, unexecuted and for the same parameters, and is then marked executed by it.

-- The policy an access of `wanted_action` is held to: its own, and for rewrap and retokenize at least unmask's when
-- that asks for more. Both hand an officer sealed values or data keys to open with the vault key (a full rewrap and
-- retokenize release every sealed value), so without this a policy on unmask alone would not stop one officer from
-- reading every value through them. Of two policies the one asking more approvals counts, the action's own on a tie;
-- no row when the action has none.
CREATE OR REPLACE FUNCTION audit.effective_policy(wanted_action text) RETURNS audit.action_policies
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.* FROM audit.action_policies AS p
     WHERE p.action = wanted_action OR (wanted_action IN ('rewrap', 'retokenize') AND p.action = 'unmask')
     ORDER BY p.approvals DESC, p.action = wanted_action DESC
     LIMIT 1
$$;
REVOKE ALL ON FUNCTION audit.effective_policy(text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor, piivault_policy_admin;

-- When request `request_id` expires now: its own expiry, or its time of asking plus the window of the action's policy
-- now if that ends sooner. A policy tightened since holds the requests still waiting, as a raised approval count does
-- (audit.request_problem): a request asked under a long window is not usable after the owner shortened it.
CREATE OR REPLACE FUNCTION audit.request_expiry(request_id bigint) RETURNS timestamptz
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(r.expires_at, l.at + (audit.effective_policy(r.action)).approval_window)
      FROM audit.approval_requests AS r JOIN audit.access_log AS l ON l.seq = r.id
     WHERE r.id = request_id
$$;
REVOKE ALL ON FUNCTION audit.request_expiry(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor, piivault_policy_admin;

-- Whether `approver`'s approval counts now: the login is still a compliance officer (a member of
-- piivault_compliance, not a superuser). An officer who left, or whose login was taken from them, had their
-- membership revoked (SECURITY.md): what they approved and was not run yet no longer counts.
CREATE OR REPLACE FUNCTION audit.approver_counts(approver text) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r
                    WHERE r.rolname = approver AND NOT r.rolsuper
                      AND pg_catalog.pg_has_role(r.oid, 'piivault_compliance', 'MEMBER'))
$$;
REVOKE ALL ON FUNCTION audit.approver_counts(text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor, piivault_policy_admin;

-- The parameters of an access as they are compared between a request and its execution: the subject the action
-- logs, without the counts a rewrap's subject carries (they may change between the two; the keys may not).
CREATE OR REPLACE FUNCTION audit.request_parameters(action text, subject text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN action = 'rewrap' THEN regexp_replace(subject, ' (data_keys|values):[0-9]+', '', 'g')
                ELSE subject END
$$;
REVOKE ALL ON FUNCTION audit.request_parameters(text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor, piivault_policy_admin;

-- Why request `asked` (the session setting, as given) may not be executed by this login for `wanted_action` with
-- `wanted_subject`, or NULL when it may. Locks the request's row until the caller's transaction ends, so it is
-- executed once. Never echoes `asked` (the client chose it).
CREATE OR REPLACE FUNCTION audit.request_problem(
    asked text, wanted_action text, wanted_subject text, policy_approvals integer
) RETURNS text
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r        audit.approval_requests;
    n        integer;
    approved text;
    expires  timestamptz;
BEGIN
    IF asked !~ '^[1-9][0-9]{0,17}$' THEN
        RETURN 'the request number given is not a number';
    END IF;
    SELECT * INTO r FROM audit.approval_requests AS q WHERE q.id = asked::bigint FOR UPDATE;
    IF r.id IS NULL THEN
        RETURN format('no request %s', asked);
    END IF;
    IF r.action <> wanted_action THEN
        RETURN format('request %s is for %s, not %s', r.id, r.action, wanted_action);
    END IF;
    IF r.requester <> session_user THEN
        RETURN format('request %s was asked by another login', r.id);
    END IF;
    IF r.denied_seq IS NOT NULL THEN
        RETURN format('request %s was denied (entry %s)', r.id, r.denied_seq);
    END IF;
    IF r.executed_seq IS NOT NULL THEN
        RETURN format('request %s was already executed (entry %s)', r.id, r.executed_seq);
    END IF;
    expires := audit.request_expiry(r.id);
    IF expires <= clock_timestamp() THEN
        RETURN format('request %s expired at %s', r.id,
                      to_char(expires AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
    END IF;
    SELECT l.subject INTO approved FROM audit.access_log AS l WHERE l.seq = r.id;
    IF audit.request_parameters(r.action, approved) IS DISTINCT FROM audit.request_parameters(wanted_action, wanted_subject) THEN
        RETURN format('request %s was asked for other parameters', r.id);
    END IF;
    SELECT count(*)::integer INTO n FROM audit.approvals AS a
     WHERE a.request_id = r.id AND audit.approver_counts(a.approver);
    IF n < greatest(r.approvals_required, policy_approvals) THEN
        RETURN format('request %s has %s of %s approval(s)', r.id, n, greatest(r.approvals_required, policy_approvals));
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION audit.request_problem(text, text, text, integer)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor, piivault_policy_admin;

-- Raises (42501) unless grant `grant_seq` of `wanted_action` may be used under the action's policy now: with a
-- policy asking for approvals, only a grant given under an approved request passes (a grant taken before the policy
-- changed does not).
CREATE OR REPLACE FUNCTION audit.require_approved_grant(grant_seq bigint, wanted_action text) RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    IF coalesce((audit.effective_policy(wanted_action)).approvals, 0) > 0
       AND NOT EXISTS (SELECT 1 FROM audit.approval_requests AS r WHERE r.executed_seq = grant_seq) THEN
        RAISE EXCEPTION 'the % policy asks for approvals: grant % was not given under an approved request',
            wanted_action, grant_seq
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'ask again; the command records a request for other compliance officers to approve';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION audit.require_approved_grant(bigint, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor, piivault_policy_admin;

-- What the gate made of entry `entry_seq` of this login: a request waiting for approvals ('pending', its required
-- approvals), or a refusal of dual control ('refused', the outcome); no row when the access went through as asked.
-- The compliance runner asks after every request step.
CREATE OR REPLACE FUNCTION audit.dual_control_state(entry_seq bigint)
RETURNS TABLE (state text, approvals_required integer, outcome text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
    SELECT CASE WHEN l.action = 'request' THEN 'pending' ELSE 'refused' END, r.approvals_required::integer,
           l.outcome
      FROM audit.access_log AS l LEFT JOIN audit.approval_requests AS r ON r.id = l.seq
     WHERE l.seq = entry_seq AND l.db_user = session_user
       AND (l.action = 'request' OR l.outcome LIKE 'refused: dual control: %')
$$;
REVOKE ALL ON FUNCTION audit.dual_control_state(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor, piivault_policy_admin;
GRANT EXECUTE ON FUNCTION audit.dual_control_state(bigint) TO piivault_compliance;

-- `piivault policy set`: changes the policy of one action and appends the `policy` entry (subject 'action:<name>',
-- outcome the old and new values). EXECUTE only for piivault_policy_admin; the owner of these functions (the
-- database owner) and superusers may call it too.
CREATE OR REPLACE FUNCTION audit.set_policy(
    wanted_action text, approvals integer, approval_window interval, reason text, os_user text, client_host text
) RETURNS TABLE (log_seq bigint, outcome text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    old   audit.action_policies;
    entry audit.access_log;
BEGIN
    SELECT * INTO old FROM audit.action_policies AS p WHERE p.action = wanted_action FOR UPDATE;
    IF old.action IS NULL THEN
        RAISE EXCEPTION 'no policy for action %: it must be one of %', wanted_action,
            (SELECT string_agg(p.action, ', ' ORDER BY p.action) FROM audit.action_policies AS p)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF approvals IS NULL OR approvals NOT BETWEEN 0 AND 3 THEN
        RAISE EXCEPTION 'approvals must be 0 to 3' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    approval_window := coalesce(approval_window, old.approval_window);
    IF approval_window <= interval '0' THEN
        RAISE EXCEPTION 'the approval window must be longer than zero' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    entry := audit.append_entry('policy', coalesce(nullif(btrim(reason), ''), 'policy change'),
        'action:' || wanted_action, 0,
        format('ok: approvals %s -> %s, window %s -> %s', old.approvals, approvals,
               extract(epoch FROM old.approval_window)::bigint || 's',
               extract(epoch FROM approval_window)::bigint || 's'),
        os_user, client_host);
    UPDATE audit.action_policies AS p
       SET approvals = set_policy.approvals, approval_window = set_policy.approval_window, changed_seq = entry.seq
     WHERE p.action = wanted_action;
    RETURN QUERY SELECT entry.seq, entry.outcome;
END
$$;
REVOKE ALL ON FUNCTION audit.set_policy(text, integer, interval, text, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor, piivault_policy_admin;
GRANT EXECUTE ON FUNCTION audit.set_policy(text, integer, interval, text, text, text) TO piivault_policy_admin;

-- `piivault approve N` / `piivault deny N`: one approval (or the denial) of request `request_id` by this login,
-- appended as an `approve` / `deny` entry (subject 'request:N'). Refused, and the refusal appended and returned
-- (not raised, which would roll the entry back), when this login is the requester, is outside piivault_compliance,
-- already approved it, or the request is unknown, expired, denied or executed.
CREATE OR REPLACE FUNCTION audit.decide_request(
    request_id bigint, approve boolean, reason text, os_user text, client_host text
) RETURNS TABLE (log_seq bigint, outcome text, approvals integer, approvals_required integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    act     text := CASE WHEN approve THEN 'approve' ELSE 'deny' END;
    subject text := 'request:' || request_id;
    r       audit.approval_requests;
    n       integer := 0;
    needed  integer;
    problem text;
    entry   audit.access_log;
BEGIN
    IF request_id IS NULL OR approve IS NULL THEN
        RAISE EXCEPTION 'request_id and approve are required';
    END IF;
    -- The log's append lock before the request's row, the order audit.append_entry takes them in when it runs a
    -- request (request_problem locks the row): the other order deadlocked an approval with the request's run.
    LOCK TABLE audit.access_log IN EXCLUSIVE MODE;
    SELECT * INTO r FROM audit.approval_requests AS q WHERE q.id = request_id FOR UPDATE;
    SELECT count(*)::integer INTO n FROM audit.approvals AS a
     WHERE a.request_id = r.id AND audit.approver_counts(a.approver);
    -- What executing it takes now: a policy raised since the request asks more of it (audit.request_problem).
    needed := greatest(r.approvals_required, (audit.effective_policy(r.action)).approvals);
    problem := CASE
        WHEN NOT pg_catalog.pg_has_role(session_user, 'piivault_compliance', 'MEMBER')
            THEN 'not permitted (login is not a member of piivault_compliance)'
        -- pg_has_role counts a superuser a member of every role; dual control needs a second officer, not one who
        -- can do anything anyway.
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS s WHERE s.rolname = session_user AND s.rolsuper)
            THEN 'not permitted (a superuser is not a compliance officer)'
        WHEN r.id IS NULL THEN format('no request %s', request_id)
        WHEN r.requester = session_user THEN format('%s of request %s by its own requester', act, r.id)
        WHEN r.denied_seq IS NOT NULL THEN format('request %s was denied (entry %s)', r.id, r.denied_seq)
        WHEN r.executed_seq IS NOT NULL THEN format('request %s was already executed (entry %s)', r.id, r.executed_seq)
        WHEN audit.request_expiry(r.id) <= clock_timestamp() THEN format('request %s has expired', r.id)
        WHEN approve AND EXISTS (SELECT 1 FROM audit.approvals AS a WHERE a.request_id = r.id AND a.approver = session_user)
            THEN format('request %s was already approved by this login', r.id)
    END;
    IF problem IS NOT NULL THEN
        entry := audit.append_entry(act, reason, subject, 0, 'refused: ' || problem, os_user, client_host);
        RETURN QUERY SELECT entry.seq, entry.outcome, n, coalesce(needed, 0)::integer;
        RETURN;
    END IF;
    IF approve THEN
        entry := audit.append_entry('approve', reason, subject, 0,
            format('ok: approval %s of %s for %s', n + 1, needed, r.action), os_user, client_host);
        INSERT INTO audit.approvals (request_id, approver, seq) VALUES (r.id, session_user, entry.seq);
        n := n + 1;
    ELSE
        entry := audit.append_entry('deny', reason, subject, 0, format('ok: denied (%s)', r.action), os_user,
                                    client_host);
        UPDATE audit.approval_requests AS q SET denied_seq = entry.seq WHERE q.id = r.id;
    END IF;
    RETURN QUERY SELECT entry.seq, entry.outcome, n, needed;
END
$$;
REVOKE ALL ON FUNCTION audit.decide_request(bigint, boolean, text, text, text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor, piivault_policy_admin;
GRANT EXECUTE ON FUNCTION audit.decide_request(bigint, boolean, text, text, text) TO piivault_compliance;

-- `piivault requests`: every request (or only those still waiting for approvals), newest first, with the subject
-- and reason of its entry, its state and its approvers ('login at time', comma-separated). approvals_required is what
-- executing it takes now: the request's own count, or the action's policy (audit.effective_policy) if that asks more;
-- expires_at likewise (audit.request_expiry).
CREATE OR REPLACE FUNCTION audit.list_requests(pending_only boolean)
RETURNS TABLE (
    id bigint, action text, requester text, subject text, reason text, state text, approvals integer,
    approvals_required integer, approvers text, created_at timestamptz, expires_at timestamptz, executed_seq bigint
)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '30s'
AS $$
    SELECT * FROM (
        SELECT r.id, r.action, r.requester, l.subject, l.reason,
               CASE WHEN r.executed_seq IS NOT NULL THEN 'executed'
                    WHEN r.denied_seq IS NOT NULL THEN 'denied'
                    WHEN x.expires <= clock_timestamp() THEN 'expired'
                    WHEN coalesce(a.n, 0) >= greatest(r.approvals_required, pol.approvals) THEN 'approved'
                    ELSE 'pending' END AS state,
               coalesce(a.n, 0)::integer, greatest(r.approvals_required, pol.approvals)::integer,
               coalesce(a.who, ''), l.at, x.expires, r.executed_seq
          FROM audit.approval_requests AS r
          JOIN audit.access_log AS l ON l.seq = r.id
          LEFT JOIN LATERAL audit.effective_policy(r.action) AS pol ON true
          CROSS JOIN LATERAL (SELECT audit.request_expiry(r.id) AS expires) AS x
          LEFT JOIN LATERAL (
              SELECT count(*) AS n,
                     string_agg(p.approver || ' at '
                                || to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), ', '
                                ORDER BY p.seq) AS who
                FROM audit.approvals AS p JOIN audit.access_log AS e ON e.seq = p.seq
               WHERE p.request_id = r.id AND audit.approver_counts(p.approver)) AS a ON true
    ) AS q
     WHERE NOT coalesce(pending_only, false) OR q.state = 'pending'
     ORDER BY q.id DESC
$$;
REVOKE ALL ON FUNCTION audit.list_requests(boolean)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor, piivault_policy_admin;
GRANT EXECUTE ON FUNCTION audit.list_requests(boolean) TO piivault_compliance, piivault_auditor;
