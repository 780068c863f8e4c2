DROP TABLE {{schema}}river_client_queue;
DROP TABLE {{schema}}river_client;

DROP INDEX {{schema}}river_job_kind_unique_key_idx;
ALTER TABLE {{schema}}river_job DROP COLUMN unique_key;

-- Back to the first shape of river_migration, keeping the main line's rows.
-- The old shape has no line column, so the records of any other line
-- (millrace's own, or another tool's) would be lost: refuse while there are
-- any, as River's version 5 down does.
DO $migrate$
BEGIN
    IF to_regclass('{{schema}}river_migration') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM {{schema}}river_migration WHERE line <> 'main') THEN
            RAISE EXCEPTION 'line main version 5 cannot be reverted while river_migration records other lines (%): migrate them down first',
                (SELECT string_agg(DISTINCT line, ', ') FROM {{schema}}river_migration WHERE line <> 'main');
        END IF;
        ALTER TABLE {{schema}}river_migration RENAME TO river_migration_old;

        CREATE TABLE {{schema}}river_migration (
            id bigserial,
            created_at timestamptz NOT NULL DEFAULT now(),
            version bigint NOT NULL,
            CONSTRAINT version CHECK (version >= 1),
            CONSTRAINT river_migration_pkey PRIMARY KEY (id)
        );
        CREATE UNIQUE INDEX river_migration_version_idx ON {{schema}}river_migration USING btree (version);

        INSERT INTO {{schema}}river_migration (created_at, version)
        SELECT created_at, version FROM {{schema}}river_migration_old
        WHERE line = 'main'
        ORDER BY version;

        DROP TABLE {{schema}}river_migration_old;
    END IF;
END;
$migrate$;
