-- An ETL batch skips re-checking its look-ups when the vault's erasure count is what it was at its run's start
-- (0024). The count is kept by triggers the tables' owner can switch off; switched off, an erasure made, and switched
-- on again between the start and a batch, the count would not have moved. So the run now records the triggers' state
-- when it starts (vault.erasure_count_triggers(), in definitions/05_locks.sql), and the shared lock takes it and
-- returns no count when the state differs. A function cannot change its arguments in place, so the lock is dropped
-- and made again here, in this migration's transaction, so that ETL batches never find it missing, even before
-- definitions/05_locks.sql (its live definition) is applied. Called without the new argument (an older binary), it
-- returns no count: the batch checks again.
DROP FUNCTION IF EXISTS vault.lock_vault_values_shared();
CREATE FUNCTION vault.lock_vault_values_shared(triggers_at_start bigint DEFAULT NULL) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE vault.vault_values_lock IN SHARE MODE;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION vault.lock_vault_values_shared(bigint)
    FROM PUBLIC, piivault_etl, piivault_analyst, piivault_compliance, piivault_auditor;
GRANT EXECUTE ON FUNCTION vault.lock_vault_values_shared(bigint) TO piivault_etl;
