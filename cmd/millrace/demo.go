package main

import (
	"context"
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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

// newDemoCmd is the first thing a new user runs (make demo): migrate a
// dedicated schema, insert jobs of a few kinds, work them with progress
// output, stop gracefully under load half way, start again, and report.
func newDemoCmd(g *globalFlags) *cobra.Command {
	var jobs, workers int
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Insert and work jobs in a demo schema, with a graceful stop under load",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jobs < 10 || jobs > 10_000_000 {
				return usagef("--jobs %d out of range 10..10000000", jobs)
			}
			if workers < 1 || workers > client.MaxQueueWorkers {
				return usagef("--workers %d out of range 1..%d", workers, client.MaxQueueWorkers)
			}
			schema := g.schema
			if schema == "" {
				schema = "millrace_demo"
			}
			if err := migrate.ValidateSchema(schema); err != nil {
				return &usageError{err}
			}
			return runDemo(cmd, g, &demo{schema: schema, jobs: jobs, workers: workers, keep: keep})
		},
	}
	cmd.Flags().IntVar(&jobs, "jobs", 20000, "how many jobs to insert")
	cmd.Flags().IntVar(&workers, "workers", 200, "workers of the demo queue")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the demo schema afterwards")
	return cmd
}

type demo struct {
	schema  string
	jobs    int
	workers int
	keep    bool
	out     io.Writer

	worked    atomic.Int64 // Work calls
	working   atomic.Int64 // Work calls in progress
	failures  atomic.Int64 // errors returned on purpose
	snoozes   atomic.Int64
	mu        sync.Mutex
	latencies []time.Duration // insert (created_at) -> start, first attempts

	laterID int64     // the job scheduled ahead
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

func runDemo(cmd *cobra.Command, g *globalFlags, d *demo) error {
	ctx := cmd.Context()
	d.out = cmd.OutOrStdout()
	pool, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer pool.Close()
	ident := pgx.Identifier{d.schema}.Sanitize()
	// The demo drops its schema at the end: it must not be one holding
	// anything else, such as a demo kept with --keep or an app's tables.
	var relations int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1`, d.schema).Scan(&relations); err != nil {
		return fmt.Errorf("look at schema %s: %w", d.schema, err)
	}
	if relations > 0 {
		return fmt.Errorf("schema %s already holds tables (a demo kept with --keep?); the demo needs an empty schema of its own: "+
			"drop it (DROP SCHEMA %s CASCADE) or pass another --schema", d.schema, d.schema)
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
		return fmt.Errorf("create schema %s: %w", d.schema, err)
	}
	if d.keep {
		// Registered first, so printed last, after the client stopped.
		defer fmt.Fprintf(d.out, "kept schema %s: look at its jobs with `millrace jobs list --database-url \"$DATABASE_URL\" --schema %s`; DROP SCHEMA %s CASCADE removes it\n",
			d.schema, d.schema, d.schema)
	} else {
		defer func() {
			if _, err := pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+ident+" CASCADE"); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "millrace: drop demo schema %s: %v\n", d.schema, err)
				return
			}
			fmt.Fprintf(d.out, "dropped schema %s (use --keep to keep it)\n", d.schema)
		}()
	}
	drv := pgxv5.New(pool)
	results, err := migrate.MigrateAll[pgx.Tx](ctx, drv, &migrate.Config{Schema: d.schema}, migrate.DirectionUp, nil)
	if err != nil {
		return err
	}
	applied := 0
	for _, res := range results {
		applied += len(res.Versions)
	}
	fmt.Fprintf(d.out, "1. migrated schema %s: River's line main and millrace's own line (%d version(s) applied now)\n", d.schema, applied)

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
		return nil
	}))
	// A periodic job: hourly, and once whenever a client becomes leader.
	periodic := client.NewPeriodicJob(client.PeriodicInterval(time.Hour),
		func() (client.JobArgs, *client.InsertOpts) { return tickArgs{}, nil },
		&client.PeriodicJobOpts{ID: "demo_tick", RunOnStart: true})
	newClient := func() (*client.Client[pgx.Tx], error) {
		return client.New(drv, &client.Config{
			PeriodicJobs: []*client.PeriodicJob{periodic},
			Schema:       d.schema,
			Queues:       map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: d.workers}},
			Workers:      workers,
			Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
	}
	c, err := newClient()
	if err != nil {
		return err
	}

	if err := d.insert(ctx, c); err != nil {
		return err
	}
	// Ctrl-C stops gracefully (the work context ends); a second Ctrl-C
	// cancels running jobs.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var current atomic.Pointer[client.Client[pgx.Tx]]
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
	interrupted := d.progress(ctx, pool, d.jobs/2, start)
	inFlight := d.working.Load()
	stopStart := time.Now()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := c.Stop(stopCtx); err != nil {
		return fmt.Errorf("graceful stop: %w", err)
	}
	counts, err := stateCounts(context.WithoutCancel(ctx), pool, d.schema)
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
		interrupted = d.progress(ctx, pool, -1, start2)
		if err := c2.Stop(stopCtx); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
	}
	elapsed := time.Since(start)
	if interrupted {
		fmt.Fprintln(d.out, "interrupted: stopped gracefully; summary so far")
	}
	return d.summary(ctx, pool, elapsed, interrupted)
}

