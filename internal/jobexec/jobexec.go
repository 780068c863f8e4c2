// Package jobexec runs fetched jobs for the client: it decides each
// attempt's outcome (completed, retried, discarded, cancelled, snoozed,
// interrupted) and when a failed job runs again.
//
// The client keeps the public API and the wiring. It hands the executor
// everything it needs through one Config, and hears back through one
// typed Sink; nothing in this package imports the client, and the client
// passes no callbacks of its own in.
package jobexec

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/retry"
	"github.com/millrace/millrace/millracetype"
)

// SoonHorizon is how far ahead a retry or snooze may be and still be
// written available (the scheduler's look-ahead); later ones are written
// retryable or scheduled for the scheduler to promote.
const SoonHorizon = 5 * time.Second

// Kind is how an attempt ended, as the client's events name it.
type Kind uint8

// The kinds of outcome.
const (
	// KindNone: no outcome (the zero value).
	KindNone Kind = iota
	// KindCompleted: the job succeeded.
	KindCompleted
	// KindFailed: an error or a panic; the job is retried or discarded.
	KindFailed
	// KindCancelled: the job was cancelled.
	KindCancelled
	// KindSnoozed: the job snoozed.
	KindSnoozed
	// KindInterrupted: a stopping client interrupted the job.
	KindInterrupted
)

// RetryPolicy decides when a job that just failed runs again (the
// client's Config.RetryPolicy).
type RetryPolicy interface {
	NextRetry(job *millracetype.JobRow) time.Time
}

// Unit is one decoded job ready to run, its type erased.
type Unit interface {
	// Work runs the job's worker.
	Work(ctx context.Context) error
	// Timeout is the worker's timeout for the job (0: the default, -1:
	// none).
	Timeout() time.Duration
	// NextRetry is the worker's retry time for the job (zero: the policy's).
	NextRetry() time.Time
}

// Config is what the executor needs of its client.
type Config struct {
	// ClientID names the client in errors.
	ClientID string
	// Logger logs what the executor cannot return.
	Logger *slog.Logger
	// Now is the client's clock.
	Now func() time.Time
	// RetryPolicy chooses a failed job's next run when its worker does not.
	RetryPolicy RetryPolicy
	// StuckThreshold is how long past its timeout a job may run before it
	// is reported stuck.
	StuckThreshold time.Duration
	// StuckHandler, when not nil, is told of each stuck job (the client's
	// Config.JobStuckHandler).
	StuckHandler func(ctx context.Context, stuck *JobStuck)
	// Hooks are the global work hooks (the client's Config.Hooks).
	Hooks WorkHooks
	// WorkerMiddleware is the global worker middleware, outermost first.
	WorkerMiddleware []WorkerMiddleware
	// ErrorHandler, when not nil, is told of errors and panics and may
	// cancel the job.
	ErrorHandler ErrorHandler
	// Client is the client itself, opaque here: a job's context carries
	// it for the client's helpers (ClientFromContext and the like).
	Client any
	// JobTimeout is the timeout of a job whose worker sets none (0 or
	// less: none).
	JobTimeout time.Duration
	// RemoteCancelCause is the cause the producer gives a running job's
	// context when the job is cancelled from outside; such a job is
	// recorded cancelled whatever it returns.
	RemoteCancelCause error
}

// Sink is how the executor tells its client what it cannot return, and
// asks it for a job's worker and hooks: the one way back from the
// executor into the client.
type Sink interface {
	UnitSource
	// QueueLoad reports how many jobs a queue runs now and at most, or
	// false when the client does not work the queue.
	QueueLoad(queue string) (running, maxWorkers int, ok bool)
	// Complete hands an attempt's outcome over to be written, with meta
	// (a *Done, for the client's events) travelling with it. It must not
	// give up because the job's or the client's context ended.
	Complete(outcome *driver.JobSetState, meta any) error
	// Poke wakes the client's producer of queue at at, if the client
	// works the queue: a retry or snooze written available with a
	// future scheduled_at, which no notification will announce.
	Poke(queue string, at time.Time)
	// KindHooks returns the hooks of the kind of a job that unit (a
	// PluggableUnit) runs, working them out on the kind's first job (nil:
	// none).
	KindHooks(kind string, unit Unit) (*WorkHooks, error)
	// KindMetricsHooks returns the hooks of a kind known to have metrics
	// hooks, or nil; it never works hooks out.
	KindMetricsHooks(kind string) *WorkHooks
}

// Executor runs a client's jobs. Make it with New.
type Executor struct {
	cfg  Config
	sink Sink
	// stuck counts the jobs running past their timeout plus the stuck
	// threshold (stuck.go).
	stuck atomic.Int64
	// watches pools StuckWatches (and their timers) between runs.
	watches sync.Pool
	// deadlines are the deadline contexts jobs share (deadline.go).
	deadlines deadlines
}

// New returns an executor for cfg (copied) reporting to sink.
func New(cfg *Config, sink Sink) *Executor {
	return &Executor{cfg: *cfg, sink: sink}
}

// Cancelled is the outcome of a cancelled attempt that began at start.
func (e *Executor) Cancelled(row *millracetype.JobRow, start time.Time, msg string, updates []byte) *driver.JobSetState {
	now := e.cfg.Now().UTC()
	return &driver.JobSetState{ID: row.ID, State: millracetype.JobStateCancelled, FinalizedAt: &now,
		Error:           &millracetype.AttemptError{At: start.UTC(), Attempt: row.Attempt, Error: msg},
		MetadataUpdates: updates}
}

