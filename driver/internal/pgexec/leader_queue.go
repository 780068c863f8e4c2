package pgexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

func seconds(d time.Duration) float64 { return d.Seconds() }

func scanLeader(row pgx.CollectableRow) (*millracetype.Leader, error) {
	var l millracetype.Leader
	if err := row.Scan(&l.LeaderID, &l.ElectedAt, &l.ExpiresAt); err != nil {
		return nil, err
	}
	l.ElectedAt, l.ExpiresAt = l.ElectedAt.UTC(), l.ExpiresAt.UTC()
	return &l, nil
}

// optionalLeader returns the one leader row, or nil when there is none.
func optionalLeader(rows pgx.Rows) (*millracetype.Leader, error) {
	l, err := pgx.CollectExactlyOneRow(rows, scanLeader)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return l, err
}

var (
	sqlLeaderDeleteExpired = `DELETE FROM {{schema}}river_leader WHERE expires_at < now()`
	sqlLeaderInsert        = `
INSERT INTO {{schema}}river_leader (leader_id, elected_at, expires_at)
VALUES ($1, now(), now() + $2::float8 * interval '1 second')
ON CONFLICT (name) DO NOTHING
RETURNING leader_id, elected_at, expires_at`
)

// The domain variants work on the domain's row of millrace_leader, with the
// same rules as river_leader's single row.
var (
	sqlDomainLeaderDeleteExpired = `DELETE FROM {{schema}}millrace_leader WHERE domain = $1 AND expires_at < now()`
	sqlDomainLeaderInsert        = `
INSERT INTO {{schema}}millrace_leader (domain, leader_id, elected_at, expires_at)
VALUES ($1, $2, now(), now() + $3::float8 * interval '1 second')
ON CONFLICT (domain) DO NOTHING
RETURNING leader_id, elected_at, expires_at`
)

func (e *executor) LeaderAttemptElect(ctx context.Context, p *driver.LeaderElectParams) (*millracetype.Leader, error) {
	var leader *millracetype.Leader
	err := e.inTx(ctx, func(tx *executor) error {
		var rows pgx.Rows
		if p.Domain == "" {
			if _, err := tx.db.Exec(ctx, e.sql.get(p.Schema, &sqlLeaderDeleteExpired)); err != nil {
				return err
			}
			var err error
			if rows, err = tx.db.Query(ctx, e.sql.get(p.Schema, &sqlLeaderInsert), p.LeaderID, seconds(p.TTL)); err != nil {
				return err
			}
		} else {
			if _, err := tx.db.Exec(ctx, e.sql.get(p.Schema, &sqlDomainLeaderDeleteExpired), p.Domain); err != nil {
				return err
			}
			var err error
			if rows, err = tx.db.Query(ctx, e.sql.get(p.Schema, &sqlDomainLeaderInsert), p.Domain, p.LeaderID, seconds(p.TTL)); err != nil {
				return err
			}
		}
		var err error
		if leader, err = optionalLeader(rows); leader != nil {
			leader.Domain = p.Domain
		}
		return err
	})
	return leader, err
}

var sqlLeaderReelect = `
UPDATE {{schema}}river_leader SET expires_at = now() + $3::float8 * interval '1 second'
WHERE leader_id = $1 AND elected_at = $2 AND expires_at >= now()
RETURNING leader_id, elected_at, expires_at`

var sqlDomainLeaderReelect = `
UPDATE {{schema}}millrace_leader SET expires_at = now() + $4::float8 * interval '1 second'
WHERE domain = $1 AND leader_id = $2 AND elected_at = $3 AND expires_at >= now()
RETURNING leader_id, elected_at, expires_at`

func (e *executor) LeaderAttemptReelect(ctx context.Context, p *driver.LeaderReelectParams) (*millracetype.Leader, error) {
	var rows pgx.Rows
	var err error
	if p.Domain == "" {
		rows, err = e.db.Query(ctx, e.sql.get(p.Schema, &sqlLeaderReelect), p.LeaderID, p.ElectedAt, seconds(p.TTL))
	} else {
		rows, err = e.db.Query(ctx, e.sql.get(p.Schema, &sqlDomainLeaderReelect), p.Domain, p.LeaderID, p.ElectedAt, seconds(p.TTL))
	}
	if err != nil {
		return nil, err
	}
	l, err := optionalLeader(rows)
	if l != nil {
		l.Domain = p.Domain
	}
	return l, err
}

