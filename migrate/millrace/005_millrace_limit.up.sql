-- Concurrency limits set at run time (client.Client.QueueLimitSet, the
-- millrace CLI's limit command): one row per queue and kind ('' for the
-- whole queue), which replaces for that queue and kind the limit the
-- clients' configurations declare, until it is deleted. River never reads
-- it.
--
-- A limit counts the jobs in state running: the fetch of a limited queue
-- takes a transaction-level advisory lock on the schema and queue, counts,
-- and takes only what fits, so the count itself needs no table.
--
-- global_limit bounds the jobs running across all clients, local_limit
-- those running on each client, partition_limit those running in each
-- partition (per kind when partition_by_kind, per value of the args keys
-- in partition_args). NULL means no such bound.
CREATE TABLE {{schema}}millrace_limit (
    queue text NOT NULL,
    kind text NOT NULL DEFAULT '',
    global_limit integer,
    local_limit integer,
    partition_limit integer,
    partition_by_kind boolean NOT NULL DEFAULT false,
    partition_args text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT millrace_limit_pkey PRIMARY KEY (queue, kind),
    CONSTRAINT millrace_limit_queue_length CHECK (char_length(queue) > 0 AND char_length(queue) <= 128),
    CONSTRAINT millrace_limit_kind_length CHECK (char_length(kind) <= 128),
    CONSTRAINT millrace_limit_positive CHECK (
        (global_limit IS NULL OR global_limit > 0) AND (local_limit IS NULL OR local_limit > 0)
        AND (partition_limit IS NULL OR partition_limit > 0)),
    CONSTRAINT millrace_limit_some CHECK (
        global_limit IS NOT NULL OR local_limit IS NOT NULL OR partition_limit IS NOT NULL),
    CONSTRAINT millrace_limit_partition CHECK (
        (partition_limit IS NULL) = (NOT partition_by_kind AND cardinality(partition_args) = 0))
);

-- An upper bound of the running jobs of a queue, kept by the limited
-- fetches of a queue whose limits are all global (under the queue's
-- advisory lock): the running jobs counted at some fetch plus every job
-- limited fetches have taken since. Jobs only become running through
-- fetches (those of clients that do not see the limits are outside them,
-- as documented), so the bound never falls below the truth; while it
-- leaves room, a fetch need not count (a count walks the index entries of
-- every job that ran since the last vacuum). A missing row means "count".
CREATE UNLOGGED TABLE {{schema}}millrace_limit_bound (
    queue text NOT NULL,
    bound bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT millrace_limit_bound_pkey PRIMARY KEY (queue)
);
