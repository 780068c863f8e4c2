package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// ErrInvalidFilter wraps every error about the JobListParams given to
// JobList, JobDeleteMany, JobCancelMany or JobRetryMany (an unknown state,
// a priority outside 1..4, an inverted time range, ...). It is also an
// ErrInvalidArgs, so errors.Is(err, ErrInvalidArgs) holds for these
// errors too.
var ErrInvalidFilter error = invalidFilterError{}

type invalidFilterError struct{}

func (invalidFilterError) Error() string { return "invalid job filter" }

// Unwrap makes ErrInvalidFilter an ErrInvalidArgs.
func (invalidFilterError) Unwrap() error { return ErrInvalidArgs }

// TimeRange bounds a timestamp in JobListParams: From is inclusive, Before
// exclusive, a nil end is open, and the zero TimeRange does not filter. A
// range on AttemptedAt or FinalizedAt leaves out jobs that have none.
type TimeRange = driver.TimeRange

// Batch sizes of JobDeleteMany, JobCancelMany and JobRetryMany (their
// JobListParams.Limit).
const (
	// JobManyDefaultLimit is the batch size when Limit is 0.
	JobManyDefaultLimit = 100
	// JobManyMaxLimit is the largest batch.
	JobManyMaxLimit = 10000
)

// JobManyResult is one batch of JobDeleteMany, JobCancelMany or
// JobRetryMany.
type JobManyResult struct {
	// Jobs are the jobs the batch changed, in the order of the listing
	// (JobListParams.OrderBy): for JobDeleteMany as they were when
	// deleted, for the others as they are now.
	Jobs []*millracetype.JobRow
	// More is true when the batch was full, so more matching jobs may
	// remain: call again to go on (a changed job no longer matches, so
	// each call takes the next batch). A short batch does not promise that
	// none is left: rows that other transactions held locked were skipped
	// rather than waited for.
	More bool
}

// JobDeleteMany deletes one batch of jobs: those JobList would list with
// the same params (at most Limit, default 100, at most 10000, in the
// listing's order), in one statement, and returns them. Running jobs are
// never deleted: they are skipped, and States naming running is an error
// wrapping both ErrInvalidFilter and millracetype.ErrJobRunning (cancel
// them first). Jobs locked by other transactions at that moment are
// skipped too.
//
// params must filter on something (deleting every job takes naming the
// states to delete); After must be nil. When IDs names a job that does
// not exist, nothing is deleted and the error wraps ErrNotFound.
func (c *Client[TTx]) JobDeleteMany(ctx context.Context, params *JobListParams) (*JobManyResult, error) {
	return c.jobDeleteMany(ctx, c.driver.GetExecutor(), params)
}

// JobDeleteManyTx is JobDeleteMany inside the caller's transaction.
func (c *Client[TTx]) JobDeleteManyTx(ctx context.Context, tx TTx, params *JobListParams) (*JobManyResult, error) {
	return c.jobDeleteMany(ctx, c.driver.UnwrapExecutor(tx), params)
}

func (c *Client[TTx]) jobDeleteMany(ctx context.Context, exec driver.Executor, params *JobListParams) (*JobManyResult, error) {
	p, err := c.manyParams(params)
	if err != nil {
		return nil, fmt.Errorf("delete jobs: %w", err)
	}
	for _, s := range p.States {
		if s == millracetype.JobStateRunning {
			return nil, fmt.Errorf("delete jobs: %w: running jobs are never deleted (%w): remove running from States and cancel them first",
				ErrInvalidFilter, millracetype.ErrJobRunning)
		}
	}
	jobs, err := exec.JobDeleteMany(ctx, &driver.JobDeleteManyParams{JobListParams: *p})
	if err != nil {
		return nil, err
	}
	return &JobManyResult{Jobs: jobs, More: len(jobs) == p.Limit}, nil
}

// JobCancelMany cancels one batch of jobs: among those JobList would list
// with the same params, the ones not yet finalized (at most Limit, default
// 100, at most 10000), as JobCancel does for each, in one statement. A job
// not running is cancelled at once; a running one is asked to cancel
// (metadata cancel_attempted_at and a control notification, so the client
// running it cancels its context) and keeps running until its worker
// returns. A running job already asked to cancel is left out, so batches
// move on. Jobs locked by other transactions at that moment are skipped.
//
// params must filter on something and After must be nil. When IDs names a
// job that does not exist, nothing is changed and the error wraps
// ErrNotFound.
func (c *Client[TTx]) JobCancelMany(ctx context.Context, params *JobListParams) (*JobManyResult, error) {
	res, err := c.jobCancelMany(ctx, c.driver.GetExecutor(), params)
	if err == nil {
		// Do not wait for our own notifications to come back.
		for _, job := range res.Jobs {
			if job.State == millracetype.JobStateRunning {
				if p := c.producer(job.Queue); p != nil {
					p.CancelJob(job.ID)
				}
			}
		}
	}
	return res, err
}

