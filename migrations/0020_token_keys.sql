-- The token key id of each token version this vault holds: tokens of version n made under two different keys would
-- never join, and lookups and unmask would miss or misread them. The first ETL run (or retokenize) of a version
-- records its key id as the accepted one; a later one that brings another key of the same version is refused
-- (TokenKeyRegistry). Keys that earlier runs used beside the accepted one (before this table existed) are kept, not
-- accepted, so that unmask can tell values tokenized under such a key from forged ones.
CREATE TABLE vault.token_keys (
    version     integer     NOT NULL CHECK (version >= 1),
    key_id      text        NOT NULL CHECK (key_id ~ '^[0-9a-f]+$'),
    accepted    boolean     NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, key_id)
);
CREATE UNIQUE INDEX token_keys_one_accepted_per_version ON vault.token_keys (version) WHERE accepted;

-- What earlier runs used: for each version, the key of the first run that loaded something with it is accepted;
-- any other key a loading run used for that version is kept as not accepted.
INSERT INTO vault.token_keys (version, key_id, accepted)
SELECT DISTINCT ON (r.token_key_version) r.token_key_version, lower(r.token_key_id), true
  FROM public.etl_runs AS r
 WHERE r.token_key_version IS NOT NULL AND r.token_key_id ~* '^[0-9a-f]+$' AND r.loaded > 0
 ORDER BY r.token_key_version, r.id;
INSERT INTO vault.token_keys (version, key_id, accepted)
SELECT DISTINCT r.token_key_version, lower(r.token_key_id), false
  FROM public.etl_runs AS r
 WHERE r.token_key_version IS NOT NULL AND r.token_key_id ~* '^[0-9a-f]+$' AND r.loaded > 0
ON CONFLICT (version, key_id) DO NOTHING;

REVOKE ALL ON vault.token_keys FROM PUBLIC;
GRANT SELECT, INSERT ON vault.token_keys TO piivault_etl, piivault_compliance;
