package client

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// TestGracefulStopUnderLoad stops a client while producers fetch back to
// back: no job may be left running (a fetch cut short by the stop once
// stranded the jobs it had just locked), and a second client finishes the
// rest.
func TestGracefulStopUnderLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for round := range 3 {
		db := testfixture.New(t)
		const n = 4000
		var done atomic.Int64
		half := make(chan struct{})
		workers := NewWorkers()
		AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
			time.Sleep(time.Duration(job.Args.N%3) * time.Millisecond)
			if done.Add(1) == n/2 {
				close(half)
			}
			return nil
		}))
		c := newClient(t, db, &Config{Queues: oneQueue(100), Workers: workers})
		params := make([]InsertManyParams, n)
		for i := range params {
			params[i] = InsertManyParams{Args: noopArgs{N: i}}
		}
		if _, err := c.InsertManyFast(ctx, params); err != nil {
			t.Fatal(err)
		}
		start(t, c)
		select {
		case <-half:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: only %d jobs done", round, done.Load())
		}
		if err := c.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		counts := db.CountByState(t)
		if counts[millracetype.JobStateRunning] != 0 {
			t.Fatalf("round %d: %d jobs left running after Stop (%v)", round, counts[millracetype.JobStateRunning], counts)
		}
		if got := counts[millracetype.JobStateCompleted]; int64(got) != done.Load() {
			t.Fatalf("round %d: %d completed in the database, %d worked", round, got, done.Load())
		}
		if counts[millracetype.JobStateCompleted]+counts[millracetype.JobStateAvailable] != n {
			t.Fatalf("round %d: states %v do not add up to %d", round, counts, n)
		}
		c2 := newClient(t, db, &Config{Queues: oneQueue(100), Workers: workers})
		start(t, c2)
		deadline := time.Now().Add(30 * time.Second)
		for db.CountByState(t)[millracetype.JobStateCompleted] != n {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: second client did not finish: %v", round, db.CountByState(t))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := c2.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if done.Load() != n {
			t.Fatalf("round %d: %d Work calls for %d jobs (a job ran twice)", round, done.Load(), n)
		}
	}
}
