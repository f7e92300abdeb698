-- Which database a signed checkpoint speaks of. A random id drawn once, when this migration runs, names the
-- database across hosts and ports; with the database's oid (which a copy made by CREATE DATABASE ... TEMPLATE does
-- not keep) it tells the original from a copy that carries the same log. See SECURITY.md, "Signed checkpoints".
CREATE TABLE audit.database_identity (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    id          uuid        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit.database_identity (id) VALUES (gen_random_uuid());

GRANT SELECT ON audit.database_identity TO piivault_auditor;
