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
		ErrorHandler: cfg.ErrorHandler, Client: c, JobTimeout: cfg.JobTimeout,
		RemoteCancelCause: producer.ErrJobCancelledRemotely}, (*execSink[TTx])(c))
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

// Unit implements jobexec.Sink (its UnitSource): the job's worker
// from the client's workers, the job decoded for it.
func (s *execSink[TTx]) Unit(ctx context.Context, row *millracetype.JobRow) (unit jobexec.Unit, ephemeral, found bool, err error) {
	info := (*Client[TTx])(s).config.Workers.lookup(row.Kind)
	if info == nil {
		return nil, false, false, nil
	}
	if unit, err = info.unit(row); err != nil {
		return nil, false, true, err
	}
	return unit, jobIsEphemeral(ctx, info), true, nil
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

// safeNextRetry asks the retry policy when row runs again (a panic
// means the default policy); the rescuer uses it.
func (c *Client[TTx]) safeNextRetry(row *millracetype.JobRow) time.Time {
	return c.exec.PolicyNextRetry(row)
}
