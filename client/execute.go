package client

import (
	"context"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/internal/producer"
	"github.com/millrace/millrace/millracetype"
)

// soonHorizon is how far ahead a retry, snooze or scheduled insert may
// be and still be written available (the scheduler's look-ahead).
const soonHorizon = jobexec.SoonHorizon

// newExecutor makes the job executor of client c, whose config is
// complete.
func newExecutor[TTx any](c *Client[TTx]) *jobexec.Executor {
	cfg := c.config
	return jobexec.New(&jobexec.Config{ClientID: cfg.ID, Logger: cfg.Logger, Now: cfg.clock, RetryPolicy: cfg.RetryPolicy,
		StuckThreshold: cfg.JobStuckThreshold, StuckHandler: cfg.JobStuckHandler,
		Hooks: cfg.plugins.global.work, WorkerMiddleware: cfg.WorkerMiddleware,
		ErrorHandler: cfg.ErrorHandler, RemoteCancelCause: producer.ErrJobCancelledRemotely}, (*execSink[TTx])(c))
}

// execSink is a client as its executor's jobexec.Sink: the one way back
// from the executor into the client. Its methods are not part of the
// client's API.
type execSink[TTx any] Client[TTx]

// Complete implements jobexec.Sink: the outcome goes to the completer.
// Recording it must survive the client's stop and the job's
// cancellation: Complete gets a context that never ends (it only waits
// while the completer is full, and the completer drains before it stops).
func (s *execSink[TTx]) Complete(outcome *driver.JobSetState, meta any) error {
	return (*Client[TTx])(s).completer.Complete(context.Background(), outcome, meta)
}

// Poke implements jobexec.Sink: the queue's producer, if this client
// works the queue, fetches again just after at.
func (s *execSink[TTx]) Poke(queue string, at time.Time) {
	if p := (*Client[TTx])(s).producer(queue); p != nil {
		time.AfterFunc(time.Until(at)+time.Millisecond, p.Poke)
	}
}

// QueueLoad implements jobexec.Sink.
func (s *execSink[TTx]) QueueLoad(queue string) (running, maxWorkers int, ok bool) {
	c := (*Client[TTx])(s)
	p := c.producer(queue)
	if p == nil {
		return 0, 0, false
	}
	return p.Running(), c.config.Queues[queue].MaxWorkers, true
}

// KindHooks implements jobexec.Sink: the hooks of a job's kind.
func (s *execSink[TTx]) KindHooks(kind string, unit jobexec.Unit) (*jobexec.WorkHooks, error) {
	return (*Client[TTx])(s).config.plugins.workHooksFor(kind, unit)
}

// KindMetricsHooks implements jobexec.Sink: the hooks of a kind known to
// have metrics hooks.
func (s *execSink[TTx]) KindMetricsHooks(kind string) *jobexec.WorkHooks {
	return (*Client[TTx])(s).config.plugins.metricsHooksFor(kind)
}

// eventKinds names the executor's outcome kinds as events do.
var eventKinds = [...]EventKind{
	jobexec.KindCompleted:   EventKindJobCompleted,
	jobexec.KindFailed:      EventKindJobFailed,
	jobexec.KindCancelled:   EventKindJobCancelled,
	jobexec.KindSnoozed:     EventKindJobSnoozed,
	jobexec.KindInterrupted: EventKindJobInterrupted,
}

// eventKind names an outcome kind as events do ("" for none).
func eventKind(k jobexec.Kind) EventKind {
	if int(k) < len(eventKinds) {
		return eventKinds[k]
	}
	return ""
}

// errStopAndCancel is the cause given to running jobs' contexts by
// StopAndCancel: a job that then returns an error goes back to available
// without using an attempt.
var errStopAndCancel = jobexec.ErrStopAndCancel

// errSoftStopTimeout is the cause given to running jobs' contexts when a
// stopping client's Config.SoftStopTimeout has passed; such jobs are
// treated as StopAndCancel's.
var errSoftStopTimeout = jobexec.ErrSoftStopTimeout

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
	ctx   jobexec.ValueCtx
	stuck jobexec.StuckWatch
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
	stats := &run.done.stats
	stats.RunDuration = c.config.clock().Sub(start)
	if row.AttemptedAt != nil {
		stats.QueueWaitDuration = row.AttemptedAt.Sub(row.ScheduledAt)
	}
	meta := &run.done.meta
	*meta = jobMeta{kind: eventKind(kind), stats: stats, completedInTx: completedInTx}
	c.exec.Finish(ctx, row, outcome, kind, meta, stats.QueueWaitDuration, stats.RunDuration)
}

// execute runs the worker and turns what happened into an outcome. When
// the worker completed the job in its own transaction (JobCompleteTx),
// completedInTx is the row as that left it.
func (c *Client[TTx]) execute(ctx context.Context, run *jobRun, row *millracetype.JobRow, start time.Time) (outcome *driver.JobSetState, kind jobexec.Kind, completedInTx *millracetype.JobRow) {
	info := c.config.Workers.lookup(row.Kind)
	if info == nil {
		return c.exec.UnknownKind(row, start), jobexec.KindFailed, nil
	}
	unit, err := info.unit(row)
	if err != nil {
		outcome, k := c.exec.Failed(row, start, err, "", false, nil, nil)
		return outcome, k, nil
	}

	timeout := c.safeTimeout(unit)
	if timeout == 0 {
		timeout = c.config.JobTimeout
	}
	jobCtx := withJobState(run, ctx, c)
	defer func() { completedInTx = jobexec.NoteCompletedInTx(jobCtx, outcome) }()
	var cancel context.CancelFunc
	if timeout > 0 {
		jobCtx, cancel = context.WithTimeout(jobCtx, timeout)
		c.exec.WatchStuck(&run.stuck, jobCtx, row, timeout)
	}
	panicVal, trace, workErr := c.exec.RunJob(jobCtx, row, unit)
	if cancel != nil {
		cancel()
		c.exec.EndStuckWatch(&run.stuck, row, timeout)
	}
	updates := jobexec.MetadataUpdates(jobCtx)

	if panicVal == nil && workErr == nil {
		d := run.done
		return c.exec.Completed(&d.completed, &d.now, row, updates, jobIsEphemeral(ctx, info)), jobexec.KindCompleted, nil
	}
	outcome, kind = c.exec.Unsuccessful(ctx, row, start, unit, panicVal, trace, workErr, updates)
	return outcome, kind, nil
}

// runWorker calls the worker through the middleware, recovering a panic.
func (c *Client[TTx]) runWorker(ctx context.Context, row *millracetype.JobRow, unit workUnit) (panicVal any, trace string, err error) {
	return c.exec.RunWorker(ctx, row, unit)
}

// safeNextRetry asks the retry policy when row runs again (a panic
// means the default policy); the rescuer uses it.
func (c *Client[TTx]) safeNextRetry(row *millracetype.JobRow) time.Time {
	return c.exec.PolicyNextRetry(row)
}
