-- The vault's token versions from its primary key (issue 25). secrets_token_version_idx (0016) indexed
-- vault.token_version(token): a SQL function with SET (so never inlined) running two regular expressions for every
-- value sealed, which made a COPY into vault.secrets take three times as long (400,000 values: 3.9 s with it, 1.3 s
-- without). The primary key already orders the tokens by their bytes (0023), and the tokens of one field and version
-- lie together in it: every `ip.v3.` token sorts between 'ip.v3.' and 'ip.v3/' ('/' is the byte after '.'). The
-- functions that used the index (token_versions, retokenize) now read those ranges off the primary key
-- (vault.token_version_ranges in migrations/definitions/30_lookup.sql, applied after this file).
DROP INDEX IF EXISTS vault.secrets_token_version_idx;
