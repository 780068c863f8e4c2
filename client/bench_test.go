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
func BenchmarkBurndown(b *testing.B) {
	ctx := context.Background()
	db := testfixture.New(b)
	var done atomic.Int64
	all := make(chan struct{})
	total := int64(b.N)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		if done.Add(1) == total {
			close(all)
		}
		return nil
	}))
	c, err := New(db.Driver, &Config{Schema: db.Schema, Queues: oneQueue(200), Workers: workers, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	params := make([]InsertManyParams, b.N)
	for i := range params {
		params[i] = InsertManyParams{Args: noopArgs{N: i}}
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
