package jobexec

import (
	"context"
	"sync"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// UnitSource finds the worker of a job and decodes the job for it. The
// client's sink implements it over its registered workers.
type UnitSource interface {
	// Unit decodes row for its kind's worker. found is false when this
	// client has no worker for the kind; err is a job that could not be
	// decoded; ephemeral says the job is deleted rather than kept once
	// it completes. ctx is the context the producer gave the job.
	Unit(ctx context.Context, row *millracetype.JobRow) (unit Unit, ephemeral, found bool, err error)
}

// JobStatistics are a job's timings (client.JobStatistics, where the
// fields are documented).
type JobStatistics struct {
	// QueueWaitDuration is from when the job was due to when it was fetched.
	QueueWaitDuration time.Duration
	// RunDuration is how long Work took.
	RunDuration time.Duration
}

// Done is what goes to the sink's Complete as meta with a job's outcome
// (and comes back to the client for its events), in one allocation: the
// outcome of a run that completed, its statistics and how it ended.
type Done struct {
	completed driver.JobSetState
	now       time.Time
	// Stats are the attempt's timings.
	Stats JobStatistics
	// Kind is how the attempt ended.
	Kind Kind
	// CompletedInTx is the job as JobCompleteTx completed it, if it did.
	CompletedInTx *millracetype.JobRow
}

// run holds what one run of a job needs besides its row while it runs,
// in one allocation: the job's context value and state. It holds the row
// (the state does) and the job's contexts, so nothing the sink keeps may
// point into it: its done part is an allocation of its own, which goes to
// the sink.
type run struct {
	ctx  ValueCtx
	done *Done
	// group is the deadline context the job runs below, released once
	// its outcome is handed over (nil: none).
	group *deadlineGroup
	// With WorkBound: the parent of the job's context, its cancel, and
	// the cause of the first cancel from outside (the producer's: a
	// cancel of the job, a lost lease) that came before parent ended.
	// The job's context may have ended at its deadline first; the
	// outcome still goes by what was asked from outside, as it did when
	// every job had a timeout context of its own below the producer's.
	parent  context.Context
	cancel  context.CancelCauseFunc
	mu      sync.Mutex
	outside error // guarded by mu
}

// CancelCause cancels the job's context from outside (Canceller).
func (r *run) CancelCause(cause error) {
	r.mu.Lock()
	if r.outside == nil && r.parent.Err() == nil {
		r.outside = cause
	}
	r.mu.Unlock()
	r.cancel(cause)
}

// outsideCause is the cause of the job's end from outside: a cancel of
// the job, else the end of its parent (a stopping client), else nil.
func (r *run) outsideCause() error {
	r.mu.Lock()
	cause := r.outside
	r.mu.Unlock()
	if cause != nil {
		return cause
	}
	return context.Cause(r.parent)
}

func newRun() *run { return &run{done: &Done{}} }

// Canceller cancels a job's context with a cause.
type Canceller = interface{ CancelCause(cause error) }

// CancelBinder is how a producer gets hold of what cancels a job's
// context when the executor makes that context (WorkBound).
type CancelBinder interface {
	// Bind hands over what cancels the job's context; a cancel asked
	// for before Bind must be applied at once.
	Bind(cancel Canceller)
}

// Work runs one fetched job, ctx its own context (cancelled by its
// producer with a cause), and hands its outcome to the sink. It never
// panics: a panicking worker is recovered and recorded.
func (e *Executor) Work(ctx context.Context, row *millracetype.JobRow) {
	e.work(ctx, row, nil)
}

// WorkBound is Work for a producer that leaves the job's own context to
// the executor: it is made below parent, once the job's timeout is known,
// and its cancel function goes to bind. That lets jobs that start
// together with the same timeout share one deadline context instead of
// each making one of its own (deadline.go).
func (e *Executor) WorkBound(parent context.Context, row *millracetype.JobRow, bind CancelBinder) {
	e.work(parent, row, bind)
}

func (e *Executor) work(ctx context.Context, row *millracetype.JobRow, bind CancelBinder) {
	r := newRun()
	start := e.cfg.Now()
	outcome, kind, completedInTx, ctx := e.execute(ctx, r, row, start, bind)
	d := r.done
	d.Stats.RunDuration = e.cfg.Now().Sub(start)
	if row.AttemptedAt != nil {
		d.Stats.QueueWaitDuration = row.AttemptedAt.Sub(row.ScheduledAt)
	}
	d.Kind, d.CompletedInTx = kind, completedInTx
	e.Finish(ctx, row, outcome, kind, d, d.Stats.QueueWaitDuration, d.Stats.RunDuration)
	if r.group != nil {
		e.deadlines.release(r.group)
	}
}

// Execute runs a job as Work does, started at start, and returns its
// outcome and how it ended without handing them over (for tests).
func (e *Executor) Execute(ctx context.Context, row *millracetype.JobRow, start time.Time) (*driver.JobSetState, Kind) {
	outcome, kind, _, _ := e.execute(ctx, newRun(), row, start, nil)
	return outcome, kind
}

// execute runs the worker and turns what happened into an outcome. When
// the worker completed the job in its own transaction (JobCompleteTx),
// completedInTx is the row as that left it. With bind, ctx is the parent
// of the job's context, which execute makes; without, ctx is the job's
// context. Either way ctx comes back as hookCtx, for the hooks told of
// the outcome (one a timeout does not end). A deadline group the job ran
// in is left in r for the caller to release once the outcome is handed
// over.
func (e *Executor) execute(ctx context.Context, r *run, row *millracetype.JobRow, start time.Time, bind CancelBinder) (outcome *driver.JobSetState, kind Kind, completedInTx *millracetype.JobRow, hookCtx context.Context) {
	unit, ephemeral, found, err := e.sink.Unit(ctx, row)
	if !found {
		return e.UnknownKind(row, start), KindFailed, nil, ctx
	}
	if err != nil {
		outcome, k := e.Failed(row, start, err, "", false, nil, nil)
		return outcome, k, nil, ctx
	}

	timeout := SafeTimeout(unit)
	if timeout == 0 {
		timeout = e.cfg.JobTimeout
	}
	var cancel context.CancelFunc
	own := ctx
	if bind != nil {
		r.parent = ctx
		parent := ctx
		if timeout > 0 {
			r.group = e.deadlines.acquire(parent, timeout)
			parent = r.group.ctx
		}
		own, r.cancel = context.WithCancelCause(parent)
		bind.Bind(r)
	}
	valueCtx := r.ctx.Bind(own, e.cfg.Client)
	defer func() { completedInTx = NoteCompletedInTx(valueCtx, outcome) }()
	runCtx := valueCtx
	var watch *StuckWatch
	if timeout > 0 {
		if r.group == nil {
			runCtx, cancel = context.WithTimeout(valueCtx, timeout)
		}
		watch, _ = e.watches.Get().(*StuckWatch)
		if watch == nil {
			watch = new(StuckWatch)
		}
		e.WatchStuck(watch, runCtx, row, timeout)
	}
	panicVal, trace, workErr := e.RunJob(runCtx, row, unit)
	if cancel != nil {
		cancel()
	}
	if watch != nil {
		e.EndStuckWatch(watch, row, timeout)
		e.watches.Put(watch)
	}
	updates := MetadataUpdates(valueCtx)

	if panicVal == nil && workErr == nil {
		d := r.done
		return e.Completed(&d.completed, &d.now, row, updates, ephemeral), KindCompleted, nil, ctx
	}
	cause := context.Cause(ctx)
	if bind != nil {
		cause = r.outsideCause()
	}
	outcome, kind = e.unsuccessful(ctx, cause, row, start, unit, panicVal, trace, workErr, updates)
	return outcome, kind, nil, ctx
}

// SafeTimeout is unit's timeout, or 0 (the default) when Timeout panics.
func SafeTimeout(unit Unit) (d time.Duration) {
	defer func() {
		if r := recover(); r != nil {
			d = 0
		}
	}()
	return unit.Timeout()
}
