package client

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
)

// TestPickupAfterRepeatedConnectionLoss: every connection of a client is
// killed 8 times, 3 s apart, and shortly after each kill a job is inserted
// (through a pool of the test's own). The insert's notification finds no
// listener, so the job is found by the fetch the producer makes when the
// listener is back. It must start within 1 s every time: the listener's
// reconnection backoff may grow for a connection that keeps dying as soon
// as it is up, but not for one that stayed up a few seconds. (Polling is
// set far apart, so only the reconnection can find the job.)
func TestPickupAfterRepeatedConnectionLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 25 s")
	}
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)

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

	var mu sync.Mutex
	startedAt := map[int64]time.Time{}
	startedCh := make(chan int64, 16)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		mu.Lock()
		startedAt[job.ID] = time.Now()
		mu.Unlock()
		startedCh <- job.ID
		return nil
	}))
	c := newClientOn(t, pgxv5.New(pool), db.Schema, &Config{Queues: oneQueue(2), Workers: workers,
		FetchPollInterval: time.Minute, LeaderElectionDisabled: true})
	admin := newClient(t, db, nil) // inserts through the test's pool, which is spared
	start(t, c)

	c.mu.Lock()
	notif := c.notifier
	c.mu.Unlock()

	const (
		kills   = 8
		spacing = 3 * time.Second
		bound   = time.Second
		// reaction is how long the client is given to react to a loss
		// before the job is inserted.
		reaction = 250 * time.Millisecond
	)
	var delays []time.Duration
	begin := time.Now()
	for i := range kills {
		time.Sleep(time.Until(begin.Add(time.Duration(i) * spacing))) // the kills' schedule
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND pid <> pg_backend_pid()`, appName).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("kill %d: no connection of the client to kill", i+1)
		}
		// Insert once the client has noticed the loss and reacted to it
		// (its producer fetches at once when the listener goes down, and
		// finds nothing): the job is one inserted after the client's pool
		// has reconnected, while its listener may still be waiting to.
		deadline := time.Now().Add(10 * time.Second)
		for notif.Connected() {
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: the notifier never noticed the lost connection", i+1)
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(reaction)
		insertedAt := time.Now()
		res, err := admin.Insert(ctx, noopArgs{N: i}, nil)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-startedCh:
			if id != res.Job.ID {
				t.Fatalf("kill %d: started job %d, want %d", i+1, id, res.Job.ID)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("kill %d: the job inserted then never started; delays so far %v", i+1, delays)
		}
		mu.Lock()
		d := startedAt[res.Job.ID].Sub(insertedAt)
		mu.Unlock()
		delays = append(delays, d)
		t.Logf("kill %d: terminated %d connections; the job inserted then started after %v (listener connected: %v)",
			i+1, n, d.Round(time.Millisecond), notif.Connected())
	}
	for i, d := range delays {
		if d > bound {
			t.Errorf("kill %d: a job inserted while the client reconnected started after %v; want within %v (all: %v)", i+1, d, bound, delays)
		}
	}
}
