-- The table that records applied versions, in its first shape (River's
-- version 1). Version 5 rebuilds it keyed by (line, version).
CREATE TABLE {{schema}}river_migration (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    version bigint NOT NULL,
    CONSTRAINT version CHECK (version >= 1)
);

CREATE UNIQUE INDEX river_migration_version_idx ON {{schema}}river_migration USING btree (version);
