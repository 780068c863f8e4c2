-- Sequences (client.InsertOpts.Sequence): jobs of a queue that share a
-- sequence key run one at a time, in the order they were inserted. River
-- never reads these tables.
--
-- A sequenced job is inserted pending (River's state for a job held back by
-- something outside the fetch, which no fetch of River or millrace takes)
-- and given the next position of its sequence; the sequence's head is the
-- one job of it that may be out of pending. When the head is finalized
-- (completed; discarded or cancelled unless its job asked to block the
-- sequence; or deleted), the pending job at the lowest position after it
-- becomes the head and is made available (scheduled when its scheduled_at
-- is more than 5 s ahead).
--
-- millrace_sequence has one row per sequence with jobs not yet passed:
-- next_pos is the last position given (positions are given under this
-- row's lock, which an insert holds until it commits, so positions follow
-- the commit order of the inserts), head_pos and head_id the head's (0 and
-- NULL before the first head). A row whose head is finalized and that has
-- no pending job left is deleted.
CREATE TABLE {{schema}}millrace_sequence (
    queue text NOT NULL,
    seq_key text NOT NULL,
    next_pos bigint NOT NULL,
    head_pos bigint NOT NULL DEFAULT 0,
    head_id bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT millrace_sequence_pkey PRIMARY KEY (queue, seq_key),
    CONSTRAINT millrace_sequence_queue_length CHECK (char_length(queue) > 0 AND char_length(queue) <= 128),
    CONSTRAINT millrace_sequence_key_length CHECK (char_length(seq_key) > 0 AND char_length(seq_key) <= 255),
    CONSTRAINT millrace_sequence_positions CHECK (head_pos >= 0 AND head_pos <= next_pos)
);

-- The completer finds the sequences of the jobs it finalized by their ids.
CREATE INDEX millrace_sequence_head_id_index ON {{schema}}millrace_sequence (head_id);

-- millrace_sequence_job lists a sequence's jobs after its head by
-- position (rows up to the head's are deleted as the head moves on). A job
-- deleted or moved out of pending meanwhile is passed over.
CREATE TABLE {{schema}}millrace_sequence_job (
    queue text NOT NULL,
    seq_key text NOT NULL,
    pos bigint NOT NULL,
    job_id bigint NOT NULL,
    CONSTRAINT millrace_sequence_job_pkey PRIMARY KEY (queue, seq_key, pos),
    CONSTRAINT millrace_sequence_job_pos CHECK (pos > 0)
);
