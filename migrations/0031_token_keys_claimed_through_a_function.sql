-- Token keys the ETL cannot mislabel. Until now the ETL and compliance logins inserted into vault.token_keys
-- themselves, so they could add a key id that is not accepted to a version that has one. Unmask reads such a row as a
-- key earlier runs used (0020), and reports a value that does not match its token as tokenized under that other key
-- rather than as forged: the ETL login could plant a value and then hide that it was planted. Both logins lose INSERT;
-- vault.claim_token_key (definitions/07_token_keys.sql) records only the accepted key of a version that has none.
REVOKE INSERT ON vault.token_keys FROM piivault_etl, piivault_compliance;
-- The function lives in migrations/definitions/, applied after this file.
