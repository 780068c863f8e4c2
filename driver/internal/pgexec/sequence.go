package pgexec

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// Positions are given under the sequences' rows, which the upsert locks in
// key order and keeps locked until the transaction ends.
var sqlSequenceAppend = `
WITH input AS (
    SELECT queue, seq_key, job_id, ord
    FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS t(queue, seq_key, job_id, ord)
), grouped AS (
    SELECT queue, seq_key, count(*) AS n FROM input GROUP BY queue, seq_key
), upserted AS (
    INSERT INTO {{schema}}millrace_sequence AS s (queue, seq_key, next_pos)
    SELECT queue, seq_key, n FROM grouped ORDER BY queue, seq_key
    ON CONFLICT (queue, seq_key) DO UPDATE SET next_pos = s.next_pos + excluded.next_pos, updated_at = now()
    RETURNING s.queue, s.seq_key, s.next_pos
)
INSERT INTO {{schema}}millrace_sequence_job (queue, seq_key, pos, job_id)
SELECT i.queue, i.seq_key, u.next_pos - g.n + row_number() OVER (PARTITION BY i.queue, i.seq_key ORDER BY i.ord), i.job_id
FROM input AS i
JOIN grouped AS g ON g.queue = i.queue AND g.seq_key = i.seq_key
JOIN upserted AS u ON u.queue = i.queue AND u.seq_key = i.seq_key`

// The locks of a promotion, one statement per selector.
const sqlSequenceLockHead = `
SELECT queue, seq_key FROM {{schema}}millrace_sequence WHERE head_id = ANY($1::bigint[])
ORDER BY queue, seq_key FOR UPDATE`

// The sweeps lock only the sequences whose head looks finalized or gone
// (the promotion decides again in its own statement): locking a row
// writes it, and most sequences' heads are waiting or running.
const sqlSequenceLockQueue = `
SELECT s.queue, s.seq_key FROM {{schema}}millrace_sequence AS s LEFT JOIN {{schema}}river_job AS h ON h.id = s.head_id
WHERE s.queue = $1 AND ` + sqlSequenceHeadDone + `
ORDER BY s.queue, s.seq_key FOR UPDATE OF s`

const sqlSequenceLockAll = `
SELECT s.queue, s.seq_key FROM {{schema}}millrace_sequence AS s LEFT JOIN {{schema}}river_job AS h ON h.id = s.head_id
WHERE ` + sqlSequenceHeadDone + `
ORDER BY s.queue, s.seq_key FOR UPDATE OF s`

const sqlSequenceHeadDone = `(s.head_id IS NULL OR h.id IS NULL OR h.state IN ('completed', 'cancelled', 'discarded'))`

const sqlSequenceLockKeys = `
SELECT s.queue, s.seq_key FROM {{schema}}millrace_sequence AS s
JOIN unnest($1::text[], $2::text[]) AS k(queue, seq_key) ON s.queue = k.queue AND s.seq_key = k.seq_key
ORDER BY s.queue, s.seq_key FOR UPDATE OF s`

var (
	sqlSequenceLockHeadWait, sqlSequenceLockHeadSkip   = sqlSequenceLockHead, sqlSequenceLockHead + " SKIP LOCKED"
	sqlSequenceLockQueueWait, sqlSequenceLockQueueSkip = sqlSequenceLockQueue, sqlSequenceLockQueue + " SKIP LOCKED"
	sqlSequenceLockAllWait, sqlSequenceLockAllSkip     = sqlSequenceLockAll, sqlSequenceLockAll + " SKIP LOCKED"
	sqlSequenceLockKeysWait                            = sqlSequenceLockKeys
)

