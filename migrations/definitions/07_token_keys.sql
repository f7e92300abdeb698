-- vault.claim_token_key: records `key_id` as token version `version`'s accepted key when the vault has none for that
-- version yet, and returns the key id the vault accepts for it (this one, or the one recorded before). The only way
-- the ETL and compliance logins add to vault.token_keys (0031): never a key beside the accepted one, which unmask
-- would take for a key of earlier runs (0020). Two first runs of a version at once: the second waits for the first's
-- commit (10 s at most) and returns its key; in a REPEATABLE READ transaction it fails with a serialization error
-- instead.
CREATE OR REPLACE FUNCTION vault.claim_token_key(version integer, key_id text) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '10s'
AS $$
#variable_conflict use_variable
DECLARE
    accepted_key text;
BEGIN
    INSERT INTO vault.token_keys (version, key_id, accepted) VALUES (version, key_id, true) ON CONFLICT DO NOTHING;
    SELECT k.key_id INTO accepted_key FROM vault.token_keys AS k WHERE k.version = version AND k.accepted;
    IF accepted_key IS NULL THEN
        RAISE EXCEPTION 'token version % has no accepted key', version USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN accepted_key;
END
$$;
REVOKE ALL ON FUNCTION vault.claim_token_key(integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault.claim_token_key(integer, text) TO piivault_etl, piivault_compliance;
