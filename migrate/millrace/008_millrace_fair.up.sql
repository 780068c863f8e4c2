-- Fairness within a queue (client.QueueConfig.Fairness): the active
-- partitions of each fair queue, one row per queue and partition. River
-- never reads it.
--
-- A partition is the jobs of one kind (when the queue is fair by kind,
-- else kind is '') whose args hold the values of args (an object of the
-- partition keys; a JSON null stands for a key that is missing or null in
-- the job, the key's default partition). The fetch of a fair queue reads
-- these rows in turn and takes a share of its jobs from each, with
-- args @> the non-null part of args (through River's GIN index on
-- river_job.args). Rows are added by the fetches (the partitions of the
-- newest available jobs and of jobs taken in plain queue order); a row
-- whose read came back empty gets empty_since, and once that is older than
-- a grace period and the partition has no job left to run, a fetch
-- deletes it. The rows are hints of where to look: a job never depends on
-- one to be fetched (every fetch also takes part of its jobs in plain
-- queue order).
CREATE TABLE {{schema}}millrace_fair_partition (
    queue text NOT NULL,
    kind text NOT NULL DEFAULT '',
    args jsonb NOT NULL DEFAULT '{}',
    empty_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT millrace_fair_partition_pkey PRIMARY KEY (queue, kind, args),
    CONSTRAINT millrace_fair_partition_queue_length CHECK (char_length(queue) > 0 AND char_length(queue) <= 128),
    CONSTRAINT millrace_fair_partition_kind_length CHECK (char_length(kind) <= 128),
    CONSTRAINT millrace_fair_partition_args_object CHECK (jsonb_typeof(args) = 'object')
);
