-- The access log: append-only and hash-chained. Entries are appended by SECURITY DEFINER functions
-- (compliance issue); nobody may change or remove one.
CREATE SCHEMA IF NOT EXISTS audit;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;

CREATE TABLE audit.access_log (
    seq         bigint      PRIMARY KEY,
    at          timestamptz NOT NULL,
    db_user     text        NOT NULL,
    os_user     text        NOT NULL,
    client_host text        NOT NULL,
    action      text        NOT NULL,
    reason      text        NOT NULL,
    subject     text        NOT NULL,
    row_count   integer     NOT NULL,
    outcome     text        NOT NULL,
    prev_hash   bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash        bytea       NOT NULL CHECK (octet_length(hash) = 32)
);

-- Triggers fire for every role, the table owner and superusers included.
CREATE FUNCTION audit.refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    RAISE EXCEPTION 'audit.access_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER access_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit.access_log
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

CREATE TRIGGER access_log_no_truncate
    BEFORE TRUNCATE ON audit.access_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
