CREATE TABLE {{schema}}millrace_limit (
    queue TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    global_limit INTEGER,
    local_limit INTEGER,
    partition_limit INTEGER,
    partition_by_kind INTEGER NOT NULL DEFAULT 0,
    partition_args TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    CONSTRAINT millrace_limit_pkey PRIMARY KEY (queue, kind),
    CONSTRAINT millrace_limit_queue_length CHECK (length(queue) > 0 AND length(queue) <= 128),
    CONSTRAINT millrace_limit_kind_length CHECK (length(kind) <= 128),
    CONSTRAINT millrace_limit_positive CHECK (
        (global_limit IS NULL OR global_limit > 0) AND (local_limit IS NULL OR local_limit > 0)
        AND (partition_limit IS NULL OR partition_limit > 0)),
    CONSTRAINT millrace_limit_some CHECK (
        global_limit IS NOT NULL OR local_limit IS NOT NULL OR partition_limit IS NOT NULL),
    CONSTRAINT millrace_limit_args_array CHECK (json_valid(partition_args) AND json_type(partition_args) = 'array'),
    CONSTRAINT millrace_limit_partition CHECK (
        (partition_limit IS NULL) = (partition_by_kind = 0 AND json_array_length(partition_args) = 0))
);

CREATE TABLE {{schema}}millrace_limit_bound (
    queue TEXT NOT NULL,
    bound INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    CONSTRAINT millrace_limit_bound_pkey PRIMARY KEY (queue)
);
