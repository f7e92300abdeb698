-- Rows without a subject hash (loaded before 0017, or adopted from the seed's table), found by user id. The database
-- cannot compute the keyed hash; the ETL, which holds the token key, records it for them at the start of each run
-- (vault.users_without_subject_hash and vault.record_subject_hashes, in migrations/definitions/), so that forget can
-- tie its subject to them (under dual control it refuses users with such rows). Empty once they are recorded; rows
-- the ETL loads always carry their hash, so an insert only tests the predicate.
CREATE INDEX IF NOT EXISTS user_logins_without_subject_hash_idx
    ON public.user_logins (user_id) WHERE subject_hash IS NULL;
