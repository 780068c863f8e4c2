package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// --- durable periodic jobs ---

func (e *executor) PeriodicJobGetMany(ctx context.Context, p *driver.PeriodicJobGetManyParams) (*driver.PeriodicJobGetManyResult, error) {
	res := &driver.PeriodicJobGetManyResult{Now: e.now()}
	if len(p.IDs) == 0 {
		return res, nil
	}
	args := make([]any, len(p.IDs))
	for i, id := range p.IDs {
		args[i] = id
	}
	err := e.query(ctx, `SELECT id, next_run_at, next_from, last_run_at, created_at, updated_at FROM `+qualify(p.Schema)+
		`millrace_periodic WHERE id IN (`+placeholders(len(args))+`) ORDER BY id`, args, func(r *sql.Rows) error {
		var row driver.PeriodicJobRow
		var next, from, created, updated string
		var last sql.NullString
		if err := r.Scan(&row.ID, &next, &from, &last, &created, &updated); err != nil {
			return err
		}
		var err error
		if row.NextRunAt, err = parseTime(next); err != nil {
			return err
		}
		if row.NextFrom, err = parseTime(from); err != nil {
			return err
		}
		if row.CreatedAt, err = parseTime(created); err != nil {
			return err
		}
		if row.UpdatedAt, err = parseTime(updated); err != nil {
			return err
		}
		if row.LastRunAt, err = parseTimePtr(last); err != nil {
			return err
		}
		res.Jobs = append(res.Jobs, &row)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (e *executor) PeriodicJobInsertMany(ctx context.Context, p *driver.PeriodicJobInsertManyParams) (int, error) {
	if len(p.Jobs) == 0 {
		return 0, nil
	}
	jobs := slices.Clone(p.Jobs)
	slices.SortFunc(jobs, func(a, b *driver.PeriodicJobInsert) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	n := 0
	err := e.inTx(ctx, func(tx *executor) error {
		now := fmtTime(e.now())
		for _, j := range jobs {
			k, err := tx.exec(ctx, `INSERT INTO `+qualify(p.Schema)+`millrace_periodic (id, next_run_at, next_from, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, j.ID, fmtTime(j.NextRunAt), fmtTime(j.NextFrom), now, now)
			if err != nil {
				return fmt.Errorf("periodic job %q: %w", j.ID, err)
			}
			n += int(k)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// PeriodicJobAdvanceMany implements driver.Executor: each compare-and-set
// in one transaction, which no other writer interleaves with.
func (e *executor) PeriodicJobAdvanceMany(ctx context.Context, p *driver.PeriodicJobAdvanceManyParams) ([]string, error) {
	if len(p.Jobs) == 0 {
		return nil, nil
	}
	var changed []string
	err := e.inTx(ctx, func(tx *executor) error {
		now := fmtTime(e.now())
		for _, j := range p.Jobs {
			k, err := tx.exec(ctx, `UPDATE `+qualify(p.Schema)+`millrace_periodic SET next_run_at = ?, next_from = ?,
				last_run_at = coalesce(?, last_run_at), updated_at = ? WHERE id = ? AND next_run_at = ?`,
				fmtTime(j.NextRunAt), fmtTime(j.NextFrom), fmtTimePtr(j.LastRunAt), now, j.ID, fmtTime(j.Expected))
			if err != nil {
				return fmt.Errorf("periodic job %q: %w", j.ID, err)
			}
			if k > 0 && !slices.Contains(changed, j.ID) {
				changed = append(changed, j.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(changed)
	return changed, nil
}

func (e *executor) PeriodicJobDeleteMany(ctx context.Context, p *driver.PeriodicJobDeleteManyParams) ([]string, error) {
	ids, _ := json.Marshal(nonNil(p.IDs))
	keep, _ := json.Marshal(nonNil(p.Keep))
	deleted := []string{}
	err := e.query(ctx, `DELETE FROM `+qualify(p.Schema)+`millrace_periodic
		WHERE id IN (SELECT value FROM json_each(?))
			OR (? IS NOT NULL AND next_run_at < ? AND id NOT IN (SELECT value FROM json_each(?)))
		RETURNING id`, []any{string(ids), fmtTimePtr(p.OverdueBefore), fmtTimePtr(p.OverdueBefore), string(keep)},
		func(r *sql.Rows) error {
			var id string
			err := r.Scan(&id)
			deleted = append(deleted, id)
			return err
		})
	if err != nil {
		return nil, err
	}
	slices.Sort(deleted)
	return deleted, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// --- runtime queue management ---

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

// QueueUpdate implements driver.Executor (the metadata_changed
// notification has no listener to reach on SQLite).
func (e *executor) QueueUpdate(ctx context.Context, p *driver.QueueUpdateParams) (*millracetype.Queue, error) {
	if p.Name == "" {
		return nil, errors.New("update queue: empty queue name")
	}
	var metadata any
	if p.MetadataDoUpdate {
		compact, err := compactObject(p.Metadata)
		if err != nil {
			return nil, fmt.Errorf("update queue %q: %w", p.Name, err)
		}
		metadata = string(compact)
	}
	var out *millracetype.Queue
	err := e.inTx(ctx, func(tx *executor) error {
		n, err := tx.exec(ctx, `UPDATE `+qualify(p.Schema)+`river_queue SET metadata = coalesce(?, metadata), updated_at = ? WHERE name = ?`,
			metadata, fmtTime(e.now()), p.Name)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("update queue %q: %w", p.Name, millracetype.ErrNotFound)
		}
		qs, err := tx.loadQueues(ctx, p.Schema, `WHERE name = ?`, p.Name)
		if err != nil {
			return err
		}
		out = qs[0]
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// queueCounts fills the counts of queues, in one read of their live jobs.
func (e *executor) queueCounts(ctx context.Context, schema string, queues []*millracetype.Queue) ([]*millracetype.QueueWithCounts, error) {
	out := make([]*millracetype.QueueWithCounts, len(queues))
	byName := make(map[string]*millracetype.QueueWithCounts, len(queues))
	args := make([]any, len(queues))
	for i, q := range queues {
		out[i] = &millracetype.QueueWithCounts{Queue: *q}
		byName[q.Name] = out[i]
		args[i] = q.Name
	}
	if len(queues) == 0 {
		return out, nil
	}
	err := e.query(ctx, `SELECT queue, state, count(*) FROM `+qualify(schema)+`river_job
		WHERE state IN ('available', 'pending', 'retryable', 'running', 'scheduled') AND queue IN (`+placeholders(len(args))+`)
		GROUP BY queue, state`, args, func(r *sql.Rows) error {
		var queue, state string
		var n int64
		if err := r.Scan(&queue, &state, &n); err != nil {
			return err
		}
		c := &byName[queue].Counts
		switch millracetype.JobState(state) {
		case millracetype.JobStateAvailable:
			c.Available = n
		case millracetype.JobStatePending:
			c.Pending = n
		case millracetype.JobStateRetryable:
			c.Retryable = n
		case millracetype.JobStateRunning:
			c.Running = n
		case millracetype.JobStateScheduled:
			c.Scheduled = n
		}
		return nil
	})
	return out, err
}

// QueueGetWithCounts implements driver.Executor: the queue and its counts
// in one transaction, so they are read as of one moment.
func (e *executor) QueueGetWithCounts(ctx context.Context, p *driver.QueueGetParams) (*millracetype.QueueWithCounts, error) {
	var out *millracetype.QueueWithCounts
	err := e.inTx(ctx, func(tx *executor) error {
		qs, err := tx.loadQueues(ctx, p.Schema, `WHERE name = ?`, p.Name)
		if err != nil {
			return err
		}
		if len(qs) == 0 {
			return fmt.Errorf("queue %q: %w", p.Name, millracetype.ErrNotFound)
		}
		counted, err := tx.queueCounts(ctx, p.Schema, qs)
		if err != nil {
			return err
		}
		out = counted[0]
		return nil
	})
	return out, err
}

func (e *executor) QueueListWithCounts(ctx context.Context, p *driver.QueueListParams) ([]*millracetype.QueueWithCounts, error) {
	if p.Limit < 1 {
		return nil, fmt.Errorf("queue list: limit %d must be positive", p.Limit)
	}
	var out []*millracetype.QueueWithCounts
	err := e.inTx(ctx, func(tx *executor) error {
		qs, err := tx.loadQueues(ctx, p.Schema, `ORDER BY name LIMIT ?`, p.Limit)
		if err != nil {
			return err
		}
		out, err = tx.queueCounts(ctx, p.Schema, qs)
		return err
	})
	return out, err
}