// JobCancelManyTx is JobCancelMany inside the caller's transaction (the
// notifications are sent when it commits).
func (c *Client[TTx]) JobCancelManyTx(ctx context.Context, tx TTx, params *JobListParams) (*JobManyResult, error) {
	return c.jobCancelMany(ctx, c.driver.UnwrapExecutor(tx), params)
}

func (c *Client[TTx]) jobCancelMany(ctx context.Context, exec driver.Executor, params *JobListParams) (*JobManyResult, error) {
	p, err := c.manyParams(params)
	if err != nil {
		return nil, fmt.Errorf("cancel jobs: %w", err)
	}
	jobs, err := exec.JobCancelMany(ctx, &driver.JobCancelManyParams{JobListParams: *p, CancelAttemptedAt: c.config.clock()})
	if err != nil {
		return nil, err
	}
	return &JobManyResult{Jobs: jobs, More: len(jobs) == p.Limit}, nil
}

// JobRetryMany retries one batch of jobs: among those JobList would list
// with the same params, the ones JobRetry would change (at most Limit,
// default 100, at most 10000), as JobRetry does for each, in one
// statement: each becomes available now, keeping its attempts and errors
// (one more attempt is granted when it had used them all). Running jobs
// and available jobs already due are left out, as are jobs locked by
// other transactions at that moment.
//
// params must filter on something and After must be nil. When IDs names a
// job that does not exist, nothing is changed and the error wraps
// ErrNotFound.
//
// Like JobRetry it sends no insert notification, so other clients find the
// jobs at their next poll; this client's own producers of the jobs' queues
// are woken at once.
func (c *Client[TTx]) JobRetryMany(ctx context.Context, params *JobListParams) (*JobManyResult, error) {
	res, err := c.jobRetryMany(ctx, c.driver.GetExecutor(), params)
	if err == nil {
		woken := map[string]bool{}
		for _, job := range res.Jobs {
			if !woken[job.Queue] {
				woken[job.Queue] = true
				if p := c.producer(job.Queue); p != nil {
					p.Poke()
				}
			}
		}
	}
	return res, err
}

// JobRetryManyTx is JobRetryMany inside the caller's transaction.
func (c *Client[TTx]) JobRetryManyTx(ctx context.Context, tx TTx, params *JobListParams) (*JobManyResult, error) {
	return c.jobRetryMany(ctx, c.driver.UnwrapExecutor(tx), params)
}

func (c *Client[TTx]) jobRetryMany(ctx context.Context, exec driver.Executor, params *JobListParams) (*JobManyResult, error) {
	p, err := c.manyParams(params)
	if err != nil {
		return nil, fmt.Errorf("retry jobs: %w", err)
	}
	now := c.config.clock().UTC()
	jobs, err := exec.JobRetryMany(ctx, &driver.JobRetryManyParams{JobListParams: *p, Now: &now})
	if err != nil {
		return nil, err
	}
	return &JobManyResult{Jobs: jobs, More: len(jobs) == p.Limit}, nil
}

// manyParams validates the params of a bulk operation.
func (c *Client[TTx]) manyParams(params *JobListParams) (*driver.JobListParams, error) {
	if params == nil || !params.filters() {
		return nil, fmt.Errorf("%w: no filter given: a bulk operation needs at least one (to act on every job, name the states in States)",
			ErrInvalidFilter)
	}
	if params.After != nil {
		return nil, fmt.Errorf("%w: After (a cursor) is for listing only", ErrInvalidFilter)
	}
	return listParams(c.config.Schema, params, "batch")
}

// filters reports whether p filters on anything.
func (p *JobListParams) filters() bool {
	return len(p.IDs) > 0 || len(p.Kinds) > 0 || len(p.Queues) > 0 || len(p.States) > 0 || len(p.Priorities) > 0 ||
		p.Metadata != nil || len(p.TagsAny) > 0 || len(p.TagsAll) > 0 ||
		!p.CreatedAt.IsZero() || !p.ScheduledAt.IsZero() || !p.AttemptedAt.IsZero() || !p.FinalizedAt.IsZero()
}

