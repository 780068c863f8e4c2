-- Fairness within a queue (see the Postgres line's version 008 for the
-- model). args is the partition's object in Postgres' jsonb text form
-- (keys ordered, ", " and ": "), so that equal partitions are one key.
CREATE TABLE {{schema}}millrace_fair_partition (
    queue TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    args TEXT NOT NULL DEFAULT '{}',
    empty_since TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    CONSTRAINT millrace_fair_partition_pkey PRIMARY KEY (queue, kind, args),
    CONSTRAINT millrace_fair_partition_queue_length CHECK (length(queue) > 0 AND length(queue) <= 128),
    CONSTRAINT millrace_fair_partition_kind_length CHECK (length(kind) <= 128),
    CONSTRAINT millrace_fair_partition_args_object CHECK (json_valid(args) AND json_type(args) = 'object')
);