// insert inserts the demo's jobs: most with COPY, a few unique ones.
func (d *demo) insert(ctx context.Context, c *client.Client[pgx.Tx]) error {
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
	later, err := c.Insert(ctx, laterArgs{Note: "runs in 8 s"}, &client.InsertOpts{ScheduledAt: time.Now().Add(8 * time.Second)})
	if err != nil {
		return err
	}
	d.laterID = later.Job.ID
	// A unique job inserted twice: the second insert returns the first.
	unique := &client.InsertOpts{UniqueOpts: client.UniqueOpts{ByArgs: true}}
	first, err := c.Insert(ctx, dailyArgs{Day: time.Now().Format(time.DateOnly)}, unique)
	if err != nil {
		return err
	}
	second, err := c.Insert(ctx, dailyArgs{Day: time.Now().Format(time.DateOnly)}, unique)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "2. inserted %d jobs with COPY in %s (%.0f jobs/s): %d no-op, %d that fail twice then succeed, %d that snooze once\n",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), d.jobs-nFlaky-nSnooze, nFlaky, nSnooze)
	fmt.Fprintf(d.out, "   unique job inserted twice: job %d, then duplicate=%v (same job %d)\n",
		first.Job.ID, second.UniqueSkippedAsDuplicate, second.Job.ID)
	fmt.Fprintf(d.out, "   job %d scheduled for %s (state %s): the leader's scheduler makes it available then\n",
		later.Job.ID, later.Job.ScheduledAt.Format(time.TimeOnly), later.Job.State)
	fmt.Fprintf(d.out, "   so %d jobs so far; each client that becomes leader adds one periodic job (demo_periodic, RunOnStart):\n"+
		"   with the two clients below the total reaches %d\n", d.jobs+2, d.jobs+4)
	return nil
}

// progress prints progress until `until` jobs are finalized (-1: until
// every job in the table is) or ctx ends (Ctrl-C), which it reports. The
// current client started at clientStart; progress notes when the burn-down
// (every job but the one scheduled ahead finished) ends.
func (d *demo) progress(ctx context.Context, pool *pgxpool.Pool, until int, clientStart time.Time) (interrupted bool) {
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
		counts, err := stateCounts(ctx, pool, d.schema)
		if err == nil {
			now := time.Now()
			total := 0
			for _, n := range counts {
				total += n
			}
			done := counts[millracetype.JobStateCompleted] + counts[millracetype.JobStateCancelled] + counts[millracetype.JobStateDiscarded]
			perSec := rate.add(now, done)
			d.noteBurnDown(ctx, pool, now, done, total, clientStart)
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

// noteBurnDown records the end of the burn-down: every job finished but
// the one scheduled ahead (which may still wait for its time).
func (d *demo) noteBurnDown(ctx context.Context, pool *pgxpool.Pool, now time.Time, done, total int, clientStart time.Time) {
	if !d.burnAt.IsZero() || done < total-1 {
		return
	}
	if done == total-1 {
		var laterDone bool
		err := pool.QueryRow(ctx, "SELECT finalized_at IS NOT NULL FROM "+pgx.Identifier{d.schema, "river_job"}.Sanitize()+
			" WHERE id = $1", d.laterID).Scan(&laterDone)
		if err != nil || laterDone {
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

func (d *demo) summary(ctx context.Context, pool *pgxpool.Pool, elapsed time.Duration, interrupted bool) error {
	ctx = context.WithoutCancel(ctx)
	counts, err := stateCounts(ctx, pool, d.schema)
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
	kinds, err := kindCounts(ctx, pool, d.schema)
	if err != nil {
		return err
	}
	inserted := kinds[noopArgs{}.Kind()] + kinds[flakyArgs{}.Kind()] + kinds[sleepArgs{}.Kind()]
	fmt.Fprintf(d.out, "total %d = %d inserted + %d scheduled ahead + %d unique + %d periodic (one per client that became leader)\n",
		sum, inserted, kinds[laterArgs{}.Kind()], kinds[dailyArgs{}.Kind()], kinds[tickArgs{}.Kind()])
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
		var due, ran time.Duration
		err := pool.QueryRow(ctx, "SELECT scheduled_at - created_at, coalesce(attempted_at, now()) - created_at FROM "+
			pgx.Identifier{d.schema, "river_job"}.Sanitize()+" WHERE id = $1", d.laterID).Scan(&due, &ran)
		if err != nil {
			return fmt.Errorf("read the scheduled job: %w", err)
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
	if lost := sum - counts[millracetype.JobStateCompleted]; lost != 0 && !interrupted {
		return fmt.Errorf("demo failed: %d jobs did not complete", lost)
	}
	return nil
}

func kindCounts(ctx context.Context, pool *pgxpool.Pool, schema string) (map[string]int, error) {
	rows, err := pool.Query(ctx, "SELECT kind, count(*) FROM "+pgx.Identifier{schema, "river_job"}.Sanitize()+" GROUP BY 1")
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	var kind string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&kind, &n}, func() error {
		counts[kind] = n
		return nil
	})
	return counts, err
}

func stateCounts(ctx context.Context, pool *pgxpool.Pool, schema string) (map[millracetype.JobState]int, error) {
	rows, err := pool.Query(ctx, "SELECT state::text, count(*) FROM "+pgx.Identifier{schema, "river_job"}.Sanitize()+" GROUP BY 1")
	if err != nil {
		return nil, err
	}
	counts := map[millracetype.JobState]int{}
	var state string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		counts[millracetype.JobState(state)] = n
		return nil
	})
	return counts, err
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
