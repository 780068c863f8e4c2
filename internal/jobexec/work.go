package jobexec

import (
	"context"
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
// in one allocation: the job's context value and state, and its stuck
// watch. It holds the row (the state does) and the job's contexts, so
// nothing the sink keeps may point into it: its done part is an
// allocation of its own, which goes to the sink.
type run struct {
	ctx   ValueCtx
	stuck StuckWatch
	done  *Done
}

func newRun() *run { return &run{done: &Done{}} }

// Work runs one fetched job and hands its outcome to the sink. It is the
// producers' Work function. It never panics: a panicking worker is
// recovered and recorded.
func (e *Executor) Work(ctx context.Context, row *millracetype.JobRow) {
	r := newRun()
	start := e.cfg.Now()
	outcome, kind, completedInTx := e.execute(ctx, r, row, start)
	d := r.done
	d.Stats.RunDuration = e.cfg.Now().Sub(start)
	if row.AttemptedAt != nil {
		d.Stats.QueueWaitDuration = row.AttemptedAt.Sub(row.ScheduledAt)
	}
	d.Kind, d.CompletedInTx = kind, completedInTx
	e.Finish(ctx, row, outcome, kind, d, d.Stats.QueueWaitDuration, d.Stats.RunDuration)
}

// Execute runs a job as Work does, started at start, and returns its
// outcome and how it ended without handing them over (for tests).
func (e *Executor) Execute(ctx context.Context, row *millracetype.JobRow, start time.Time) (*driver.JobSetState, Kind) {
	outcome, kind, _ := e.execute(ctx, newRun(), row, start)
	return outcome, kind
}

// execute runs the worker and turns what happened into an outcome. When
// the worker completed the job in its own transaction (JobCompleteTx),
// completedInTx is the row as that left it.
func (e *Executor) execute(ctx context.Context, r *run, row *millracetype.JobRow, start time.Time) (outcome *driver.JobSetState, kind Kind, completedInTx *millracetype.JobRow) {
	unit, ephemeral, found, err := e.sink.Unit(ctx, row)
	if !found {
		return e.UnknownKind(row, start), KindFailed, nil
	}
	if err != nil {
		outcome, k := e.Failed(row, start, err, "", false, nil, nil)
		return outcome, k, nil
	}

	timeout := SafeTimeout(unit)
	if timeout == 0 {
		timeout = e.cfg.JobTimeout
	}
	jobCtx := r.ctx.Bind(ctx, e.cfg.Client)
	defer func() { completedInTx = NoteCompletedInTx(jobCtx, outcome) }()
	var cancel context.CancelFunc
	if timeout > 0 {
		jobCtx, cancel = context.WithTimeout(jobCtx, timeout)
		e.WatchStuck(&r.stuck, jobCtx, row, timeout)
	}
	panicVal, trace, workErr := e.RunJob(jobCtx, row, unit)
	if cancel != nil {
		cancel()
		e.EndStuckWatch(&r.stuck, row, timeout)
	}
	updates := MetadataUpdates(jobCtx)

	if panicVal == nil && workErr == nil {
		d := r.done
		return e.Completed(&d.completed, &d.now, row, updates, ephemeral), KindCompleted, nil
	}
	outcome, kind = e.Unsuccessful(ctx, row, start, unit, panicVal, trace, workErr, updates)
	return outcome, kind, nil
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
