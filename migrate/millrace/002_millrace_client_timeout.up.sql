-- Each client's own heartbeat timeout: a row whose heartbeat_at is older
-- than its heartbeat_timeout (by the database's clock) is dead, and other
-- clients rescue the running jobs of its client. Kept per row, so that
-- clients configured differently judge one another by each one's own
-- setting.
ALTER TABLE {{schema}}millrace_client
    ADD COLUMN heartbeat_timeout interval NOT NULL DEFAULT interval '5 seconds',
    ADD CONSTRAINT millrace_client_heartbeat_timeout_positive CHECK (heartbeat_timeout > interval '0');
