package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/sqlite"
	"github.com/millrace/millrace/migrate"
)

// variantSQLite is millrace at its defaults on driver/sqlite, on a new
// file in a temporary directory: the third driver of the burndown's
// drivers row. Its jobs are inserted into that file by the child (not
// timed), not into the Postgres schema; no Postgres cost applies.
const variantSQLite = "sqlite"

// childBurndownSQLite is childBurndown on SQLite: spec.Jobs jobs inserted
// into a fresh file, then a client at its defaults (spec.MillraceWorkers
// workers; it polls, SQLite having no LISTEN) timed from Start to the last
// job worked, and every job checked completed in the file after Stop.
func childBurndownSQLite(ctx context.Context, spec *runSpec) (*runResult, error) {
	dir, err := os.MkdirTemp("", "millrace-bench-sqlite-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "bench.db"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	drv := sqlite.New(db)
	if _, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("migrate the SQLite file: %w", err)
	}
	n := int64(spec.Jobs)
	var worked atomic.Int64
	done := make(chan struct{})
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[noopArgs]) error {
		if worked.Add(1) == n {
			close(done)
		}
		return nil
	}))
	c, err := client.New(drv, &client.Config{Logger: logger(), Workers: workers,
		Queues: map[string]client.QueueConfig{queue: {MaxWorkers: spec.MillraceWorkers}}})
	if err != nil {
		return nil, err
	}
	params := make([]client.InsertManyParams, 0, 1000)
	for i := range spec.Jobs {
		params = append(params, client.InsertManyParams{Args: noopArgs{N: i}, InsertOpts: &client.InsertOpts{Queue: queue}})
		if len(params) == cap(params) || i == spec.Jobs-1 {
			if _, err := c.InsertManyFast(ctx, params); err != nil {
				return nil, fmt.Errorf("insert into the SQLite file: %w", err)
			}
			params = params[:0]
		}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	if err := waitWorked(ctx, spec, done, &worked, n, start); err != nil {
		_ = stopSystem(c)
		return nil, fmt.Errorf("burndown on SQLite: %w", err)
	}
	// As on Postgres, the time runs until the file shows every job
	// completed.
	for {
		var completed int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM river_job WHERE state = 'completed'").Scan(&completed); err != nil {
			return nil, err
		}
		if completed == spec.Jobs {
			break
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("burndown on SQLite: %d of %d completed: %w", completed, n, ctx.Err())
		}
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err := stopSystem(c); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	var completed, other int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state <> 'completed') FROM river_job").
		Scan(&completed, &other); err != nil {
		return nil, err
	}
	if completed != spec.Jobs || other != 0 {
		return nil, fmt.Errorf("burndown on SQLite: %d jobs completed and %d in other states, want %d completed", completed, other, spec.Jobs)
	}
	if w := worked.Load(); w != n {
		return nil, fmt.Errorf("burndown on SQLite: %d runs for %d jobs", w, n)
	}
	return &runResult{JobsPerS: float64(n) / elapsed.Seconds(), Seconds: elapsed.Seconds(), Count: int(n),
		AllocsPerJob: float64(after.Mallocs-before.Mallocs) / float64(n),
		BytesPerJob:  float64(after.TotalAlloc-before.TotalAlloc) / float64(n), PeakRSSMB: peakRSSMB()}, nil
}
