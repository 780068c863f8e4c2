package maintenance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/millrace/millrace/driver"
)

// PeriodicJob is one job the leader enqueues on a schedule.
type PeriodicJob struct {
	// ID, when set, makes the job durable: its next run is kept in the
	// table millrace_periodic under this ID (when the table exists), so
	// that a restart or a change of leader continues its schedule, and
	// each run is inserted in the transaction that moves that row on to
	// the next run (see advance). The jobs of one enqueuer have distinct
	// IDs.
	ID string
	// SkipMissed drops the runs of a durable job that fell due while no
	// client was running (see LiveSince), instead of enqueuing the first
	// of them.
	SkipMissed bool
	// Next returns the first run time strictly after t. Schedules must be
	// deterministic and aligned (the same run times whoever computes them),
	// so that a new leader continues where the old one stopped.
	Next func(t time.Time) time.Time
	// Construct builds the job for the run at runAt. An error (or a panic)
	// skips that run, logged. The params should carry a unique key derived
	// from runAt, so that two leaders (or a leader change) never insert one
	// run twice.
	Construct func(runAt time.Time) (*driver.JobInsertParams, error)
	// RunOnStart also enqueues the job when the enqueuer starts (each time
	// this client becomes leader), with the start time as its run time.
	RunOnStart bool
}

// PeriodicJobHandle identifies an added job, for Remove.
type PeriodicJobHandle int

// ErrPeriodicJobIDTaken is returned (wrapped) by Add for a job whose ID
// another job of the enqueuer has.
var ErrPeriodicJobIDTaken = errors.New("periodic job ID already added")

// PeriodicJobEnqueuerConfig configures a PeriodicJobEnqueuer.
type PeriodicJobEnqueuerConfig struct {
	// Schema holds the job tables; empty means the connection's
	// search_path.
	Schema string
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// LiveSince returns the time, on Now's clock, since which a client
	// now alive has been running. A durable job's runs due since then that
	// are not enqueued yet were held up by a change of leader: they are all
	// enqueued. Its runs due before then fell while no client ran: only the
	// first of them is enqueued (none with SkipMissed). Nil means the time
	// the enqueuer last started.
	LiveSince func() time.Time
	// LiveSinceDB, when set, is asked first: the same time on the
	// database's clock (from the live clients' heartbeat rows: the
	// earliest start among them), or ok false to fall back on LiveSince.
	LiveSinceDB func(ctx context.Context) (since time.Time, ok bool)
}

// PeriodicJobEnqueuer inserts periodic jobs when their runs are due. Jobs
// may be added and removed while it runs.
type PeriodicJobEnqueuer struct {
	serviceBase
	exec        driver.Executor
	liveSince   func() time.Time
	liveSinceDB func(ctx context.Context) (time.Time, bool)

	mu     sync.Mutex
	jobs   map[PeriodicJobHandle]*PeriodicJob
	nextID PeriodicJobHandle
	// removed holds the IDs of durable jobs removed since the enqueuer
	// last started, whose rows its next pass deletes.
	removed map[string]struct{}
	// startedAt is when the enqueuer last started (Now's clock).
	startedAt time.Time

	// inserted, if set, receives each run's insert results (a test
	// signal, set before Start).
	inserted func(results []*driver.JobInsertResult)
	// advanced, if set, receives how many durable rows a pass tried to
	// move on and how many it moved (a test signal, set before Start).
	advanced func(tried, changed int)
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
	e := &PeriodicJobEnqueuer{exec: exec, liveSince: cfg.LiveSince, liveSinceDB: cfg.LiveSinceDB, jobs: map[PeriodicJobHandle]*PeriodicJob{},
		removed: map[string]struct{}{}}
	e.initBase(name, cfg.Schema, cfg.Logger, cfg.Now)
	return e, nil
}

// Add adds a job and returns its handle, or an error wrapping
// ErrPeriodicJobIDTaken when another job has its ID.
func (e *PeriodicJobEnqueuer) Add(job *PeriodicJob) (PeriodicJobHandle, error) {
	e.mu.Lock()
	if job.ID != "" {
		for _, other := range e.jobs {
			if other.ID == job.ID {
				e.mu.Unlock()
				return 0, fmt.Errorf("%w: %q", ErrPeriodicJobIDTaken, job.ID)
			}
		}
	}
	e.nextID++
	h := e.nextID
	e.jobs[h] = job
	e.mu.Unlock()
	e.wakeUp()
	return h, nil
}

