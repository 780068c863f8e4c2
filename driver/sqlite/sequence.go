package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// seqKey names a sequence.
type seqKey struct{ queue, key string }

// SequenceAppend implements driver.Executor. The write lock the
// transaction holds from BEGIN serializes appends, so positions follow the
// order in which the inserts commit.
func (e *executor) SequenceAppend(ctx context.Context, p *driver.SequenceAppendParams) (*driver.SequencePromoteResult, error) {
	if len(p.Jobs) == 0 {
		return &driver.SequencePromoteResult{}, nil
	}
	var keys []seqKey
	for i, j := range p.Jobs {
		if j.Queue == "" || j.Key == "" || j.ID <= 0 {
			return nil, fmt.Errorf("append to sequence: job %d: queue, key and id are required", i)
		}
		if k := (seqKey{j.Queue, j.Key}); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	var res *driver.SequencePromoteResult
	err := e.inTx(ctx, func(tx *executor) error {
		now := fmtTime(e.now())
		for _, j := range p.Jobs {
			var pos int64
			if _, err := tx.queryOne(ctx, `INSERT INTO `+qualify(p.Schema)+`millrace_sequence (queue, seq_key, next_pos, created_at, updated_at)
				VALUES (?, ?, 1, ?, ?) ON CONFLICT (queue, seq_key) DO UPDATE SET next_pos = next_pos + 1, updated_at = excluded.updated_at
				RETURNING next_pos`, []any{j.Queue, j.Key, now, now}, &pos); err != nil {
				return fmt.Errorf("append to sequences: %w", err)
			}
			if _, err := tx.exec(ctx, `INSERT INTO `+qualify(p.Schema)+`millrace_sequence_job (queue, seq_key, pos, job_id) VALUES (?, ?, ?, ?)`,
				j.Queue, j.Key, pos, j.ID); err != nil {
				return fmt.Errorf("append to sequences: %w", err)
			}
		}
		var err error
		res, err = tx.promote(ctx, p.Schema, keys)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// sqlSequenceHeadDone selects the sequences (alias s, head h) whose head
// looks finalized or gone.
const sqlSequenceHeadDone = `(s.head_id IS NULL OR h.id IS NULL OR h.state IN ('completed', 'cancelled', 'discarded'))`

// SequencePromote implements driver.Executor. SkipLocked changes nothing
// on SQLite: no other transaction can hold a sequence while this one has
// the write lock.
func (e *executor) SequencePromote(ctx context.Context, p *driver.SequencePromoteParams) (*driver.SequencePromoteResult, error) {
	n := 0
	var where string
	var args []any
	if len(p.HeadIDs) > 0 {
		n++
		where = `s.head_id IN (` + placeholders(len(p.HeadIDs)) + `)`
		for _, id := range p.HeadIDs {
			args = append(args, id)
		}
	}
	if p.Queue != "" {
		n++
		where, args = `s.queue = ? AND `+sqlSequenceHeadDone, []any{p.Queue}
	}
	if p.All {
		n++
		where, args = sqlSequenceHeadDone, nil
	}
	if n != 1 {
		return nil, errors.New("promote sequences: give exactly one of HeadIDs, Queue and All")
	}
	var res *driver.SequencePromoteResult
	err := e.inTx(ctx, func(tx *executor) error {
		var keys []seqKey
		err := tx.query(ctx, `SELECT s.queue, s.seq_key FROM `+qualify(p.Schema)+`millrace_sequence AS s LEFT JOIN `+
			qualify(p.Schema)+`river_job AS h ON h.id = s.head_id WHERE `+where+` ORDER BY s.queue, s.seq_key`, args,
			func(r *sql.Rows) error {
				var k seqKey
				err := r.Scan(&k.queue, &k.key)
				keys = append(keys, k)
				return err
			})
		if err != nil {
			return fmt.Errorf("select sequences: %w", err)
		}
		res, err = tx.promote(ctx, p.Schema, keys)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// blocks reports whether a job's sequence metadata asks a discarded or
// cancelled head to block its sequence.
func blocks(metadata []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(metadata, &m) != nil {
		return false
	}
	var seq map[string]json.RawMessage
	if json.Unmarshal(m[driver.SequenceMetadataKey], &seq) != nil {
		return false
	}
	return string(seq["block"]) == "true"
}

// promote moves on the given sequences whose head is finalized (and does
// not block) or gone: the first pending job after the head becomes the
// head, available (scheduled when due more than 5 s ahead); a sequence
// with none left is deleted. e is a transaction.
func (e *executor) promote(ctx context.Context, schema string, keys []seqKey) (*driver.SequencePromoteResult, error) {
	res := &driver.SequencePromoteResult{}
	now := dbNow()
	for _, k := range keys {
		var headPos int64
		var headID sql.NullInt64
		ok, err := e.queryOne(ctx, `SELECT head_pos, head_id FROM `+qualify(schema)+`millrace_sequence WHERE queue = ? AND seq_key = ?`,
			[]any{k.queue, k.key}, &headPos, &headID)
		if err != nil {
			return nil, fmt.Errorf("promote sequences: %w", err)
		}
		if !ok {
			continue
		}
		if headID.Valid {
			head, err := e.loadJobs(ctx, schema, `WHERE id = ?`, headID.Int64)
			if err != nil {
				return nil, fmt.Errorf("promote sequences: %w", err)
			}
			if len(head) > 0 {
				h := head[0]
				done := h.State == millracetype.JobStateCompleted ||
					((h.State == millracetype.JobStateCancelled || h.State == millracetype.JobStateDiscarded) && !blocks(h.Metadata))
				if !done {
					continue
				}
			}
		}
		// The next pending job after the head.
		var pos, jobID int64
		var scheduledAt string
		found, err := e.queryOne(ctx, `SELECT sj.pos, sj.job_id, j.scheduled_at FROM `+qualify(schema)+`millrace_sequence_job AS sj
			JOIN `+qualify(schema)+`river_job AS j ON j.id = sj.job_id AND j.state = 'pending'
			WHERE sj.queue = ? AND sj.seq_key = ? AND sj.pos > ? ORDER BY sj.pos LIMIT 1`,
			[]any{k.queue, k.key, headPos}, &pos, &jobID, &scheduledAt)
		if err != nil {
			return nil, fmt.Errorf("promote sequences: %w", err)
		}
		if !found {
			if _, err := e.exec(ctx, `DELETE FROM `+qualify(schema)+`millrace_sequence_job WHERE queue = ? AND seq_key = ?`, k.queue, k.key); err != nil {
				return nil, err
			}
			if _, err := e.exec(ctx, `DELETE FROM `+qualify(schema)+`millrace_sequence WHERE queue = ? AND seq_key = ?`, k.queue, k.key); err != nil {
				return nil, err
			}
			continue
		}
		at, err := parseTime(scheduledAt)
		if err != nil {
			return nil, err
		}
		state := millracetype.JobStateAvailable
		if at.After(now.Add(5 * time.Second)) {
			state = millracetype.JobStateScheduled
		}
		if _, err := e.exec(ctx, `UPDATE `+qualify(schema)+`river_job SET state = ? WHERE id = ? AND state = 'pending'`, string(state), jobID); err != nil {
			return nil, err
		}
		if _, err := e.exec(ctx, `DELETE FROM `+qualify(schema)+`millrace_sequence_job WHERE queue = ? AND seq_key = ? AND pos <= ?`,
			k.queue, k.key, pos); err != nil {
			return nil, err
		}
		if _, err := e.exec(ctx, `UPDATE `+qualify(schema)+`millrace_sequence SET head_pos = ?, head_id = ?, updated_at = ? WHERE queue = ? AND seq_key = ?`,
			pos, jobID, fmtTime(now), k.queue, k.key); err != nil {
			return nil, err
		}
		res.Moved = append(res.Moved, driver.SequenceMoved{ID: jobID, State: state})
		if state == millracetype.JobStateAvailable && !slices.Contains(res.Queues, k.queue) {
			res.Queues = append(res.Queues, k.queue)
		}
	}
	slices.SortFunc(res.Moved, func(a, b driver.SequenceMoved) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	res.Promoted = len(res.Moved)
	slices.Sort(res.Queues)
	return res, nil
}

func (e *executor) SequenceGetMany(ctx context.Context, p *driver.SequenceGetManyParams) ([]*driver.SequenceRow, error) {
	if p.Limit < 1 {
		return nil, fmt.Errorf("list sequences: limit %d must be at least 1", p.Limit)
	}
	if p.After != "" && p.Queue == "" {
		return nil, errors.New("list sequences: After needs Queue")
	}
	out := []*driver.SequenceRow{}
	err := e.query(ctx, `SELECT s.queue, s.seq_key, coalesce(s.head_id, 0), coalesce(h.state, ''), h.metadata,
			(SELECT count(*) FROM `+qualify(p.Schema)+`millrace_sequence_job AS sj JOIN `+qualify(p.Schema)+`river_job AS j
				ON j.id = sj.job_id AND j.state = 'pending'
			 WHERE sj.queue = s.queue AND sj.seq_key = s.seq_key AND sj.pos > s.head_pos)
		FROM `+qualify(p.Schema)+`millrace_sequence AS s LEFT JOIN `+qualify(p.Schema)+`river_job AS h ON h.id = s.head_id
		WHERE (? = '' OR s.queue = ?) AND (? = '' OR s.seq_key > ?)
		ORDER BY s.queue, s.seq_key LIMIT ?`, []any{p.Queue, p.Queue, p.After, p.After, p.Limit}, func(r *sql.Rows) error {
		var row driver.SequenceRow
		var metadata sql.NullString
		if err := r.Scan(&row.Queue, &row.Key, &row.HeadID, &row.HeadState, &metadata, &row.Waiting); err != nil {
			return err
		}
		row.Blocked = (row.HeadState == string(millracetype.JobStateCancelled) || row.HeadState == string(millracetype.JobStateDiscarded)) &&
			metadata.Valid && blocks([]byte(metadata.String))
		out = append(out, &row)
		return nil
	})
	return out, err
}
