package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/producer"
	"github.com/millrace/millrace/internal/retry"
	"github.com/millrace/millrace/millracetype"
)

// soonHorizon is how far ahead a retry or snooze may be and still be
// written available (the scheduler's look-ahead); later ones are written
// retryable or scheduled for the scheduler to promote.
const soonHorizon = 5 * time.Second

// errStopAndCancel is the cause given to running jobs' contexts by
// StopAndCancel: a job that then returns an error goes back to available
// without using an attempt.
var errStopAndCancel = errors.New("client is stopping: job cancelled by StopAndCancel")

// errSoftStopTimeout is the cause given to running jobs' contexts when a
// stopping client's Config.SoftStopTimeout has passed; such jobs are
// treated as StopAndCancel's.
var errSoftStopTimeout = errors.New("client is stopping: job cancelled because SoftStopTimeout passed")

// jobMeta travels with an outcome to the completer and back, for events.
type jobMeta struct {
	kind  EventKind
	stats *JobStatistics
	// completedInTx is the job as JobCompleteTx completed it, if it did.
	completedInTx *millracetype.JobRow
}

// jobRun holds what one run of a job needs besides its row while it runs,
// in one allocation: the job's context value and state, and its stuck
// watch. It holds the row (the state does) and the job's contexts, so
// nothing the completer keeps may point into it: its done part is an
// allocation of its own, which goes to the completer.
type jobRun struct {
	ctx   jobValueCtx
	stuck stuckWatch
	done  *jobDone
}

func newJobRun() *jobRun { return &jobRun{done: &jobDone{}} }

// jobDone is what goes to the completer with a job's outcome, in one
// allocation: the outcome of a run that completed, its statistics and its
// event metadata.
type jobDone struct {
	completed driver.JobSetState
	now       time.Time
	stats     JobStatistics
	meta      jobMeta
}

// workJob runs one fetched job and hands its outcome to the completer. It
// is the producers' Work function. It never panics: a panicking worker is
// recovered and recorded.
func (c *Client[TTx]) workJob(ctx context.Context, row *millracetype.JobRow) {
	run := newJobRun()
	start := c.config.clock()
	outcome, kind, completedInTx := c.execute(ctx, run, row, start)
	// The outcome is for this attempt only: if the job was rescued and runs
	// again elsewhere by the time it is written, it must not touch that run.
	outcome.Attempt = row.Attempt
	stats := &run.done.stats
	stats.RunDuration = c.config.clock().Sub(start)
	if row.AttemptedAt != nil {
		stats.QueueWaitDuration = row.AttemptedAt.Sub(row.ScheduledAt)
	}
	// A retry or snooze due soon is written available with a future
	// scheduled_at; no notification will announce it, so wake this
	// client's producer when it is due instead of waiting for a poll.
	if outcome.State == millracetype.JobStateAvailable && outcome.ScheduledAt != nil {
		if p := c.producer(row.Queue); p != nil {
			time.AfterFunc(time.Until(*outcome.ScheduledAt)+time.Millisecond, p.Poke)
		}
	}
	// Recording the outcome must survive the client's stop and the job's
	// cancellation: Complete gets a context that never ends (it only
	// waits while the completer is full, and the completer drains before
	// it stops).
	meta := &run.done.meta
	*meta = jobMeta{kind: kind, stats: stats, completedInTx: completedInTx}
	if err := c.completer.Complete(context.Background(), outcome, meta); err != nil {
		c.config.Logger.Error("millrace: could not record job outcome; the job stays running until rescued",
			"job_id", row.ID, "error", err)
	}
	c.emitMetrics(ctx, row, outcome, kind, stats)
}

