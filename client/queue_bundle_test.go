package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
	"github.com/millrace/millrace/startstop"
)

// gateWorkers returns workers for noopArgs whose jobs, when their N is
// negative, report on started and wait for release (or their context).
func gateWorkers(started chan<- int64, release <-chan struct{}) *Workers {
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		if job.Args.N >= 0 {
			return nil
		}
		started <- job.ID
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}))
	return workers
}

func insertIn(t *testing.T, c *Client[pgx.Tx], queue string, n int) *millracetype.JobRow {
	t.Helper()
	res, err := c.Insert(context.Background(), noopArgs{N: n}, &InsertOpts{Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	return res.Job
}

// TestQueuesAddBeforeStart: a client made without queues (but with
// workers) cannot start until one is added; Add before Start shapes the
// next Start.
func TestQueuesAddBeforeStart(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{Workers: gateWorkers(nil, nil)})
	if err := c.Start(context.Background()); !errors.Is(err, ErrNoQueues) {
		t.Fatalf("Start without queues: %v", err)
	}
	if err := c.Queues().Add("late", QueueConfig{MaxWorkers: 2}); err != nil {
		t.Fatal(err)
	}
	if got := c.Queues().Names(); !slices.Equal(got, []string{"late"}) {
		t.Fatalf("Names %v", got)
	}
	start(t, c)
	job := insertIn(t, c, "late", 1)
	waitState(t, db, job.ID, millracetype.JobStateCompleted)
}

// TestQueuesAddRunning: Add on a running client starts the queue's
// producer before it returns; the queue survives a restart.
func TestQueuesAddRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: gateWorkers(nil, nil)})
	start(t, c)
	if _, err := c.QueueGet(ctx, "extra"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("queue row before Add: %v", err)
	}
	waiting := insertIn(t, c, "extra", 1)

	if err := c.Queues().Add("extra", QueueConfig{MaxWorkers: 3}); err != nil {
		t.Fatal(err)
	}
	// Registered (the producer has started) by the time Add returns.
	if _, err := c.QueueGet(ctx, "extra"); err != nil {
		t.Fatalf("queue row after Add: %v", err)
	}
	if got := c.Queues().Names(); !slices.Equal(got, []string{"default", "extra"}) {
		t.Fatalf("Names %v", got)
	}
	waitState(t, db, waiting.ID, millracetype.JobStateCompleted)
	waitState(t, db, insertIn(t, c, "extra", 2).ID, millracetype.JobStateCompleted)

	// Stop and start again: the added queue is part of the configuration.
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	afterStop := insertIn(t, c, "extra", 3)
	start(t, c)
	waitState(t, db, afterStop.ID, millracetype.JobStateCompleted)
}

