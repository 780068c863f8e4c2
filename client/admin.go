package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// JobGet returns a job; a missing one gives an error wrapping ErrNotFound.
func (c *Client[TTx]) JobGet(ctx context.Context, id int64) (*millracetype.JobRow, error) {
	return c.jobGet(ctx, c.driver.GetExecutor(), id)
}

// JobGetTx is JobGet inside the caller's transaction.
func (c *Client[TTx]) JobGetTx(ctx context.Context, tx TTx, id int64) (*millracetype.JobRow, error) {
	return c.jobGet(ctx, c.driver.UnwrapExecutor(tx), id)
}

func (c *Client[TTx]) jobGet(ctx context.Context, exec driver.Executor, id int64) (*millracetype.JobRow, error) {
	job, err := exec.JobGetByID(ctx, &driver.JobGetByIDParams{Schema: c.config.Schema, ID: id})
	if err != nil {
		return nil, fmt.Errorf("get job: %w", err)
	}
	return job, nil
}

// JobCancel cancels a job. A job not yet running is cancelled at once; a
// running one has its context cancelled by whichever client runs it (this
// one or another, through a control notification) and is recorded
// cancelled if its worker then returns an error (it may still complete). A
// finalized job is returned unchanged.
func (c *Client[TTx]) JobCancel(ctx context.Context, id int64) (*millracetype.JobRow, error) {
	job, err := c.jobCancel(ctx, c.driver.GetExecutor(), id)
	if err == nil && job.State == millracetype.JobStateRunning {
		// Do not wait for our own notification to come back.
		if p := c.producer(job.Queue); p != nil {
			p.CancelJob(job.ID)
		}
	}
	return job, err
}

// JobCancelTx is JobCancel inside the caller's transaction (the
// notification is sent when it commits).
func (c *Client[TTx]) JobCancelTx(ctx context.Context, tx TTx, id int64) (*millracetype.JobRow, error) {
	return c.jobCancel(ctx, c.driver.UnwrapExecutor(tx), id)
}

func (c *Client[TTx]) jobCancel(ctx context.Context, exec driver.Executor, id int64) (*millracetype.JobRow, error) {
	job, err := exec.JobCancel(ctx, &driver.JobCancelParams{Schema: c.config.Schema, ID: id, CancelAttemptedAt: c.config.clock()})
	if err != nil {
		return nil, fmt.Errorf("cancel job: %w", err)
	}
	return job, nil
}

// JobRetry makes a job available now (keeping its attempts and errors; one
// more attempt is granted when it had used them all). A running job, or an
// available one already due, is returned unchanged.
func (c *Client[TTx]) JobRetry(ctx context.Context, id int64) (*millracetype.JobRow, error) {
	return c.jobRetry(ctx, c.driver.GetExecutor(), id)
}

// JobRetryTx is JobRetry inside the caller's transaction.
func (c *Client[TTx]) JobRetryTx(ctx context.Context, tx TTx, id int64) (*millracetype.JobRow, error) {
	return c.jobRetry(ctx, c.driver.UnwrapExecutor(tx), id)
}

func (c *Client[TTx]) jobRetry(ctx context.Context, exec driver.Executor, id int64) (*millracetype.JobRow, error) {
	now := c.config.clock().UTC()
	job, err := exec.JobRetry(ctx, &driver.JobRetryParams{Schema: c.config.Schema, ID: id, Now: &now})
	if err != nil {
		return nil, fmt.Errorf("retry job: %w", err)
	}
	return job, nil
}

// JobDelete deletes a job that is not running and returns it. A running
// job gives an error wrapping millracetype.ErrJobRunning (cancel it first).
func (c *Client[TTx]) JobDelete(ctx context.Context, id int64) (*millracetype.JobRow, error) {
	return c.jobDelete(ctx, c.driver.GetExecutor(), id)
}

// JobDeleteTx is JobDelete inside the caller's transaction.
func (c *Client[TTx]) JobDeleteTx(ctx context.Context, tx TTx, id int64) (*millracetype.JobRow, error) {
	return c.jobDelete(ctx, c.driver.UnwrapExecutor(tx), id)
}

func (c *Client[TTx]) jobDelete(ctx context.Context, exec driver.Executor, id int64) (*millracetype.JobRow, error) {
	job, err := exec.JobDelete(ctx, &driver.JobDeleteParams{Schema: c.config.Schema, ID: id})
	if err != nil {
		return nil, fmt.Errorf("delete job: %w", err)
	}
	return job, nil
}