// The promotion of locked sequences (a statement of its own, after the
// lock: its snapshot sees what the lock's previous holders committed).
// cand: sequences whose head is finalized (and does not block) or gone;
// nxt: the first pending job after the head, if any.
var sqlSequencePromote = `
WITH locked AS (
    SELECT s.queue, s.seq_key, s.head_pos, s.head_id
    FROM {{schema}}millrace_sequence AS s
    JOIN unnest($1::text[], $2::text[]) AS k(queue, seq_key) ON s.queue = k.queue AND s.seq_key = k.seq_key
), cand AS (
    SELECT l.queue, l.seq_key, l.head_pos
    FROM locked AS l LEFT JOIN {{schema}}river_job AS h ON h.id = l.head_id
    WHERE l.head_id IS NULL OR h.id IS NULL OR h.state = 'completed'
        OR (h.state IN ('cancelled', 'discarded')
            AND NOT coalesce(h.metadata -> '` + driver.SequenceMetadataKey + `' -> 'block' = 'true'::jsonb, false))
), nxt AS MATERIALIZED (
    SELECT c.queue, c.seq_key, n.pos, n.job_id
    FROM cand AS c LEFT JOIN LATERAL (
        SELECT sj.pos, sj.job_id
        FROM {{schema}}millrace_sequence_job AS sj
        JOIN {{schema}}river_job AS j ON j.id = sj.job_id AND j.state = 'pending'
        WHERE sj.queue = c.queue AND sj.seq_key = c.seq_key AND sj.pos > c.head_pos
        ORDER BY sj.pos LIMIT 1
    ) AS n ON true
), promoted AS (
    UPDATE {{schema}}river_job AS j
    SET state = CASE WHEN j.scheduled_at > clock_timestamp() + interval '5 seconds' THEN 'scheduled' ELSE 'available' END::{{schema}}river_job_state
    FROM nxt WHERE j.id = nxt.job_id AND j.state = 'pending'
    RETURNING j.id, j.queue, j.state
), passed AS (
    DELETE FROM {{schema}}millrace_sequence_job AS sj USING nxt
    WHERE sj.queue = nxt.queue AND sj.seq_key = nxt.seq_key AND (nxt.pos IS NULL OR sj.pos <= nxt.pos)
), moved AS (
    UPDATE {{schema}}millrace_sequence AS s SET head_pos = nxt.pos, head_id = nxt.job_id, updated_at = now()
    FROM nxt WHERE s.queue = nxt.queue AND s.seq_key = nxt.seq_key AND nxt.job_id IS NOT NULL
), emptied AS (
    DELETE FROM {{schema}}millrace_sequence AS s USING nxt
    WHERE s.queue = nxt.queue AND s.seq_key = nxt.seq_key AND nxt.job_id IS NULL
)
SELECT id, queue, state::text FROM promoted ORDER BY id`

