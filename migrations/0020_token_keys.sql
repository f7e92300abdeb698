-- The token key id of each token version this vault holds: tokens of version n made under two different keys would
-- never join, and lookups and unmask would miss or misread them. The first ETL run (or retokenize) of a version
-- records its key id; a later one that brings another key of the same version is refused (TokenKeyRegistry).
CREATE TABLE vault.token_keys (
    version     integer     PRIMARY KEY CHECK (version >= 1),
    key_id      text        NOT NULL CHECK (key_id ~ '^[0-9a-f]+$'),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- What earlier runs used: for each version, the key of the first run that loaded something with it.
INSERT INTO vault.token_keys (version, key_id)
SELECT DISTINCT ON (r.token_key_version) r.token_key_version, lower(r.token_key_id)
  FROM public.etl_runs AS r
 WHERE r.token_key_version IS NOT NULL AND r.token_key_id ~* '^[0-9a-f]+$' AND r.loaded > 0
 ORDER BY r.token_key_version, r.id;

REVOKE ALL ON vault.token_keys FROM PUBLIC;
GRANT SELECT, INSERT ON vault.token_keys TO piivault_etl, piivault_compliance;
