CREATE TABLE {{schema}}millrace_periodic (
    id TEXT NOT NULL,
    next_run_at TEXT NOT NULL,
    next_from TEXT NOT NULL,
    last_run_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    CONSTRAINT millrace_periodic_pkey PRIMARY KEY (id),
    CONSTRAINT millrace_periodic_id_length CHECK (length(id) > 0 AND length(id) <= 128),
    CONSTRAINT millrace_periodic_next_after_from CHECK (next_run_at > next_from)
);
