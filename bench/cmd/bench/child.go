package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Every measurement runs in a child process of its own (the bench binary
// started again with childEnv set), so that one system's heap, goroutines
// and connections never weigh on the other's numbers, and peak RSS is that
// of one system alone.
const childEnv = "BENCH_CHILD_SPEC"

// runSpec tells a child what to measure.
type runSpec struct {
	Scenario        string        `json:"scenario"`
	System          string        `json:"system"` // millrace, river or sql
	Variant         string        `json:"variant"`
	Schema          string        `json:"schema"`
	URL             string        `json:"url"`
	Jobs            int           `json:"jobs"`
	Duration        time.Duration `json:"duration"`
	Rate            int           `json:"rate"`
	WorkFor         time.Duration `json:"work_for"`
	Loops           int           `json:"loops"`
	Batch           int           `json:"batch"`
	PoolConns       int32         `json:"pool_conns"`
	MillraceWorkers int           `json:"millrace_workers"`
	// Inserter, for latency and mixed: "same" inserts with the working
	// client, "separate" with a second client of the same system (not
	// started, on a pool of its own), as an application whose web
	// processes insert and whose worker processes work would.
	Inserter string `json:"inserter"`
	Label    string `json:"label"`
	// Point names a point of the scale scenario ("" elsewhere).
	Point string `json:"point"`
	// Finalized is the number of completed rows the parent wrote before
	// the Jobs available ones (the scale scenario's history point); they
	// hold the lowest IDs.
	Finalized int `json:"finalized"`
	// BulkJobs, for mixed: the parent wrote this many no-op jobs, IDs 1 to
	// BulkJobs, in bulkQueue, which it created paused; the child resumes
	// it when the latency stream starts, so that the burndown runs next to
	// the stream.
	BulkJobs int `json:"bulk_jobs"`
	// ProfileDir, when set, makes the child write a CPU and an allocation
	// profile of its run there, named ProfileName (see profiler).
	ProfileDir  string `json:"profile_dir"`
	ProfileName string `json:"profile_name"`
}

// runResult is what a child measured.
type runResult struct {
	JobsPerS     float64 `json:"jobs_per_s"`
	Seconds      float64 `json:"seconds"`
	Count        int     `json:"count"`
	P50          float64 `json:"p50_ms"`
	P90          float64 `json:"p90_ms"`
	P99          float64 `json:"p99_ms"`
	Max          float64 `json:"max_ms"`
	AllocsPerJob float64 `json:"allocs_per_job"`
	BytesPerJob  float64 `json:"bytes_per_job"`
	PeakRSSMB    float64 `json:"peak_rss_mb"`
	// Cost is the database's cost per job, for burndown-like runs.
	Cost *dbCost `json:"cost,omitempty"`
	// For mixed: the latency of the jobs inserted while the burndown of
	// the other queue was still going, and that burndown's rate.
	LoadCount    int     `json:"load_count"`
	LoadP50      float64 `json:"load_p50_ms"`
	LoadP90      float64 `json:"load_p90_ms"`
	LoadP99      float64 `json:"load_p99_ms"`
	LoadMax      float64 `json:"load_max_ms"`
	BulkJobsPerS float64 `json:"bulk_jobs_per_s"`
	BulkSeconds  float64 `json:"bulk_seconds"`
	// For soak: the memory samples and their summary.
	Soak        []soakSample `json:"soak,omitempty"`
	SoakSummary *soakSummary `json:"soak_summary,omitempty"`
}

// childDB is a child's database access: the system's pool, traced so that
// its round trips are counted, and a small monitoring pool for the bench's
// own queries (polling for the end, checking the outcome), kept apart so
// they never count as the system's. The two are told apart on the server
// by their application_name.
type childDB struct {
	url            string
	sys, monitor   *pgxpool.Pool
	sysCounter     *queryCounter
	monitorCounter *queryCounter
	appName        string
}

func newTracedPool(ctx context.Context, url string, maxConns int32, appName string, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func (db *childDB) costWindow() *costWindow {
	return &costWindow{url: db.url, monitor: db.monitor, monitorCounter: db.monitorCounter, system: db.sysCounter,
		appNames: []string{db.appName, db.appName + "_monitor"}}
}

// childMain runs one measurement and prints its result as JSON on stdout;
// progress goes to stderr.
func childMain(specJSON string) error {
	var spec runSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("decode child spec: %w", err)
	}
	// 20 minutes, and more for the biggest burndowns (a million jobs may
	// take many minutes on a small machine).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute+time.Duration(spec.Jobs)*2*time.Millisecond)
	defer cancel()
	res, err := childRun(ctx, &spec)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// childRun makes the run's pools, starts the profile if asked to, and runs
// the scenario.
func childRun(ctx context.Context, spec *runSpec) (*runResult, error) {
	if spec.Variant == variantSQLite {
		if spec.Scenario != "burndown" {
			return nil, fmt.Errorf("the SQLite variant runs the burndown only, not %q", spec.Scenario)
		}
		return childBurndownSQLite(ctx, spec)
	}
	db, err := newChildDB(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer db.close()
	prof, err := startProfile(spec.ProfileDir, spec.ProfileName)
	if err != nil {
		return nil, err
	}
	defer prof.stop() //nolint:errcheck // only after a failure; the success path checks it
	var res *runResult
	switch spec.Scenario {
	case "burndown", "scale", "ephemeral", "limits":
		res, err = childBurndown(ctx, spec, db, prof)
	case "insert_many_fast", "insert_single":
		res, err = childInsert(ctx, spec, db.sys)
	case "latency", "latency_same_client", "mixed":
		res, err = childLatency(ctx, spec, db.sys)
	case "sql_ceiling", "sql_ceiling_delete":
		res, err = childCeiling(ctx, spec, db, prof)
	case "soak":
		res, err = childSoak(ctx, spec, db.sys)
	default:
		err = fmt.Errorf("unknown scenario %q", spec.Scenario)
	}
	if err != nil {
		return nil, err
	}
	if err := prof.stop(); err != nil {
		return nil, err
	}
	return res, nil
}

// newChildDB opens a run's two pools. The schema's name is new for every
// run, so it names the run's connections on the server.
func newChildDB(ctx context.Context, spec *runSpec) (*childDB, error) {
	db := &childDB{url: spec.URL, sysCounter: &queryCounter{}, monitorCounter: &queryCounter{}, appName: spec.Schema}
	var err error
	if db.sys, err = newTracedPool(ctx, spec.URL, spec.PoolConns, db.appName, db.sysCounter); err != nil {
		return nil, err
	}
	if db.monitor, err = newTracedPool(ctx, spec.URL, 2, db.appName+"_monitor", db.monitorCounter); err != nil {
		db.sys.Close()
		return nil, err
	}
	return db, nil
}

// close closes both pools (closing one twice is harmless).
func (db *childDB) close() {
	db.sys.Close()
	db.monitor.Close()
}

// logger keeps the systems' own logging to warnings and errors.
func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func progressf(spec *runSpec, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "      %s: %s\n", spec.Label, fmt.Sprintf(format, args...))
}

func stopSystem(sys interface{ Stop(context.Context) error }) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return sys.Stop(ctx)
}

// childBurndown works the spec.Jobs jobs the parent inserted and times it
// from Start to the last job recorded completed in the database (or, for
// millrace's ephemeral variant, deleted). It also takes the memory figures
// (allocations between Start and the end, the process's peak RSS) and the
// database's cost per job. The profile, if any, is stopped at the end of
// the timed part.
func childBurndown(ctx context.Context, spec *runSpec, db *childDB, prof *profiler) (*runResult, error) {
	n := int64(spec.Jobs)
	ephemeral := spec.System == "millrace" && spec.Variant == variantEphemeral
	// With rows deleted on completion the table cannot show a job run
	// twice, so the worker counts runs per job: the jobs hold IDs
	// Finalized+1 to Finalized+Jobs.
	var runs []atomic.Int32
	if ephemeral {
		runs = make([]atomic.Int32, n)
	}
	var worked, strays atomic.Int64
	done := make(chan struct{})
	sys, err := newSystem(spec.System, spec.Variant, db.sys, spec.Schema, []string{queue}, spec.MillraceWorkers, func(ctx context.Context, id int64) error {
		if runs != nil {
			if i := id - int64(spec.Finalized) - 1; i >= 0 && i < n {
				runs[i].Add(1)
			} else {
				strays.Add(1)
			}
		}
		if worked.Add(1) == n {
			close(done)
		}
		return nil
	}, logger())
	if err != nil {
		return nil, err
	}
	window := db.costWindow()
	if err := window.begin(ctx); err != nil {
		return nil, err
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	if err := sys.Start(ctx); err != nil {
		return nil, err
	}
	defer stopSystem(sys) //nolint:errcheck // best effort once measured
	if err := waitWorked(ctx, spec, done, &worked, n, start); err != nil {
		return nil, fmt.Errorf("burndown: %w", err)
	}
	if err := waitAllCompleted(ctx, db.monitor, spec.Schema); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	rss := peakRSSMB()
	if err := prof.stop(); err != nil {
		return nil, err
	}
	if err := stopSystem(sys); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	db.sys.Close()
	if ephemeral {
		err = checkDeleted(ctx, db.monitor, spec.Schema, spec.Finalized, runs, strays.Load())
	} else {
		err = checkCompleted(ctx, db.monitor, spec.Schema, spec.Jobs, spec.Finalized)
	}
	if err != nil {
		return nil, err
	}
	cost, err := window.end(ctx, spec.Jobs)
	if err != nil {
		return nil, err
	}
	return &runResult{
		JobsPerS:     float64(n) / elapsed.Seconds(),
		Seconds:      elapsed.Seconds(),
		Count:        int(n),
		AllocsPerJob: float64(after.Mallocs-before.Mallocs) / float64(n),
		BytesPerJob:  float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
		PeakRSSMB:    rss,
		Cost:         cost,
	}, nil
}

// waitWorked waits until done is closed (every job worked), printing
// progress every 2 s; it fails when ctx ends first.
func waitWorked(ctx context.Context, spec *runSpec, done <-chan struct{}, worked *atomic.Int64, n int64, start time.Time) error {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-tick.C:
			progressf(spec, "%d/%d worked (%.0f s)", worked.Load(), n, time.Since(start).Seconds())
		case <-ctx.Done():
			return fmt.Errorf("%d of %d jobs worked: %w", worked.Load(), n, ctx.Err())
		}
	}
}

