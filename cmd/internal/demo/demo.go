// Package demo is the demo millrace's command line runs (make demo): insert
// jobs of a few kinds, work them with progress output, stop gracefully
// under load half way, start again, and report. It runs on any driver:
// the millrace command (module cmd/millrace) runs it on Postgres or, with
// --driver sqlite, on a SQLite file.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

// Store reads what the demo reports from the database it runs on.
type Store interface {
	// StateCounts counts the schema's jobs by state.
	StateCounts(ctx context.Context) (map[millracetype.JobState]int, error)
	// KindCounts counts the schema's jobs by kind.
	KindCounts(ctx context.Context) (map[string]int, error)
	// Job reads one job.
	Job(ctx context.Context, id int64) (*millracetype.JobRow, error)
}

// Config is one run of the demo.
type Config struct {
	// Schema the demo migrates and works in; it must exist and be empty.
	Schema string
	// Where names the database and schema in the output ("schema x",
	// "SQLite file y").
	Where string
	// Jobs is how many jobs to insert, 10 to 10,000,000.
	Jobs int
	// Workers of the demo queue, 1 to client.MaxQueueWorkers.
	Workers int
	// Out receives the output.
	Out io.Writer
	// Logger receives the clients' logs; default: warnings to stderr.
	Logger *slog.Logger
	// InsertWith says how the driver inserts a batch, for the output;
	// default "COPY".
	InsertWith string
}

// ErrInvalidConfig is wrapped by Run's error for a Config out of range.
var ErrInvalidConfig = errors.New("demo: invalid config")

// Validate checks a Config; its error wraps ErrInvalidConfig.
func (cfg *Config) Validate() error {
	if cfg == nil {
		return fmt.Errorf("%w: nil", ErrInvalidConfig)
	}
	if cfg.Jobs < 10 || cfg.Jobs > 10_000_000 {
		return fmt.Errorf("%w: jobs %d out of range 10..10000000", ErrInvalidConfig, cfg.Jobs)
	}
	if cfg.Workers < 1 || cfg.Workers > client.MaxQueueWorkers {
		return fmt.Errorf("%w: workers %d out of range 1..%d", ErrInvalidConfig, cfg.Workers, client.MaxQueueWorkers)
	}
	return nil
}

// Run migrates cfg.Schema with drv, then inserts and works the demo's
// jobs, printing progress and a summary to cfg.Out. It fails if a job is
// lost or left unfinished. Ctrl-C stops gracefully; a second one cancels
// running jobs.
func Run[TTx any](ctx context.Context, drv driver.Driver[TTx], store Store, cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	where := cfg.Where
	if where == "" {
		where = "schema " + cfg.Schema
	}
	insertWith := cfg.InsertWith
	if insertWith == "" {
		insertWith = "COPY"
	}
	d := &demo{schema: cfg.Schema, where: where, jobs: cfg.Jobs, workers: cfg.Workers, out: out, logger: logger, insertWith: insertWith}
	return run(ctx, drv, store, d)
}

type demo struct {
	schema string
	where  string // what was migrated, for the output
	// insertWith is how the driver inserts a batch, for the output.
	insertWith string
	jobs       int
	workers    int
	out        io.Writer
	logger     *slog.Logger

	worked   atomic.Int64 // Work calls
	working  atomic.Int64 // Work calls in progress
	failures atomic.Int64 // errors returned on purpose
	snoozes  atomic.Int64
	// Runs of the periodic job worked, by why they ran: a client became
	// leader (RunOnStart) or the hour turned (its schedule).
	ticksOnStart atomic.Int64
	ticksHourly  atomic.Int64
	mu           sync.Mutex
	latencies    []time.Duration // insert (created_at) -> start, first attempts

	laterID int64 // the job scheduled ahead
	// laterAt is when the demo inserted it, by this process's clock, the
	// clock its ScheduledAt was set by.
	laterAt time.Time
	start   time.Time // when the first client started

	// The burn-down: every job but the one scheduled ahead finished.
	workedBefore time.Duration // clients' working time before the current one
	burnAt       time.Time     // when the burn-down ended (zero: not yet)
	burnDone     int           // jobs finished by then
	burnWork     time.Duration // clients' working time until then
}