// TestQueuesAddBadInput: every refusal is a specific error and changes
// nothing.
func TestQueuesAddBadInput(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: gateWorkers(nil, nil)})
	start(t, c)
	for _, tc := range []struct {
		name string
		cfg  QueueConfig
		want error
	}{
		{"", QueueConfig{MaxWorkers: 1}, ErrInvalidConfig},
		{"Bad Name", QueueConfig{MaxWorkers: 1}, ErrInvalidConfig},
		{"ok", QueueConfig{MaxWorkers: 0}, ErrInvalidConfig},
		{"ok", QueueConfig{MaxWorkers: MaxQueueWorkers + 1}, ErrInvalidConfig},
		{"default", QueueConfig{MaxWorkers: 1}, ErrQueueAlreadyAdded},
	} {
		if err := c.Queues().Add(tc.name, tc.cfg); !errors.Is(err, tc.want) {
			t.Errorf("Add(%q, %+v): %v, want %v", tc.name, tc.cfg, err, tc.want)
		}
	}
	if err := c.Queues().Add("twice", QueueConfig{MaxWorkers: 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.Queues().Add("twice", QueueConfig{MaxWorkers: 1}); !errors.Is(err, ErrQueueAlreadyAdded) {
		t.Errorf("second Add: %v", err)
	}
	if got := c.Queues().Names(); !slices.Equal(got, []string{"default", "twice"}) {
		t.Errorf("Names after the refusals %v", got)
	}
	if _, err := c.QueueGet(context.Background(), "ok"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused queue was registered: %v", err)
	}

	// A client without workers (insert-only) or without a pool cannot work
	// queues.
	insertOnly := newClient(t, db, nil)
	if err := insertOnly.Queues().Add("q", QueueConfig{MaxWorkers: 1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Add on a client without workers: %v", err)
	}
	noPool, err := New(pgxv5.New(nil), &Config{Workers: NewWorkers()})
	if err != nil {
		t.Fatal(err)
	}
	if err := noPool.Queues().Add("q", QueueConfig{MaxWorkers: 1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Add on a client without a pool: %v", err)
	}
	if len(insertOnly.Queues().Names())+len(noPool.Queues().Names()) != 0 {
		t.Error("a refused Add changed the configuration")
	}
}

// TestQueuesAddFailsOnStoppingClient: a producer that cannot start leaves
// the configuration as it was.
func TestQueuesAddStartFailure(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: gateWorkers(nil, nil)})
	start(t, c)
	// The producer's first query fails: its schema's tables are gone.
	if _, err := db.Pool.Exec(context.Background(), fmt.Sprintf(`ALTER TABLE %q.river_queue RENAME TO river_queue_gone`, db.Schema)); err != nil {
		t.Fatal(err)
	}
	if err := c.Queues().Add("extra", QueueConfig{MaxWorkers: 1}); err == nil {
		t.Fatal("Add succeeded without a river_queue table")
	}
	if got := c.Queues().Names(); !slices.Equal(got, []string{"default"}) {
		t.Fatalf("Names after a failed Add %v", got)
	}
	if c.producer("extra") != nil {
		t.Fatal("a producer that failed to start was kept")
	}
	if _, err := db.Pool.Exec(context.Background(), fmt.Sprintf(`ALTER TABLE %q.river_queue_gone RENAME TO river_queue`, db.Schema)); err != nil {
		t.Fatal(err)
	}
	if err := c.Queues().Add("extra", QueueConfig{MaxWorkers: 1}); err != nil {
		t.Fatalf("Add once the table is back: %v", err)
	}
}

// TestQueuesRemoveRunning: Remove stops fetching at once, lets the running
// job finish, and returns once its outcome is written; other queues go on.
func TestQueuesRemoveRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	started, release := make(chan int64, 1), make(chan struct{})
	c := newClient(t, db, &Config{Queues: map[string]QueueConfig{"default": {MaxWorkers: 2}, "slow": {MaxWorkers: 2}},
		Workers: gateWorkers(started, release)})
	start(t, c)
	running := insertIn(t, c, "slow", -1)
	recv(t, started, "the slow job to start")

	removed := make(chan error, 1)
	go func() { removed <- c.Queues().Remove(ctx, "slow") }()
	// Gone from the configuration at once; no new job of the queue starts.
	testwait.For(t, 10*time.Second, "the queue to leave the configuration", func() bool { return !slices.Contains(c.Queues().Names(), "slow") })
	testwait.For(t, 10*time.Second, "the producer to leave the running set", func() bool { return c.producer("slow") == nil })
	select {
	case err := <-removed:
		t.Fatalf("Remove returned (%v) while the queue's job ran", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := recv(t, removed, "Remove to return"); err != nil {
		t.Fatal(err)
	}
	// Recorded when Remove returns, not merely finished.
	if job := db.Job(t, running.ID); job.State != millracetype.JobStateCompleted {
		t.Fatalf("job state %s when Remove returned", job.State)
	}
	later := insertIn(t, c, "slow", 1)
	other := insertIn(t, c, "default", 1)
	waitState(t, db, other.ID, millracetype.JobStateCompleted)
	if job := db.Job(t, later.ID); job.State != millracetype.JobStateAvailable || job.Attempt != 0 {
		t.Fatalf("job of the removed queue: state %s attempt %d", job.State, job.Attempt)
	}
	// The queue's row stays for other clients.
	if _, err := c.QueueGet(ctx, "slow"); err != nil {
		t.Fatalf("queue row after Remove: %v", err)
	}
}

// TestQueuesRemoveContext: Remove whose context ends first returns its
// error; the producer keeps draining; a second Remove, or Stop, waits for
// it.
func TestQueuesRemoveContext(t *testing.T) {
	t.Parallel()
	for _, waiter := range []string{"remove again", "stop"} {
		t.Run(waiter, func(t *testing.T) {
			t.Parallel()
			db := testfixture.New(t)
			started, release := make(chan int64, 1), make(chan struct{})
			c := newClient(t, db, &Config{Queues: map[string]QueueConfig{"default": {MaxWorkers: 1}, "slow": {MaxWorkers: 1}},
				Workers: gateWorkers(started, release)})
			start(t, c)
			job := insertIn(t, c, "slow", -1)
			recv(t, started, "the slow job to start")

			short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			if err := c.Queues().Remove(short, "slow"); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Remove with a short context: %v", err)
			}
			if slices.Contains(c.Queues().Names(), "slow") {
				t.Fatal("queue still configured after the timed-out Remove")
			}
			done := make(chan error, 1)
			go func() {
				if waiter == "stop" {
					done <- c.Stop(context.Background())
				} else {
					done <- c.Queues().Remove(context.Background(), "slow")
				}
			}()
			select {
			case err := <-done:
				t.Fatalf("%s returned (%v) while the removed queue's job ran", waiter, err)
			case <-time.After(50 * time.Millisecond):
			}
			close(release)
			if err := recv(t, done, waiter); err != nil {
				t.Fatal(err)
			}
			if got := db.Job(t, job.ID); got.State != millracetype.JobStateCompleted {
				t.Fatalf("job state %s after %s", got.State, waiter)
			}
			// Nothing is left to wait for.
			if err := c.Queues().Remove(context.Background(), "slow"); !errors.Is(err, ErrQueueNotFound) {
				t.Fatalf("Remove once drained: %v", err)
			}
		})
	}
}

// TestQueuesRemoveStopAndCancel: StopAndCancel reaches the jobs of a queue
// being removed.
func TestQueuesRemoveStopAndCancel(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	started := make(chan int64, 1)
	c := newClient(t, db, &Config{Queues: map[string]QueueConfig{"default": {MaxWorkers: 1}, "slow": {MaxWorkers: 1}},
		Workers: gateWorkers(started, nil)}) // never released
	start(t, c)
	job := insertIn(t, c, "slow", -1)
	recv(t, started, "the slow job to start")
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := c.Queues().Remove(short, "slow"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Remove: %v", err)
	}
	if err := c.StopAndCancel(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Interrupted by the stop: back to available, the attempt given back.
	if got := db.Job(t, job.ID); got.State != millracetype.JobStateAvailable || got.Attempt != 0 {
		t.Fatalf("job after StopAndCancel: state %s attempt %d", got.State, got.Attempt)
	}
}

// TestQueuesRemoveNotRunning: Remove of an unknown queue is a specific
// error; before Start it only changes the configuration.
func TestQueuesRemoveNotRunning(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: gateWorkers(nil, nil)})
	err := c.Queues().Remove(context.Background(), "nope")
	if !errors.Is(err, ErrQueueNotFound) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove of an unknown queue: %v", err)
	}
	if err := c.Queues().Remove(context.Background(), QueueDefault); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); !errors.Is(err, ErrNoQueues) {
		t.Fatalf("Start after removing every queue: %v", err)
	}
	// Stopped clients too: after a run, Remove only changes the config.
	if err := c.Queues().Add("again", QueueConfig{MaxWorkers: 1}); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Queues().Remove(context.Background(), "again"); err != nil {
		t.Fatalf("Remove on a stopped client: %v", err)
	}
}