// waitAllCompleted polls until no job of the schema is available or
// running any more, that is every outcome is in the table. It is called
// once the last job has been worked, so it polls only over the tail.
func waitAllCompleted(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	q := "SELECT EXISTS (SELECT 1 FROM " + pgx.Identifier{schema, "river_job"}.Sanitize() +
		" WHERE state IN ('available', 'running'))"
	for {
		var busy bool
		if err := pool.QueryRow(ctx, q).Scan(&busy); err != nil {
			return fmt.Errorf("poll for completion: %w", err)
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// checkCompleted makes sure every job was recorded completed exactly once
// (a measurement of jobs that failed or ran twice would be worthless).
// finalized rows were written completed with one attempt before the run.
func checkCompleted(ctx context.Context, pool *pgxpool.Pool, schema string, want, finalized int) error {
	var total, completed, attempts int
	err := pool.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE state = 'completed'), coalesce(sum(attempt), 0) FROM "+
		pgx.Identifier{schema, "river_job"}.Sanitize()).Scan(&total, &completed, &attempts)
	if err != nil {
		return fmt.Errorf("check outcome: %w", err)
	}
	if w := want + finalized; total != w || completed != w || attempts != w {
		return fmt.Errorf("check outcome: %d jobs, %d completed, %d attempts; want %d of each", total, completed, attempts, w)
	}
	return nil
}

// checkDeleted makes sure a run that deletes jobs on completion ran each
// job exactly once (runs holds the count per job) and left no row of them
// behind (only the finalized rows written before the run remain).
func checkDeleted(ctx context.Context, pool *pgxpool.Pool, schema string, finalized int, runs []atomic.Int32, strays int64) error {
	if strays > 0 {
		return fmt.Errorf("check outcome: %d jobs with unexpected IDs were worked", strays)
	}
	var never, twice int
	for i := range runs {
		switch r := runs[i].Load(); {
		case r == 0:
			never++
		case r > 1:
			twice++
		}
	}
	if never > 0 || twice > 0 {
		return fmt.Errorf("check outcome: %d jobs never worked, %d worked more than once", never, twice)
	}
	var left int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "river_job"}.Sanitize()).Scan(&left); err != nil {
		return fmt.Errorf("check outcome: %w", err)
	}
	if left != finalized {
		return fmt.Errorf("check outcome: %d rows left in the table, want %d (deleted on completion)", left, finalized)
	}
	return nil
}

