-- The client registry tables of version 5 were never used.
DROP TABLE {{schema}}river_client_queue;
DROP TABLE {{schema}}river_client;

ALTER TABLE {{schema}}river_job ALTER COLUMN max_attempts SET DEFAULT 25;
ALTER TABLE {{schema}}river_queue ALTER COLUMN updated_at SET DEFAULT CURRENT_TIMESTAMP;

-- A notification outbox for databases without LISTEN/NOTIFY. On Postgres it
-- is never read or written, but it must exist for River's tools.
CREATE TABLE {{schema}}river_notification (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    payload text NOT NULL,
    topic text NOT NULL,
    CONSTRAINT topic_length CHECK (length(topic) > 0 AND length(topic) < 128)
);

CREATE INDEX river_notification_created_at_idx ON {{schema}}river_notification (created_at);
CREATE INDEX river_notification_topic_id_idx ON {{schema}}river_notification (topic, id);
