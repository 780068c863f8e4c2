-- Args and metadata become required at the database level.
ALTER TABLE {{schema}}river_job ALTER COLUMN args SET DEFAULT '{}';
UPDATE {{schema}}river_job SET args = '{}' WHERE args IS NULL;
ALTER TABLE {{schema}}river_job ALTER COLUMN args SET NOT NULL;
ALTER TABLE {{schema}}river_job ALTER COLUMN args DROP DEFAULT;

ALTER TABLE {{schema}}river_job ALTER COLUMN metadata SET DEFAULT '{}';
UPDATE {{schema}}river_job SET metadata = '{}' WHERE metadata IS NULL;
ALTER TABLE {{schema}}river_job ALTER COLUMN metadata SET NOT NULL;

-- A new state for jobs inserted on hold. It is committed with this version
-- and first used by version 6 (an enum value cannot be used in the
-- transaction that adds it).
ALTER TYPE {{schema}}river_job_state ADD VALUE IF NOT EXISTS 'pending' AFTER 'discarded';

-- finalized_at is set exactly for the finalized states, in both directions.
ALTER TABLE {{schema}}river_job DROP CONSTRAINT finalized_or_finalized_at_null;
ALTER TABLE {{schema}}river_job ADD CONSTRAINT finalized_or_finalized_at_null CHECK (
    (finalized_at IS NULL AND state NOT IN ('cancelled', 'completed', 'discarded'))
    OR (finalized_at IS NOT NULL AND state IN ('cancelled', 'completed', 'discarded'))
);

-- Clients send insert notifications themselves from now on.
DROP TRIGGER river_notify ON {{schema}}river_job;
DROP FUNCTION {{schema}}river_job_notify();

CREATE TABLE {{schema}}river_queue (
    name text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    paused_at timestamptz,
    updated_at timestamptz NOT NULL
);

-- There is one leader per database, always named 'default'.
ALTER TABLE {{schema}}river_leader
    ALTER COLUMN name SET DEFAULT 'default',
    DROP CONSTRAINT name_length,
    ADD CONSTRAINT name_length CHECK (name = 'default');
