-- The run history names the keys each run used, so an operator can tell which vault key sealed a night's values and
-- which token key version tokenized them, and the next run can notice a vault.pub that changed unannounced.
ALTER TABLE public.etl_runs
    ADD COLUMN IF NOT EXISTS vault_key_id      text,
    ADD COLUMN IF NOT EXISTS token_key_id      text,
    ADD COLUMN IF NOT EXISTS token_key_version integer,
    ADD COLUMN IF NOT EXISTS delete_failures   bigint NOT NULL DEFAULT 0;

COMMENT ON COLUMN public.etl_runs.vault_key_id IS 'key id of the vault public key the run sealed to';
COMMENT ON COLUMN public.etl_runs.token_key_id IS 'key id of the token key the run tokenized with';
COMMENT ON COLUMN public.etl_runs.token_key_version IS 'the n of ip.vn. / dev.vn. tokens the run wrote';
COMMENT ON COLUMN public.etl_runs.delete_failures IS 'committed messages the queue refused to delete (redelivered, then skipped)';

-- The run history is the operator's (the ETL role) and the auditor's: it names key ids and failure reasons, which an
-- analyst does not need.
REVOKE SELECT ON public.etl_runs FROM piivault_analyst;
