-- The ETL's run history: one row per run with its counts and outcome. No PII.
CREATE TABLE IF NOT EXISTS public.etl_runs (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    source        text        NOT NULL,
    received      bigint      NOT NULL DEFAULT 0,
    loaded        bigint      NOT NULL DEFAULT 0,
    duplicates    bigint      NOT NULL DEFAULT 0,
    quarantined   bigint      NOT NULL DEFAULT 0,
    values_sealed bigint      NOT NULL DEFAULT 0,
    outcome       text        NOT NULL DEFAULT 'running',
    error         text
);
