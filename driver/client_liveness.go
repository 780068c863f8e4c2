package driver

import "time"

// Client liveness lives in the millrace line's table millrace_client: one
// row per running millrace client, keyed by client ID. A row is alive while
// its heartbeat_at, by the database's clock, is no older than its own
// heartbeat_timeout (each client's setting, stored with its row); a row
// older than that is dead for good (a heartbeat never revives it) and
// stays, as a tombstone, until a rescuer deletes it. A job's client is the
// last element of its attempted_by.

// ClientLease is one registration of a client (an incarnation): its ID and
// the database time it registered at, which heartbeats must quote.
type ClientLease struct {
	ClientID  string
	StartedAt time.Time
}

// ClientRegisterParams registers a client: its row is inserted, or
// replaces the ID's dead row (a previous incarnation), with started_at and
// heartbeat_at = the database's time and the given metadata. A live row of
// the ID is left alone: another process holds it.
type ClientRegisterParams struct {
	Schema   string
	ClientID string
	// Metadata is a JSON object describing the client (domain, kinds,
	// queues, host, pid, version). Nil means {}.
	Metadata []byte
	// HeartbeatTimeout is stored with the row: once its heartbeat is older
	// than this, the client is dead. Required.
	HeartbeatTimeout time.Duration
}

// ClientRegisterResult is what a registration did.
type ClientRegisterResult struct {
	// Lease is the new lease, or nil when a live row holds the ID.
	Lease *ClientLease
	// Replaced is true when a dead row of the ID was replaced.
	Replaced bool
}

// ClientHeartbeatParams refreshes a lease (only while its row is still
// alive) and looks for dead clients.
type ClientHeartbeatParams struct {
	Schema string
	Lease  *ClientLease
}

// ClientHeartbeatResult is the outcome of one heartbeat.
type ClientHeartbeatResult struct {
	// Alive is false when the lease was not refreshed: its row is gone,
	// belongs to another incarnation, or was already dead. The client must
	// treat its running jobs as lost (they are or will be rescued) and
	// register again.
	Alive bool
	// DeadClients is true when some row (another client's) is dead: there
	// may be jobs to rescue.
	DeadClients bool
}

// ClientLockDeadParams selects dead rows to work on.
type ClientLockDeadParams struct {
	Schema string
	// Max bounds the rows returned.
	Max int
}

// DeadClient is a dead row, locked by ClientLockDead.
type DeadClient struct {
	ClientID  string
	StartedAt time.Time
	// DeadFor is how long it has been dead: now() − heartbeat_at −
	// heartbeat_timeout, by the database's clock.
	DeadFor time.Duration
	// DiedAt is when it died, on the database's clock: heartbeat_at +
	// heartbeat_timeout.
	DiedAt time.Time
}

// ClientDeleteParams deletes one row: the given incarnation's (StartedAt)
// of ClientID.
type ClientDeleteParams struct {
	Schema    string
	ClientID  string
	StartedAt time.Time
}

// JobGetRunningByParams selects running jobs whose current attempt belongs
// to one of ClientIDs (the last element of attempted_by): the first Max by
// id above AfterID. MinAge, when positive, keeps only jobs attempted at
// least that long ago by the database's clock. Before, when set, has one
// time per client (in ClientIDs' order): only jobs attempted before it
// are selected (a dead client's jobs fetched before its death, not those a
// client that does not yet know it was declared dead fetched since).
type JobGetRunningByParams struct {
	Schema    string
	ClientIDs []string
	AfterID   int64
	Max       int
	MinAge    time.Duration
	Before    []time.Time
}

// ClientLiveSinceParams names the domain ("" is the default domain) whose
// live clients count: rows whose metadata "domain" is Domain (absent counts
// as "").
type ClientLiveSinceParams struct {
	Schema string
	Domain string
}
