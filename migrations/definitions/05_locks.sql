-- The locks piivault's compliance actions and the ETL wait on, and the liveness of ETL runs: none is an advisory lock
-- (any login may take one of those), so no login outside the piivault roles can make the ETL, forget, retention,
-- rewrap or retokenize wait, or keep a dead run looking alive. The live definitions (docs/ARCHITECTURE.md,
-- "Migrations and definitions"; "Locks").

-- vault.erasure_count_triggers: the state of the three triggers that keep vault.erasure_count (migration 0024), as a
-- number that changes whenever one of them is switched off or on, dropped, made again or renamed (each of these
-- writes a new version of its pg_trigger row); NULL while any of them is missing or does not fire in ordinary
-- sessions. The tables' owner can switch a trigger off (ALTER TABLE ... DISABLE TRIGGER, for a bulk load or a
-- restore): an erasure is then not counted, and a count that did not move would vouch for look-ups the erasure made
-- stale. An ETL run records this number at its start; its batches get a count from the shared lock only while it is
-- the same (0028).
CREATE OR REPLACE FUNCTION vault.erasure_count_triggers() RETURNS bigint
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN count(*) = 3
                THEN hashtextextended(string_agg(t.oid::text || ':' || t.xmin::text, ',' ORDER BY t.oid), 0) END
      FROM pg_trigger AS t
     WHERE t.tgenabled IN ('O', 'A')  -- fires in ordinary sessions ('D' disabled, 'R' only under replication)
       AND t.tgfoid = to_regprocedure('vault.count_erasure()')  -- to_reg*: NULL, not an error, for one missing
       AND (t.tgrelid = to_regclass('vault.secrets') AND t.tgname IN ('secrets_count_erasure', 'secrets_count_truncate')
            OR t.tgrelid = to_regclass('vault.tombstones') AND t.tgname = 'tombstones_count_erasure')
$$;
REVOKE ALL ON FUNCTION vault.erasure_count_triggers()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.erasure_count_triggers() TO piivault_etl;

