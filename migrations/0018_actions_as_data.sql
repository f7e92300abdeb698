-- The compliance actions as data (issue 21): one row per action the access log may name, with what a login outside
-- piivault_compliance may record when the database refused it that action. The gate functions read this table
-- (audit.append_entry refuses an action that is not a row here; audit.append_denied takes its fixed subjects from
-- here), instead of each migration that added an action restating the whole list in a new copy of append_denied.
-- A new action is one row, added by a new migration; its functions go in migrations/definitions/.
CREATE TABLE audit.actions (
    action          text    PRIMARY KEY CHECK (action ~ '^[a-z][a-z_]*$'),
    -- the subjects a refused login's attempt at this action may record: the kind of request, never a value
    denied_subjects text[]  NOT NULL,
    -- whether it may also record 'tokens:' followed by well-formed tokens (tokens are what analysts see anyway)
    denied_tokens   boolean NOT NULL
);
REVOKE ALL ON audit.actions FROM PUBLIC;
-- The auditor reads the log; the list of what its action column may hold belongs with it.
GRANT SELECT ON audit.actions TO piivault_auditor;

-- The actions of migrations 0007 to 0016, with the subjects their commands record when refused.
INSERT INTO audit.actions (action, denied_subjects, denied_tokens) VALUES
    ('unmask',     '{tokens,user_id,message_id}', true),
    ('lookup',     '{tokens}',                    true),
    ('forget',     '{user_id,message_id}',        false),
    ('retention',  '{cutoff}',                    false),
    ('rewrap',     '{vault_key}',                 false),
    ('retokenize', '{tokens}',                    false);
