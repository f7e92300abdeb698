-- Each ETL run loads its logins into a table of its own, attached to public.user_logins as a partition, and indexes
-- it once the run ends (issue 25). A B-tree takes rows one at a time: the four look-up indexes doubled the cost of a
-- COPY into one table that every run appends to, while CREATE INDEX over a finished run sorts its rows once and writes
-- whole pages. The seed's readers still read public.user_logins; it is now the partitioned parent.
--
--   public.user_logins                 partitioned by etl_run_id (a new column; 0 for every row loaded before this)
--     user_logins_before_partitions    the table as it was, with its indexes: every row loaded before this migration,
--                                      and rows inserted without a run id
--     user_logins_run_<id>             one per run from now on (public.begin_etl_run); its look-up indexes are built
--                                      when the run ends (public.index_run_logins), until then look-ups scan it
--     user_logins_runs_<lo>_<hi>       finished runs from before the current month, merged into one partition by
--                                      the next run's start (public.merge_run_partitions)
--   public.login_message_ids           every login's message id, unique: a unique index on a partitioned table must
--                                      hold its partition key, so the message id's uniqueness moves to a table that
--                                      triggers on user_logins keep (public.note_login_message_ids, ...forget_...)
--
-- Applying it to an installed database reads user_logins twice (to check the new column and to copy the message ids)
-- and rewrites nothing.
ALTER TABLE public.user_logins RENAME TO user_logins_before_partitions;
ALTER TABLE public.user_logins_before_partitions ADD COLUMN etl_run_id bigint NOT NULL DEFAULT 0;

CREATE TABLE public.user_logins (
    LIKE public.user_logins_before_partitions INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
) PARTITION BY RANGE (etl_run_id);
-- The message id is required of new rows: by this NOT VALID check on the old table (seed rows have none), by a check
-- of its own on each run's table, and by login_message_ids' primary key.
ALTER TABLE public.user_logins DROP CONSTRAINT IF EXISTS user_logins_message_id_required;
ALTER TABLE public.user_logins_before_partitions
    ADD CONSTRAINT user_logins_before_partitions_run CHECK (etl_run_id = 0);
ALTER TABLE public.user_logins
    ATTACH PARTITION public.user_logins_before_partitions FOR VALUES FROM (MINVALUE) TO (1);
COMMENT ON TABLE public.user_logins IS 'Login events with ip and device_id replaced by keyed tokens (piivault).';
COMMENT ON COLUMN public.user_logins.etl_run_id IS 'the ETL run that loaded the row (public.etl_runs.id); 0 for rows loaded before migration 0035';

-- The old table's grants move to the parent (table and column grants, whoever was given them); the partitions keep
-- none but their owner's, so every read and write goes through the parent and its triggers.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT x.grantee, x.privilege_type, x.is_grantable
               FROM pg_class AS c, aclexplode(c.relacl) AS x
              WHERE c.oid = 'public.user_logins_before_partitions'::regclass AND x.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON public.user_logins TO %s%s', g.privilege_type,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        EXECUTE format('REVOKE %s ON public.user_logins_before_partitions FROM %s', g.privilege_type,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END);
    END LOOP;
    FOR g IN SELECT a.attname, x.grantee, x.privilege_type, x.is_grantable
               FROM pg_attribute AS a, aclexplode(a.attacl) AS x
              WHERE a.attrelid = 'public.user_logins_before_partitions'::regclass AND a.attacl IS NOT NULL
    LOOP
        EXECUTE format('GRANT %s (%I) ON public.user_logins TO %s%s', g.privilege_type, g.attname,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        EXECUTE format('REVOKE %s (%I) ON public.user_logins_before_partitions FROM %s', g.privilege_type, g.attname,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END);
    END LOOP;
END
$$;

CREATE TABLE public.login_message_ids (
    message_id text COLLATE "C" PRIMARY KEY
);
COMMENT ON TABLE public.login_message_ids IS 'the message id of every row of user_logins: a redelivered message adds no row (kept by triggers on user_logins)';
REVOKE ALL ON public.login_message_ids FROM PUBLIC;
GRANT SELECT ON public.login_message_ids TO piivault_etl;
INSERT INTO public.login_message_ids (message_id)
SELECT message_id FROM public.user_logins_before_partitions WHERE message_id IS NOT NULL;

-- The functions live in migrations/definitions/05_locks.sql, applied after this file (made here so that the triggers
-- can name them; until then they refuse every change, so no row goes in or out without its message id).
CREATE OR REPLACE FUNCTION public.note_login_message_ids() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'run piivault migrate to the end first'; END $$;
CREATE OR REPLACE FUNCTION public.forget_login_message_ids() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'run piivault migrate to the end first'; END $$;
CREATE OR REPLACE FUNCTION public.refuse_message_id_change() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'run piivault migrate to the end first'; END $$;
CREATE TRIGGER user_logins_note_message_ids AFTER INSERT ON public.user_logins
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION public.note_login_message_ids();
CREATE TRIGGER user_logins_forget_message_ids AFTER DELETE ON public.user_logins
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION public.forget_login_message_ids();
CREATE TRIGGER user_logins_forget_all_message_ids AFTER TRUNCATE ON public.user_logins
    FOR EACH STATEMENT EXECUTE FUNCTION public.forget_login_message_ids();
CREATE TRIGGER user_logins_keep_message_ids BEFORE UPDATE OF message_id ON public.user_logins
    FOR EACH ROW WHEN (OLD.message_id IS DISTINCT FROM NEW.message_id)
    EXECUTE FUNCTION public.refuse_message_id_change();
-- public.begin_etl_run gains the partition it makes; public.index_logins_partition, index_run_logins and
-- merge_run_partitions are new: all in definitions/05_locks.sql.
