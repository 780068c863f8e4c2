CREATE TABLE {{schema}}millrace_leader (
    domain TEXT NOT NULL,
    leader_id TEXT NOT NULL,
    elected_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    CONSTRAINT millrace_leader_pkey PRIMARY KEY (domain),
    -- Postgres checks ^[a-z0-9]+([_-][a-z0-9]+)*$; SQLite has no regular
    -- expressions, so this checks the alphabet and the ends (the client
    -- validates the full form).
    CONSTRAINT millrace_leader_domain_format CHECK (length(domain) > 0 AND length(domain) <= 64
        AND domain NOT GLOB '*[^a-z0-9_-]*' AND domain NOT GLOB '[_-]*' AND domain NOT GLOB '*[_-]'),
    CONSTRAINT millrace_leader_id_length CHECK (length(leader_id) > 0 AND length(leader_id) < 128)
);
