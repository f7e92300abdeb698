-- user_logins.loaded_at defaults to the loading transaction's time, so that the ETL can COPY rows straight into
-- user_logins (its fast path) and still stamp them as the INSERT ... SELECT path does with now().
ALTER TABLE public.user_logins ALTER COLUMN loaded_at SET DEFAULT now();
