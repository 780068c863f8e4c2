package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// leaderTable returns the table, key condition and key arguments of the
// leader rows a domain uses: river_leader for "", millrace_leader's row
// of the domain otherwise.
func leaderTable(schema, domain string) (table, cond string, args []any) {
	if domain == "" {
		return qualify(schema) + "river_leader", "1 = 1", nil
	}
	return qualify(schema) + "millrace_leader", "domain = ?", []any{domain}
}

func (e *executor) LeaderAttemptElect(ctx context.Context, p *driver.LeaderElectParams) (*millracetype.Leader, error) {
	var out *millracetype.Leader
	err := e.inTx(ctx, func(tx *executor) error {
		table, cond, key := leaderTable(p.Schema, p.Domain)
		now := e.now()
		if _, err := tx.exec(ctx, `DELETE FROM `+table+` WHERE `+cond+` AND expires_at < ?`, append(key, fmtTime(now))...); err != nil {
			return err
		}
		expires := now.Add(p.TTL).Truncate(time.Microsecond)
		var n int64
		var err error
		if p.Domain == "" {
			n, err = tx.exec(ctx, `INSERT INTO `+table+` (leader_id, elected_at, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
				p.LeaderID, fmtTime(now), fmtTime(expires))
		} else {
			n, err = tx.exec(ctx, `INSERT INTO `+table+` (domain, leader_id, elected_at, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (domain) DO NOTHING`,
				p.Domain, p.LeaderID, fmtTime(now), fmtTime(expires))
		}
		if err != nil || n == 0 {
			return err
		}
		out = &millracetype.Leader{Domain: p.Domain, LeaderID: p.LeaderID, ElectedAt: now, ExpiresAt: expires}
		return nil
	})
	return out, err
}

func (e *executor) LeaderAttemptReelect(ctx context.Context, p *driver.LeaderReelectParams) (*millracetype.Leader, error) {
	table, cond, key := leaderTable(p.Schema, p.Domain)
	now := e.now()
	expires := now.Add(p.TTL).Truncate(time.Microsecond)
	args := append([]any{fmtTime(expires)}, key...)
	n, err := e.exec(ctx, `UPDATE `+table+` SET expires_at = ? WHERE `+cond+` AND leader_id = ? AND elected_at = ? AND expires_at >= ?`,
		append(args, p.LeaderID, fmtTime(p.ElectedAt), fmtTime(now))...)
	if err != nil || n == 0 {
		return nil, err
	}
	return &millracetype.Leader{Domain: p.Domain, LeaderID: p.LeaderID, ElectedAt: p.ElectedAt.UTC(), ExpiresAt: expires}, nil
}

// LeaderResign implements driver.Executor (the resignation notification
// has no listener to reach on SQLite).
func (e *executor) LeaderResign(ctx context.Context, p *driver.LeaderResignParams) (bool, error) {
	table, cond, key := leaderTable(p.Schema, p.Domain)
	n, err := e.exec(ctx, `DELETE FROM `+table+` WHERE `+cond+` AND leader_id = ? AND elected_at = ?`,
		append(key, p.LeaderID, fmtTime(p.ElectedAt))...)
	return n > 0, err
}

func scanLeader(r rowScanner, domain bool) (*millracetype.Leader, error) {
	var l millracetype.Leader
	var elected, expires string
	dest := []any{&l.LeaderID, &elected, &expires}
	if domain {
		dest = append([]any{&l.Domain}, dest...)
	}
	if err := r.Scan(dest...); err != nil {
		return nil, err
	}
	var err error
	if l.ElectedAt, err = parseTime(elected); err != nil {
		return nil, err
	}
	if l.ExpiresAt, err = parseTime(expires); err != nil {
		return nil, err
	}
	return &l, nil
}

func (e *executor) LeaderGetElected(ctx context.Context, schema string) (*millracetype.Leader, error) {
	var out *millracetype.Leader
	err := e.query(ctx, `SELECT leader_id, elected_at, expires_at FROM `+qualify(schema)+`river_leader WHERE expires_at >= ?`,
		[]any{fmtTime(e.now())}, func(r *sql.Rows) error {
			var err error
			out, err = scanLeader(r, false)
			return err
		})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, fmt.Errorf("leader: %w", millracetype.ErrNotFound)
	}
	return out, nil
}

func (e *executor) LeaderListDomains(ctx context.Context, schema string) ([]*millracetype.Leader, error) {
	out := []*millracetype.Leader{}
	err := e.query(ctx, `SELECT domain, leader_id, elected_at, expires_at FROM `+qualify(schema)+`millrace_leader WHERE expires_at >= ? ORDER BY domain`,
		[]any{fmtTime(e.now())}, func(r *sql.Rows) error {
			l, err := scanLeader(r, true)
			if err == nil {
				out = append(out, l)
			}
			return err
		})
	return out, err
}

// --- queues ---

const queueCols = `name, created_at, metadata, paused_at, updated_at`

func scanQueue(r rowScanner) (*millracetype.Queue, error) {
	var q millracetype.Queue
	var created, updated, metadata string
	var paused sql.NullString
	if err := r.Scan(&q.Name, &created, &metadata, &paused, &updated); err != nil {
		return nil, err
	}
	var err error
	if q.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if q.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	if q.PausedAt, err = parseTimePtr(paused); err != nil {
		return nil, err
	}
	q.Metadata = json.RawMessage(metadata)
	return &q, nil
}

func (e *executor) loadQueues(ctx context.Context, schema, where string, args ...any) ([]*millracetype.Queue, error) {
	out := []*millracetype.Queue{}
	err := e.query(ctx, `SELECT `+queueCols+` FROM `+qualify(schema)+`river_queue `+where, args, func(r *sql.Rows) error {
		q, err := scanQueue(r)
		if err == nil {
			out = append(out, q)
		}
		return err
	})
	return out, err
}

func (e *executor) QueueCreateOrSetUpdatedAt(ctx context.Context, p *driver.QueueCreateParams) (*millracetype.Queue, error) {
	now := e.now()
	if p.Now != nil {
		now = p.Now.UTC()
	}
	metadata := p.Metadata
	if metadata == nil {
		metadata = []byte(`{}`)
	}
	var out *millracetype.Queue
	err := e.inTx(ctx, func(tx *executor) error {
		if _, err := tx.exec(ctx, `INSERT INTO `+qualify(p.Schema)+`river_queue (name, created_at, metadata, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at`, p.Name, fmtTime(now), string(metadata), fmtTime(now)); err != nil {
			return err
		}
		qs, err := tx.loadQueues(ctx, p.Schema, `WHERE name = ?`, p.Name)
		if err != nil {
			return err
		}
		if len(qs) == 0 {
			return fmt.Errorf("queue %q: %w", p.Name, millracetype.ErrNotFound)
		}
		out = qs[0]
		return nil
	})
	return out, err
}

func (e *executor) QueueGet(ctx context.Context, p *driver.QueueGetParams) (*millracetype.Queue, error) {
	qs, err := e.loadQueues(ctx, p.Schema, `WHERE name = ?`, p.Name)
	if err != nil {
		return nil, err
	}
	if len(qs) == 0 {
		return nil, fmt.Errorf("queue %q: %w", p.Name, millracetype.ErrNotFound)
	}
	return qs[0], nil
}

func (e *executor) QueueList(ctx context.Context, p *driver.QueueListParams) ([]*millracetype.Queue, error) {
	return e.loadQueues(ctx, p.Schema, `ORDER BY name LIMIT ?`, p.Limit)
}

// queueSetPaused pauses or resumes a queue ("*" for all). The control
// notification has no listener to reach on SQLite.
func (e *executor) queueSetPaused(ctx context.Context, schema, name string, pause bool) error {
	return e.inTx(ctx, func(tx *executor) error {
		var n int
		if _, err := tx.queryOne(ctx, `SELECT count(*) FROM `+qualify(schema)+`river_queue WHERE name = ? OR ? = '*'`, []any{name, name}, &n); err != nil {
			return err
		}
		if n == 0 && name != "*" {
			return fmt.Errorf("queue %q: %w", name, millracetype.ErrNotFound)
		}
		now := fmtTime(e.now())
		q := `UPDATE ` + qualify(schema) + `river_queue SET paused_at = ?, updated_at = ? WHERE (name = ? OR ? = '*') AND paused_at IS NULL`
		args := []any{now, now, name, name}
		if !pause {
			q = `UPDATE ` + qualify(schema) + `river_queue SET paused_at = NULL, updated_at = ? WHERE (name = ? OR ? = '*') AND paused_at IS NOT NULL`
			args = []any{now, name, name}
		}
		_, err := tx.exec(ctx, q, args...)
		return err
	})
}

func (e *executor) QueuePause(ctx context.Context, p *driver.QueuePauseParams) error {
	return e.queueSetPaused(ctx, p.Schema, p.Name, true)
}

func (e *executor) QueueResume(ctx context.Context, p *driver.QueuePauseParams) error {
	return e.queueSetPaused(ctx, p.Schema, p.Name, false)
}

func (e *executor) QueueDeleteExpired(ctx context.Context, p *driver.QueueDeleteExpiredParams) ([]string, error) {
	names := []string{}
	err := e.inTx(ctx, func(tx *executor) error {
		err := tx.query(ctx, `SELECT name FROM `+qualify(p.Schema)+`river_queue WHERE updated_at < ? ORDER BY name LIMIT ?`,
			[]any{fmtTime(p.UpdatedAtHorizon), p.Max}, func(r *sql.Rows) error {
				var n string
				err := r.Scan(&n)
				names = append(names, n)
				return err
			})
		if err != nil {
			return err
		}
		for _, n := range names {
			if _, err := tx.exec(ctx, `DELETE FROM `+qualify(p.Schema)+`river_queue WHERE name = ?`, n); err != nil {
				return err
			}
		}
		return nil
	})
	return names, err
}
