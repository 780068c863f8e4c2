package sqlite

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/migrate"
)

// BenchmarkBurndown is client's BenchmarkBurndown (on Postgres, pgxv5) on a
// SQLite file: a client at its defaults plus 200 workers works b.N
// pre-inserted no-op jobs, polling. make bench prints both, one row per
// driver.
func BenchmarkBurndown(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	drv := New(db)
	if _, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionUp, nil); err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	all := make(chan struct{})
	total := int64(b.N)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[countArgs]) error {
		if done.Add(1) == total {
			close(all)
		}
		return nil
	}))
	c, err := client.New(drv, &client.Config{Workers: workers, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 200}}})
	if err != nil {
		b.Fatal(err)
	}
	params := make([]client.InsertManyParams, b.N)
	for i := range params {
		params[i] = client.InsertManyParams{Args: countArgs{N: i}}
	}
	for i := 0; i < len(params); i += client.MaxInsertBatch {
		if _, err := c.InsertManyFast(ctx, params[i:min(i+client.MaxInsertBatch, len(params))]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	<-all
	elapsed := time.Since(start)
	b.StopTimer()
	if err := c.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
}
