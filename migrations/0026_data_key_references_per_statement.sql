-- Every sealed value's data key exists, checked once per statement (issue 25). The foreign key from
-- vault.secrets.data_key_id to vault.data_keys checked each value on its own, a query and a row lock per value, when a
-- whole ETL batch seals under one data key: 1.6 s of a 4 s COPY of 400,000 values. Statement-level triggers keep the
-- same rule for every role, the owner and superusers included, at one check per statement:
--   - a statement that inserts or updates sealed values fails (23503, foreign_key_violation) when one of them names a
--     data key that does not exist;
--   - a statement that deletes data keys or changes their ids fails (23503) when a sealed value still names one;
--   - TRUNCATE of vault.data_keys fails while the vault holds any sealed value.
-- The foreign key also stopped a key being deleted under a batch that had not committed yet. The insert check does the
-- same by writing a new version of each key row it relies on (the same values): a delete of that row waits for the
-- batch, then, under READ COMMITTED, finds the batch's values in the check after it, or, under REPEATABLE READ or
-- SERIALIZABLE, fails to serialize. (A row lock alone would let a REPEATABLE READ delete through with a snapshot that
-- cannot see the batch.) vault.quarantine keeps its foreign key: a quarantined body is rare.
-- The trigger functions are made here for the triggers below; their live definitions are in
-- migrations/definitions/06_data_keys.sql, applied after this file.
ALTER TABLE vault.secrets DROP CONSTRAINT IF EXISTS secrets_data_key_id_fkey;

CREATE FUNCTION vault.check_sealed_values_data_keys() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted bigint[];
    found  integer;
BEGIN
    SELECT coalesce(array_agg(DISTINCT n.data_key_id), '{}') INTO wanted FROM new_values AS n;
    UPDATE vault.data_keys AS k SET created_at = k.created_at WHERE k.id = ANY (wanted);
    GET DIAGNOSTICS found = ROW_COUNT;
    IF found < cardinality(wanted) THEN
        RAISE EXCEPTION 'a sealed value names a data key that vault.data_keys does not hold'
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'store the sealed data key first (piivault etl does); nothing of this statement was written';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION vault.check_sealed_values_data_keys()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

CREATE TRIGGER secrets_data_keys_exist_on_insert
    AFTER INSERT ON vault.secrets REFERENCING NEW TABLE AS new_values
    FOR EACH STATEMENT EXECUTE FUNCTION vault.check_sealed_values_data_keys();
CREATE TRIGGER secrets_data_keys_exist_on_update
    AFTER UPDATE ON vault.secrets REFERENCING NEW TABLE AS new_values
    FOR EACH STATEMENT EXECUTE FUNCTION vault.check_sealed_values_data_keys();

-- The ids a statement deleted or changed: none may still be named by a sealed value.
CREATE FUNCTION vault.check_data_keys_unused() RETURNS trigger
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

CREATE TRIGGER data_keys_unused_on_delete
    AFTER DELETE ON vault.data_keys REFERENCING OLD TABLE AS old_keys
    FOR EACH STATEMENT EXECUTE FUNCTION vault.check_data_keys_unused();
CREATE TRIGGER data_keys_unused_on_update
    AFTER UPDATE ON vault.data_keys REFERENCING OLD TABLE AS old_keys NEW TABLE AS new_keys
    FOR EACH STATEMENT EXECUTE FUNCTION vault.check_data_keys_unused();

CREATE FUNCTION vault.refuse_data_keys_truncate() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM vault.secrets) THEN
        RAISE EXCEPTION 'vault.data_keys cannot be emptied while the vault holds sealed values'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION vault.refuse_data_keys_truncate()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;

CREATE TRIGGER data_keys_refuse_truncate
    BEFORE TRUNCATE ON vault.data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION vault.refuse_data_keys_truncate();
