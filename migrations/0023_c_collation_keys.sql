-- Byte order for the vault's keys (issue 25). `vault.secrets.token` and `vault.tombstones.subject_hash` are ASCII
-- (a version prefix and lowercase hex), so the database's collation orders them as bytes anyway, but unless it is
-- "C" every comparison goes through the C library's locale-aware strcoll: each COPY into vault.secrets walks its
-- primary key with it, and each batch's look-up of thousands of tokens and user hashes sorts its list and probes the
-- key with it. Under "C" a comparison is a memcmp. Equality and order of these values are unchanged. Comparisons
-- with columns of the default collation (user_logins' tokens and hashes) take "C" too, which is the same answer.
ALTER TABLE vault.secrets ALTER COLUMN token TYPE text COLLATE "C";
ALTER TABLE vault.tombstones ALTER COLUMN subject_hash TYPE text COLLATE "C";
