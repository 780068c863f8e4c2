-- Leadership per domain. river_leader holds the database's one leader (its
-- name column is constrained to 'default' by River's schema); a millrace
-- client with client.Config.Domain set also elects a leader of its domain
-- here, with the same term rules (elected_at, expires_at, extension guarded
-- by leader_id and elected_at). River never reads it.
--
-- domain follows the rule of client.Config.Domain: lower-case letters and
-- digits, words joined by '_' or '-', at most 64 characters.
CREATE UNLOGGED TABLE {{schema}}millrace_leader (
    domain text NOT NULL,
    leader_id text NOT NULL,
    elected_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    CONSTRAINT millrace_leader_pkey PRIMARY KEY (domain),
    CONSTRAINT millrace_leader_domain_format CHECK (char_length(domain) <= 64 AND domain ~ '^[a-z0-9]+([_-][a-z0-9]+)*$'),
    CONSTRAINT millrace_leader_id_length CHECK (char_length(leader_id) > 0 AND char_length(leader_id) < 128)
);
