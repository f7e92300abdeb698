-- The rule that every sealed value's data key exists, checked once per statement by the triggers of migration 0026
-- (they replaced a foreign key that checked each value on its own). The live definitions (docs/ARCHITECTURE.md,
-- "Migrations and definitions").

-- vault.check_sealed_values_data_keys: the trigger (migration 0026) after every INSERT or UPDATE of vault.secrets that
-- fails the statement (23503) when one of its values names a data key vault.data_keys does not hold. It writes a new
-- version of each key row it relies on (the same values), so a delete of the key waits for the statement's
-- transaction and then fails: the check after it sees the values under READ COMMITTED, and REPEATABLE READ or
-- SERIALIZABLE cannot serialize (a row lock alone would let those through with a snapshot blind to the values).
CREATE OR REPLACE FUNCTION vault.check_sealed_values_data_keys() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted   bigint[];
    n_locked integer;
BEGIN
    SELECT coalesce(array_agg(DISTINCT n.data_key_id), '{}') INTO wanted FROM new_values AS n;
    UPDATE vault.data_keys AS k SET created_at = k.created_at WHERE k.id = ANY (wanted);
    GET DIAGNOSTICS n_locked = ROW_COUNT;
    IF n_locked < cardinality(wanted) THEN
        RAISE EXCEPTION 'a sealed value names a data key that vault.data_keys does not hold'
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'store the sealed data key first (piivault etl does); nothing of this statement was written';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION vault.check_sealed_values_data_keys()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- vault.check_data_keys_unused: the trigger (migration 0026) after every DELETE or UPDATE of vault.data_keys that
-- fails the statement (23503) when a sealed value still names a key it deleted or renumbered.
CREATE OR REPLACE FUNCTION vault.check_data_keys_unused() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM 1 FROM old_keys AS o WHERE EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.data_key_id = o.id) LIMIT 1;
    ELSE
        PERFORM 1 FROM old_keys AS o
         WHERE NOT EXISTS (SELECT 1 FROM new_keys AS n WHERE n.id = o.id)
           AND EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.data_key_id = o.id) LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'a data key that sealed values still name cannot be deleted or renumbered'
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'rewrap --full moves the values to other data keys; retention deletes the keys no value uses';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION vault.check_data_keys_unused()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

-- vault.refuse_data_keys_truncate: the trigger (migration 0026) that refuses every TRUNCATE of vault.data_keys. TRUNCATE
-- checks no rows: a check of the vault there would read the caller's snapshot, and under REPEATABLE READ miss values
-- a batch committed since. A DELETE is checked row by row instead (vault.check_data_keys_unused).
CREATE OR REPLACE FUNCTION vault.refuse_data_keys_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'vault.data_keys is never truncated'
        USING ERRCODE = 'foreign_key_violation',
              HINT = 'DELETE the keys no sealed value names (piivault retention does)';
END
$$;
REVOKE ALL ON FUNCTION vault.refuse_data_keys_truncate()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
