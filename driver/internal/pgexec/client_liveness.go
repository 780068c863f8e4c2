package pgexec

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// Client liveness statements (millrace_client, the millrace line). Every
// time comparison is made with the database's clock, each row judged by its
// own heartbeat_timeout; durations travel as microseconds.

// sqlClientRegister inserts a client's row, or replaces one that is dead
// (never a live one: another process holds the ID). old reads the
// statement's snapshot, the row as it was before the upsert (not FOR
// UPDATE: a row the same statement updates is skipped by a locking read;
// the upsert locks the row itself, and re-checks the conflict's WHERE on
// its latest version). The times are clock_timestamp(): the row's life
// starts when the statement runs, whatever transaction it is in.
var sqlClientRegister = `
WITH old AS (
    SELECT 1 FROM {{schema}}millrace_client WHERE client_id = $1
), up AS (
    INSERT INTO {{schema}}millrace_client AS c (client_id, started_at, heartbeat_at, metadata, heartbeat_timeout)
    VALUES ($1, clock_timestamp(), clock_timestamp(), coalesce($2::jsonb, '{}'::jsonb), $3::bigint * interval '1 microsecond')
    ON CONFLICT (client_id) DO UPDATE SET started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at,
        metadata = EXCLUDED.metadata, heartbeat_timeout = EXCLUDED.heartbeat_timeout
    WHERE c.heartbeat_at < clock_timestamp() - c.heartbeat_timeout
    RETURNING started_at
)
SELECT (SELECT started_at FROM up), EXISTS (SELECT 1 FROM old)`

func (e *executor) ClientRegister(ctx context.Context, p *driver.ClientRegisterParams) (*driver.ClientRegisterResult, error) {
	if p.ClientID == "" {
		return nil, errors.New("register client: empty client ID")
	}
	if p.HeartbeatTimeout <= 0 {
		return nil, fmt.Errorf("register client %s: heartbeat timeout %v must be positive", p.ClientID, p.HeartbeatTimeout)
	}
	var metadata *string
	if p.Metadata != nil {
		s := string(p.Metadata)
		metadata = &s
	}
	var startedAt *time.Time
	var existed bool
	err := e.db.QueryRow(ctx, e.sql.get(p.Schema, &sqlClientRegister), p.ClientID, metadata, p.HeartbeatTimeout.Microseconds()).
		Scan(&startedAt, &existed)
	if err != nil {
		return nil, err
	}
	if startedAt == nil {
		return &driver.ClientRegisterResult{}, nil // a live row holds the ID
	}
	return &driver.ClientRegisterResult{Lease: &driver.ClientLease{ClientID: p.ClientID, StartedAt: startedAt.UTC()}, Replaced: existed}, nil
}

// sqlClientHeartbeat refreshes a lease only while it is alive: a row
// already dead stays dead (its jobs are being rescued), and a row of
// another incarnation is not ours. The alive test reads clock_timestamp(),
// not the statement's now(): an update that waited for a rescuer's lock on
// the row (ClientLockDead) re-checks it when the lock is released, and must
// then find the row dead, as the rescuer did.
var sqlClientHeartbeat = `
WITH beat AS (
    UPDATE {{schema}}millrace_client SET heartbeat_at = clock_timestamp()
    WHERE client_id = $1 AND started_at = $2 AND heartbeat_at >= clock_timestamp() - heartbeat_timeout
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM beat),
    EXISTS (SELECT 1 FROM {{schema}}millrace_client WHERE heartbeat_at < now() - heartbeat_timeout)`

