-- river_migration is rebuilt keyed by (line, version) so that several
-- migration lines can share it. A database migrated by another tool may not
-- have the table at all; then there is nothing to rebuild.
DO $migrate$
BEGIN
    IF to_regclass('{{schema}}river_migration') IS NOT NULL THEN
        ALTER TABLE {{schema}}river_migration RENAME TO river_migration_old;

        -- The key is named explicitly: River's table got this name because
        -- the old table still held river_migration_pkey at this point.
        CREATE TABLE {{schema}}river_migration (
            line text NOT NULL,
            version bigint NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT line_length CHECK (char_length(line) > 0 AND char_length(line) < 128),
            CONSTRAINT version_gte_1 CHECK (version >= 1),
            CONSTRAINT river_migration_pkey1 PRIMARY KEY (line, version)
        );

        INSERT INTO {{schema}}river_migration (line, version, created_at)
        SELECT 'main', version, created_at FROM {{schema}}river_migration_old;

        DROP TABLE {{schema}}river_migration_old;
    END IF;
END;
$migrate$;

-- The first form of unique jobs: a key per kind. Version 6 replaces the
-- index. IF NOT EXISTS lets a large installation build it concurrently
-- beforehand.
ALTER TABLE {{schema}}river_job ADD COLUMN IF NOT EXISTS unique_key bytea;

CREATE UNIQUE INDEX IF NOT EXISTS river_job_kind_unique_key_idx ON {{schema}}river_job (kind, unique_key)
    WHERE unique_key IS NOT NULL;

-- Client registry tables that were never used; version 7 drops them.
CREATE UNLOGGED TABLE {{schema}}river_client (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb NOT NULL DEFAULT '{}',
    paused_at timestamptz,
    updated_at timestamptz NOT NULL,
    CONSTRAINT name_length CHECK (char_length(id) > 0 AND char_length(id) < 128)
);

CREATE UNLOGGED TABLE {{schema}}river_client_queue (
    river_client_id text NOT NULL REFERENCES {{schema}}river_client (id) ON DELETE CASCADE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    max_workers bigint NOT NULL DEFAULT 0,
    metadata jsonb NOT NULL DEFAULT '{}',
    num_jobs_completed bigint NOT NULL DEFAULT 0,
    num_jobs_running bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (river_client_id, name),
    CONSTRAINT name_length CHECK (char_length(name) > 0 AND char_length(name) < 128),
    CONSTRAINT num_jobs_completed_zero_or_positive CHECK (num_jobs_completed >= 0),
    CONSTRAINT num_jobs_running_zero_or_positive CHECK (num_jobs_running >= 0)
);
