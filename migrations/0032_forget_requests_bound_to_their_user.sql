-- A forget request names the user it may erase. Its logged subject is the keyed hash of the user id (user_hash:H),
-- and the hash is tied to the rows only where they carry it: rows loaded before 0017, and seed rows adopted by 0002,
-- have no subject_hash, so an approved request for H could be run against any such user (vault.forget_user checked
-- `subject_hash <> H`, which is not true for NULL). The request now keeps the user id it was asked for, and
-- forget_user runs it for that user only. Not logged (the log names users by hash only); forget blanks it once the
-- user is erased, as it blanks the user ids of unmask grants. Requests asked before this migration carry none and
-- must be asked again.
ALTER TABLE audit.approval_requests ADD COLUMN user_id text;
-- The function that fills and checks it lives in migrations/definitions/, applied after this file.
