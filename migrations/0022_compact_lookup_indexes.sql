-- Cheaper lookup indexes (issue 25). The B-trees of 0011 and 0017 on masked_ip, masked_device_id and subject_hash
-- held the whole 70- or 64-character text of every row and compared it with the database's collation on every insert:
-- with user_id's they made COPY into user_logins take about twice as long. Every query that uses them is an equality
-- (`=`, `= ANY`), so a B-tree over a 64-bit digest of the text finds the same rows: 8-byte keys, integer comparisons,
-- a quarter of the size and about half the WAL. The functions look rows up by the digest and then compare the text
-- itself (a digest collision only costs a row read). Not hash indexes: a bucket holding one value many times (an ip
-- behind a carrier NAT, a user with many logins) is a chain of overflow pages every insert walks to its end.
-- hashtextextended is the function hash partitioning relies on, so its results do not change between releases.
-- user_id's B-tree stays: user ids are short and its duplicates are deduplicated.
DROP INDEX IF EXISTS public.user_logins_masked_ip_idx;
DROP INDEX IF EXISTS public.user_logins_masked_device_id_idx;
DROP INDEX IF EXISTS public.user_logins_subject_hash_idx;
CREATE INDEX user_logins_masked_ip_digest_idx
    ON public.user_logins (pg_catalog.hashtextextended(masked_ip, 0));
CREATE INDEX user_logins_masked_device_id_digest_idx
    ON public.user_logins (pg_catalog.hashtextextended(masked_device_id, 0));
CREATE INDEX user_logins_subject_hash_digest_idx
    ON public.user_logins (pg_catalog.hashtextextended(subject_hash, 0));
-- The functions that look rows up through these (lookup, forget, retention, retokenize) live in
-- migrations/definitions/, applied after this file.
