package client

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/testfixture"
)

// BenchmarkBurndown measures how fast a client at its defaults (plus 200
// workers) works pre-inserted no-op jobs: b.N jobs per run. The
// side-by-side comparison with River lives in the bench/ module.
func BenchmarkBurndown(b *testing.B) { burndown(b, nil) }

// BenchmarkBurndownLimits is BenchmarkBurndown on a queue with
// concurrency limits that cannot bind (set above the 200 workers), to
// measure what limits cost by themselves, and with a partition limit that
// does bind. Compare with BenchmarkBurndown (unlimited).
func BenchmarkBurndownLimits(b *testing.B) {
	for _, bc := range []struct {
		name   string
		limits []ConcurrencyLimit
	}{
		{"global_above_workers", []ConcurrencyLimit{{Global: 1000}}},
		{"local_above_workers", []ConcurrencyLimit{{Local: 1000}}},
		{"kind_global_above_workers", []ConcurrencyLimit{{Kind: "noop", Global: 1000}}},
		{"partition_by_n_mod_100_at_10", []ConcurrencyLimit{{PerPartition: 10, PartitionByArgs: []string{"m"}}}},
	} {
		b.Run(bc.name, func(b *testing.B) { burndown(b, bc.limits) })
	}
}

// burndown works b.N pre-inserted no-op jobs with 200 workers on a queue
// with limits.
func burndown(b *testing.B, limits []ConcurrencyLimit) {
	ctx := context.Background()
	db := testfixture.New(b)
	var done atomic.Int64
	all := make(chan struct{})
	total := int64(b.N)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[benchArgs]) error {
		if done.Add(1) == total {
			close(all)
		}
		return nil
	}))
	c, err := New(db.Driver, &Config{Schema: db.Schema, Workers: workers, Logger: testLogger(),
		Queues: map[string]QueueConfig{QueueDefault: {MaxWorkers: 200, Limits: limits}}})
	if err != nil {
		b.Fatal(err)
	}
	params := make([]InsertManyParams, b.N)
	for i := range params {
		params[i] = InsertManyParams{Args: benchArgs{N: i, M: i % 100}}
	}
	for i := 0; i < len(params); i += MaxInsertBatch {
		if _, err := c.InsertManyFast(ctx, params[i:min(i+MaxInsertBatch, len(params))]); err != nil {
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

// benchArgs are noopArgs with a partition key.
type benchArgs struct {
	N int `json:"n"`
	M int `json:"m"`
}

func (benchArgs) Kind() string { return "noop" }

// BenchmarkInsertManyFast measures COPY inserts in batches of 5000.
func BenchmarkInsertManyFast(b *testing.B) {
	ctx := context.Background()
	db := testfixture.New(b)
	c, err := New(db.Driver, &Config{Schema: db.Schema, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]InsertManyParams, 5000)
	for i := range batch {
		batch[i] = InsertManyParams{Args: noopArgs{N: i}}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		if _, err := c.InsertManyFast(ctx, batch[:min(len(batch), b.N-i)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkInsert measures single inserts, one round trip each.
func BenchmarkInsert(b *testing.B) {
	ctx := context.Background()
	db := testfixture.New(b)
	c, err := New(db.Driver, &Config{Schema: db.Schema, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.Insert(ctx, noopArgs{N: i}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}