func (e *executor) SequenceAppend(ctx context.Context, p *driver.SequenceAppendParams) (*driver.SequencePromoteResult, error) {
	if len(p.Jobs) == 0 {
		return &driver.SequencePromoteResult{}, nil
	}
	queues, keys, ids := make([]string, len(p.Jobs)), make([]string, len(p.Jobs)), make([]int64, len(p.Jobs))
	for i, j := range p.Jobs {
		if j.Queue == "" || j.Key == "" || j.ID <= 0 {
			return nil, fmt.Errorf("append to sequence: job %d: queue, key and id are required", i)
		}
		queues[i], keys[i], ids[i] = j.Queue, j.Key, j.ID
	}
	var res *driver.SequencePromoteResult
	err := e.inTx(ctx, func(tx *executor) error {
		if _, err := tx.db.Exec(ctx, tx.sql.get(p.Schema, &sqlSequenceAppend), queues, keys, ids); err != nil {
			return fmt.Errorf("append to sequences: %w", err)
		}
		var err error
		res, err = tx.promote(ctx, p.Schema, &sqlSequenceLockKeysWait, queues, keys)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (e *executor) SequencePromote(ctx context.Context, p *driver.SequencePromoteParams) (*driver.SequencePromoteResult, error) {
	var (
		tmpl *string
		args []any
		n    int
	)
	if len(p.HeadIDs) > 0 {
		n++
		tmpl, args = &sqlSequenceLockHeadWait, []any{p.HeadIDs}
		if p.SkipLocked {
			tmpl = &sqlSequenceLockHeadSkip
		}
	}
	if p.Queue != "" {
		n++
		tmpl, args = &sqlSequenceLockQueueWait, []any{p.Queue}
		if p.SkipLocked {
			tmpl = &sqlSequenceLockQueueSkip
		}
	}
	if p.All {
		n++
		tmpl = &sqlSequenceLockAllWait
		if p.SkipLocked {
			tmpl = &sqlSequenceLockAllSkip
		}
	}
	if n != 1 {
		return nil, errors.New("promote sequences: give exactly one of HeadIDs, Queue and All")
	}
	var res *driver.SequencePromoteResult
	err := e.inTx(ctx, func(tx *executor) error {
		var err error
		res, err = tx.promote(ctx, p.Schema, tmpl, args...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// promote locks the sequences the lock statement selects, then promotes
// them; e is a transaction.
func (e *executor) promote(ctx context.Context, schema string, lock *string, args ...any) (*driver.SequencePromoteResult, error) {
	rows, err := e.db.Query(ctx, e.sql.get(schema, lock), args...)
	if err != nil {
		return nil, fmt.Errorf("lock sequences: %w", err)
	}
	var queues, keys []string
	var q, k string
	if _, err := pgx.ForEachRow(rows, []any{&q, &k}, func() error {
		queues, keys = append(queues, q), append(keys, k)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("lock sequences: %w", err)
	}
	res := &driver.SequencePromoteResult{}
	if len(queues) == 0 {
		return res, nil
	}
	rows, err = e.db.Query(ctx, e.sql.get(schema, &sqlSequencePromote), queues, keys)
	if err != nil {
		return nil, fmt.Errorf("promote sequences: %w", err)
	}
	var (
		id    int64
		state string
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &q, &state}, func() error {
		res.Moved = append(res.Moved, driver.SequenceMoved{ID: id, State: millracetype.JobState(state)})
		if state == string(millracetype.JobStateAvailable) && !slices.Contains(res.Queues, q) {
			res.Queues = append(res.Queues, q)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("promote sequences: %w", err)
	}
	res.Promoted = len(res.Moved)
	slices.Sort(res.Queues)
	if len(res.Queues) > 0 {
		if err := e.NotifyMany(ctx, &driver.NotifyManyParams{Schema: schema, Topic: driver.TopicInsert, Payloads: queuePayloads(res.Queues)}); err != nil {
			return nil, err
		}
	}
	return res, nil
}

var sqlSequenceGetMany = `
SELECT s.queue, s.seq_key, coalesce(s.head_id, 0), coalesce(h.state::text, ''),
    (SELECT count(*) FROM {{schema}}millrace_sequence_job AS sj JOIN {{schema}}river_job AS j ON j.id = sj.job_id AND j.state = 'pending'
     WHERE sj.queue = s.queue AND sj.seq_key = s.seq_key AND sj.pos > s.head_pos),
    coalesce(h.state IN ('cancelled', 'discarded') AND h.metadata -> '` + driver.SequenceMetadataKey + `' -> 'block' = 'true'::jsonb, false)
FROM {{schema}}millrace_sequence AS s LEFT JOIN {{schema}}river_job AS h ON h.id = s.head_id
WHERE ($1 = '' OR s.queue = $1) AND ($2 = '' OR s.seq_key > $2)
ORDER BY s.queue, s.seq_key
LIMIT $3`

func (e *executor) SequenceGetMany(ctx context.Context, p *driver.SequenceGetManyParams) ([]*driver.SequenceRow, error) {
	if p.Limit < 1 {
		return nil, fmt.Errorf("list sequences: limit %d must be at least 1", p.Limit)
	}
	if p.After != "" && p.Queue == "" {
		return nil, errors.New("list sequences: After needs Queue")
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlSequenceGetMany), p.Queue, p.After, p.Limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*driver.SequenceRow, error) {
		var r driver.SequenceRow
		var waiting int64
		err := row.Scan(&r.Queue, &r.Key, &r.HeadID, &r.HeadState, &waiting, &r.Blocked)
		r.Waiting = int(waiting)
		return &r, err
	})
}