// execute runs the worker and turns what happened into an outcome. When
// the worker completed the job in its own transaction (JobCompleteTx),
// completedInTx is the row as that left it.
func (c *Client[TTx]) execute(ctx context.Context, run *jobRun, row *millracetype.JobRow, start time.Time) (outcome *driver.JobSetState, kind EventKind, completedInTx *millracetype.JobRow) {
	info := c.config.Workers.lookup(row.Kind)
	if info == nil {
		return c.unknownKind(row, start), EventKindJobFailed, nil
	}
	unit, err := info.unit(row)
	if err != nil {
		outcome, kind = c.failed(row, start, err, "", nil, nil, nil)
		return
	}

	timeout := c.safeTimeout(unit)
	if timeout == 0 {
		timeout = c.config.JobTimeout
	}
	jobCtx := withJobState(run, ctx, c)
	defer func() { completedInTx = c.noteCompletedInTx(jobCtx, outcome) }()
	var cancel context.CancelFunc
	if timeout > 0 {
		jobCtx, cancel = context.WithTimeout(jobCtx, timeout)
		c.watchStuck(&run.stuck, jobCtx, row, timeout)
	}
	panicVal, trace, workErr := c.runJob(jobCtx, row, unit)
	if cancel != nil {
		cancel()
		c.endStuckWatch(&run.stuck, row, timeout)
	}
	updates := metadataUpdates(jobCtx)

	if panicVal != nil {
		err := fmt.Errorf("%v", panicVal)
		var res *ErrorHandlerResult
		if h := c.config.ErrorHandler; h != nil {
			res = c.safeHandler(func() *ErrorHandlerResult { return h.HandlePanic(ctx, row, panicVal, trace) })
		}
		outcome, kind = c.failed(row, start, err, trace, res, unit, updates)
		return
	}
	if workErr == nil {
		d := run.done
		d.now = c.config.clock().UTC()
		d.completed = driver.JobSetState{ID: row.ID, State: millracetype.JobStateCompleted, FinalizedAt: &d.now,
			MetadataUpdates: updates, Delete: jobIsEphemeral(ctx, info)}
		return &d.completed, EventKindJobCompleted, nil
	}

	var snooze *JobSnoozeError
	if errors.As(workErr, &snooze) {
		d := snooze.Duration
		if d < 0 {
			outcome, kind = c.failed(row, start, fmt.Errorf("JobSnooze with negative duration %s", d), "", nil, unit, updates)
			return
		}
		at := c.config.clock().UTC().Add(d)
		state := millracetype.JobStateAvailable
		if d > soonHorizon {
			state = millracetype.JobStateScheduled
		}
		return &driver.JobSetState{ID: row.ID, State: state, ScheduledAt: &at, AttemptDecrement: true,
			SnoozeIncrement: true, MetadataUpdates: updates}, EventKindJobSnoozed, nil
	}
	var cancelErr *JobCancelError
	if errors.As(workErr, &cancelErr) {
		return c.cancelled(row, start, workErr.Error(), updates), EventKindJobCancelled, nil
	}
	switch context.Cause(ctx) {
	case errStopAndCancel, errSoftStopTimeout:
		// Interrupted by shutdown: back to available, attempt given back.
		now := c.config.clock().UTC()
		return &driver.JobSetState{ID: row.ID, State: millracetype.JobStateAvailable, ScheduledAt: &now,
			AttemptDecrement: true, MetadataUpdates: updates}, EventKindJobInterrupted, nil
	case producer.ErrJobCancelledRemotely:
		return c.cancelled(row, start, "JobCancelError: "+producer.ErrJobCancelledRemotely.Error(), updates), EventKindJobCancelled, nil
	}
	var res *ErrorHandlerResult
	if h := c.config.ErrorHandler; h != nil {
		res = c.safeHandler(func() *ErrorHandlerResult { return h.HandleError(ctx, row, workErr) })
	}
	outcome, kind = c.failed(row, start, workErr, "", res, unit, updates)
	return
}

// runWorker calls the worker through the middleware, recovering a panic.
func (c *Client[TTx]) runWorker(ctx context.Context, row *millracetype.JobRow, unit workUnit) (panicVal any, trace string, err error) {
	defer func() {
		if r := recover(); r != nil {
			panicVal, trace = r, stackTrace(3)
			if panicVal == nil {
				panicVal = "panic(nil)"
			}
		}
	}()
	return nil, "", c.workThrough(ctx, row, unit) // middleware and hooks: hooks.go
}