// The resignation and its notice go together: the aggregate always yields a
// row, so the notify subquery always runs, once per deleted row.
var sqlLeaderResign = `
WITH deleted AS (
    DELETE FROM {{schema}}river_leader WHERE leader_id = $1 AND elected_at = $2 RETURNING leader_id
)
SELECT (SELECT count(*) FROM deleted),
    (SELECT count(pg_notify({{leadership_channel}},
        json_build_object('leader_id', leader_id, 'action', 'resigned')::text)) FROM deleted)`

// The domain's resignation notifies on millrace's own topic, naming the
// domain, so River clients never hear it.
var sqlDomainLeaderResign = `
WITH deleted AS (
    DELETE FROM {{schema}}millrace_leader WHERE domain = $1 AND leader_id = $2 AND elected_at = $3 RETURNING domain, leader_id
)
SELECT (SELECT count(*) FROM deleted),
    (SELECT count(pg_notify({{domain_leadership_channel}},
        json_build_object('domain', domain, 'leader_id', leader_id, 'action', 'resigned')::text)) FROM deleted)`

func (e *executor) LeaderResign(ctx context.Context, p *driver.LeaderResignParams) (bool, error) {
	var deleted, notified int64
	var row pgx.Row
	if p.Domain == "" {
		row = e.db.QueryRow(ctx, e.sql.get(p.Schema, &sqlLeaderResign), p.LeaderID, p.ElectedAt)
	} else {
		row = e.db.QueryRow(ctx, e.sql.get(p.Schema, &sqlDomainLeaderResign), p.Domain, p.LeaderID, p.ElectedAt)
	}
	if err := row.Scan(&deleted, &notified); err != nil {
		return false, err
	}
	return deleted > 0, nil
}

var sqlLeaderGetElected = `SELECT leader_id, elected_at, expires_at FROM {{schema}}river_leader WHERE expires_at >= now()`

func (e *executor) LeaderGetElected(ctx context.Context, schema string) (*millracetype.Leader, error) {
	rows, err := e.db.Query(ctx, e.sql.get(schema, &sqlLeaderGetElected))
	if err != nil {
		return nil, err
	}
	l, err := optionalLeader(rows)
	if err == nil && l == nil {
		return nil, fmt.Errorf("leader: %w", millracetype.ErrNotFound)
	}
	return l, err
}

var sqlLeaderListDomains = `SELECT domain, leader_id, elected_at, expires_at FROM {{schema}}millrace_leader WHERE expires_at >= now() ORDER BY domain`

func (e *executor) LeaderListDomains(ctx context.Context, schema string) ([]*millracetype.Leader, error) {
	rows, err := e.db.Query(ctx, e.sql.get(schema, &sqlLeaderListDomains))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*millracetype.Leader, error) {
		var l millracetype.Leader
		if err := row.Scan(&l.Domain, &l.LeaderID, &l.ElectedAt, &l.ExpiresAt); err != nil {
			return nil, err
		}
		l.ElectedAt, l.ExpiresAt = l.ElectedAt.UTC(), l.ExpiresAt.UTC()
		return &l, nil
	})
}

const queueCols = `name, created_at, metadata, paused_at, updated_at`

func scanQueue(row pgx.CollectableRow) (*millracetype.Queue, error) {
	var q millracetype.Queue
	var metadata []byte
	if err := row.Scan(&q.Name, &q.CreatedAt, &metadata, &q.PausedAt, &q.UpdatedAt); err != nil {
		return nil, err
	}
	q.Metadata = json.RawMessage(metadata)
	q.CreatedAt, q.UpdatedAt, q.PausedAt = q.CreatedAt.UTC(), q.UpdatedAt.UTC(), utcPtr(q.PausedAt)
	return &q, nil
}

var sqlQueueCreateOrSetUpdatedAt = `
INSERT INTO {{schema}}river_queue AS q (name, created_at, metadata, updated_at)
VALUES ($1, coalesce($2::timestamptz, now()), coalesce($3::jsonb, '{}'::jsonb), coalesce($2::timestamptz, now()))
ON CONFLICT (name) DO UPDATE SET updated_at = EXCLUDED.updated_at
RETURNING ` + queueCols

