-- Byte order for the logins' two text keys (issue 25), as 0023 did for the vault's. Every login inserted walks the
-- unique index on message_id (the idempotency key) and the index on user_id (lookup, forget), comparing with the
-- database's collation: under a libc locale each comparison copies both strings and calls strcoll. Both keys are
-- only ever compared for equality (and message_id breaks ties in the order unmask and lookup print rows), so byte
-- order finds the same rows. A COPY of 200,000 logins into a table with only the message_id index took 0.96-1.20 s
-- with the C.UTF-8 collation and 0.87-0.91 s with "C"; under en_US.UTF-8, where strcoll does more, the gap is larger.
-- Rebuilds the two indexes (the rows stay where they are). Each column keeps its type (user_id is the seed's
-- varchar, of whatever length an installed seed table gave it): only the collation changes.
DO $$
DECLARE
    wanted text;
BEGIN
    FOREACH wanted IN ARRAY ARRAY['message_id', 'user_id'] LOOP
        EXECUTE format('ALTER TABLE public.user_logins ALTER COLUMN %I TYPE %s COLLATE "C"', wanted,
                       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute AS a
                         WHERE a.attrelid = 'public.user_logins'::regclass AND a.attname = wanted));
    END LOOP;
END
$$;
