-- The four NOLOGIN group roles of DESIGN.md. Roles are cluster-wide, so a second database in the same cluster
-- finds them already there; creating them must be idempotent and tolerate a concurrent migration.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['piivault_etl', 'piivault_analyst', 'piivault_compliance', 'piivault_auditor']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database
            END;
        END IF;
    END LOOP;
END
$$;
