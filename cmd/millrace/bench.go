package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

// newBenchCmd is millrace's own quick check of a database: COPY insert
// rate, burn-down throughput and insert-to-start latency, in a scratch
// schema. The side-by-side comparison with River is `make bench`.
func newBenchCmd(g *globalFlags) *cobra.Command {
	var jobs, workers, samples int
	var ephemeral bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Quick throughput and latency check of millrace on a database (scratch schema, dropped after)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jobs < 1 || jobs > 10_000_000 || workers < 1 || workers > client.MaxQueueWorkers || samples < 1 || samples > 100_000 {
				return usagef("--jobs 1..10000000, --workers 1..%d, --samples 1..100000", client.MaxQueueWorkers)
			}
			return runBench(cmd, g, jobs, workers, samples, ephemeral)
		},
	}
	cmd.Flags().IntVar(&jobs, "jobs", 50000, "jobs for the burn-down")
	cmd.Flags().IntVar(&workers, "workers", 200, "workers")
	cmd.Flags().IntVar(&samples, "samples", 200, "single inserts timed for latency")
	cmd.Flags().BoolVar(&ephemeral, "ephemeral", false, "make the queue ephemeral: completed jobs are deleted instead of kept")
	return cmd
}

type benchResult struct {
	InsertJobsPerS   float64 `json:"insert_many_fast_jobs_per_s"`
	BurndownJobsPerS float64 `json:"burndown_jobs_per_s"`
	LatencyP50MS     float64 `json:"latency_p50_ms"`
	LatencyP99MS     float64 `json:"latency_p99_ms"`
}

func runBench(cmd *cobra.Command, g *globalFlags, n, workers, samples int, ephemeral bool) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	pool, err := connect(ctx, g)
	if err != nil {
		return err
	}
	defer pool.Close()
	schema := fmt.Sprintf("millrace_bench_%d", os.Getpid())
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+ident); err != nil {
		return fmt.Errorf("create scratch schema: %w", err)
	}
	defer func() { _, _ = pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+ident+" CASCADE") }()
	drv := pgxv5.New(pool)
	if _, err := migrate.MigrateAll[pgx.Tx](ctx, drv, &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		return err
	}
	say := func(format string, args ...any) {
		if !g.json {
			fmt.Fprintf(out, format+"\n", args...)
		}
	}
	var res benchResult

	var done atomic.Int64
	var startedAt atomic.Pointer[chan time.Time]
	all := make(chan struct{})
	target := int64(n)
	workersSet := client.NewWorkers()
	client.AddWorker(workersSet, client.WorkFunc(func(ctx context.Context, job *client.Job[noopArgs]) error {
		if ch := startedAt.Load(); ch != nil {
			*ch <- time.Now()
			return nil
		}
		if done.Add(1) == target {
			close(all)
		}
		return nil
	}))
	c, err := client.New(drv, &client.Config{Schema: schema, Workers: workersSet,
		Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: workers, Ephemeral: ephemeral}},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}

	params := make([]client.InsertManyParams, n)
	for i := range params {
		params[i] = client.InsertManyParams{Args: noopArgs{N: i}}
	}
	start := time.Now()
	for i := 0; i < n; i += 5000 {
		if _, err := c.InsertManyFast(ctx, params[i:min(i+5000, n)]); err != nil {
			return err
		}
	}
	res.InsertJobsPerS = float64(n) / time.Since(start).Seconds()
	say("insert_many_fast  %d jobs in batches of 5000: %.0f jobs/s", n, res.InsertJobsPerS)

	start = time.Now()
	if err := c.Start(ctx); err != nil {
		return err
	}
	select {
	case <-all:
	case <-ctx.Done():
		_ = c.StopAndCancel(context.WithoutCancel(ctx))
		return ctx.Err()
	}
	res.BurndownJobsPerS = float64(n) / time.Since(start).Seconds()
	say("burndown          %d no-op jobs, %d workers: %.0f jobs/s", n, workers, res.BurndownJobsPerS)

	ch := make(chan time.Time, 1)
	startedAt.Store(&ch)
	lat := make([]time.Duration, 0, samples)
	for i := range samples {
		before := time.Now()
		if _, err := c.Insert(ctx, noopArgs{N: i}, nil); err != nil {
			return err
		}
		select {
		case at := <-ch:
			lat = append(lat, at.Sub(before))
		case <-time.After(10 * time.Second):
			return fmt.Errorf("latency sample %d: job not started within 10s", i)
		}
	}
	if err := c.Stop(ctx); err != nil {
		return err
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.LatencyP50MS, res.LatencyP99MS = ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100])
	say("latency           %d single inserts, insert->start: p50 %.2f ms, p99 %.2f ms", samples, res.LatencyP50MS, res.LatencyP99MS)
	if g.json {
		return writeJSON(out, res)
	}
	return nil
}
