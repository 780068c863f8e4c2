-- The schedule of durable periodic jobs (client.PeriodicJobOpts.ID set):
-- one row per job ID, holding its next run not yet enqueued, so that a
-- restart or a change of leader continues the schedule instead of starting
-- it afresh. River never reads it.
--
-- The leader enqueues a run and moves next_run_at on in one transaction,
-- with a compare-and-set on next_run_at: of two leaders racing for one run
-- (a stale one during a split brain), only the first moves the row and
-- inserts the job.
--
-- next_from is the time next_run_at was computed from (next_run_at is the
-- schedule's first run after it); a row whose next_run_at is not what the
-- job's current schedule gives from next_from belongs to a schedule that
-- has changed. last_run_at is the run time of the last run enqueued.
CREATE TABLE {{schema}}millrace_periodic (
    id text NOT NULL,
    next_run_at timestamptz NOT NULL,
    next_from timestamptz NOT NULL,
    last_run_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT millrace_periodic_pkey PRIMARY KEY (id),
    CONSTRAINT millrace_periodic_id_length CHECK (char_length(id) > 0 AND char_length(id) <= 128),
    CONSTRAINT millrace_periodic_next_after_from CHECK (next_run_at > next_from)
);