// Demo job kinds.
type (
	noopArgs  struct{ N int }
	flakyArgs struct{ N int } // fails twice, then succeeds
	sleepArgs struct{ N int } // snoozes once, then succeeds
	dailyArgs struct{ Day string }
	laterArgs struct{ Note string } // scheduled a few seconds ahead
	tickArgs  struct{}              // a periodic job
)

func (noopArgs) Kind() string  { return "demo_noop" }
func (flakyArgs) Kind() string { return "demo_flaky" }
func (sleepArgs) Kind() string { return "demo_snooze" }
func (dailyArgs) Kind() string { return "demo_daily_report" }
func (laterArgs) Kind() string { return "demo_scheduled" }
func (tickArgs) Kind() string  { return "demo_periodic" }

// tickEvery is the periodic job's interval: its runs fall on multiples of
// it (on the hour), besides the one a client adds when it becomes leader.
const tickEvery = time.Hour

// onTheHour reports whether a run of the periodic job, given its metadata,
// is one of its schedule (run time on the hour) rather than the one a
// client added when it became leader (run time the start of its
// leadership).
func onTheHour(metadata []byte) (bool, error) {
	var meta map[string]any
	if err := json.Unmarshal(metadata, &meta); err != nil {
		return false, fmt.Errorf("periodic job's metadata: %w", err)
	}
	s, ok := meta[client.PeriodicRunAtMetadataKey].(string)
	if !ok {
		return false, fmt.Errorf("periodic job's metadata lacks %s", client.PeriodicRunAtMetadataKey)
	}
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return false, fmt.Errorf("periodic job's run time: %w", err)
	}
	return at.Equal(at.Truncate(tickEvery)), nil
}

type flakyWorker struct {
	client.WorkerDefaults[flakyArgs]
	d *demo
}

func (w *flakyWorker) Work(ctx context.Context, job *client.Job[flakyArgs]) error {
	defer w.d.track(job.JobRow)()
	if job.Attempt <= 2 {
		w.d.failures.Add(1)
		return fmt.Errorf("demo failure %d of 2", job.Attempt)
	}
	return nil
}

// NextRetry retries the demo's failures quickly (the default policy waits
// attempt^4 seconds).
func (w *flakyWorker) NextRetry(*client.Job[flakyArgs]) time.Time {
	return time.Now().Add(200 * time.Millisecond)
}

// track counts a Work call as it begins; the function it returns counts
// its end.
func (d *demo) track(job *millracetype.JobRow) (end func()) {
	d.worked.Add(1)
	d.working.Add(1)
	if job.Attempt == 1 && job.AttemptedAt != nil {
		d.mu.Lock()
		d.latencies = append(d.latencies, job.AttemptedAt.Sub(job.CreatedAt))
		d.mu.Unlock()
	}
	return func() { d.working.Add(-1) }
}

