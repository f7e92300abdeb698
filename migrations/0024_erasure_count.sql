-- The vault's erasure count (issue 25). An ETL batch used to check again, under the vault-wide value lock, that none
-- of its users had been forgotten and that every sealed value its logins reference was still in the vault: two
-- queries over thousands of keys per batch, a fifth of the database's time in a run, to catch an erasure that almost
-- never happens while a run loads. Now every statement that can erase (deletes a sealed value, changes a token,
-- empties the table, records a tombstone) adds one to this count in its own transaction. A run reads the count when
-- it starts, before any of its look-ups; each batch reads it again under the lock (vault.lock_vault_values_shared now
-- returns it). The same count means nothing was erased since the run's look-ups, so the batch skips the two checks;
-- any other count, and the batch checks as before. A statement that erases nothing still counts: a spare check, never
-- a missed one.
CREATE TABLE vault.erasure_count (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    erasures bigint  NOT NULL DEFAULT 0
);
INSERT INTO vault.erasure_count DEFAULT VALUES;
REVOKE ALL ON vault.erasure_count FROM PUBLIC;
GRANT SELECT ON vault.erasure_count TO piivault_etl;

-- Statement-level triggers fire for every role, the table owner and superusers included, whatever path erased.
CREATE FUNCTION vault.count_erasure() RETURNS trigger
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

CREATE TRIGGER secrets_count_erasure
    AFTER DELETE OR UPDATE OF token ON vault.secrets
    FOR EACH STATEMENT EXECUTE FUNCTION vault.count_erasure();
CREATE TRIGGER secrets_count_truncate
    AFTER TRUNCATE ON vault.secrets
    FOR EACH STATEMENT EXECUTE FUNCTION vault.count_erasure();
CREATE TRIGGER tombstones_count_erasure
    AFTER INSERT OR UPDATE ON vault.tombstones
    FOR EACH STATEMENT EXECUTE FUNCTION vault.count_erasure();

-- The shared lock now returns the count it was taken at. A function cannot change its result type in place, so it is
-- dropped and made again here, in this migration's transaction: ETL batches never find it missing, even before
-- migrations/definitions/05_locks.sql (its live definition) is applied.
DROP FUNCTION IF EXISTS vault.lock_vault_values_shared();
CREATE FUNCTION vault.lock_vault_values_shared() RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    counted bigint;
BEGIN
    LOCK TABLE vault.vault_values_lock IN SHARE MODE;
    SELECT c.erasures INTO STRICT counted FROM vault.erasure_count AS c;
    RETURN counted;
END
$$;
REVOKE ALL ON FUNCTION vault.lock_vault_values_shared()
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.lock_vault_values_shared() TO piivault_etl;
