package client

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// TestPollOnly: a client without LISTEN still works jobs inserted by
// another client (by polling) and still honours a cancel from another
// client (by reading running jobs' metadata).
func TestPollOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	worked := make(chan int64, 10)
	running := make(chan int64, 1)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[outcomeArgs]) error {
		if job.Args.Mode == "block" {
			running <- job.ID
			<-ctx.Done()
			return ctx.Err()
		}
		worked <- job.ID
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers, PollOnly: true,
		FetchPollInterval: 50 * time.Millisecond, JobTimeout: -1})
	start(t, c)
	c.mu.Lock()
	notif := c.notifier
	c.mu.Unlock()
	if notif != nil {
		t.Fatal("a PollOnly client has a notifier")
	}
	other := newClient(t, db, nil)
	for i := range 3 {
		res, err := other.Insert(ctx, outcomeArgs{Mode: "ok"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-worked:
			if id != res.Job.ID {
				t.Fatalf("worked %d, want %d", id, res.Job.ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("job %d never worked by the polling client", i)
		}
	}

	// Its own inserts still notify: a listening client that never polls
	// works them. (The first job may be caught by the listening client's
	// start-up fetch; the second only through the notifications: its own,
	// or, debounced within FetchCooldown of the first, the fetch that the
	// first one's notification schedules FetchCooldown later.)
	listening := newClient(t, db, &Config{Queues: map[string]QueueConfig{"listen": {MaxWorkers: 2}}, Workers: workers,
		FetchPollInterval: time.Hour})
	start(t, listening)
	for i := range 2 {
		heard, err := c.Insert(ctx, outcomeArgs{Mode: "ok"}, &InsertOpts{Queue: "listen"})
		if err != nil {
			t.Fatal(err)
		}
		if id := recv(t, worked, "a job inserted by the polling client"); id != heard.Job.ID {
			t.Fatalf("job %d: worked %d, want %d", i, id, heard.Job.ID)
		}
	}

	res, err := other.Insert(ctx, outcomeArgs{Mode: "block"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, running, "the blocking job")
	if _, err := other.JobCancel(ctx, res.Job.ID); err != nil {
		t.Fatal(err)
	}
	job := waitState(t, db, res.Job.ID, millracetype.JobStateCancelled)
	if job.Errors[0].Error != "JobCancelError: job cancelled remotely" {
		t.Errorf("errors %v", job.Errors)
	}
}

// TestLostConnections: every connection of a working client is killed,
// twice, while jobs flow; the client reconnects and finishes every job.
func TestLostConnections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)

	// The client gets a pool of its own with a name that marks its
	// connections (the listener's too: it copies the pool's config).
	appName := "mr_" + db.Schema
	cfg, err := pgxpool.ParseConfig(testdb.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = db.Schema
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	cfg.MaxConns = 5
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // after the client's own cleanup (LIFO)

	var completed atomic.Int64
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		time.Sleep(2 * time.Millisecond) // some work, so jobs are in flight when connections die
		completed.Add(1)
		return nil
	}))
	c := newClientOn(t, pgxv5.New(pool), db.Schema, &Config{Queues: oneQueue(8), Workers: workers})
	admin := newClient(t, db, nil) // inserts through the test's pool, which is spared
	start(t, c)

	kill := func() {
		t.Helper()
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND pid <> pg_backend_pid()`, appName).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("no connection of the client to kill")
		}
		t.Logf("terminated %d connections", n)
	}
	const batch = 150
	insert := func() {
		t.Helper()
		params := make([]InsertManyParams, batch)
		for i := range params {
			params[i] = InsertManyParams{Args: noopArgs{N: i}}
		}
		if _, err := admin.InsertMany(ctx, params); err != nil {
			t.Fatal(err)
		}
	}
	waitCompleted := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for completed.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d jobs worked; states %v", completed.Load(), n, db.CountByState(t))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	insert()
	waitCompleted(20)
	kill()
	insert() // its notification may reach a listener that is reconnecting
	waitCompleted(batch + 20)
	kill()
	insert()
	deadline := time.Now().Add(30 * time.Second)
	for {
		counts := db.CountByState(t)
		if counts[millracetype.JobStateCompleted] == 3*batch {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after lost connections: states %v", counts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The listener is back.
	c.mu.Lock()
	notif := c.notifier
	c.mu.Unlock()
	for !notif.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("the listener never reconnected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := completed.Load(); n < 3*batch {
		t.Fatalf("%d jobs worked", n)
	}
}
