-- Dual control (issue 22): a policy per compliance action saying how many other compliance officers must approve
-- before it runs, the requests that wait for those approvals, and the approvals. The functions that read and write
-- these tables are in migrations/definitions/15_dual_control.sql; audit.append_entry applies the policy (every
-- access of an action passes through it), so no SQL function a compliance login can call releases, deletes or
-- re-keys for an action whose policy asks for approvals without an approved request of that login.

-- The role that may change a policy besides the database owner (and superusers). Roles are cluster-wide: created
-- idempotently, as in 0001.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'piivault_policy_admin') THEN
        BEGIN
            CREATE ROLE piivault_policy_admin NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created meanwhile by a migration of another database
        END;
    END IF;
END
$$;

-- It reaches audit.set_policy and reads audit.action_policies, so it needs the schema.
GRANT USAGE ON SCHEMA audit TO piivault_policy_admin;

-- The new entries' actions: a policy change, a request that waits for approvals, an approval, a denial. A login
-- outside compliance refused an approval or denial records the kind 'request:N' (checked in audit.append_denied).
INSERT INTO audit.actions (action, denied_subjects, denied_tokens) VALUES
    ('policy',  '{}',          false),
    ('request', '{}',          false),
    ('approve', '{request:N}', false),
    ('deny',    '{request:N}', false)
ON CONFLICT (action) DO NOTHING;

-- One row per action that reads or changes the vault: how many approvals by other compliance officers it needs
-- (0, the default, is the behaviour before dual control) and how long a request stays usable from its creation.
CREATE TABLE audit.action_policies (
    action          text     PRIMARY KEY REFERENCES audit.actions (action),
    approvals       smallint NOT NULL DEFAULT 0 CHECK (approvals BETWEEN 0 AND 3),
    approval_window interval NOT NULL DEFAULT interval '24 hours' CHECK (approval_window > interval '0'),
    changed_seq     bigint   -- the access-log entry of the last change (NULL: never changed)
);
REVOKE ALL ON audit.action_policies FROM PUBLIC;
GRANT SELECT ON audit.action_policies TO piivault_compliance, piivault_auditor, piivault_policy_admin;
INSERT INTO audit.action_policies (action)
SELECT a.action FROM audit.actions AS a
 WHERE a.action IN ('unmask', 'lookup', 'forget', 'retention', 'rewrap', 'retokenize');

-- A request: its id is the seq of its `request` entry, whose subject is the subject the action itself logs (tokens,
-- a keyed hash, a key id, counts): the parameters live only in the access log, never here, so a forgotten user's
-- id is in no table outside the log.
CREATE TABLE audit.approval_requests (
    id                 bigint      PRIMARY KEY,
    action             text        NOT NULL REFERENCES audit.actions (action),
    requester          text        NOT NULL,
    approvals_required smallint    NOT NULL CHECK (approvals_required BETWEEN 1 AND 3),
    expires_at         timestamptz NOT NULL,
    denied_seq         bigint,
    executed_seq       bigint      UNIQUE
);
REVOKE ALL ON audit.approval_requests FROM PUBLIC;

-- One approval per login and request (the primary key: the same approver twice counts once).
CREATE TABLE audit.approvals (
    request_id bigint NOT NULL REFERENCES audit.approval_requests (id),
    approver   text   NOT NULL,
    seq        bigint NOT NULL,
    PRIMARY KEY (request_id, approver)
);
REVOKE ALL ON audit.approvals FROM PUBLIC;