// Remove removes a job; unknown handles are ignored. The row of a durable
// job removed while the enqueuer runs is deleted at its next pass, unless
// a job of that ID has been added again.
func (e *PeriodicJobEnqueuer) Remove(h PeriodicJobHandle) {
	e.mu.Lock()
	if job := e.jobs[h]; job != nil && job.ID != "" {
		e.removed[job.ID] = struct{}{}
	}
	delete(e.jobs, h)
	e.mu.Unlock()
	e.wakeUp()
}

// Clear removes every job, as Remove does each.
func (e *PeriodicJobEnqueuer) Clear() {
	e.mu.Lock()
	for _, job := range e.jobs {
		if job.ID != "" {
			e.removed[job.ID] = struct{}{}
		}
	}
	clear(e.jobs)
	e.mu.Unlock()
	e.wakeUp()
}

// Start runs the schedule until Stop: the RunOnStart jobs at once (with
// the start time as their run time), then every job at its run times.
// Removals made before Start leave the rows of their jobs alone.
func (e *PeriodicJobEnqueuer) Start(ctx context.Context) error {
	e.mu.Lock()
	e.startedAt = e.now()
	clear(e.removed)
	e.mu.Unlock()
	run := &enqueuerRun{next: map[PeriodicJobHandle]time.Time{}}
	return e.startLoop(ctx, func() time.Duration { return 0 }, func() time.Duration { return run.wait },
		func(ctx context.Context) { e.pass(ctx, run) })
}

// tableState is whether the table of durable schedules exists.
type tableState int

const (
	tableUnknown tableState = iota // not checked yet, or the check failed
	tablePresent
	tableMissing
)

// enqueuerRun is the state of one run of the enqueuer's loop.
type enqueuerRun struct {
	started bool                            // the RunOnStart jobs are in
	next    map[PeriodicJobHandle]time.Time // each in-memory job's next run
	wait    time.Duration                   // until the earliest next run

	table    tableState
	failures int       // consecutive failed passes over the durable jobs
	pruned   time.Time // database time of the last prune of stale rows
}

// Durable schedules: tuning.
const (
	// periodicRowRetention is how long the row of a durable job that the
	// leader does not have may stay overdue before the leader deletes it.
	periodicRowRetention = 7 * 24 * time.Hour
	// periodicPruneEvery is how often the leader looks for such rows.
	periodicPruneEvery = time.Hour
	// maxHeldUpRuns bounds the runs of one job enqueued in one pass after a
	// change of leader; beyond it the job goes on from its next run.
	maxHeldUpRuns = 1000
)

// pass inserts the runs that are due and sets how long to wait for the
// next one.
func (e *PeriodicJobEnqueuer) pass(ctx context.Context, run *enqueuerRun) {
	e.mu.Lock()
	hasDurable := false
	for _, job := range e.jobs {
		hasDurable = hasDurable || job.ID != ""
	}
	e.mu.Unlock()
	if hasDurable && run.table == tableUnknown {
		e.checkTable(ctx, run)
	}
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
	// Jobs with an ID go by the table when it exists; until it is known
	// to exist or not, they wait.
	memory := map[PeriodicJobHandle]*PeriodicJob{}
	durable := map[string]*PeriodicJob{}
	e.mu.Lock()
	for h, job := range e.jobs {
		switch {
		case job.ID == "" || run.table == tableMissing:
			memory[h] = job
		case run.table == tablePresent:
			durable[job.ID] = job
		}
	}
	e.mu.Unlock()
	wait := e.memoryPass(ctx, run, memory)
	if run.table == tablePresent {
		wait = min(wait, e.durablePass(ctx, run, durable))
	} else if hasDurable && run.table == tableUnknown {
		wait = min(wait, e.retryAfter(run))
	}
	run.wait = wait
}