// stackTrace renders the current goroutine's stack, one "func\n\tfile:line\n"
// per frame, at most 100 frames.
func stackTrace(skip int) string {
	pcs := make([]uintptr, 100)
	n := runtime.Callers(skip, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	var b strings.Builder
	for {
		f, more := frames.Next()
		fmt.Fprintf(&b, "%s\n\t%s:%d\n", f.Function, f.File, f.Line)
		if !more {
			break
		}
	}
	return b.String()
}

func (c *Client[TTx]) safeHandler(fn func() *ErrorHandlerResult) (res *ErrorHandlerResult) {
	defer func() {
		if r := recover(); r != nil {
			c.config.Logger.Error("millrace: error handler panicked; keeping the normal outcome", "panic", r)
			res = nil
		}
	}()
	return fn()
}

func (c *Client[TTx]) cancelled(row *millracetype.JobRow, start time.Time, msg string, updates []byte) *driver.JobSetState {
	now := c.config.clock().UTC()
	return &driver.JobSetState{ID: row.ID, State: millracetype.JobStateCancelled, FinalizedAt: &now,
		Error:           &millracetype.AttemptError{At: start.UTC(), Attempt: row.Attempt, Error: msg},
		MetadataUpdates: updates}
}

// failed records an error and decides between retry and discard: the
// error handler may cancel the job; a job out of attempts is discarded;
// otherwise scheduleRetry chooses the time.
func (c *Client[TTx]) failed(row *millracetype.JobRow, start time.Time, err error, trace string, res *ErrorHandlerResult, unit workUnit, updates []byte) (*driver.JobSetState, EventKind) {
	if res != nil && res.SetCancelled {
		return c.cancelled(row, start, err.Error(), updates), EventKindJobCancelled
	}
	now := c.config.clock().UTC()
	s := &driver.JobSetState{ID: row.ID,
		Error:           &millracetype.AttemptError{At: start.UTC(), Attempt: row.Attempt, Error: err.Error(), Trace: trace},
		MetadataUpdates: updates}
	if row.Attempt >= row.MaxAttempts {
		s.State, s.FinalizedAt = millracetype.JobStateDiscarded, &now
		return s, EventKindJobFailed
	}
	c.scheduleRetry(s, row, unit, now)
	return s, EventKindJobFailed
}

// unknownKind is the outcome of a job whose kind has no worker in this
// client. Another client may have one, so the job is never discarded: the
// error is recorded, the attempt given back (this client could not try
// the job), and the job retried at the retry policy's time, whatever its
// max_attempts.
func (c *Client[TTx]) unknownKind(row *millracetype.JobRow, start time.Time) *driver.JobSetState {
	s := &driver.JobSetState{ID: row.ID, AttemptDecrement: true,
		Error: &millracetype.AttemptError{At: start.UTC(), Attempt: row.Attempt,
			Error: fmt.Sprintf("job kind %q is not registered in client %s", row.Kind, c.config.ID)}}
	c.scheduleRetry(s, row, nil, c.config.clock().UTC())
	return s
}

// scheduleRetry sets a failed job's next run: the worker's NextRetry (unit
// may be nil when the job could not be decoded), else the retry policy,
// else the default policy chooses the time; due soon means available.
func (c *Client[TTx]) scheduleRetry(s *driver.JobSetState, row *millracetype.JobRow, unit workUnit, now time.Time) {
	var next time.Time
	if unit != nil {
		next = c.safeUnitNextRetry(row, unit)
	}
	if next.IsZero() {
		next = c.safeNextRetry(row)
	}
	if next.IsZero() || next.Before(now) {
		next = retry.DefaultNextRetry(len(row.Errors)+1, now)
	}
	next = next.UTC()
	s.ScheduledAt = &next
	s.State = millracetype.JobStateRetryable
	if next.Sub(now) <= soonHorizon {
		s.State = millracetype.JobStateAvailable
	}
}

func (c *Client[TTx]) safeNextRetry(row *millracetype.JobRow) (t time.Time) {
	defer func() {
		if r := recover(); r != nil {
			c.config.Logger.Error("millrace: retry policy panicked; using the default", "job_id", row.ID, "panic", r)
			t = time.Time{}
		}
	}()
	return c.config.RetryPolicy.NextRetry(row)
}

func (c *Client[TTx]) safeUnitNextRetry(row *millracetype.JobRow, unit workUnit) (t time.Time) {
	defer func() {
		if r := recover(); r != nil {
			c.config.Logger.Error("millrace: worker NextRetry panicked; using the retry policy", "job_id", row.ID, "panic", r)
			t = time.Time{}
		}
	}()
	return unit.nextRetry()
}