// run is the demo after its checks.
func run[TTx any](ctx context.Context, drv driver.Driver[TTx], store Store, d *demo) error {
	results, err := migrate.MigrateAll(ctx, drv, &migrate.Config{Schema: d.schema}, migrate.DirectionUp, nil)
	if err != nil {
		return err
	}
	applied := 0
	for _, res := range results {
		applied += len(res.Versions)
	}
	fmt.Fprintf(d.out, "1. migrated %s: River's line main and millrace's own line (%d version(s) applied now)\n", d.where, applied)

	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[noopArgs]) error {
		defer d.track(job.JobRow)()
		time.Sleep(time.Duration(job.Args.N%5) * time.Millisecond) // some work
		return nil
	}))
	client.AddWorker(workers, &flakyWorker{d: d})
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[sleepArgs]) error {
		defer d.track(job.JobRow)()
		if !millracetype.MetadataHasKey(job.Metadata, "snoozes") {
			d.snoozes.Add(1)
			return client.JobSnooze(100 * time.Millisecond)
		}
		return nil
	}))
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[dailyArgs]) error {
		defer d.track(job.JobRow)()
		return client.RecordOutput(ctx, map[string]string{"report": "ok for " + job.Args.Day})
	}))
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[laterArgs]) error {
		defer d.track(job.JobRow)()
		return nil
	}))
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[tickArgs]) error {
		defer d.track(job.JobRow)()
		hourly, err := onTheHour(job.Metadata)
		switch {
		case err != nil:
			return err
		case hourly:
			d.ticksHourly.Add(1)
		default:
			d.ticksOnStart.Add(1)
		}
		return nil
	}))
	// A periodic job: hourly, on the hour, and once whenever a client
	// becomes leader.
	periodic := client.NewPeriodicJob(client.PeriodicInterval(tickEvery),
		func() (client.JobArgs, *client.InsertOpts) { return tickArgs{}, nil },
		&client.PeriodicJobOpts{ID: "demo_tick", RunOnStart: true})
	newClient := func() (*client.Client[TTx], error) {
		return client.New(drv, &client.Config{
			PeriodicJobs: []*client.PeriodicJob{periodic},
			Schema:       d.schema,
			Queues:       map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: d.workers}},
			Workers:      workers,
			Logger:       d.logger,
		})
	}
	c, err := newClient()
	if err != nil {
		return err
	}

	if err := insert(ctx, d, c); err != nil {
		return err
	}
	// Ctrl-C stops gracefully (the work context ends); a second Ctrl-C
	// cancels running jobs.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var current atomic.Pointer[client.Client[TTx]]
	finished := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Go(func() {
		seen := 0
		for {
			select {
			case <-finished:
				return
			case <-sigs:
				// The first signal ended ctx (graceful stop); the next ones
				// cancel running jobs.
				if seen++; seen > 1 {
					if cur := current.Load(); cur != nil {
						fmt.Fprintln(d.out, "second interrupt: cancelling running jobs")
						_ = cur.StopAndCancel(context.Background())
					}
				}
			}
		}
	})
	// Whatever happens, no client outlives the demo.
	defer func() {
		close(finished)
		watcher.Wait()
		if cur := current.Load(); cur != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = cur.StopAndCancel(stopCtx)
		}
	}()
	current.Store(c)
	start := time.Now()
	d.start = start
	if err := c.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "3. started client %s with %d workers; working...\n", c.ID(), d.workers)
	fmt.Fprintf(d.out, "   (jobs/s: over the last second. running: rows in state running, which is more than the jobs in a\n"+
		"   worker (in Work, at most %d): it also counts jobs fetched but not started yet, and jobs whose worker\n"+
		"   returned and whose outcome waits for the completer's next batched write, every few ms)\n", d.workers)

	// Work until half is done (or Ctrl-C), then stop gracefully under load.
	interrupted := d.progress(ctx, store, d.jobs/2, start)
	if !interrupted {
		d.awaitPeriodic(ctx, store)
	}
	inFlight := d.working.Load()
	stopStart := time.Now()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := c.Stop(stopCtx); err != nil {
		return fmt.Errorf("graceful stop: %w", err)
	}
	counts, err := store.StateCounts(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	d.workedBefore += time.Since(start)
	fmt.Fprintf(d.out, "4. graceful stop under load: %d job(s) were in Work; Stop took %s; now running: %d (every started job finished and was recorded, nothing lost)\n",
		inFlight, time.Since(stopStart).Round(time.Millisecond), counts[millracetype.JobStateRunning])
	if counts[millracetype.JobStateRunning] != 0 {
		return fmt.Errorf("demo failed: %d jobs left running after a graceful stop", counts[millracetype.JobStateRunning])
	}

	if !interrupted {
		c2, err := newClient()
		if err != nil {
			return err
		}
		start2 := time.Now()
		if err := c2.Start(ctx); err != nil {
			return err
		}
		current.Store(c2)
		fmt.Fprintf(d.out, "5. started a new client %s to finish the rest (the scheduled job runs when due)\n", c2.ID())
		interrupted = d.progress(ctx, store, -1, start2)
		if err := c2.Stop(stopCtx); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
	}
	elapsed := time.Since(start)
	if interrupted {
		fmt.Fprintln(d.out, "interrupted: stopped gracefully; summary so far")
	}
	return d.summary(ctx, store, elapsed, interrupted)
}