// checkTable finds out whether the table of durable schedules exists.
func (e *PeriodicJobEnqueuer) checkTable(ctx context.Context, run *enqueuerRun) {
	ok, err := e.exec.TableExists(ctx, &driver.TableExistsParams{Schema: e.schema, Table: "millrace_periodic"})
	switch {
	case err != nil:
		e.logFailure(ctx, fmt.Errorf("look for table millrace_periodic: %w", err), "retrying")
	case ok:
		run.table = tablePresent
	default:
		run.table = tableMissing
		e.logger.Error("maintenance: table millrace_periodic is missing (migration line millrace is below version 2): "+
			"periodic jobs with an ID are scheduled in memory, as jobs without one; migrate (millrace migrate up) to make them durable",
			"schema", e.schema)
	}
}

// retryAfter counts a failure and returns the wait before the next try:
// 1 s, doubling up to a minute.
func (e *PeriodicJobEnqueuer) retryAfter(run *enqueuerRun) time.Duration {
	run.failures++
	return min(time.Second<<min(run.failures-1, 6), time.Minute)
}

// memoryPass schedules the jobs that have no row, in memory from the time
// this enqueuer first sees them, runs those that are due, and returns the
// wait until the earliest next run (0 after inserting, to look again at
// once with the new next times).
func (e *PeriodicJobEnqueuer) memoryPass(ctx context.Context, run *enqueuerRun, jobs map[PeriodicJobHandle]*PeriodicJob) time.Duration {
	now := e.now()
	// Schedule jobs added since, forget removed ones.
	for h, job := range jobs {
		if _, ok := run.next[h]; !ok {
			run.next[h] = safeNext(job, now)
		}
	}
	for h := range run.next {
		if _, ok := jobs[h]; !ok {
			delete(run.next, h)
		}
	}
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
		return 0
	case earliest.IsZero():
		return time.Hour
	default:
		return earliest.Sub(now)
	}
}

// durablePass runs the due runs of the durable jobs by their rows (made
// for jobs that have none), deletes the rows of removed jobs and stale
// ones, and returns the wait until the earliest next run. Times come from
// the database's clock, so that leaders with skewed clocks agree.
func (e *PeriodicJobEnqueuer) durablePass(ctx context.Context, run *enqueuerRun, jobs map[string]*PeriodicJob) time.Duration {
	ids := slices.Sorted(maps.Keys(jobs))
	if err := e.deleteRemoved(ctx, jobs); err != nil {
		e.logFailure(ctx, err, "retrying")
		return e.retryAfter(run)
	}
	res, dbNow, offset, err := e.readRows(ctx, ids)
	if err != nil {
		e.logFailure(ctx, err, "retrying")
		return e.retryAfter(run)
	}
	if run.pruned.IsZero() || dbNow.Sub(run.pruned) >= periodicPruneEvery {
		if err := e.prune(ctx, dbNow, ids); err != nil {
			e.logFailure(ctx, err, "retrying")
			return e.retryAfter(run)
		}
		run.pruned = dbNow
	}
	rows := map[string]*driver.PeriodicJobRow{}
	for _, r := range res.Jobs {
		rows[r.ID] = r
	}
	// New jobs start at their first run after now.
	var fresh []*driver.PeriodicJobInsert
	for _, id := range ids {
		if rows[id] != nil {
			continue
		}
		if next, ok := e.scheduleNext(jobs[id], dbNow); ok {
			fresh = append(fresh, &driver.PeriodicJobInsert{ID: id, NextRunAt: next, NextFrom: dbNow})
		}
	}
	if len(fresh) > 0 {
		if _, err := e.exec.PeriodicJobInsertMany(ctx, &driver.PeriodicJobInsertManyParams{Schema: e.schema, Jobs: fresh}); err != nil {
			e.logFailure(ctx, fmt.Errorf("insert periodic job rows: %w", err), "retrying")
			return e.retryAfter(run)
		}
		if res, dbNow, offset, err = e.readRows(ctx, ids); err != nil {
			e.logFailure(ctx, err, "retrying")
			return e.retryAfter(run)
		}
	}
	liveSince := e.liveSinceTime().Add(offset)
	if e.liveSinceDB != nil {
		if since, ok := e.liveSinceDB(ctx); ok {
			liveSince = since
		}
	}

	var advances []*driver.PeriodicJobAdvance
	runs := map[string][]time.Time{}
	earliest := time.Time{}
	consider := func(t time.Time) {
		if earliest.IsZero() || t.Before(earliest) {
			earliest = t
		}
	}
	for _, row := range res.Jobs {
		job := jobs[row.ID]
		if job == nil {
			continue
		}
		if expect, ok := e.scheduleNext(job, row.NextFrom); !ok {
			continue
		} else if !expect.Truncate(time.Microsecond).Equal(row.NextRunAt) {
			// The row was written for another schedule: start afresh.
			next, ok := e.scheduleNext(job, dbNow)
			if !ok {
				continue
			}
			e.logger.Info("maintenance: periodic job's schedule changed; it goes on from its next run", "periodic_job_id", row.ID,
				"stored_next_run_at", row.NextRunAt, "next_run_at", next)
			advances = append(advances, &driver.PeriodicJobAdvance{ID: row.ID, Expected: row.NextRunAt, NextRunAt: next, NextFrom: dbNow})
			consider(next)
			continue
		}
		if row.NextRunAt.After(dbNow) {
			consider(row.NextRunAt)
			continue
		}
		due, next, from, ok := e.dueRuns(job, row, liveSince, dbNow)
		if !ok {
			continue
		}
		adv := &driver.PeriodicJobAdvance{ID: row.ID, Expected: row.NextRunAt, NextRunAt: next, NextFrom: from}
		if len(due) > 0 {
			last := due[len(due)-1]
			adv.LastRunAt = &last
		}
		advances = append(advances, adv)
		runs[row.ID] = due
		consider(next)
	}
	if len(advances) > 0 {
		changed, err := e.advance(ctx, jobs, advances, runs)
		if err != nil {
			e.logFailure(ctx, err, "retrying")
			return e.retryAfter(run)
		}
		if e.advanced != nil {
			e.advanced(len(advances), len(changed))
		}
		if len(changed) < len(advances) {
			// Another leader moved some rows on: read them again.
			run.failures = 0
			return 0
		}
	}
	run.failures = 0
	if earliest.IsZero() {
		return time.Hour
	}
	return earliest.Sub(dbNow)
}

