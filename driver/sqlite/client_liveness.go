package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/millrace/millrace/driver"
)

// sqlMicros is the expression of a stored time's microseconds since the
// Unix epoch.
func sqlMicros(col string) string {
	return "(unixepoch(substr(" + col + ", 1, 19)) * 1000000 + CAST(substr(" + col + ", 21, 6) AS INTEGER))"
}

// sqlClientAlive is the condition that millrace_client row alias is alive
// at the time given (in microseconds) by the next bind parameter.
func sqlClientAlive(alias string) string {
	return sqlMicros(alias+".heartbeat_at") + " + " + alias + ".heartbeat_timeout >= ?"
}

func (e *executor) ClientRegister(ctx context.Context, p *driver.ClientRegisterParams) (*driver.ClientRegisterResult, error) {
	if p.HeartbeatTimeout <= 0 {
		return nil, fmt.Errorf("client register: heartbeat timeout %v must be positive", p.HeartbeatTimeout)
	}
	metadata := p.Metadata
	if metadata == nil {
		metadata = []byte(`{}`)
	}
	table := qualify(p.Schema) + "millrace_client"
	var res driver.ClientRegisterResult
	err := e.inTx(ctx, func(tx *executor) error {
		now := e.now()
		var alive sql.NullBool
		if _, err := tx.queryOne(ctx, `SELECT `+sqlClientAlive("c")+` FROM `+table+` AS c WHERE client_id = ?`,
			[]any{now.UnixMicro(), p.ClientID}, &alive); err != nil {
			return err
		}
		if alive.Valid && alive.Bool {
			return nil
		}
		res.Replaced = alive.Valid
		if _, err := tx.exec(ctx, `INSERT INTO `+table+` (client_id, started_at, heartbeat_at, metadata, heartbeat_timeout)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET started_at = excluded.started_at,
			heartbeat_at = excluded.heartbeat_at, metadata = excluded.metadata, heartbeat_timeout = excluded.heartbeat_timeout`,
			p.ClientID, fmtTime(now), fmtTime(now), string(metadata), p.HeartbeatTimeout.Microseconds()); err != nil {
			return err
		}
		res.Lease = &driver.ClientLease{ClientID: p.ClientID, StartedAt: now}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

func (e *executor) ClientHeartbeat(ctx context.Context, p *driver.ClientHeartbeatParams) (*driver.ClientHeartbeatResult, error) {
	if p.Lease == nil {
		return nil, errors.New("client heartbeat: nil lease")
	}
	table := qualify(p.Schema) + "millrace_client"
	var res driver.ClientHeartbeatResult
	err := e.inTx(ctx, func(tx *executor) error {
		now := e.now()
		n, err := tx.exec(ctx, `UPDATE `+table+` AS c SET heartbeat_at = ? WHERE client_id = ? AND started_at = ? AND `+sqlClientAlive("c"),
			fmtTime(now), p.Lease.ClientID, fmtTime(p.Lease.StartedAt), now.UnixMicro())
		if err != nil {
			return err
		}
		res.Alive = n > 0
		var dead int
		if _, err := tx.queryOne(ctx, `SELECT count(*) FROM `+table+` AS c WHERE NOT (`+sqlClientAlive("c")+`)`,
			[]any{now.UnixMicro()}, &dead); err != nil {
			return err
		}
		res.DeadClients = dead > 0
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// ClientLockDead implements driver.Executor. SQLite locks the whole
// database for the calling transaction, so no other transaction works on
// the rows returned until it ends.
func (e *executor) ClientLockDead(ctx context.Context, p *driver.ClientLockDeadParams) ([]*driver.DeadClient, error) {
	if p.Max <= 0 {
		return nil, fmt.Errorf("lock dead clients: max %d must be positive", p.Max)
	}
	now := e.now()
	out := []*driver.DeadClient{}
	err := e.query(ctx, `SELECT client_id, started_at, `+sqlMicros("c.heartbeat_at")+` + c.heartbeat_timeout FROM `+
		qualify(p.Schema)+`millrace_client AS c WHERE NOT (`+sqlClientAlive("c")+`) ORDER BY heartbeat_at, client_id LIMIT ?`,
		[]any{now.UnixMicro(), p.Max}, func(r *sql.Rows) error {
			var d driver.DeadClient
			var started string
			var diedMicros int64
			if err := r.Scan(&d.ClientID, &started, &diedMicros); err != nil {
				return err
			}
			var err error
			if d.StartedAt, err = parseTime(started); err != nil {
				return err
			}
			d.DiedAt = time.UnixMicro(diedMicros).UTC()
			d.DeadFor = now.Sub(d.DiedAt)
			out = append(out, &d)
			return nil
		})
	return out, err
}

func (e *executor) ClientDelete(ctx context.Context, p *driver.ClientDeleteParams) (bool, error) {
	n, err := e.exec(ctx, `DELETE FROM `+qualify(p.Schema)+`millrace_client WHERE client_id = ? AND started_at = ?`,
		p.ClientID, fmtTime(p.StartedAt))
	return n > 0, err
}

func (e *executor) ClientLiveSince(ctx context.Context, p *driver.ClientLiveSinceParams) (time.Time, bool, error) {
	var since sql.NullString
	if _, err := e.queryOne(ctx, `SELECT min(started_at) FROM `+qualify(p.Schema)+`millrace_client AS c
		WHERE `+sqlClientAlive("c")+` AND coalesce(json_extract(metadata, '$.domain'), '') = ?`,
		[]any{e.now().UnixMicro(), p.Domain}, &since); err != nil {
		return time.Time{}, false, err
	}
	t, err := parseTimePtr(since)
	if err != nil || t == nil {
		return time.Time{}, false, err
	}
	return *t, true, nil
}
