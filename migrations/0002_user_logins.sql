-- The seed's table, adopted when it exists (the original take-home database ships one), with its columns
-- unchanged and in the same order; piivault adds nullable columns after them.
CREATE TABLE IF NOT EXISTS public.user_logins (
    user_id          varchar(128),
    device_type      varchar(32),
    masked_ip        varchar(256),
    masked_device_id varchar(256),
    locale           varchar(32),
    app_version      integer,
    create_date      date
);

-- Refuse to adopt a table that has the name but not the seed's columns.
DO $$
DECLARE
    expected text[] := ARRAY['user_id', 'device_type', 'masked_ip', 'masked_device_id', 'locale', 'app_version',
                             'create_date'];
    found text[];
BEGIN
    SELECT array_agg(column_name::text ORDER BY ordinal_position) INTO found
      FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name = 'user_logins' AND ordinal_position <= 7;
    IF found IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'public.user_logins exists but does not have the seed''s columns (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date)'
            USING HINT = 'rename or move the existing table, then run piivault migrate again';
    END IF;
END
$$;

ALTER TABLE public.user_logins
    ADD COLUMN IF NOT EXISTS message_id       text,
    ADD COLUMN IF NOT EXISTS app_version_text text,
    ADD COLUMN IF NOT EXISTS loaded_at        timestamptz;

-- The SQS MessageId is the idempotency key: a redelivered message adds no row. NULLs (seed rows) do not collide.
CREATE UNIQUE INDEX IF NOT EXISTS user_logins_message_id_key ON public.user_logins (message_id);

COMMENT ON TABLE public.user_logins IS 'Login events with ip and device_id replaced by keyed tokens (piivault).';