// JobListOrderBy is the order of a job listing (ties broken by id).
type JobListOrderBy = driver.JobListOrderBy

// The orderings of JobList.
const (
	JobListOrderByID          = driver.JobListOrderByID
	JobListOrderByScheduledAt = driver.JobListOrderByScheduledAt
	JobListOrderByCreatedAt   = driver.JobListOrderByCreatedAt
	JobListOrderByAttemptedAt = driver.JobListOrderByAttemptedAt
	JobListOrderByFinalizedAt = driver.JobListOrderByFinalizedAt
)

// JobListParams filters and pages JobList. Empty filters match everything.
// JobDeleteMany, JobCancelMany and JobRetryMany take the same params: they
// act on (part of) what JobList would list. Invalid params give an error
// wrapping ErrInvalidFilter.
type JobListParams struct {
	IDs        []int64
	Kinds      []string
	Queues     []string
	States     []millracetype.JobState
	Priorities []int
	// Metadata is a JSON object the jobs' metadata must contain.
	Metadata []byte
	// OrderBy defaults to id. Ordering by attempted_at or finalized_at
	// lists only the jobs that have one (never attempted or not finalized
	// jobs are left out).
	OrderBy JobListOrderBy
	// Desc orders descending.
	Desc bool
	// After continues from a previous page's LastCursor.
	After *JobListCursor
	// Limit defaults to 100; at most 10000.
	Limit int

	// TagsAny keeps jobs that have at least one of these tags; TagsAll
	// keeps jobs that have all of them (exact, case-sensitive matches).
	TagsAny []string
	TagsAll []string
	// CreatedAt, ScheduledAt, AttemptedAt and FinalizedAt keep jobs whose
	// column falls in the range (see TimeRange).
	CreatedAt   TimeRange
	ScheduledAt TimeRange
	AttemptedAt TimeRange
	FinalizedAt TimeRange
}

// JobListCursor marks where a page ended. String and ParseJobListCursor
// turn it into an opaque token and back.
type JobListCursor struct {
	ID      int64          `json:"id"`
	OrderBy JobListOrderBy `json:"order_by"`
	Value   *time.Time     `json:"value,omitempty"`
}

// String encodes the cursor as an opaque token.
func (cur *JobListCursor) String() string {
	b, _ := json.Marshal(cur)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ParseJobListCursor decodes a token made by String.
func ParseJobListCursor(s string) (*JobListCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid job list cursor: %w", err)
	}
	var cur JobListCursor
	if err := json.Unmarshal(b, &cur); err != nil {
		return nil, fmt.Errorf("invalid job list cursor: %w", err)
	}
	return &cur, nil
}

// JobListResult is one page of jobs.
type JobListResult struct {
	Jobs []*millracetype.JobRow
	// LastCursor continues after the last job (nil when the page is empty).
	LastCursor *JobListCursor
}

// JobList lists jobs, one page at a time. Pages are keyset-paginated on
// (OrderBy column, id), a total order: walking the pages with After never
// repeats a job nor skips one that existed throughout, even while jobs are
// inserted concurrently (jobs inserted meanwhile show up at most once, on
// a later page when they sort after the cursor).
func (c *Client[TTx]) JobList(ctx context.Context, params *JobListParams) (*JobListResult, error) {
	return c.jobList(ctx, c.driver.GetExecutor(), params)
}

// JobListTx is JobList inside the caller's transaction.
func (c *Client[TTx]) JobListTx(ctx context.Context, tx TTx, params *JobListParams) (*JobListResult, error) {
	return c.jobList(ctx, c.driver.UnwrapExecutor(tx), params)
}