// insert inserts the demo's jobs: most with COPY, a few unique ones.
func insert[TTx any](ctx context.Context, d *demo, c *client.Client[TTx]) error {
	params := make([]client.InsertManyParams, 0, d.jobs)
	var nFlaky, nSnooze int
	for i := range d.jobs {
		var args client.JobArgs
		switch {
		case i%100 == 1:
			args = flakyArgs{N: i}
			nFlaky++
		case i%100 == 2:
			args = sleepArgs{N: i}
			nSnooze++
		default:
			args = noopArgs{N: i}
		}
		params = append(params, client.InsertManyParams{Args: args, InsertOpts: &client.InsertOpts{Priority: 1 + i%4}})
	}
	start := time.Now()
	n, err := c.InsertManyFast(ctx, params)
	if err != nil {
		return fmt.Errorf("insert demo jobs: %w", err)
	}
	took := time.Since(start)
	// A job scheduled 8 s ahead: the leader's scheduler makes it available.
	d.laterAt = time.Now()
	later, err := c.Insert(ctx, laterArgs{Note: "runs in 8 s"}, &client.InsertOpts{ScheduledAt: d.laterAt.Add(8 * time.Second)})
	if err != nil {
		return err
	}
	d.laterID = later.Job.ID
	// A unique job inserted twice: the second insert returns the first.
	// (The same args both times: a day read twice could turn between.)
	unique := &client.InsertOpts{UniqueOpts: client.UniqueOpts{ByArgs: true}}
	daily := dailyArgs{Day: time.Now().Format(time.DateOnly)}
	first, err := c.Insert(ctx, daily, unique)
	if err != nil {
		return err
	}
	second, err := c.Insert(ctx, daily, unique)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "2. inserted %d jobs with %s in %s (%.0f jobs/s): %d no-op, %d that fail twice then succeed, %d that snooze once\n",
		n, d.insertWith, took.Round(time.Millisecond), float64(n)/took.Seconds(), d.jobs-nFlaky-nSnooze, nFlaky, nSnooze)
	fmt.Fprintf(d.out, "   unique job inserted twice: job %d, then duplicate=%v (same job %d)\n",
		first.Job.ID, second.UniqueSkippedAsDuplicate, second.Job.ID)
	fmt.Fprintf(d.out, "   job %d scheduled for %s (state %s): the leader's scheduler makes it available then\n",
		later.Job.ID, later.Job.ScheduledAt.Format(time.TimeOnly), later.Job.State)
	fmt.Fprintf(d.out, "   so %d jobs so far; each client that becomes leader adds one periodic job (demo_periodic, RunOnStart):\n"+
		"   with the two clients below the total reaches %d (%d if the hour turns meanwhile: the job also runs on the hour)\n",
		d.jobs+2, d.jobs+4, d.jobs+5)
	return nil
}

// progress prints progress until `until` jobs are finalized (-1: until
// every job in the table is) or ctx ends (Ctrl-C), which it reports. The
// current client started at clientStart; progress notes when the burn-down
// (every job but the one scheduled ahead finished) ends.
func (d *demo) progress(ctx context.Context, store Store, until int, clientStart time.Time) (interrupted bool) {
	tty := isTerminal(d.out)
	printEvery := time.Second // a plain line per second when not a terminal
	if tty {
		printEvery = 100 * time.Millisecond
	}
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	var lastPrint time.Time
	var rate rateMeter
	for {
		counts, err := store.StateCounts(ctx)
		if err == nil {
			now := time.Now()
			total := 0
			for _, n := range counts {
				total += n
			}
			done := counts[millracetype.JobStateCompleted] + counts[millracetype.JobStateCancelled] + counts[millracetype.JobStateDiscarded]
			perSec := rate.add(now, done)
			d.noteBurnDown(ctx, store, now, done, total, clientStart)
			finished := (until >= 0 && done >= until) || (until < 0 && done == total)
			if finished || now.Sub(lastPrint) >= printEvery {
				lastPrint = now
				line := fmt.Sprintf("   %s %d/%d done  %5.0f jobs/s  available %d  running %d (in Work %d/%d)  scheduled %d  retried %d  snoozed %d",
					bar(done, total, 20), done, total, perSec, counts[millracetype.JobStateAvailable],
					counts[millracetype.JobStateRunning], d.working.Load(), d.workers,
					counts[millracetype.JobStateScheduled]+counts[millracetype.JobStateRetryable], d.failures.Load(), d.snoozes.Load())
				if tty {
					fmt.Fprintf(d.out, "\r%-130s", line)
				} else {
					fmt.Fprintln(d.out, line)
				}
			}
			if finished {
				if tty {
					fmt.Fprintln(d.out)
				}
				return false
			}
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(d.out)
			}
			return true
		case <-ticker.C:
		}
	}
}

