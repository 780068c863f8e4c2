-- River's tables in their version 8 shape (versions 3 to 8 have nothing
-- left to do on SQLite). Types: jsonb is JSON TEXT, text[] a JSON array,
-- jsonb[] (errors) a JSON array of objects, bit(8) an INTEGER mask (bit 0:
-- available ... bit 7: scheduled, as River's river_job_state_in_bitmask
-- reads get_bit 7 ... 0), the state enum a CHECK.
CREATE TABLE {{schema}}river_job (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL DEFAULT 'available',
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 25,
    attempted_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    finalized_at TEXT,
    scheduled_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    priority INTEGER NOT NULL DEFAULT 1,
    args TEXT NOT NULL,
    attempted_by TEXT,
    errors TEXT,
    kind TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    queue TEXT NOT NULL DEFAULT 'default',
    tags TEXT NOT NULL DEFAULT '[]',
    unique_key BLOB,
    unique_states INTEGER,
    CONSTRAINT river_job_state CHECK (state IN ('available', 'cancelled', 'completed', 'discarded', 'pending', 'retryable', 'running', 'scheduled')),
    CONSTRAINT finalized_or_finalized_at_null CHECK (
        (finalized_at IS NULL AND state NOT IN ('cancelled', 'completed', 'discarded'))
        OR (finalized_at IS NOT NULL AND state IN ('cancelled', 'completed', 'discarded'))),
    CONSTRAINT kind_length CHECK (length(kind) > 0 AND length(kind) < 128),
    CONSTRAINT max_attempts_is_positive CHECK (max_attempts > 0),
    CONSTRAINT priority_in_range CHECK (priority >= 1 AND priority <= 4),
    CONSTRAINT queue_length CHECK (length(queue) > 0 AND length(queue) < 128),
    CONSTRAINT args_json CHECK (json_valid(args)),
    CONSTRAINT metadata_json CHECK (json_valid(metadata)),
    CONSTRAINT tags_array CHECK (json_valid(tags) AND json_type(tags) = 'array'),
    CONSTRAINT attempted_by_array CHECK (attempted_by IS NULL OR (json_valid(attempted_by) AND json_type(attempted_by) = 'array')),
    CONSTRAINT errors_array CHECK (errors IS NULL OR (json_valid(errors) AND json_type(errors) = 'array')),
    CONSTRAINT unique_states_byte CHECK (unique_states IS NULL OR (unique_states >= 0 AND unique_states <= 255))
);

CREATE INDEX {{schema}}river_job_kind ON river_job (kind);
CREATE INDEX {{schema}}river_job_prioritized_fetching_index ON river_job (state, queue, priority, scheduled_at, id);
CREATE INDEX {{schema}}river_job_state_and_finalized_at_index ON river_job (state, finalized_at) WHERE finalized_at IS NOT NULL;
CREATE UNIQUE INDEX {{schema}}river_job_unique_idx ON river_job (unique_key)
    WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL
        AND ((unique_states >> (CASE state
            WHEN 'available' THEN 0 WHEN 'cancelled' THEN 1 WHEN 'completed' THEN 2 WHEN 'discarded' THEN 3
            WHEN 'pending' THEN 4 WHEN 'retryable' THEN 5 WHEN 'running' THEN 6 WHEN 'scheduled' THEN 7
            END)) & 1) = 1;

CREATE TABLE {{schema}}river_leader (
    elected_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    leader_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT 'default' PRIMARY KEY,
    CONSTRAINT leader_id_length CHECK (length(leader_id) > 0 AND length(leader_id) < 128),
    CONSTRAINT name_length CHECK (name = 'default')
);

CREATE TABLE {{schema}}river_queue (
    name TEXT NOT NULL PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    metadata TEXT NOT NULL DEFAULT '{}',
    paused_at TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    CONSTRAINT metadata_object CHECK (json_valid(metadata) AND json_type(metadata) = 'object')
);