// peakRSSMB reads the process's high-water resident set size (Linux).
func peakRSSMB() float64 { return procStatusMB("VmHWM") }

// currentRSSMB reads the process's resident set size (Linux).
func currentRSSMB() float64 { return procStatusMB("VmRSS") }

// procStatusMB reads a "NAME:   N kB" line of /proc/self/status in MB; 0
// when /proc is not there or the line is missing.
func procStatusMB(name string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				return 0
			}
			return float64(kb) / 1024
		}
	}
	return 0
}

// childInsert times inserts on a client that is not started (inserting
// needs no running client): insert_many_fast COPYs spec.Jobs jobs in
// batches of spec.Batch, insert_single makes spec.Jobs sequential
// single-job inserts.
func childInsert(ctx context.Context, spec *runSpec, pool *pgxpool.Pool) (*runResult, error) {
	sys, err := newSystem(spec.System, spec.Variant, pool, spec.Schema, []string{queue}, spec.MillraceWorkers,
		func(context.Context, int64) error { return nil }, logger())
	if err != nil {
		return nil, err
	}
	args := make([]noopArgs, spec.Jobs)
	for i := range args {
		args[i] = noopArgs{N: i}
	}
	lastReport := time.Now()
	report := func(done int) {
		if time.Since(lastReport) >= 2*time.Second {
			progressf(spec, "%d/%d inserted", done, spec.Jobs)
			lastReport = time.Now()
		}
	}
	start := time.Now()
	if spec.Scenario == "insert_many_fast" {
		for i := 0; i < len(args); i += spec.Batch {
			chunk := args[i:min(i+spec.Batch, len(args))]
			n, err := sys.InsertManyFast(ctx, chunk)
			if err != nil {
				return nil, err
			}
			if n != len(chunk) {
				return nil, fmt.Errorf("InsertManyFast inserted %d of %d", n, len(chunk))
			}
			report(i + len(chunk))
		}
	} else {
		for i, a := range args {
			if _, err := sys.Insert(ctx, a); err != nil {
				return nil, err
			}
			report(i + 1)
		}
	}
	elapsed := time.Since(start)
	var count int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{spec.Schema, "river_job"}.Sanitize()).Scan(&count); err != nil {
		return nil, err
	}
	if count != spec.Jobs {
		return nil, fmt.Errorf("%d jobs in the table, want %d", count, spec.Jobs)
	}
	return &runResult{JobsPerS: float64(spec.Jobs) / elapsed.Seconds(), Seconds: elapsed.Seconds(), Count: count}, nil
}