// TestQueuesConcurrentWithLifecycle: Add and Remove race with Start, Stop
// and StopAndCancel (run under -race). Whatever the interleaving, no job
// is left running, no producer outlives the client (goleak at the end of
// the package), and the configuration ends as the calls left it.
func TestQueuesConcurrentWithLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: gateWorkers(nil, nil)})
	var inserted []int64
	for round := range 8 {
		name := fmt.Sprintf("q%d", round)
		for _, q := range []string{QueueDefault, name} {
			inserted = append(inserted, insertIn(t, c, q, round).ID)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := c.Start(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, startstop.ErrStop) {
				t.Errorf("round %d: Start: %v", round, err)
			}
		})
		wg.Go(func() {
			if err := c.Queues().Add(name, QueueConfig{MaxWorkers: 2}); err != nil {
				// The producer may fail to start when the stop is faster.
				t.Logf("round %d: Add: %v", round, err)
			}
		})
		wg.Go(func() {
			if round > 0 {
				prev := fmt.Sprintf("q%d", round-1)
				if err := c.Queues().Remove(ctx, prev); err != nil && !errors.Is(err, ErrQueueNotFound) {
					t.Errorf("round %d: Remove: %v", round, err)
				}
			}
		})
		wg.Go(func() {
			var err error
			if round%2 == 0 {
				err = c.Stop(ctx)
			} else {
				err = c.StopAndCancel(ctx)
			}
			if err != nil {
				t.Errorf("round %d: stop: %v", round, err)
			}
		})
		wg.Wait()
		if err := c.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if n := db.CountByState(t)[millracetype.JobStateRunning]; n != 0 {
			t.Fatalf("round %d: %d jobs left running after Stop", round, n)
		}
	}
	// Every job can still be worked: the last configuration works them.
	names := c.Queues().Names()
	for round := range 8 {
		name := fmt.Sprintf("q%d", round)
		if !slices.Contains(names, name) {
			if err := c.Queues().Add(name, QueueConfig{MaxWorkers: 2}); err != nil {
				t.Fatal(err)
			}
		}
	}
	start(t, c)
	for _, id := range inserted {
		waitState(t, db, id, millracetype.JobStateCompleted)
	}
	if n := db.CountByState(t)[millracetype.JobStateCompleted]; n != len(inserted) {
		t.Fatalf("%d completed of %d", n, len(inserted))
	}
}

// TestFetchBufferSetting: QueueConfig.FetchBuffer's 0 is the default size,
// -1 none, and a positive value itself.
func TestFetchBufferSetting(t *testing.T) {
	for _, tc := range []struct{ workers, buffer, want int }{
		{200, 0, 1800}, {100, 0, 900}, {500, 0, 1800}, {1, 0, 9}, {200, -1, 0}, {200, 50, 50}, {1, MaxFetchBuffer, MaxFetchBuffer},
	} {
		if got := (QueueConfig{MaxWorkers: tc.workers, FetchBuffer: tc.buffer}).fetchBuffer(); got != tc.want {
			t.Errorf("MaxWorkers %d, FetchBuffer %d: producer buffer %d, want %d", tc.workers, tc.buffer, got, tc.want)
		}
	}
}