func (e *executor) QueueCreateOrSetUpdatedAt(ctx context.Context, p *driver.QueueCreateParams) (*millracetype.Queue, error) {
	var metadata *string
	if p.Metadata != nil {
		m := string(p.Metadata)
		metadata = &m
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlQueueCreateOrSetUpdatedAt), p.Name, p.Now, metadata)
	if err != nil {
		return nil, err
	}
	return pgx.CollectExactlyOneRow(rows, scanQueue)
}

var sqlQueueGet = `SELECT ` + queueCols + ` FROM {{schema}}river_queue WHERE name = $1`

func (e *executor) QueueGet(ctx context.Context, p *driver.QueueGetParams) (*millracetype.Queue, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlQueueGet), p.Name)
	if err != nil {
		return nil, err
	}
	q, err := pgx.CollectExactlyOneRow(rows, scanQueue)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("queue %q: %w", p.Name, millracetype.ErrNotFound)
	}
	return q, err
}

var sqlQueueList = `SELECT ` + queueCols + ` FROM {{schema}}river_queue ORDER BY name LIMIT $1`

func (e *executor) QueueList(ctx context.Context, p *driver.QueueListParams) ([]*millracetype.Queue, error) {
	if p.Limit < 1 {
		return nil, fmt.Errorf("queue list: limit %d must be positive", p.Limit)
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlQueueList), p.Limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanQueue)
}

// Pause and resume change only queues not already in the wanted state, and
// notify (in the same statement) when the name matched any queue.
var (
	sqlQueuePause = `
WITH matched AS (
    SELECT count(*) AS n FROM {{schema}}river_queue WHERE name = $1 OR $1 = '*'
), updated AS (
    UPDATE {{schema}}river_queue SET paused_at = now(), updated_at = now()
    WHERE (name = $1 OR $1 = '*') AND paused_at IS NULL
    RETURNING name
)
SELECT matched.n, (SELECT count(*) FROM updated),
    CASE WHEN matched.n > 0 THEN pg_notify({{control_channel}}, $2)::text END
FROM matched`
	sqlQueueResume = `
WITH matched AS (
    SELECT count(*) AS n FROM {{schema}}river_queue WHERE name = $1 OR $1 = '*'
), updated AS (
    UPDATE {{schema}}river_queue SET paused_at = NULL, updated_at = now()
    WHERE (name = $1 OR $1 = '*') AND paused_at IS NOT NULL
    RETURNING name
)
SELECT matched.n, (SELECT count(*) FROM updated),
    CASE WHEN matched.n > 0 THEN pg_notify({{control_channel}}, $2)::text END
FROM matched`
)

func (e *executor) QueuePause(ctx context.Context, p *driver.QueuePauseParams) error {
	return e.queueSetPaused(ctx, p, &sqlQueuePause, "pause")
}

func (e *executor) QueueResume(ctx context.Context, p *driver.QueuePauseParams) error {
	return e.queueSetPaused(ctx, p, &sqlQueueResume, "resume")
}

func (e *executor) queueSetPaused(ctx context.Context, p *driver.QueuePauseParams, sql *string, action string) error {
	if p.Name == "" {
		return fmt.Errorf("%s queue: empty queue name", action)
	}
	payload, err := json.Marshal(struct {
		Action string `json:"action"`
		Queue  string `json:"queue"`
	}{action, p.Name})
	if err != nil {
		return err
	}
	var matched, changed int64
	var notified *string
	if err := e.db.QueryRow(ctx, e.sql.get(p.Schema, sql), p.Name, string(payload)).Scan(&matched, &changed, &notified); err != nil {
		return err
	}
	if matched == 0 && p.Name != "*" {
		return fmt.Errorf("%s queue %q: %w", action, p.Name, millracetype.ErrNotFound)
	}
	return nil
}

var sqlQueueDeleteExpired = `
DELETE FROM {{schema}}river_queue WHERE name IN (
    SELECT name FROM {{schema}}river_queue WHERE updated_at < $1 ORDER BY name LIMIT $2 FOR UPDATE SKIP LOCKED
)
RETURNING name`

func (e *executor) QueueDeleteExpired(ctx context.Context, p *driver.QueueDeleteExpiredParams) ([]string, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlQueueDeleteExpired), p.UpdatedAtHorizon, p.Max)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
