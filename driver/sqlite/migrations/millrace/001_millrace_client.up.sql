-- SQLite translation of migration line millrace (see line main for types).
CREATE TABLE {{schema}}millrace_client (
    client_id TEXT NOT NULL,
    started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    heartbeat_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    metadata TEXT NOT NULL DEFAULT '{}',
    CONSTRAINT millrace_client_pkey PRIMARY KEY (client_id),
    CONSTRAINT millrace_client_id_length CHECK (length(client_id) > 0 AND length(client_id) < 128),
    CONSTRAINT millrace_client_metadata_object CHECK (json_valid(metadata) AND json_type(metadata) = 'object')
);