func (c *Client[TTx]) jobList(ctx context.Context, exec driver.Executor, params *JobListParams) (*JobListResult, error) {
	p, err := listParams(c.config.Schema, params, "list")
	if err != nil {
		return nil, err
	}
	jobs, err := exec.JobList(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	res := &JobListResult{Jobs: jobs}
	if n := len(jobs); n > 0 {
		last := jobs[n-1]
		res.LastCursor = &JobListCursor{ID: last.ID, OrderBy: p.OrderBy, Value: orderValue(last, p.OrderBy)}
	}
	return res, nil
}

func orderValue(job *millracetype.JobRow, by JobListOrderBy) *time.Time {
	switch by {
	case JobListOrderByScheduledAt:
		return &job.ScheduledAt
	case JobListOrderByCreatedAt:
		return &job.CreatedAt
	case JobListOrderByAttemptedAt:
		return job.AttemptedAt
	case JobListOrderByFinalizedAt:
		return job.FinalizedAt
	}
	return nil
}

// QueueGet returns a queue (queues appear once a producer has run them).
func (c *Client[TTx]) QueueGet(ctx context.Context, name string) (*millracetype.Queue, error) {
	return c.queueGet(ctx, c.driver.GetExecutor(), name)
}

// QueueGetTx is QueueGet inside the caller's transaction.
func (c *Client[TTx]) QueueGetTx(ctx context.Context, tx TTx, name string) (*millracetype.Queue, error) {
	return c.queueGet(ctx, c.driver.UnwrapExecutor(tx), name)
}

func (c *Client[TTx]) queueGet(ctx context.Context, exec driver.Executor, name string) (*millracetype.Queue, error) {
	q, err := exec.QueueGet(ctx, &driver.QueueGetParams{Schema: c.config.Schema, Name: name})
	if err != nil {
		return nil, fmt.Errorf("get queue: %w", err)
	}
	return q, nil
}

// QueueList lists queues by name, at most limit (1..10000; 0 means 100).
func (c *Client[TTx]) QueueList(ctx context.Context, limit int) ([]*millracetype.Queue, error) {
	return c.queueList(ctx, c.driver.GetExecutor(), limit)
}

// QueueListTx is QueueList inside the caller's transaction.
func (c *Client[TTx]) QueueListTx(ctx context.Context, tx TTx, limit int) ([]*millracetype.Queue, error) {
	return c.queueList(ctx, c.driver.UnwrapExecutor(tx), limit)
}

func (c *Client[TTx]) queueList(ctx context.Context, exec driver.Executor, limit int) ([]*millracetype.Queue, error) {
	if limit == 0 {
		limit = 100
	}
	if limit < 0 || limit > 10000 {
		return nil, fmt.Errorf("%w: queue list limit %d out of range 1..10000", ErrInvalidArgs, limit)
	}
	qs, err := exec.QueueList(ctx, &driver.QueueListParams{Schema: c.config.Schema, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	return qs, nil
}

// QueuePause pauses a queue ("*" for every queue) on every client: its
// producers fetch nothing until it is resumed (running jobs go on). An
// unknown queue gives an error wrapping ErrNotFound.
func (c *Client[TTx]) QueuePause(ctx context.Context, name string) error {
	return c.queueSetPaused(ctx, c.driver.GetExecutor(), name, true, true)
}

// QueuePauseTx is QueuePause inside the caller's transaction.
func (c *Client[TTx]) QueuePauseTx(ctx context.Context, tx TTx, name string) error {
	return c.queueSetPaused(ctx, c.driver.UnwrapExecutor(tx), name, true, false)
}

// QueueResume resumes a paused queue ("*" for every queue) on every client.
func (c *Client[TTx]) QueueResume(ctx context.Context, name string) error {
	return c.queueSetPaused(ctx, c.driver.GetExecutor(), name, false, true)
}

// QueueResumeTx is QueueResume inside the caller's transaction.
func (c *Client[TTx]) QueueResumeTx(ctx context.Context, tx TTx, name string) error {
	return c.queueSetPaused(ctx, c.driver.UnwrapExecutor(tx), name, false, false)
}

func (c *Client[TTx]) queueSetPaused(ctx context.Context, exec driver.Executor, name string, paused, local bool) error {
	if name != "*" {
		if err := validateQueueName(name); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidQueue, err)
		}
	}
	p := &driver.QueuePauseParams{Schema: c.config.Schema, Name: name}
	var err error
	if paused {
		err = exec.QueuePause(ctx, p)
	} else {
		err = exec.QueueResume(ctx, p)
	}
	if err != nil {
		return fmt.Errorf("queue %q: %w", name, err)
	}
	if local {
		for _, prod := range c.allProducers() {
			if name == "*" || prod.Queue() == name {
				prod.SetPaused(paused)
			}
		}
	}
	return nil
}
