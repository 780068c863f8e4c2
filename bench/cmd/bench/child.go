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
}

// childMain runs one measurement and prints its result as JSON on stdout;
// progress goes to stderr.
func childMain(specJSON string) error {
	var spec runSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("decode child spec: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	poolCfg, err := pgxpool.ParseConfig(spec.URL)
	if err != nil {
		return err
	}
	poolCfg.MaxConns = spec.PoolConns
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return err
	}
	var res *runResult
	switch spec.Scenario {
	case "burndown":
		res, err = childBurndown(ctx, &spec, pool)
	case "insert_many_fast", "insert_single":
		res, err = childInsert(ctx, &spec, pool)
	case "latency", "latency_same_client", "mixed":
		res, err = childLatency(ctx, &spec, pool)
	case "sql_ceiling":
		res, err = childCeiling(ctx, &spec, pool)
	default:
		err = fmt.Errorf("unknown scenario %q", spec.Scenario)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// logger keeps the systems' own logging to warnings and errors.
func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func progressf(spec *runSpec, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "      %s: %s\n", spec.Label, fmt.Sprintf(format, args...))
}

func stopSystem(sys system) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return sys.Stop(ctx)
}

// childBurndown works the spec.Jobs jobs the parent inserted and times it
// from Start to the last job recorded completed in the database. It also
// takes the memory figures: allocations between Start and the end, and the
// process's peak RSS.
func childBurndown(ctx context.Context, spec *runSpec, pool *pgxpool.Pool) (*runResult, error) {
	n := int64(spec.Jobs)
	var worked atomic.Int64
	done := make(chan struct{})
	sys, err := newSystem(spec.System, spec.Variant, pool, spec.Schema, spec.MillraceWorkers, func(ctx context.Context, id int64) error {
		if worked.Add(1) == n {
			close(done)
		}
		return nil
	}, logger())
	if err != nil {
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
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			progressf(spec, "%d/%d worked (%.0f s)", worked.Load(), n, time.Since(start).Seconds())
		case <-ctx.Done():
			return nil, fmt.Errorf("burndown: %d of %d jobs worked: %w", worked.Load(), n, ctx.Err())
		}
	}
	if err := waitAllCompleted(ctx, pool, spec.Schema); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	rss := peakRSSMB()
	if err := stopSystem(sys); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	if err := checkCompleted(ctx, pool, spec.Schema, spec.Jobs); err != nil {
		return nil, err
	}
	return &runResult{
		JobsPerS:     float64(n) / elapsed.Seconds(),
		Seconds:      elapsed.Seconds(),
		Count:        int(n),
		AllocsPerJob: float64(after.Mallocs-before.Mallocs) / float64(n),
		BytesPerJob:  float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
		PeakRSSMB:    rss,
	}, nil
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
func checkCompleted(ctx context.Context, pool *pgxpool.Pool, schema string, want int) error {
	var total, completed, attempts int
	err := pool.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE state = 'completed'), coalesce(sum(attempt), 0) FROM "+
		pgx.Identifier{schema, "river_job"}.Sanitize()).Scan(&total, &completed, &attempts)
	if err != nil {
		return fmt.Errorf("check outcome: %w", err)
	}
	if total != want || completed != want || attempts != want {
		return fmt.Errorf("check outcome: %d jobs, %d completed, %d attempts; want %d of each", total, completed, attempts, want)
	}
	return nil
}

// peakRSSMB reads the process's high-water resident set size (Linux).
func peakRSSMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
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
	sys, err := newSystem(spec.System, spec.Variant, pool, spec.Schema, spec.MillraceWorkers,
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
func childLatency(ctx context.Context, spec *runSpec, pool *pgxpool.Pool) (*runResult, error) {
	total := int(int64(spec.Rate) * int64(spec.Duration) / int64(time.Second))
	// A fresh schema numbers jobs from 1, so a job's ID indexes these.
	startedAt := make([]atomic.Int64, total+1)
	insertedAt := make([]int64, total+1)
	var worked atomic.Int64
	var untracked atomic.Int64
	allDone := make(chan struct{})
	work := func(ctx context.Context, id int64) error {
		now := time.Now().UnixNano()
		if id > 0 && id <= int64(total) {
			startedAt[id].CompareAndSwap(0, now)
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
	sys, err := newSystem(spec.System, spec.Variant, pool, spec.Schema, spec.MillraceWorkers, work, logger())
	if err != nil {
		return nil, err
	}
	inserter := sys
	if spec.Inserter == "separate" {
		poolCfg := pool.Config().Copy()
		insPool, err := pgxpool.NewWithConfig(ctx, poolCfg)
		if err != nil {
			return nil, err
		}
		defer insPool.Close()
		inserter, err = newSystem(spec.System, spec.Variant, insPool, spec.Schema, spec.MillraceWorkers,
			func(context.Context, int64) error { return errors.New("the inserting client works nothing") }, logger())
		if err != nil {
			return nil, err
		}
	}
	if err := sys.Start(ctx); err != nil {
		return nil, err
	}
	defer stopSystem(sys)   //nolint:errcheck // best effort once measured
	time.Sleep(time.Second) // an idle client, settled (leader elected, queues registered)

	interval := time.Second / time.Duration(spec.Rate)
	start := time.Now()
	lastReport := start
	sent := 0
	record := func(ids []int64) error {
		now := time.Now().UnixNano()
		for _, id := range ids {
			if id <= 0 || id > int64(total) {
				return fmt.Errorf("job ID %d outside 1..%d: the schema was not fresh", id, total)
			}
			insertedAt[id] = now
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
			progressf(spec, "%d/%d inserted, %d worked (%.0f s)", sent, total, worked.Load(), time.Since(start).Seconds())
		}
	}
	insertSecs := time.Since(start).Seconds()
	select {
	case <-allDone:
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("%d of %d jobs worked 60 s after the last insert", worked.Load(), total)
	}
	if err := waitAllCompleted(ctx, pool, spec.Schema); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	if n := untracked.Load(); n > 0 {
		return nil, fmt.Errorf("%d jobs with IDs outside 1..%d were worked", n, total)
	}
	if err := stopSystem(sys); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	if err := checkCompleted(ctx, pool, spec.Schema, total); err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, total)
	for id := 1; id <= total; id++ {
		s := startedAt[id].Load()
		if s == 0 || insertedAt[id] == 0 {
			return nil, errors.New("a job has no insert or start time")
		}
		// A job can start before its insert call has returned to the
		// inserter (the commit is visible to the worker first): count 0.
		lat = append(lat, max(time.Duration(s-insertedAt[id]), 0))
	}
	slices.Sort(lat)
	progressf(spec, "inserted %d jobs in %.1f s (%.0f/s offered)", total, insertSecs, float64(total)/insertSecs)
	return &runResult{
		JobsPerS: float64(total) / elapsed.Seconds(),
		Seconds:  elapsed.Seconds(),
		Count:    total,
		P50:      percentile(lat, 50),
		P90:      percentile(lat, 90),
		P99:      percentile(lat, 99),
		Max:      percentile(lat, 100),
	}, nil
}
