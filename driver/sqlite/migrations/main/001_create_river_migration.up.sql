-- SQLite translation of River's migration line main. Times are TEXT in UTC,
-- 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (fixed width, so text order is time order);
-- river_migration has its version-5 shape (with line) from the start.
CREATE TABLE {{schema}}river_migration (
    line TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    PRIMARY KEY (line, version),
    CONSTRAINT line_length CHECK (length(line) > 0 AND length(line) < 128),
    CONSTRAINT version_gte_1 CHECK (version >= 1)
);