// awaitPeriodic waits, at most 10 s, for the first client's periodic job
// (inserted once it becomes leader), so that the total the demo announced
// holds: a client stopped before it won the election, as a loaded machine
// may leave it for the first few hundred milliseconds, adds none.
func (d *demo) awaitPeriodic(ctx context.Context, store Store) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		kinds, err := store.KindCounts(ctx)
		if err == nil && kinds[tickArgs{}.Kind()] > 0 {
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(d.out, "   (the client has not become leader in 10 s, so it adds no periodic job; stopping it anyway)")
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// noteBurnDown records the end of the burn-down: every job finished but
// the one scheduled ahead (which may still wait for its time).
func (d *demo) noteBurnDown(ctx context.Context, store Store, now time.Time, done, total int, clientStart time.Time) {
	if !d.burnAt.IsZero() || done < total-1 {
		return
	}
	if done == total-1 {
		later, err := store.Job(ctx, d.laterID)
		if err != nil || later.FinalizedAt != nil {
			return // the one left is another job
		}
	}
	d.burnAt, d.burnDone, d.burnWork = now, done, d.workedBefore+now.Sub(clientStart)
}

// rateMeter is a current rate: finished jobs per second over about the
// last second, so it drops to 0 as soon as work stops (a running average
// since the start would decay slowly instead).
type rateMeter struct {
	samples []rateSample
}

type rateSample struct {
	at   time.Time
	done int
}

// rateWindow is how far back the rate looks.
const rateWindow = time.Second

// add records done at time at and returns the rate over the window.
func (r *rateMeter) add(at time.Time, done int) float64 {
	r.samples = append(r.samples, rateSample{at, done})
	// Keep one sample at or before the window's start, as its base.
	drop := 0
	for drop+1 < len(r.samples) && !r.samples[drop+1].at.After(at.Add(-rateWindow)) {
		drop++
	}
	r.samples = r.samples[drop:]
	base := r.samples[0]
	span := at.Sub(base.at).Seconds()
	if span <= 0 {
		return 0
	}
	return float64(done-base.done) / span
}

func (d *demo) summary(ctx context.Context, store Store, elapsed time.Duration, interrupted bool) error {
	ctx = context.WithoutCancel(ctx)
	counts, err := store.StateCounts(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(d.out, "summary:")
	fmt.Fprintln(tw, "state\tjobs\t")
	sum := 0
	for _, s := range millracetype.JobStates() {
		fmt.Fprintf(tw, "%s\t%d\t\n", s, counts[s])
		sum += counts[s]
	}
	fmt.Fprintf(tw, "total\t%d\t\n", sum)
	if err := tw.Flush(); err != nil {
		return err
	}
	kinds, err := store.KindCounts(ctx)
	if err != nil {
		return err
	}
	inserted := kinds[noopArgs{}.Kind()] + kinds[flakyArgs{}.Kind()] + kinds[sleepArgs{}.Kind()]
	ticks := kinds[tickArgs{}.Kind()]
	why := "one per client that became leader, one each hour on the hour"
	if onStart, hourly := d.ticksOnStart.Load(), d.ticksHourly.Load(); int(onStart+hourly) == ticks {
		// Every run was worked: say which ran why.
		why = fmt.Sprintf("%d when a client became leader, %d on the hour", onStart, hourly)
	}
	fmt.Fprintf(d.out, "total %d = %d inserted + %d scheduled ahead + %d unique + %d periodic (%s)\n",
		sum, inserted, kinds[laterArgs{}.Kind()], kinds[dailyArgs{}.Kind()], ticks, why)
	calls := d.worked.Load()
	switch {
	case !d.burnAt.IsZero():
		fmt.Fprintf(d.out, "burn-down: %d jobs finished in %s of working time (%.0f jobs/s; %d worker calls with retries and snoozes)\n",
			d.burnDone, d.burnWork.Round(time.Millisecond), float64(d.burnDone)/d.burnWork.Seconds(), calls)
	default:
		work := d.workedBefore
		fmt.Fprintf(d.out, "worked: %d jobs finished before the stop, in %s of working time (%.0f jobs/s; %d worker calls)\n",
			counts[millracetype.JobStateCompleted], work.Round(time.Millisecond), float64(counts[millracetype.JobStateCompleted])/max(work.Seconds(), 0.001), calls)
	}
	if !interrupted {
		later, err := store.Job(ctx, d.laterID)
		if err != nil {
			return fmt.Errorf("read the scheduled job: %w", err)
		}
		// Both from the demo's insert, by the clock ScheduledAt was set
		// by: the job is due exactly 8 s after it, and it runs once the
		// fetch's now() (its attempted_at) has reached ScheduledAt. From
		// created_at, the server's start of the insert, it would look a
		// millisecond or so earlier than asked.
		due := later.ScheduledAt.Sub(d.laterAt)
		ran := time.Since(d.laterAt)
		if later.AttemptedAt != nil {
			ran = later.AttemptedAt.Sub(d.laterAt)
		}
		wait := "it ran during the burn-down"
		if w := d.start.Add(elapsed).Sub(d.burnAt); !d.burnAt.IsZero() && w > 0 {
			wait = fmt.Sprintf("after the burn-down the demo only waited for it: %s", w.Round(time.Millisecond))
		}
		fmt.Fprintf(d.out, "scheduled job %d: due %s after its insert, ran %s after it (%s); the demo took %s in all\n",
			d.laterID, due.Round(time.Millisecond), ran.Round(time.Millisecond), wait, elapsed.Round(time.Millisecond))
	}
	d.mu.Lock()
	lat := slices.Clone(d.latencies)
	d.mu.Unlock()
	if len(lat) > 0 {
		slices.Sort(lat)
		fmt.Fprintf(d.out, "insert->start latency of first attempts: p50 %s, p99 %s (jobs were inserted before the client started)\n",
			lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond))
	}
	// Inserted: the jobs, the unique one, the scheduled one, and one
	// periodic run per leadership.
	if sum < d.jobs+2 {
		return fmt.Errorf("demo failed: %d jobs in the table, at least %d inserted", sum, d.jobs+2)
	}
	if interrupted {
		return nil
	}
	waiting, err := unfinished(counts, ticks, int(d.ticksOnStart.Load()+d.ticksHourly.Load()))
	if err != nil {
		return err
	}
	if waiting > 0 {
		fmt.Fprintf(d.out, "%d periodic run(s) came due as the last client stopped: available for the next client, not lost\n", waiting)
	}
	return nil
}

// unfinished checks that every job of the demo completed, given the jobs
// by state at the end, the periodic job's runs in the table (ticks) and
// those its worker ran (worked). The only jobs that may be left are runs
// of the periodic job that no worker ran, waiting as available or
// scheduled: the periodic enqueuer can add one (the hour turning, or the
// last client becoming leader late) between the demo's last check and
// the client's stop, and it is for the next client to work. It returns
// how many such runs wait, or an error for any other job not completed.
func unfinished(counts map[millracetype.JobState]int, ticks, worked int) (int, error) {
	sum := 0
	for _, n := range counts {
		sum += n
	}
	notDone := sum - counts[millracetype.JobStateCompleted]
	if notDone == 0 {
		return 0, nil
	}
	waiting := counts[millracetype.JobStateAvailable] + counts[millracetype.JobStateScheduled]
	if unworked := ticks - worked; notDone <= unworked && waiting == notDone {
		return notDone, nil
	}
	return 0, fmt.Errorf("demo failed: %d jobs did not complete", notDone)
}

func bar(done, total, width int) string {
	filled := 0
	if total > 0 {
		filled = min(width, done*width/total)
	}
	b := make([]byte, width)
	for i := range b {
		if i < filled {
			b[i] = '#'
		} else {
			b[i] = '.'
		}
	}
	return "[" + string(b) + "]"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
