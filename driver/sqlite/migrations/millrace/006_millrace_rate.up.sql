CREATE TABLE {{schema}}millrace_rate (
    queue TEXT NOT NULL,
    rate_key TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    started INTEGER NOT NULL,
    CONSTRAINT millrace_rate_pkey PRIMARY KEY (queue, rate_key, window_start),
    CONSTRAINT millrace_rate_started CHECK (started >= 0),
    CONSTRAINT millrace_rate_window CHECK (window_end > window_start)
);

CREATE TABLE {{schema}}millrace_pause (
    queue TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    args TEXT NOT NULL DEFAULT '{}',
    paused_until TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    CONSTRAINT millrace_pause_pkey PRIMARY KEY (queue, kind, args),
    CONSTRAINT millrace_pause_queue_length CHECK (length(queue) > 0 AND length(queue) <= 128),
    CONSTRAINT millrace_pause_kind_length CHECK (length(kind) <= 128),
    CONSTRAINT millrace_pause_args_object CHECK (json_valid(args) AND json_type(args) = 'object')
);
