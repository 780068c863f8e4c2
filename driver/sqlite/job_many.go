package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// jobMany selects one batch as JobList would (with the op's target
// condition), in one transaction, and hands it to change, which writes
// each row and returns the rows to report. With an IDs filter, nothing
// changes unless every ID names a job; the missing ones are reported.
func (e *executor) jobMany(ctx context.Context, name string, p *driver.JobListParams, target string, targetArgs []any,
	change func(tx *executor, jobs []*millracetype.JobRow) ([]*millracetype.JobRow, error),
) ([]*millracetype.JobRow, error) {
	if p.AfterID != nil || p.AfterValue != nil {
		return nil, fmt.Errorf("%s: a cursor (AfterID, AfterValue) is for listing only", name)
	}
	f, err := newJobFilter(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	f.where = append(f.where, target)
	f.args = append(f.args, targetArgs...)
	var out []*millracetype.JobRow
	err = e.inTx(ctx, func(tx *executor) error {
		if len(p.IDs) > 0 {
			existing, err := tx.loadJobsByID(ctx, p.Schema, p.IDs)
			if err != nil {
				return err
			}
			var missing []int64
			for _, id := range p.IDs {
				if !slices.ContainsFunc(existing, func(j *millracetype.JobRow) bool { return j.ID == id }) && !slices.Contains(missing, id) {
					missing = append(missing, id)
				}
			}
			if len(missing) > 0 {
				slices.Sort(missing)
				names := make([]string, len(missing))
				for i, id := range missing {
					names[i] = strconv.FormatInt(id, 10)
				}
				return fmt.Errorf("jobs %s: %w", strings.Join(names, ", "), millracetype.ErrNotFound)
			}
		}
		jobs, err := tx.list(ctx, p.Schema, f, p.Limit)
		if err != nil {
			return err
		}
		out, err = change(tx, jobs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

func (e *executor) JobDeleteMany(ctx context.Context, p *driver.JobDeleteManyParams) ([]*millracetype.JobRow, error) {
	return e.jobMany(ctx, "delete jobs", &p.JobListParams, "state <> 'running'", nil,
		func(tx *executor, jobs []*millracetype.JobRow) ([]*millracetype.JobRow, error) {
			ids := make([]int64, len(jobs))
			for i, j := range jobs {
				ids[i] = j.ID
			}
			return jobs, tx.deleteJobs(ctx, p.Schema, ids)
		})
}

// JobCancelMany implements driver.Executor (the cancel notifications have
// no listener to reach on SQLite: producers poll for cancels).
func (e *executor) JobCancelMany(ctx context.Context, p *driver.JobCancelManyParams) ([]*millracetype.JobRow, error) {
	at := p.CancelAttemptedAt.UTC().Format(time.RFC3339Nano)
	return e.jobMany(ctx, "cancel jobs", &p.JobListParams,
		`finalized_at IS NULL AND state NOT IN ('cancelled', 'completed', 'discarded')
			AND NOT (state = 'running' AND json_type(metadata, '$.cancel_attempted_at') IS NOT NULL)`, nil,
		func(tx *executor, jobs []*millracetype.JobRow) ([]*millracetype.JobRow, error) {
			now := e.now()
			for _, j := range jobs {
				var err error
				if j.Metadata, err = setKey(j.Metadata, "cancel_attempted_at", at); err != nil {
					return nil, fmt.Errorf("job %d: %w", j.ID, err)
				}
				if j.State != millracetype.JobStateRunning {
					j.State, j.FinalizedAt = millracetype.JobStateCancelled, &now
				}
				if err := tx.saveJob(ctx, p.Schema, j); err != nil {
					return nil, err
				}
			}
			return jobs, nil
		})
}

func (e *executor) JobRetryMany(ctx context.Context, p *driver.JobRetryManyParams) ([]*millracetype.JobRow, error) {
	now := e.now()
	if p.Now != nil {
		now = p.Now.UTC().Truncate(time.Microsecond)
	}
	return e.jobMany(ctx, "retry jobs", &p.JobListParams,
		`state <> 'running' AND NOT (state = 'available' AND scheduled_at <= ?)`, []any{fmtTime(now)},
		func(tx *executor, jobs []*millracetype.JobRow) ([]*millracetype.JobRow, error) {
			for _, j := range jobs {
				if _, err := retry(j, now); err != nil {
					return nil, err
				}
				if err := tx.saveJob(ctx, p.Schema, j); err != nil {
					return nil, err
				}
			}
			return jobs, nil
		})
}
