-- Sequences (see the Postgres line's version 007 for the model). On SQLite
-- positions are given under the database's write lock, which the inserting
-- transaction holds until it commits.
CREATE TABLE {{schema}}millrace_sequence (
    queue TEXT NOT NULL,
    seq_key TEXT NOT NULL,
    next_pos INTEGER NOT NULL,
    head_pos INTEGER NOT NULL DEFAULT 0,
    head_id INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    CONSTRAINT millrace_sequence_pkey PRIMARY KEY (queue, seq_key),
    CONSTRAINT millrace_sequence_queue_length CHECK (length(queue) > 0 AND length(queue) <= 128),
    CONSTRAINT millrace_sequence_key_length CHECK (length(seq_key) > 0 AND length(seq_key) <= 255),
    CONSTRAINT millrace_sequence_positions CHECK (head_pos >= 0 AND head_pos <= next_pos)
);

CREATE INDEX {{schema}}millrace_sequence_head_id_index ON millrace_sequence (head_id);

CREATE TABLE {{schema}}millrace_sequence_job (
    queue TEXT NOT NULL,
    seq_key TEXT NOT NULL,
    pos INTEGER NOT NULL,
    job_id INTEGER NOT NULL,
    CONSTRAINT millrace_sequence_job_pkey PRIMARY KEY (queue, seq_key, pos),
    CONSTRAINT millrace_sequence_job_pos CHECK (pos > 0)
);