// listParams validates params (nil lists everything) and makes the
// driver's. what names the limit in errors ("list" or "batch").
func listParams(schema string, params *JobListParams, what string) (*driver.JobListParams, error) {
	if params == nil {
		params = &JobListParams{}
	}
	p := &driver.JobListParams{Schema: schema, IDs: params.IDs, Kinds: params.Kinds, Queues: params.Queues,
		States: params.States, Priorities: params.Priorities, OrderBy: params.OrderBy, Desc: params.Desc, Limit: params.Limit,
		TagsAny: params.TagsAny, TagsAll: params.TagsAll, CreatedAt: params.CreatedAt, ScheduledAt: params.ScheduledAt,
		AttemptedAt: params.AttemptedAt, FinalizedAt: params.FinalizedAt}
	if p.Limit == 0 {
		p.Limit = JobManyDefaultLimit
	}
	if p.Limit < 0 || p.Limit > JobManyMaxLimit {
		return nil, fmt.Errorf("%w: %s limit %d out of range 1..%d", ErrInvalidFilter, what, p.Limit, JobManyMaxLimit)
	}
	switch p.OrderBy {
	case "":
		p.OrderBy = JobListOrderByID
	case JobListOrderByID, JobListOrderByScheduledAt, JobListOrderByCreatedAt, JobListOrderByAttemptedAt, JobListOrderByFinalizedAt:
	default:
		return nil, fmt.Errorf("%w: cannot order by %q", ErrInvalidFilter, p.OrderBy)
	}
	for _, id := range params.IDs {
		if id < 1 {
			return nil, fmt.Errorf("%w: job ID %d cannot exist (IDs start at 1)", ErrInvalidFilter, id)
		}
	}
	for _, pr := range params.Priorities {
		if pr < 1 || pr > 4 {
			return nil, fmt.Errorf("%w: priority %d out of range 1..4", ErrInvalidFilter, pr)
		}
	}
	for _, s := range params.States {
		if !s.Valid() {
			return nil, fmt.Errorf("%w: unknown job state %q", ErrInvalidFilter, s)
		}
	}
	for _, list := range []struct {
		name   string
		values []string
	}{{"Kinds", params.Kinds}, {"Queues", params.Queues}, {"TagsAny", params.TagsAny}, {"TagsAll", params.TagsAll}} {
		for _, v := range list.values {
			if v == "" {
				return nil, fmt.Errorf("%w: empty string in %s", ErrInvalidFilter, list.name)
			}
		}
	}
	for _, list := range [][]string{params.TagsAny, params.TagsAll} {
		for _, tag := range list {
			if len(tag) > 255 {
				return nil, fmt.Errorf("%w: tag %.20q... is longer than 255 characters, so no job has it", ErrInvalidFilter, tag)
			}
		}
	}
	for _, r := range []struct {
		name string
		rng  TimeRange
	}{{"CreatedAt", params.CreatedAt}, {"ScheduledAt", params.ScheduledAt}, {"AttemptedAt", params.AttemptedAt}, {"FinalizedAt", params.FinalizedAt}} {
		if r.rng.From != nil && r.rng.Before != nil && !r.rng.From.Before(*r.rng.Before) {
			return nil, fmt.Errorf("%w: %s range is empty or inverted: From %s is not before Before %s", ErrInvalidFilter, r.name,
				r.rng.From.Format(time.RFC3339Nano), r.rng.Before.Format(time.RFC3339Nano))
		}
	}
	if params.Metadata != nil {
		var m map[string]json.RawMessage
		if json.Unmarshal(params.Metadata, &m) != nil || m == nil {
			return nil, fmt.Errorf("%w: metadata filter must be a JSON object", ErrInvalidFilter)
		}
		p.MetadataContains = params.Metadata
	}
	if cur := params.After; cur != nil {
		if cur.OrderBy != "" && cur.OrderBy != p.OrderBy {
			return nil, fmt.Errorf("%w: cursor is for order %q, not %q", ErrInvalidFilter, cur.OrderBy, p.OrderBy)
		}
		id := cur.ID
		p.AfterID, p.AfterValue = &id, cur.Value
		if p.OrderBy != JobListOrderByID && cur.Value == nil {
			return nil, fmt.Errorf("%w: cursor has no value for order %q", ErrInvalidFilter, p.OrderBy)
		}
	}
	return p, nil
}
