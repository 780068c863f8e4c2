package pgxv5

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// Client liveness statements (millrace_client, the millrace line). Every
// time comparison is made with the database's clock, each row judged by its
// own heartbeat_timeout; durations travel as microseconds.

// sqlClientRegister inserts or replaces a client's row and says what it
// replaced: old reads the statement's snapshot, the row as it was before
// the upsert. (Not FOR UPDATE: a row the same statement updates is skipped
// by a locking read. The upsert locks the row itself.)
var sqlClientRegister = `
WITH old AS (
    SELECT heartbeat_at >= now() - heartbeat_timeout AS alive
    FROM {{schema}}millrace_client WHERE client_id = $1
), up AS (
    INSERT INTO {{schema}}millrace_client (client_id, started_at, heartbeat_at, metadata, heartbeat_timeout)
    VALUES ($1, now(), now(), coalesce($2::jsonb, '{}'::jsonb), $3::bigint * interval '1 microsecond')
    ON CONFLICT (client_id) DO UPDATE SET started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at,
        metadata = EXCLUDED.metadata, heartbeat_timeout = EXCLUDED.heartbeat_timeout
    RETURNING started_at
)
SELECT up.started_at, EXISTS (SELECT 1 FROM old), coalesce((SELECT alive FROM old), false) FROM up`

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
	res := &driver.ClientRegisterResult{Lease: &driver.ClientLease{ClientID: p.ClientID}}
	err := e.db.QueryRow(ctx, e.sql.get(p.Schema, &sqlClientRegister), p.ClientID, metadata, p.HeartbeatTimeout.Microseconds()).
		Scan(&res.Lease.StartedAt, &res.Replaced, &res.ReplacedAlive)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// sqlClientHeartbeat refreshes a lease only while it is alive: a row
// already dead stays dead (its jobs are being rescued), and a row of
// another incarnation is not ours. A row locked by a rescuer (ClientLockDead)
// makes the update wait for it, then find the row dead or gone.
var sqlClientHeartbeat = `
WITH beat AS (
    UPDATE {{schema}}millrace_client SET heartbeat_at = now()
    WHERE client_id = $1 AND started_at = $2 AND heartbeat_at >= now() - heartbeat_timeout
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

var sqlClientLockDead = `
SELECT client_id, started_at, (extract(epoch FROM now() - heartbeat_at - heartbeat_timeout) * 1000000)::bigint
FROM {{schema}}millrace_client
WHERE heartbeat_at < now() - heartbeat_timeout
ORDER BY heartbeat_at, client_id
LIMIT $1
FOR UPDATE SKIP LOCKED`

func (e *executor) ClientLockDead(ctx context.Context, p *driver.ClientLockDeadParams) ([]*driver.DeadClient, error) {
	if p.Max <= 0 {
		return nil, fmt.Errorf("lock dead clients: max %d must be positive", p.Max)
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlClientLockDead), p.Max)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*driver.DeadClient, error) {
		var d driver.DeadClient
		var us int64
		if err := row.Scan(&d.ClientID, &d.StartedAt, &us); err != nil {
			return nil, err
		}
		d.DeadFor = time.Duration(us) * time.Microsecond
		return &d, nil
	})
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
// worked.
var sqlJobGetRunningBy = `SELECT ` + jobCols + ` FROM {{schema}}river_job
WHERE state = 'running' AND attempted_by[cardinality(attempted_by)] = ANY($1::text[]) AND id > $2
    AND ($4::bigint = 0 OR attempted_at < now() - $4::bigint * interval '1 microsecond')
ORDER BY id LIMIT $3`

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
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobGetRunningBy), p.ClientIDs, p.AfterID, p.Max, p.MinAge.Microseconds())
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
