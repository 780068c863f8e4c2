-- Rate limits and timed pauses (client.QueueConfig.RateLimits,
-- client.Client.PauseUntil, client.JobPauseUntil). River never reads them.
--
-- millrace_rate counts the jobs a rate-limited fetch started in each
-- window: one row per queue, limit partition (rate_key: the limit and the
-- partition's values) and window. The fetch takes a transaction-level
-- advisory lock on the schema and queue, reads the counts of the current
-- windows, takes what fits and adds what it took, in one transaction, so
-- the counts are exact across processes and a fetch that rolls back counts
-- nothing. Rows of ended windows are deleted by the next fetch.
CREATE TABLE {{schema}}millrace_rate (
    queue text NOT NULL,
    rate_key text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    started integer NOT NULL,
    CONSTRAINT millrace_rate_pkey PRIMARY KEY (queue, rate_key, window_start),
    CONSTRAINT millrace_rate_started CHECK (started >= 0),
    CONSTRAINT millrace_rate_window CHECK (window_end > window_start)
);

-- millrace_pause holds timed pauses: the jobs of queue (of kind, unless
-- '') whose args contain args (@>) are not fetched before paused_until.
-- A row whose time has passed is ignored, and deleted by the next fetch.
CREATE TABLE {{schema}}millrace_pause (
    queue text NOT NULL,
    kind text NOT NULL DEFAULT '',
    args jsonb NOT NULL DEFAULT '{}',
    paused_until timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT millrace_pause_pkey PRIMARY KEY (queue, kind, args),
    CONSTRAINT millrace_pause_queue_length CHECK (char_length(queue) > 0 AND char_length(queue) <= 128),
    CONSTRAINT millrace_pause_kind_length CHECK (char_length(kind) <= 128),
    CONSTRAINT millrace_pause_args_object CHECK (jsonb_typeof(args) = 'object')
);
