-- Exactly the privileges of DESIGN.md's role table. Nothing is granted to PUBLIC.
REVOKE ALL ON public.user_logins, public.etl_runs FROM PUBLIC;
REVOKE ALL ON vault.data_keys, vault.secrets, vault.quarantine FROM PUBLIC;
REVOKE ALL ON audit.access_log FROM PUBLIC;

-- piivault_etl: writes logins, vault rows and quarantine rows; may read tokens (to skip values already sealed),
-- never sealed values nor user_logins. `INSERT ... ON CONFLICT DO NOTHING` without a target needs INSERT only.
GRANT INSERT ON public.user_logins TO piivault_etl;
GRANT USAGE ON SCHEMA vault TO piivault_etl;
GRANT INSERT ON vault.secrets, vault.quarantine, vault.data_keys TO piivault_etl;
GRANT SELECT (token, field) ON vault.secrets TO piivault_etl;
GRANT SELECT (message_id) ON vault.quarantine TO piivault_etl;
GRANT SELECT (id, key_id, created_at) ON vault.data_keys TO piivault_etl;
GRANT INSERT, UPDATE, SELECT ON public.etl_runs TO piivault_etl;

-- piivault_analyst: tokens only.
GRANT SELECT ON public.user_logins TO piivault_analyst;
GRANT SELECT ON public.etl_runs TO piivault_analyst;

-- piivault_compliance: reads user_logins; sealed values only through the SECURITY DEFINER functions that write the
-- access log in the same transaction (added with the compliance migrations).
GRANT SELECT ON public.user_logins TO piivault_compliance;

-- piivault_auditor: the access log and the run history, nothing else.
GRANT USAGE ON SCHEMA audit TO piivault_auditor;
GRANT SELECT ON audit.access_log TO piivault_auditor;
GRANT SELECT ON public.etl_runs TO piivault_auditor;
