ALTER TABLE {{schema}}millrace_client DROP COLUMN heartbeat_timeout;
