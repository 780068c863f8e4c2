package completer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// TestFlushWaitsForEarlierOutcomes: Flush returns only once the outcomes
// queued before it are in the database.
func TestFlushWaitsForEarlierOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	db.InsertJobs(t, 4, "k", "default")
	jobs := fetchAll(t, db, 4)
	gate := make(chan struct{})
	c := New(&flakyExec{Executor: db.Exec(), gate: gate}, &Config{Schema: db.Schema, MaxBatch: 1})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for _, j := range jobs {
		if err := c.Complete(ctx, completed(j.ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush(ctx) }()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) while every write was held", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Flush did not return once the writes went through")
	}
	if counts := db.CountByState(t); counts[millracetype.JobStateCompleted] != 4 {
		t.Fatalf("Flush returned with %v", counts)
	}
}

// TestFlushUnderLoad: outcomes queued after Flush do not hold it up, so it
// returns while other work keeps completing (WaitIdle would not: the
// completer never runs out of outcomes to write).
//
// What each Flush waits for is the backlog queued before it, which a tight
// loop of Completes keeps at MaxPending; the test bounds it with a small
// MaxPending so that its time does not depend on the machine's speed. (It
// once ran with the default of 10000 and a batch of 3: every Flush waited
// for some 3300 earlier writes, about 2 s on an idle machine and over the
// 10 s deadline with both cores busy. The writes here take at least 5 ms
// each, as on a loaded machine, which made that version fail every time.)
func TestFlushUnderLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	db.InsertJobs(t, 10, "k", "default")
	jobs := fetchAll(t, db, 10)
	c := New(&slowExec{Executor: db.Exec(), delay: 5 * time.Millisecond},
		&Config{Schema: db.Schema, MaxBatch: 3, MaxPending: 12})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	// Every job's outcome is queued before the first Flush, which must
	// therefore see them written; the ones that keep coming after must not
	// hold any Flush up.
	for _, j := range jobs {
		if err := c.Complete(ctx, completed(j.ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		// Outcomes keep coming (repeats of finished jobs change nothing).
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.Complete(ctx, completed(jobs[i%len(jobs)].ID), nil); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	for range 5 {
		flushCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.Flush(flushCtx)
		cancel()
		if err != nil {
			t.Fatalf("Flush under load: %v", err)
		}
	}
	if counts := db.CountByState(t); counts[millracetype.JobStateCompleted] != 10 {
		t.Fatalf("states %v", counts)
	}
}

// slowExec makes every write take at least delay, as on a loaded machine.
type slowExec struct {
	driver.Executor
	delay time.Duration
}

func (s *slowExec) JobSetStateIfRunningMany(ctx context.Context, p *driver.JobSetStateIfRunningManyParams) ([]*millracetype.JobRow, error) {
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Executor.JobSetStateIfRunningMany(ctx, p)
}

// TestFlushContext: a Flush that cannot finish ends with its context.
func TestFlushContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	db.InsertJobs(t, 1, "k", "default")
	jobs := fetchAll(t, db, 1)
	gate := make(chan struct{})
	c := New(&flakyExec{Executor: db.Exec(), gate: gate}, &Config{Schema: db.Schema})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	defer close(gate)
	if err := c.Complete(ctx, completed(jobs[0].ID), nil); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := c.Flush(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with an expired context: %v", err)
	}
}
