-- Cheaper format checks (issue 25). PostgreSQL's regular expressions unroll a counted repetition such as
-- `[0-9a-f]{64}` into as many states, and each match walked them: the check on user_logins.subject_hash (0017) cost
-- about 7 us a row, 1.4 s of the 3.7 s a COPY of 200,000 logins took, more than any of the four lookup indexes.
-- The same rule written as a byte length and an uncounted class (`[0-9a-f]+`) costs about 0.1 s for those rows: 64
-- bytes that are all lowercase hex digits are 64 lowercase hex digits. Rows are checked by the same rule as before,
-- NULL included (a NULL subject_hash still passes: rows loaded before 0017). audit.is_token, in
-- definitions/10_audit.sql, gets the same treatment.
-- The constraints are the ones PostgreSQL named for the checks of 0003, 0013 and 0017; the DROPs fail rather than
-- leave a renamed old check in place. Re-adding a check reads the table once (about half a second per million
-- logins) under the ALTER's lock: run `piivault migrate` outside the nightly run, as for every migration.
ALTER TABLE public.user_logins
    DROP CONSTRAINT user_logins_subject_hash_check,
    ADD CONSTRAINT user_logins_subject_hash_check
        CHECK (octet_length(subject_hash) = 64 AND subject_hash ~ '^[0-9a-f]+$');
ALTER TABLE vault.tombstones
    DROP CONSTRAINT tombstones_subject_hash_check,
    ADD CONSTRAINT tombstones_subject_hash_check
        CHECK (octet_length(subject_hash) = 64 AND subject_hash ~ '^[0-9a-f]+$');
ALTER TABLE vault.data_keys
    DROP CONSTRAINT data_keys_key_id_check,
    ADD CONSTRAINT data_keys_key_id_check CHECK (octet_length(key_id) = 16 AND key_id ~ '^[0-9a-f]+$');