-- vault.lock_vault_values_shared: an ETL batch's share of the vault-wide value lock, until its transaction ends.
-- Many batches hold it at once; forget, retention and retokenize (EXCLUSIVE) wait for them, and they for those.
-- Returns the vault's erasure count (vault.erasure_count, migration 0024) as committed once the lock is held: read by
-- a statement of its own, so in a READ COMMITTED transaction (the ETL begins its batches so) its snapshot is taken
-- after the wait and includes the erasure the batch waited for. NULL, and the batch checks its look-ups again, unless
-- the count's triggers are in the state the run found at its start (triggers_at_start, vault.erasure_count_triggers,
-- read after the wait too).
CREATE OR REPLACE FUNCTION vault.lock_vault_values_shared(triggers_at_start bigint DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    counted bigint;
BEGIN
    LOCK TABLE vault.vault_values_lock IN SHARE MODE;
    IF triggers_at_start IS NULL OR vault.erasure_count_triggers() IS DISTINCT FROM triggers_at_start THEN
        RETURN NULL;
    END IF;
    SELECT c.erasures INTO STRICT counted FROM vault.erasure_count AS c;
    RETURN counted;
END
$$;
REVOKE ALL ON FUNCTION vault.lock_vault_values_shared(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.lock_vault_values_shared(bigint) TO piivault_etl;

-- vault.require_read_committed: raises unless the caller's transaction is READ COMMITTED. Forget, retention and
-- retokenize decide what to delete or move from what they see after waiting for the vault-wide value lock; a
-- REPEATABLE READ or SERIALIZABLE snapshot is taken before that wait and would not show an ETL batch that committed
-- meanwhile (a login of the user being forgotten, a new reference to a value about to be deleted). Each of them
-- calls this before taking the lock.
CREATE OR REPLACE FUNCTION vault.require_read_committed() RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'this step needs a READ COMMITTED transaction, not %', current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'run it after SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION vault.require_read_committed()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- vault.lock_vault_values_exclusive: the vault-wide value lock for an erasure (forget takes it before its function,
-- so that its wait is bounded by the caller's lock_timeout), until the transaction ends.
CREATE OR REPLACE FUNCTION vault.lock_vault_values_exclusive() RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM vault.require_read_committed();
    LOCK TABLE vault.vault_values_lock IN EXCLUSIVE MODE;
END
$$;
REVOKE ALL ON FUNCTION vault.lock_vault_values_exclusive()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.lock_vault_values_exclusive() TO piivault_compliance;

-- vault.count_erasure: the trigger (migration 0024) that adds one to vault.erasure_count for every statement that
-- deletes a sealed value, changes a token, empties vault.secrets or records a tombstone, in that statement's
-- transaction. An ETL batch that finds the count unchanged since its run began skips re-checking its look-ups.
CREATE OR REPLACE FUNCTION vault.count_erasure() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE vault.erasure_count SET erasures = erasures + 1;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION vault.count_erasure()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- vault.vault_lock_holders: the sessions other than this one holding the vault-wide value lock, for the message of a
-- lock timeout ("busy, held by pid N"). pg_locks shows table locks to every login; this only names the table.
CREATE OR REPLACE FUNCTION vault.vault_lock_holders()
RETURNS TABLE (pid integer, application_name text, login text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT l.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, '?')
      FROM pg_catalog.pg_locks AS l
      LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database AS d WHERE d.datname = current_database())
       AND l.relation = (SELECT c.oid FROM pg_catalog.pg_class AS c
                          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                         WHERE n.nspname = 'vault' AND c.relname = 'vault_values_lock')
     ORDER BY 1
$$;
REVOKE ALL ON FUNCTION vault.vault_lock_holders()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.vault_lock_holders() TO piivault_compliance;

-- public.note_login_message_ids, public.forget_login_message_ids, public.refuse_message_id_change: the triggers on
-- public.user_logins (0035) that keep public.login_message_ids holding exactly the message ids of its rows, the unique
-- key a partitioned table cannot hold itself. One statement each for a whole COPY or DELETE (transition tables), not
-- one call a row: a message already loaded fails the insert with a unique violation on login_message_ids_pkey.
CREATE OR REPLACE FUNCTION public.note_login_message_ids() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Seed rows (adopted from the seed's table, or added by the owner) have none; every other row must (checks).
    INSERT INTO public.login_message_ids (message_id) SELECT a.message_id FROM added AS a WHERE a.message_id IS NOT NULL;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION public.note_login_message_ids()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

CREATE OR REPLACE FUNCTION public.forget_login_message_ids() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE public.login_message_ids;
    ELSE
        DELETE FROM public.login_message_ids AS m USING removed AS r WHERE m.message_id = r.message_id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION public.forget_login_message_ids()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

CREATE OR REPLACE FUNCTION public.refuse_message_id_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'a login''s message id does not change (public.login_message_ids keeps them)'
        USING ERRCODE = 'feature_not_supported';
END
$$;
REVOKE ALL ON FUNCTION public.refuse_message_id_change()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- public.new_logins_partition: makes the table `partition` for the rows of runs first_run to last_run, shaped as
-- user_logins (its columns, defaults and checks), with the checks a partition of those runs needs: its run ids (so
-- that attaching it reads none of its rows) and a message id on every row. Not attached, no look-up indexes: the
-- caller attaches it when its rows may be seen (begin_etl_run at once, merge_run_partitions once it is filled).
CREATE OR REPLACE FUNCTION public.new_logins_partition(partition text, first_run bigint, last_run bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE TABLE public.%I (LIKE public.user_logins INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   partition);
    EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I CHECK (etl_run_id >= %s AND etl_run_id < %s), '
                   'ADD CONSTRAINT %I CHECK (message_id IS NOT NULL)',
                   partition, partition || '_runs', first_run, last_run + 1, partition || '_message_id');
END
$$;
REVOKE ALL ON FUNCTION public.new_logins_partition(text, bigint, bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- public.index_logins_partition: builds the look-up indexes of a partition of user_logins (a run's, or runs merged),
-- the same as user_logins_before_partitions has: B-trees over user_id and create_date, over 64-bit digests of the two
-- tokens and the subject hash (0022), and the (empty) one of rows without a subject hash (0033). Built once the rows
-- are in, which costs a sort where keeping them row by row costs a descent a row (issue 25). Idempotent.
CREATE OR REPLACE FUNCTION public.index_logins_partition(partition text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON public.%I (user_id)', partition || '_user_id_idx', partition);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON public.%I (pg_catalog.hashtextextended(masked_ip, 0))',
                   partition || '_masked_ip_digest_idx', partition);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON public.%I (pg_catalog.hashtextextended(masked_device_id, 0))',
                   partition || '_masked_device_id_digest_idx', partition);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON public.%I (pg_catalog.hashtextextended(subject_hash, 0))',
                   partition || '_subject_hash_digest_idx', partition);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON public.%I (create_date)', partition || '_create_date_idx', partition);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON public.%I (user_id) WHERE subject_hash IS NULL',
                   partition || '_without_subject_hash_idx', partition);
END
$$;
REVOKE ALL ON FUNCTION public.index_logins_partition(text)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- public.index_run_logins: builds the look-up indexes of run `run_id`'s partition (user_logins_run_<id>), which has
-- none while the run loads it (look-ups scan it meanwhile). Called by finish_etl_run, and by abandon_dead_etl_runs
-- for a run that died. Does nothing for a run without a partition of its own (merged, or from before 0035).
CREATE OR REPLACE FUNCTION public.index_run_logins(run_id bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass('public.user_logins_run_' || run_id) IS NOT NULL THEN
        PERFORM public.index_logins_partition('user_logins_run_' || run_id);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION public.index_run_logins(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
-- public.merge_run_partitions: merges the partitions of user_logins of finished runs that began before this month
-- (UTC) into one, so that their number stays about one a month plus this month's runs: every look-up and erasure plans
-- over, and locks, each partition and its indexes (max_locks_per_transaction). The ETL calls it before each run, in a
-- READ COMMITTED transaction of its own. The rows are copied into a new table whose indexes are built once, then that
-- table replaces the runs' partitions, all in one transaction that holds user_logins in EXCLUSIVE mode throughout:
-- writes (ETL batches, forget, retention, retokenize) wait for it, reads do not, and no erasure can delete a row after
-- the copy read it (the copy's snapshot is taken after the lock). The parent is locked first, as every other statement
-- locks it, so the merge never deadlocks with them; the swap then holds it exclusively for a moment. Gives up without
-- changing anything when a lock is not free within lock_timeout (a write or a long query at work on user_logins): the
-- next run tries again. Returns how many partitions it merged: 0 when there was nothing to merge, -1 when it gave up.
CREATE OR REPLACE FUNCTION public.merge_run_partitions() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '5s'
AS $$
DECLARE
    cutoff bigint;
    runs bigint[];
    lo bigint;
    hi bigint;
    merged text;
    columns text;
    sources text;
    r bigint;
BEGIN
    PERFORM vault.require_read_committed();
    -- The locks are held until the caller's transaction ends: one left open would hold user_logins against everyone.
    PERFORM set_config('idle_in_transaction_session_timeout', '10s', true);
    SELECT coalesce(min(e.id), (SELECT max(a.id) + 1 FROM public.etl_runs AS a))
      INTO cutoff
      FROM public.etl_runs AS e
     WHERE e.started_at >= date_trunc('month', now(), 'UTC');
    SELECT array_agg(substr(c.relname, 17)::bigint ORDER BY substr(c.relname, 17)::bigint)
      INTO runs
      FROM pg_catalog.pg_inherits AS i JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'public.user_logins'::regclass AND c.relname ~ '^user_logins_run_[0-9]+$'
       AND substr(c.relname, 17)::bigint < cutoff;
    IF runs IS NULL OR cardinality(runs) < 2 THEN
        RETURN 0;
    END IF;
    lo := runs[1];
    hi := runs[cardinality(runs)];
    IF EXISTS (SELECT 1 FROM public.etl_runs AS e WHERE e.id BETWEEN lo AND hi AND e.outcome = 'running') THEN
        RETURN 0;
    END IF;
    merged := format('user_logins_runs_%s_%s', lo, hi);
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
      INTO columns
      FROM pg_catalog.pg_attribute AS a
     WHERE a.attrelid = 'public.user_logins'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
    BEGIN
        -- EXCLUSIVE: writers and row locks wait, readers do not, and a second merge gives up.
        LOCK TABLE public.user_logins IN EXCLUSIVE MODE;
        IF EXISTS (SELECT 1 FROM public.etl_runs AS e WHERE e.id BETWEEN lo AND hi AND e.outcome = 'running')
           OR EXISTS (SELECT 1 FROM unnest(runs) AS x WHERE to_regclass('public.user_logins_run_' || x) IS NULL)
        THEN
            RETURN 0;  -- another merge or a run's end got there first
        END IF;
        PERFORM public.new_logins_partition(merged, lo, hi);
        SELECT string_agg(format('SELECT %s FROM public.%I', columns, 'user_logins_run_' || x), ' UNION ALL ')
          INTO sources FROM unnest(runs) AS x;
        EXECUTE format('INSERT INTO public.%I (%s) %s', merged, columns, sources);
        PERFORM public.index_logins_partition(merged);
        FOREACH r IN ARRAY runs LOOP
            EXECUTE format('ALTER TABLE public.user_logins DETACH PARTITION public.%I', 'user_logins_run_' || r);
            EXECUTE format('DROP TABLE public.%I', 'user_logins_run_' || r);
        END LOOP;
        EXECUTE format('ALTER TABLE public.user_logins ATTACH PARTITION public.%I FOR VALUES FROM (%s) TO (%s)',
                       merged, lo, hi + 1);
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
        RETURN -1;
    END;
    RETURN cardinality(runs);
END
$$;
REVOKE ALL ON FUNCTION public.merge_run_partitions()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION public.merge_run_partitions() TO piivault_etl;

-- public.etl_run_is_live: whether the run whose row recorded live_xid still runs: its lock session's transaction is
-- in progress. A transaction id not yet assigned when this statement began (one only a forged row could name) and one
-- too old for the commit log to know count as ended.
CREATE OR REPLACE FUNCTION public.etl_run_is_live(live_xid xid8) RETURNS boolean
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN live_xid IS NULL OR live_xid >= pg_snapshot_xmax(pg_current_snapshot()) THEN false
                ELSE coalesce(pg_xact_status(live_xid) = 'in progress', false) END
$$;
REVOKE ALL ON FUNCTION public.etl_run_is_live(xid8)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION public.etl_run_is_live(xid8) TO piivault_etl, piivault_auditor, piivault_compliance;

-- public.begin_etl_run: records a new run, `running` since now(), alive while transaction live_xid is in progress
-- (etl_run_is_live). Only this function inserts run rows (0030): live_xid must be a transaction in progress in
-- another session of the caller's own login, as the run's lock session is (ETLStore.beginRun), so no run borrows its
-- liveness from another login's transaction and no run chooses its start time. pg_locks shows every login which
-- session holds a transaction id, as 32 bits: the 64-bit live_xid is the one among those below this transaction's own
-- id (assigned now, after the lock session's) and above it less 2^32. Returns the run's id.
CREATE OR REPLACE FUNCTION public.begin_etl_run(
    source text, vault_key_id text, token_key_id text, token_key_version integer, live_xid xid8
) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    own numeric := pg_current_xact_id()::text::numeric;
    wanted numeric := live_xid::text::numeric;
    run_id bigint;
    partition text;
BEGIN
    -- pg_stat_activity is read once per transaction and kept: a caller's earlier read must not hide the lock session.
    PERFORM pg_catalog.pg_stat_clear_snapshot();
    IF wanted IS NULL OR wanted >= own OR wanted <= own - 4294967296 OR NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_locks AS l
          JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
         WHERE l.locktype = 'transactionid' AND l.granted AND l.pid <> pg_backend_pid()
           AND l.transactionid = (wanted % 4294967296)::text::xid
           AND a.usename = session_user)
    THEN
        RAISE EXCEPTION 'live_xid must be a transaction in progress in another session of this login (the run''s lock session)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.etl_runs (source, vault_key_id, token_key_id, token_key_version, live_xid)
    VALUES (source, vault_key_id, token_key_id, token_key_version, live_xid)
    RETURNING id INTO run_id;
    -- The run's own partition of user_logins, without look-up indexes until the run ends (index_run_logins).
    partition := 'user_logins_run_' || run_id;
    PERFORM public.new_logins_partition(partition, run_id, run_id);
    EXECUTE format('ALTER TABLE public.user_logins ATTACH PARTITION public.%I FOR VALUES FROM (%s) TO (%s)',
                   partition, run_id, run_id + 1);
    RETURN run_id;
END
$$;
REVOKE ALL ON FUNCTION public.begin_etl_run(text, text, text, integer, xid8)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION public.begin_etl_run(text, text, text, integer, xid8) TO piivault_etl;

-- public.abandon_dead_etl_runs: marks every run left `running` whose lock session's transaction has ended (its
-- process died, or its connection was lost) as `abandoned`. The next run calls it at its start. Returns how many.
CREATE OR REPLACE FUNCTION public.abandon_dead_etl_runs() RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
    dead record;
BEGIN
    n := 0;
    FOR dead IN
        UPDATE public.etl_runs AS r
           SET outcome = 'abandoned', finished_at = clock_timestamp(),
               error = 'the process ended without recording its end (killed, or its database connection was lost)'
         WHERE r.outcome = 'running' AND NOT public.etl_run_is_live(r.live_xid)
     RETURNING r.id
    LOOP
        PERFORM public.index_run_logins(dead.id);  -- what it loaded stays, and is indexed now
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION public.abandon_dead_etl_runs()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION public.abandon_dead_etl_runs() TO piivault_etl;

-- public.finish_etl_run: records the end of run `run_id` (its counts, outcome and error). A live run only in its lock
-- session, inside the transaction the row names (live_xid), which the caller commits right after: so no other login
-- can end a live run, and the row stops being `running` in the same commit that ends its liveness. A run whose
-- transaction has ended (its lock session was lost, as when the database restarts) may be ended from any ETL
-- session, as the next run's sweep would mark it. Returns false when nothing changed.
CREATE OR REPLACE FUNCTION public.finish_etl_run(
    run_id bigint, received bigint, loaded bigint, duplicates bigint, quarantined bigint, values_sealed bigint,
    delete_failures bigint, suppressed bigint, outcome text, error text
) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    n integer;
BEGIN
    IF outcome IS NULL OR outcome NOT IN ('completed', 'interrupted', 'failed') THEN
        RAISE EXCEPTION 'outcome must be completed, interrupted or failed' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE public.etl_runs AS r
       SET finished_at = clock_timestamp(), received = finish_etl_run.received, loaded = finish_etl_run.loaded,
           duplicates = finish_etl_run.duplicates, quarantined = finish_etl_run.quarantined,
           values_sealed = finish_etl_run.values_sealed, delete_failures = finish_etl_run.delete_failures,
           suppressed = finish_etl_run.suppressed, outcome = finish_etl_run.outcome, error = finish_etl_run.error
     WHERE r.id = run_id AND r.outcome = 'running'
       AND (r.live_xid = pg_current_xact_id() OR NOT public.etl_run_is_live(r.live_xid));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 1 THEN
        PERFORM public.index_run_logins(run_id);
    END IF;
    RETURN n = 1;
END
$$;
REVOKE ALL ON FUNCTION public.finish_etl_run(bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.finish_etl_run(bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, text, text)
    TO piivault_etl;
