DROP TABLE {{schema}}river_client_queue;
DROP TABLE {{schema}}river_client;

DROP INDEX {{schema}}river_job_kind_unique_key_idx;
ALTER TABLE {{schema}}river_job DROP COLUMN unique_key;

-- Back to the first shape of river_migration, keeping the main line's rows.
DO $migrate$
BEGIN
    IF to_regclass('{{schema}}river_migration') IS NOT NULL THEN
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