// readRows reads the rows of ids, and returns with them the database's
// time and its offset from Now's clock.
func (e *PeriodicJobEnqueuer) readRows(ctx context.Context, ids []string) (*driver.PeriodicJobGetManyResult, time.Time, time.Duration, error) {
	before := e.now()
	res, err := e.exec.PeriodicJobGetMany(ctx, &driver.PeriodicJobGetManyParams{Schema: e.schema, IDs: ids})
	if err != nil {
		return nil, time.Time{}, 0, fmt.Errorf("read periodic job rows: %w", err)
	}
	// The database read its clock between before and now: take the middle.
	after := e.now()
	local := before.Add(after.Sub(before) / 2)
	return res, res.Now, res.Now.Sub(local), nil
}

// liveSinceTime is LiveSince, or the enqueuer's last start.
func (e *PeriodicJobEnqueuer) liveSinceTime() time.Time {
	if e.liveSince != nil {
		return e.liveSince()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.startedAt
}

// deleteRemoved deletes the rows of the durable jobs removed since the
// enqueuer started, unless a job of the same ID is in jobs again.
func (e *PeriodicJobEnqueuer) deleteRemoved(ctx context.Context, jobs map[string]*PeriodicJob) error {
	e.mu.Lock()
	var ids []string
	for id := range e.removed {
		if jobs[id] == nil {
			ids = append(ids, id)
		}
	}
	clear(e.removed)
	e.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	if _, err := e.exec.PeriodicJobDeleteMany(ctx, &driver.PeriodicJobDeleteManyParams{Schema: e.schema, IDs: ids}); err != nil {
		e.mu.Lock()
		for _, id := range ids {
			e.removed[id] = struct{}{}
		}
		e.mu.Unlock()
		return fmt.Errorf("delete rows of removed periodic jobs: %w", err)
	}
	return nil
}

// prune deletes the rows that have been overdue for periodicRowRetention
// and whose jobs this enqueuer does not have: no leader has run them for
// that long.
func (e *PeriodicJobEnqueuer) prune(ctx context.Context, dbNow time.Time, keep []string) error {
	horizon := dbNow.Add(-periodicRowRetention)
	deleted, err := e.exec.PeriodicJobDeleteMany(ctx, &driver.PeriodicJobDeleteManyParams{Schema: e.schema,
		OverdueBefore: &horizon, Keep: keep})
	if err != nil {
		return fmt.Errorf("delete stale periodic job rows: %w", err)
	}
	if len(deleted) > 0 {
		e.logger.Info("maintenance: deleted the rows of periodic jobs overdue for a week that this leader does not have",
			"periodic_job_ids", deleted)
	}
	return nil
}

// scheduleNext is the job's first run after t, truncated to the
// database's microseconds; false (logged) when the schedule panics or
// gives no time after t.
func (e *PeriodicJobEnqueuer) scheduleNext(job *PeriodicJob, t time.Time) (time.Time, bool) {
	at, err := safeSchedule(job.Next, t)
	if err == nil {
		at = at.Truncate(time.Microsecond)
		if !at.After(t) {
			err = fmt.Errorf("schedule gave %s, not after %s at microsecond precision", at.Format(time.RFC3339Nano), t.Format(time.RFC3339Nano))
		}
	}
	if err != nil {
		e.logger.Error("maintenance: periodic job's schedule failed; the job is not run", "periodic_job_id", job.ID, "error", err)
		return time.Time{}, false
	}
	return at, true
}

// dueRuns lists the runs of a due durable job to enqueue now and where its
// schedule goes on: its first run after dbNow, and the time that run is
// computed from. Runs that fell due before liveSince (no client was
// running) count as one, the first (none with SkipMissed); runs due since
// are all enqueued (up to maxHeldUpRuns).
func (e *PeriodicJobEnqueuer) dueRuns(job *PeriodicJob, row *driver.PeriodicJobRow, liveSince, dbNow time.Time) (runs []time.Time, next, from time.Time, ok bool) {
	next, from = row.NextRunAt, row.NextFrom
	if next.Before(liveSince) {
		if !job.SkipMissed {
			runs = append(runs, next)
		}
		from = liveSince.Add(-time.Microsecond).Truncate(time.Microsecond)
		if next, ok = e.scheduleNext(job, from); !ok {
			return nil, next, from, false
		}
	}
	for !next.After(dbNow) {
		if len(runs) == maxHeldUpRuns {
			e.logger.Warn("maintenance: too many held-up runs of a periodic job; going on from its next run", "periodic_job_id", job.ID,
				"runs", len(runs), "next_run_at", next)
			from = dbNow
			next, ok = e.scheduleNext(job, from)
			return runs, next, from, ok
		}
		runs = append(runs, next)
		from = next
		if next, ok = e.scheduleNext(job, from); !ok {
			return nil, next, from, false
		}
	}
	return runs, next, from, true
}

// advance moves the rows on, with a compare-and-set on the next run each
// one had when read, and inserts the runs of the rows it moved, in one
// transaction: a leader that read a row another one has moved since (a
// stale leader) changes nothing and inserts nothing. It returns the IDs
// of the rows moved.
func (e *PeriodicJobEnqueuer) advance(ctx context.Context, jobs map[string]*PeriodicJob, advances []*driver.PeriodicJobAdvance, runs map[string][]time.Time) ([]string, error) {
	tx, err := e.exec.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin periodic enqueue: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	changed, err := tx.PeriodicJobAdvanceMany(ctx, &driver.PeriodicJobAdvanceManyParams{Schema: e.schema, Jobs: advances})
	if err != nil {
		return nil, fmt.Errorf("advance periodic job rows: %w", err)
	}
	var params []*driver.JobInsertParams
	var queues []string
	for _, id := range changed {
		for _, runAt := range runs[id] {
			p, err := safeConstruct(jobs[id], runAt)
			if err != nil {
				e.logger.Error("maintenance: periodic job constructor failed; skipping this run", "periodic_job_id", id, "run_at", runAt, "error", err)
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
	}
	var res []*driver.JobInsertResult
	if len(params) > 0 {
		if res, err = tx.JobInsertMany(ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: params, NotifyQueues: queues}); err != nil {
			return nil, fmt.Errorf("insert periodic jobs: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit periodic enqueue: %w", err)
	}
	if e.inserted != nil && len(res) > 0 {
		e.inserted(res)
	}
	return changed, nil
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
