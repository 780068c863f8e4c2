package pgexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// The update and its notification go together: the notification is
// computed in the select list of the updated row, so it is sent exactly
// when a row changed (never for a missing queue) and commits or rolls back
// with it.
var sqlQueueUpdate = `
WITH updated AS (
    UPDATE {{schema}}river_queue SET
        metadata = CASE WHEN $2::boolean THEN $3::jsonb ELSE metadata END,
        updated_at = now()
    WHERE name = $1
    RETURNING ` + queueCols + `
)
SELECT ` + queueCols + `,
    CASE WHEN $2::boolean THEN pg_notify({{control_channel}}, $4)::text END
FROM updated`

func (e *executor) QueueUpdate(ctx context.Context, p *driver.QueueUpdateParams) (*millracetype.Queue, error) {
	if p.Name == "" {
		return nil, errors.New("update queue: empty queue name")
	}
	var metadata, payload *string
	if p.MetadataDoUpdate {
		compact, err := compactObject(p.Metadata)
		if err != nil {
			return nil, fmt.Errorf("update queue %q: %w", p.Name, err)
		}
		// River's payload, byte for byte: its fields in this order, the
		// metadata compacted.
		b, err := json.Marshal(struct {
			Action   string          `json:"action"`
			Metadata json.RawMessage `json:"metadata"`
			Queue    string          `json:"queue"`
		}{"metadata_changed", compact, p.Name})
		if err != nil {
			return nil, fmt.Errorf("update queue %q: %w", p.Name, err)
		}
		m, n := string(compact), string(b)
		metadata, payload = &m, &n
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlQueueUpdate), p.Name, p.MetadataDoUpdate, metadata, payload)
	if err != nil {
		return nil, err
	}
	q, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (*millracetype.Queue, error) {
		var notified *string
		return scanQueueWith(row, &notified)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("update queue %q: %w", p.Name, millracetype.ErrNotFound)
	}
	return q, err
}

// compactObject checks that raw is one JSON object and returns it compacted.
func compactObject(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("metadata is not valid JSON: %w", err)
	}
	if buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return nil, fmt.Errorf("metadata must be a JSON object, not %.40s", buf.Bytes())
	}
	return buf.Bytes(), nil
}

// The counts come from one aggregate per queue over the jobs in live
// states; the prioritized fetching index (state, queue, ...) serves each
// (state, queue) pair, so the cost grows with the queue's live jobs, not
// with the finished ones.
const queueCountsJoin = `
LEFT JOIN LATERAL (
    SELECT
        count(*) FILTER (WHERE j.state = 'available') AS available,
        count(*) FILTER (WHERE j.state = 'pending') AS pending,
        count(*) FILTER (WHERE j.state = 'retryable') AS retryable,
        count(*) FILTER (WHERE j.state = 'running') AS running,
        count(*) FILTER (WHERE j.state = 'scheduled') AS scheduled
    FROM {{schema}}river_job AS j
    WHERE j.queue = q.name AND j.state IN ('available', 'pending', 'retryable', 'running', 'scheduled')
) AS c ON true`

const queueCountsCols = `q.name, q.created_at, q.metadata, q.paused_at, q.updated_at,
    c.available, c.pending, c.retryable, c.running, c.scheduled`

var (
	sqlQueueGetWithCounts = `
SELECT ` + queueCountsCols + `
FROM {{schema}}river_queue AS q` + queueCountsJoin + `
WHERE q.name = $1`
	// The limit applies to the queues before their jobs are counted.
	sqlQueueListWithCounts = `
SELECT ` + queueCountsCols + `
FROM (SELECT * FROM {{schema}}river_queue ORDER BY name LIMIT $1) AS q` + queueCountsJoin + `
ORDER BY q.name`
)

func scanQueueWithCounts(row pgx.CollectableRow) (*millracetype.QueueWithCounts, error) {
	var qc millracetype.QueueWithCounts
	c := &qc.Counts
	q, err := scanQueueWith(row, &c.Available, &c.Pending, &c.Retryable, &c.Running, &c.Scheduled)
	if err != nil {
		return nil, err
	}
	qc.Queue = *q
	return &qc, nil
}

// scanQueueWith scans queueCols and then extra columns.
func scanQueueWith(row pgx.CollectableRow, extra ...any) (*millracetype.Queue, error) {
	var q millracetype.Queue
	var metadata []byte
	dest := append([]any{&q.Name, &q.CreatedAt, &metadata, &q.PausedAt, &q.UpdatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	q.Metadata = json.RawMessage(metadata)
	q.CreatedAt, q.UpdatedAt, q.PausedAt = q.CreatedAt.UTC(), q.UpdatedAt.UTC(), utcPtr(q.PausedAt)
	return &q, nil
}

func (e *executor) QueueGetWithCounts(ctx context.Context, p *driver.QueueGetParams) (*millracetype.QueueWithCounts, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlQueueGetWithCounts), p.Name)
	if err != nil {
		return nil, err
	}
	q, err := pgx.CollectExactlyOneRow(rows, scanQueueWithCounts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("queue %q: %w", p.Name, millracetype.ErrNotFound)
	}
	return q, err
}

func (e *executor) QueueListWithCounts(ctx context.Context, p *driver.QueueListParams) ([]*millracetype.QueueWithCounts, error) {
	if p.Limit < 1 {
		return nil, fmt.Errorf("queue list: limit %d must be positive", p.Limit)
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlQueueListWithCounts), p.Limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanQueueWithCounts)
}
