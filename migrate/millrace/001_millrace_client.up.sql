-- millrace's first table of its own, for client liveness: one row per
-- running millrace client, written at start and refreshed by its heartbeat,
-- so that a client (or an operator) can tell live clients from dead ones
-- by heartbeat_at. River never reads it.
--
-- client_id is the client's ID (client.Config.ID or the generated one).
-- metadata is free-form facts about the process (host, pid, version,
-- queues) for operators; millrace does not interpret it.
CREATE TABLE {{schema}}millrace_client (
    client_id text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT millrace_client_pkey PRIMARY KEY (client_id),
    CONSTRAINT millrace_client_id_length CHECK (char_length(client_id) > 0 AND char_length(client_id) < 128),
    CONSTRAINT millrace_client_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