func (e *executor) ClientHeartbeat(ctx context.Context, p *driver.ClientHeartbeatParams) (*driver.ClientHeartbeatResult, error) {
	if p.Lease == nil {
		return nil, errors.New("client heartbeat: nil lease")
	}
	var r driver.ClientHeartbeatResult
	err := e.db.QueryRow(ctx, e.sql.get(p.Schema, &sqlClientHeartbeat), p.Lease.ClientID, p.Lease.StartedAt).
		Scan(&r.Alive, &r.DeadClients)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// sqlClientLockDead locks dead rows, skipping those others hold, and
// writes each again unchanged: the new row version makes a heartbeat that
// started before the death and waits for the lock re-check its row when
// the lock goes, at that moment's clock_timestamp(), and find it dead (a
// mere FOR UPDATE would let it go ahead on its first check).
var sqlClientLockDead = `
WITH dead AS (
    SELECT client_id FROM {{schema}}millrace_client
    WHERE heartbeat_at < now() - heartbeat_timeout
    ORDER BY heartbeat_at, client_id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE {{schema}}millrace_client AS c SET heartbeat_at = c.heartbeat_at
FROM dead WHERE c.client_id = dead.client_id
RETURNING c.client_id, c.started_at, (extract(epoch FROM now() - c.heartbeat_at - c.heartbeat_timeout) * 1000000)::bigint,
    c.heartbeat_at + c.heartbeat_timeout`

func (e *executor) ClientLockDead(ctx context.Context, p *driver.ClientLockDeadParams) ([]*driver.DeadClient, error) {
	if p.Max <= 0 {
		return nil, fmt.Errorf("lock dead clients: max %d must be positive", p.Max)
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlClientLockDead), p.Max)
	if err != nil {
		return nil, err
	}
	dead, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*driver.DeadClient, error) {
		var d driver.DeadClient
		var us int64
		if err := row.Scan(&d.ClientID, &d.StartedAt, &us, &d.DiedAt); err != nil {
			return nil, err
		}
		d.DeadFor = time.Duration(us) * time.Microsecond
		d.StartedAt, d.DiedAt = d.StartedAt.UTC(), d.DiedAt.UTC()
		return &d, nil
	})
	// Oldest death first (RETURNING keeps no order).
	slices.SortFunc(dead, func(a, b *driver.DeadClient) int {
		return cmp.Or(a.DiedAt.Compare(b.DiedAt), cmp.Compare(a.ClientID, b.ClientID))
	})
	return dead, err
}

var sqlClientDelete = `DELETE FROM {{schema}}millrace_client WHERE client_id = $1 AND started_at = $2`

func (e *executor) ClientDelete(ctx context.Context, p *driver.ClientDeleteParams) (bool, error) {
	tag, err := e.db.Exec(ctx, e.sql.get(p.Schema, &sqlClientDelete), p.ClientID, p.StartedAt)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() > 0, nil
}

// The running jobs of given clients: a scan of the running rows (state is
// the first column of the fetch index), which are as many as the jobs being
// worked. $5, when not NULL, gives each client (in $1's order) a time its
// jobs must have been attempted before.
var sqlJobGetRunningBy = `SELECT ` + jobColsJ + ` FROM {{schema}}river_job AS j
JOIN unnest($1::text[], coalesce($5::timestamptz[], array_fill(NULL::timestamptz, ARRAY[cardinality($1::text[])]))) AS c(client_id, before)
    ON c.client_id = j.attempted_by[cardinality(j.attempted_by)]
WHERE j.state = 'running' AND j.id > $2
    AND ($4::bigint = 0 OR j.attempted_at < now() - $4::bigint * interval '1 microsecond')
    AND (c.before IS NULL OR j.attempted_at < c.before)
ORDER BY j.id LIMIT $3`

func (e *executor) JobGetRunningBy(ctx context.Context, p *driver.JobGetRunningByParams) ([]*millracetype.JobRow, error) {
	if p.Max <= 0 {
		return nil, fmt.Errorf("get running jobs: max %d must be positive", p.Max)
	}
	if p.MinAge < 0 {
		return nil, fmt.Errorf("get running jobs: negative MinAge %v", p.MinAge)
	}
	if len(p.ClientIDs) == 0 {
		return nil, nil
	}
	var before []time.Time
	if p.Before != nil {
		if len(p.Before) != len(p.ClientIDs) {
			return nil, fmt.Errorf("get running jobs: %d Before times for %d clients", len(p.Before), len(p.ClientIDs))
		}
		before = p.Before
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobGetRunningBy), p.ClientIDs, p.AfterID, p.Max, p.MinAge.Microseconds(), before)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanJob)
}

var sqlClientLiveSince = `SELECT min(started_at) FROM {{schema}}millrace_client
WHERE heartbeat_at >= now() - heartbeat_timeout AND coalesce(metadata ->> 'domain', '') = $1`

func (e *executor) ClientLiveSince(ctx context.Context, p *driver.ClientLiveSinceParams) (time.Time, bool, error) {
	var since *time.Time
	if err := e.db.QueryRow(ctx, e.sql.get(p.Schema, &sqlClientLiveSince), p.Domain).Scan(&since); err != nil {
		return time.Time{}, false, err
	}
	if since == nil {
		return time.Time{}, false, nil
	}
	return since.UTC(), true, nil
}