// childLatency inserts jobs at a steady spec.Rate per second for
// spec.Duration into a started client that works them (each for
// spec.WorkFor), and measures, per job, the time from the moment its
// insert returned to the inserting goroutine (the commit as the caller sees
// it) to the moment Work began. latency uses one single-job insert per
// job; mixed inserts the jobs due at each moment with one InsertMany when
// more than one is due.
//
// With spec.BulkJobs (mixed), the client also has bulkQueue, holding that
// many no-op jobs and paused; it is resumed the moment the stream starts,
// so the burndown of bulkQueue runs next to the stream, and the jobs of the
// stream inserted before that burndown ended are also reported on their
// own (the Load figures).
func childLatency(ctx context.Context, spec *runSpec, pool *pgxpool.Pool) (*runResult, error) {
	total := int(int64(spec.Rate) * int64(spec.Duration) / int64(time.Second))
	bulk := int64(spec.BulkJobs)
	// A fresh schema numbers jobs from 1: the bulk jobs hold IDs 1 to bulk,
	// and a stream job's ID less bulk indexes these.
	startedAt := make([]atomic.Int64, total+1)
	insertedAt := make([]int64, total+1)
	var worked, bulkWorked, untracked atomic.Int64
	var bulkDoneAt atomic.Int64
	allDone, bulkDone := make(chan struct{}), make(chan struct{})
	if bulk == 0 {
		close(bulkDone)
	}
	work := func(ctx context.Context, id int64) error {
		now := time.Now().UnixNano()
		if id >= 1 && id <= bulk {
			if bulkWorked.Add(1) == bulk {
				bulkDoneAt.Store(now)
				close(bulkDone)
			}
			return nil
		}
		if i := id - bulk; i > 0 && i <= int64(total) {
			startedAt[i].CompareAndSwap(0, now)
		} else {
			untracked.Add(1)
		}
		if spec.WorkFor > 0 {
			t := time.NewTimer(spec.WorkFor)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		if worked.Add(1) == int64(total) {
			close(allDone)
		}
		return nil
	}
	queues := []string{queue}
	if bulk > 0 {
		queues = append(queues, bulkQueue)
	}
	sys, err := newSystem(spec.System, spec.Variant, pool, spec.Schema, queues, spec.MillraceWorkers, work, logger())
	if err != nil {
		return nil, err
	}
	inserter := sys
	if spec.Inserter == "separate" {
		var closePool func()
		if inserter, closePool, err = newSeparateInserter(ctx, spec, pool); err != nil {
			return nil, err
		}
		defer closePool()
	}
	if err := sys.Start(ctx); err != nil {
		return nil, err
	}
	defer stopSystem(sys)   //nolint:errcheck // best effort once measured
	time.Sleep(time.Second) // an idle client, settled (leader elected, queues registered)

	var bulkStart time.Time
	if bulk > 0 {
		bulkStart = time.Now()
		if err := sys.QueueResume(ctx, bulkQueue); err != nil {
			return nil, fmt.Errorf("resume %s: %w", bulkQueue, err)
		}
	}
	interval := time.Second / time.Duration(spec.Rate)
	start := time.Now()
	lastReport := start
	sent := 0
	record := func(ids []int64) error {
		now := time.Now().UnixNano()
		for _, id := range ids {
			i := id - bulk
			if i <= 0 || i > int64(total) {
				return fmt.Errorf("job ID %d outside %d..%d: the schema was not fresh", id, bulk+1, bulk+int64(total))
			}
			insertedAt[i] = now
		}
		return nil
	}
	for sent < total {
		due := min(int(time.Since(start)/interval)+1, total)
		if due <= sent {
			time.Sleep(time.Until(start.Add(time.Duration(sent) * interval)))
			continue
		}
		if spec.Scenario == "mixed" && due-sent > 1 {
			batch := make([]noopArgs, min(due-sent, 500))
			for i := range batch {
				batch[i] = noopArgs{N: sent + i}
			}
			ids, err := inserter.InsertMany(ctx, batch)
			if err != nil {
				return nil, err
			}
			if err := record(ids); err != nil {
				return nil, err
			}
			sent += len(batch)
		} else {
			id, err := inserter.Insert(ctx, noopArgs{N: sent})
			if err != nil {
				return nil, err
			}
			if err := record([]int64{id}); err != nil {
				return nil, err
			}
			sent++
		}
		if time.Since(lastReport) >= 5*time.Second {
			lastReport = time.Now()
			progressf(spec, "%d/%d inserted, %d worked, %d/%d of the other queue (%.0f s)",
				sent, total, worked.Load(), bulkWorked.Load(), bulk, time.Since(start).Seconds())
		}
	}
	insertSecs := time.Since(start).Seconds()
	select {
	case <-allDone:
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("%d of %d jobs worked 60 s after the last insert", worked.Load(), total)
	}
	select {
	case <-bulkDone:
	case <-ctx.Done():
		return nil, fmt.Errorf("%d of %d jobs of %s worked: %w", bulkWorked.Load(), bulk, bulkQueue, ctx.Err())
	}
	if err := waitAllCompleted(ctx, pool, spec.Schema); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	if n := untracked.Load(); n > 0 {
		return nil, fmt.Errorf("%d jobs with IDs outside %d..%d were worked", n, bulk+1, bulk+int64(total))
	}
	if err := stopSystem(sys); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	if err := checkCompleted(ctx, pool, spec.Schema, total+int(bulk), 0); err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, total)
	var underLoad []time.Duration
	for i := 1; i <= total; i++ {
		s := startedAt[i].Load()
		if s == 0 || insertedAt[i] == 0 {
			return nil, errors.New("a job has no insert or start time")
		}
		// A job can start before its insert call has returned to the
		// inserter (the commit is visible to the worker first): count 0.
		d := max(time.Duration(s-insertedAt[i]), 0)
		lat = append(lat, d)
		if bulk > 0 && insertedAt[i] < bulkDoneAt.Load() {
			underLoad = append(underLoad, d)
		}
	}
	slices.Sort(lat)
	slices.Sort(underLoad)
	progressf(spec, "inserted %d jobs in %.1f s (%.0f/s offered)", total, insertSecs, float64(total)/insertSecs)
	res := &runResult{
		JobsPerS: float64(total) / elapsed.Seconds(),
		Seconds:  elapsed.Seconds(),
		Count:    total,
		P50:      percentile(lat, 50),
		P90:      percentile(lat, 90),
		P99:      percentile(lat, 99),
		Max:      percentile(lat, 100),
	}
	if bulk > 0 {
		bulkSecs := time.Duration(bulkDoneAt.Load() - bulkStart.UnixNano()).Seconds()
		res.BulkSeconds, res.BulkJobsPerS = bulkSecs, float64(bulk)/bulkSecs
		res.LoadCount = len(underLoad)
		res.LoadP50, res.LoadP90 = percentile(underLoad, 50), percentile(underLoad, 90)
		res.LoadP99, res.LoadMax = percentile(underLoad, 99), percentile(underLoad, 100)
		progressf(spec, "%s: %d jobs worked in %.1f s next to the stream; %d stream jobs inserted meanwhile",
			bulkQueue, bulk, bulkSecs, len(underLoad))
	}
	return res, nil
}

// newSeparateInserter makes a client of spec's system that only inserts
// (it is never started), on a pool of its own configured like pool.
// closePool closes that pool once the client is done with.
func newSeparateInserter(ctx context.Context, spec *runSpec, pool *pgxpool.Pool) (inserter system, closePool func(), err error) {
	insPool, err := pgxpool.NewWithConfig(ctx, pool.Config().Copy())
	if err != nil {
		return nil, nil, err
	}
	inserter, err = newSystem(spec.System, spec.Variant, insPool, spec.Schema, []string{queue}, spec.MillraceWorkers,
		func(context.Context, int64) error { return errors.New("the inserting client works nothing") }, logger())
	if err != nil {
		insPool.Close()
		return nil, nil, err
	}
	return inserter, insPool.Close, nil
}
