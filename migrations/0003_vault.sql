-- Sealed originals, kept apart from the analysts' data in their own schema.
CREATE SCHEMA IF NOT EXISTS vault;
REVOKE ALL ON SCHEMA vault FROM PUBLIC;

-- One row per ETL data key: a random XChaCha20-Poly1305 key sealed (crypto_box_seal) to the vault public key.
CREATE TABLE vault.data_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id     text        NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
    sealed_key bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per token: the canonical value, encrypted under a data key with the token as additional data.
CREATE TABLE vault.secrets (
    token       text        PRIMARY KEY,
    field       text        NOT NULL CHECK (field IN ('ip', 'device_id')),
    data_key_id bigint      NOT NULL REFERENCES vault.data_keys (id),
    sealed      bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Messages that could not be loaded: a reason without PII and the whole body sealed. Nothing received is dropped.
CREATE TABLE vault.quarantine (
    message_id  text        PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL,
    data_key_id bigint      NOT NULL REFERENCES vault.data_keys (id),
    sealed_body bytea       NOT NULL
);
