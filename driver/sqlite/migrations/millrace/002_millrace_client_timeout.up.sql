-- heartbeat_timeout is in microseconds (SQLite has no interval type).
ALTER TABLE {{schema}}millrace_client
    ADD COLUMN heartbeat_timeout INTEGER NOT NULL DEFAULT 5000000
    CONSTRAINT millrace_client_heartbeat_timeout_positive CHECK (heartbeat_timeout > 0);