// Failed records an error and decides between retry and discard: cancel
// (the error handler's choice) cancels the job; a job out of attempts is
// discarded; otherwise the job is retried at the time scheduleRetry
// chooses. unit may be nil when the job could not be decoded.
func (e *Executor) Failed(row *millracetype.JobRow, start time.Time, err error, trace string, cancel bool, unit Unit, updates []byte) (*driver.JobSetState, Kind) {
	if cancel {
		return e.Cancelled(row, start, err.Error(), updates), KindCancelled
	}
	now := e.cfg.Now().UTC()
	s := &driver.JobSetState{ID: row.ID,
		Error:           &millracetype.AttemptError{At: start.UTC(), Attempt: row.Attempt, Error: err.Error(), Trace: trace},
		MetadataUpdates: updates}
	if row.Attempt >= row.MaxAttempts {
		s.State, s.FinalizedAt = millracetype.JobStateDiscarded, &now
		return s, KindFailed
	}
	e.scheduleRetry(s, row, unit, now)
	return s, KindFailed
}

// UnknownKind is the outcome of a job whose kind has no worker in this
// client. Another client may have one, so the job is never discarded: the
// error is recorded, the attempt given back (this client could not try
// the job), and the job retried at the retry policy's time, whatever its
// max_attempts.
func (e *Executor) UnknownKind(row *millracetype.JobRow, start time.Time) *driver.JobSetState {
	s := &driver.JobSetState{ID: row.ID, AttemptDecrement: true,
		Error: &millracetype.AttemptError{At: start.UTC(), Attempt: row.Attempt,
			Error: fmt.Sprintf("job kind %q is not registered in client %s", row.Kind, e.cfg.ClientID)}}
	e.scheduleRetry(s, row, nil, e.cfg.Now().UTC())
	return s
}

// Snoozed is the outcome of an attempt that snoozed for d (not negative):
// the attempt is given back and the job runs again at now + d, written
// available when that is soon.
func (e *Executor) Snoozed(row *millracetype.JobRow, d time.Duration, updates []byte) *driver.JobSetState {
	at := e.cfg.Now().UTC().Add(d)
	state := millracetype.JobStateAvailable
	if d > SoonHorizon {
		state = millracetype.JobStateScheduled
	}
	return &driver.JobSetState{ID: row.ID, State: state, ScheduledAt: &at, AttemptDecrement: true,
		SnoozeIncrement: true, MetadataUpdates: updates}
}

// Interrupted is the outcome of an attempt a stopping client interrupted:
// back to available at once, the attempt given back.
func (e *Executor) Interrupted(row *millracetype.JobRow, updates []byte) *driver.JobSetState {
	now := e.cfg.Now().UTC()
	return &driver.JobSetState{ID: row.ID, State: millracetype.JobStateAvailable, ScheduledAt: &now,
		AttemptDecrement: true, MetadataUpdates: updates}
}

// scheduleRetry sets a failed job's next run: the worker's NextRetry (unit
// may be nil when the job could not be decoded), else the retry policy,
// else the default policy chooses the time; due soon means available.
func (e *Executor) scheduleRetry(s *driver.JobSetState, row *millracetype.JobRow, unit Unit, now time.Time) {
	var next time.Time
	if unit != nil {
		next = e.safeUnitNextRetry(row, unit)
	}
	if next.IsZero() {
		next = e.PolicyNextRetry(row)
	}
	if next.IsZero() || next.Before(now) {
		next = retry.DefaultNextRetry(len(row.Errors)+1, now)
	}
	next = next.UTC()
	s.ScheduledAt = &next
	s.State = millracetype.JobStateRetryable
	if next.Sub(now) <= SoonHorizon {
		s.State = millracetype.JobStateAvailable
	}
}

// PolicyNextRetry asks the retry policy when row runs again; a panicking
// policy is logged and gives the zero time (the default policy's turn).
func (e *Executor) PolicyNextRetry(row *millracetype.JobRow) (t time.Time) {
	defer func() {
		if r := recover(); r != nil {
			e.cfg.Logger.Error("millrace: retry policy panicked; using the default", "job_id", row.ID, "panic", r)
			t = time.Time{}
		}
	}()
	return e.cfg.RetryPolicy.NextRetry(row)
}

func (e *Executor) safeUnitNextRetry(row *millracetype.JobRow, unit Unit) (t time.Time) {
	defer func() {
		if r := recover(); r != nil {
			e.cfg.Logger.Error("millrace: worker NextRetry panicked; using the retry policy", "job_id", row.ID, "panic", r)
			t = time.Time{}
		}
	}()
	return unit.NextRetry()
}

// Finish hands the outcome of an attempt of row over: it stamps the
// attempt on it (the outcome is for this attempt only: if the job was
// rescued and runs again elsewhere by the time it is written, it must not
// touch that run), has the producer poked when a retry or snooze due soon
// comes due, gives the outcome and meta to the sink to be written, and
// tells the metrics hooks. ctx is the context the producer gave the job.
func (e *Executor) Finish(ctx context.Context, row *millracetype.JobRow, outcome *driver.JobSetState, kind Kind, meta any, queueWait, runDuration time.Duration) {
	outcome.Attempt = row.Attempt
	outcome.Sequenced = driver.IsSequenced(row.Metadata)
	if outcome.State == millracetype.JobStateAvailable && outcome.ScheduledAt != nil {
		e.sink.Poke(row.Queue, *outcome.ScheduledAt)
	}
	if err := e.sink.Complete(outcome, meta); err != nil {
		e.cfg.Logger.Error("millrace: could not record job outcome; the job stays running until rescued",
			"job_id", row.ID, "error", err)
	}
	e.EmitMetrics(ctx, row, outcome, kind, queueWait, runDuration)
}
