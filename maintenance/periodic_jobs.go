package maintenance

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/millrace/millrace/driver"
)

// PeriodicJob is one job the leader enqueues on a schedule.
type PeriodicJob struct {
	// Next returns the first run time strictly after t. Schedules must be
	// aligned (the same run times whoever computes them), so that a new
	// leader continues where the old one stopped.
	Next func(t time.Time) time.Time
	// Construct builds the job for the run at runAt. An error (or a panic)
	// skips that run, logged. The params should carry a unique key derived
	// from runAt, so that two leaders (or a leader change) never insert one
	// run twice.
	Construct func(runAt time.Time) (*driver.JobInsertParams, error)
	// RunOnStart also enqueues the job when the enqueuer starts (each time
	// this client becomes leader).
	RunOnStart bool
}

// PeriodicJobHandle identifies an added job, for Remove.
type PeriodicJobHandle int

// PeriodicJobEnqueuerConfig configures a PeriodicJobEnqueuer.
type PeriodicJobEnqueuerConfig struct {
	// Schema holds the job tables; empty means the connection's
	// search_path.
	Schema string
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// PeriodicJobEnqueuer inserts periodic jobs when their runs are due. Jobs
// may be added and removed while it runs.
type PeriodicJobEnqueuer struct {
	serviceBase
	exec driver.Executor

	mu     sync.Mutex
	jobs   map[PeriodicJobHandle]*PeriodicJob
	nextID PeriodicJobHandle

	// inserted, if set, receives each run's insert results (a test
	// signal, set before Start).
	inserted func(results []*driver.JobInsertResult)
}

// NewPeriodicJobEnqueuer returns an enqueuer with no jobs, or an error
// wrapping ErrInvalidConfig for a nil cfg or exec.
func NewPeriodicJobEnqueuer(exec driver.Executor, cfg *PeriodicJobEnqueuerConfig) (*PeriodicJobEnqueuer, error) {
	const name = "periodic_job_enqueuer"
	if cfg == nil {
		return nil, invalid(name, "nil config")
	}
	if err := checkExec(name, exec); err != nil {
		return nil, err
	}
	e := &PeriodicJobEnqueuer{exec: exec, jobs: map[PeriodicJobHandle]*PeriodicJob{}}
	e.initBase(name, cfg.Schema, cfg.Logger, cfg.Now)
	return e, nil
}

// Add adds a job and returns its handle.
func (e *PeriodicJobEnqueuer) Add(job *PeriodicJob) PeriodicJobHandle {
	e.mu.Lock()
	e.nextID++
	h := e.nextID
	e.jobs[h] = job
	e.mu.Unlock()
	e.wakeUp()
	return h
}

// Remove removes a job; unknown handles are ignored.
func (e *PeriodicJobEnqueuer) Remove(h PeriodicJobHandle) {
	e.mu.Lock()
	delete(e.jobs, h)
	e.mu.Unlock()
	e.wakeUp()
}

// Clear removes every job.
func (e *PeriodicJobEnqueuer) Clear() {
	e.mu.Lock()
	clear(e.jobs)
	e.mu.Unlock()
	e.wakeUp()
}

// Start runs the schedule until Stop: the RunOnStart jobs at once (with
// the start time as their run time), then every job at its run times.
func (e *PeriodicJobEnqueuer) Start(ctx context.Context) error {
	run := &enqueuerRun{next: map[PeriodicJobHandle]time.Time{}}
	return e.startLoop(ctx, func() time.Duration { return 0 }, func() time.Duration { return run.wait },
		func(ctx context.Context) { e.pass(ctx, run) })
}

// enqueuerRun is the state of one run of the enqueuer's loop.
type enqueuerRun struct {
	started bool                            // the RunOnStart jobs are in
	next    map[PeriodicJobHandle]time.Time // each job's next run
	wait    time.Duration                   // until the earliest next run
}

// pass inserts the runs that are due and sets how long to wait for the
// next one (0 after inserting, to look again at once with the new next
// times).
func (e *PeriodicJobEnqueuer) pass(ctx context.Context, run *enqueuerRun) {
	if !run.started {
		run.started = true
		var onStart []PeriodicJobHandle
		now := e.now()
		e.mu.Lock()
		for h, job := range e.jobs {
			if job.RunOnStart {
				onStart = append(onStart, h)
			}
		}
		e.mu.Unlock()
		e.enqueue(ctx, onStart, now, run.next)
	}
	now := e.now()
	// Schedule jobs added since, forget removed ones.
	e.mu.Lock()
	for h, job := range e.jobs {
		if _, ok := run.next[h]; !ok {
			run.next[h] = safeNext(job, now)
		}
	}
	for h := range run.next {
		if _, ok := e.jobs[h]; !ok {
			delete(run.next, h)
		}
	}
	e.mu.Unlock()
	// Run what is due, or wait until the earliest next run.
	runAts := map[PeriodicJobHandle]time.Time{}
	earliest := time.Time{}
	for h, at := range run.next {
		if !at.After(now) {
			runAts[h] = at
			continue
		}
		if earliest.IsZero() || at.Before(earliest) {
			earliest = at
		}
	}
	switch {
	case len(runAts) > 0:
		e.enqueueAt(ctx, runAts, run.next)
		run.wait = 0
	case earliest.IsZero():
		run.wait = time.Hour
	default:
		run.wait = earliest.Sub(now)
	}
}

// safeNext computes a job's next run, treating a panic or a zero time as
// "never" (an hour from now, checked again then).
func safeNext(job *PeriodicJob, now time.Time) (t time.Time) {
	defer func() {
		if r := recover(); r != nil {
			t = now.Add(time.Hour)
		}
	}()
	t = job.Next(now)
	if t.IsZero() || !t.After(now) {
		return now.Add(time.Hour)
	}
	return t
}

// enqueue inserts the given jobs with one run time (RunOnStart).
func (e *PeriodicJobEnqueuer) enqueue(ctx context.Context, handles []PeriodicJobHandle, runAt time.Time, next map[PeriodicJobHandle]time.Time) {
	runAts := map[PeriodicJobHandle]time.Time{}
	for _, h := range handles {
		runAts[h] = runAt
	}
	e.enqueueAt(ctx, runAts, next)
}

// enqueueAt inserts one run of each job in one statement and schedules each
// job's following run.
func (e *PeriodicJobEnqueuer) enqueueAt(ctx context.Context, runAts map[PeriodicJobHandle]time.Time, next map[PeriodicJobHandle]time.Time) {
	if len(runAts) == 0 {
		return
	}
	handles := make([]PeriodicJobHandle, 0, len(runAts))
	for h := range runAts {
		handles = append(handles, h)
	}
	slices.Sort(handles)
	var params []*driver.JobInsertParams
	var queues []string
	for _, h := range handles {
		e.mu.Lock()
		job := e.jobs[h]
		e.mu.Unlock()
		if job == nil {
			continue
		}
		runAt := runAts[h]
		next[h] = safeNext(job, runAt)
		p, err := safeConstruct(job, runAt)
		if err != nil {
			e.logger.Error("maintenance: periodic job constructor failed; skipping this run", "run_at", runAt, "error", err)
			continue
		}
		if p == nil {
			continue
		}
		params = append(params, p)
		if !slices.Contains(queues, p.Queue) {
			queues = append(queues, p.Queue)
		}
	}
	if len(params) == 0 {
		return
	}
	res, err := e.exec.JobInsertMany(ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: params, NotifyQueues: queues})
	if err != nil {
		if ctx.Err() == nil {
			e.logger.Error("maintenance: inserting periodic jobs failed; these runs are skipped", "jobs", len(params), "error", err)
		}
		return
	}
	if e.inserted != nil {
		e.inserted(res)
	}
}

func safeConstruct(job *PeriodicJob, runAt time.Time) (p *driver.JobInsertParams, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("constructor panicked: %v", r)
		}
	}()
	return job.Construct(runAt)
}
