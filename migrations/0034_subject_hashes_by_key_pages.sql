-- vault.users_without_subject_hash (0033's definitions) walked the partial index from its start on every round of
-- the ETL's subject-hash recording, past the entries earlier rounds had just emptied: quadratic on a large legacy
-- table. Its replacement takes the last user id of the round before (definitions/40_forget.sql); a function's
-- arguments change only by dropping it here.
DROP FUNCTION IF EXISTS vault.users_without_subject_hash(integer);
