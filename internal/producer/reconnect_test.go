package producer

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/notifier"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// TestFetchesWhenListenerReconnects: a job inserted while the notifier's
// connection is down has its notification lost; the producer finds it with
// the fetch it makes as soon as the connection is back, not at the next
// poll (an hour away here).
func TestFetchesWhenListenerReconnects(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	var down atomic.Bool
	n := notifier.New(func() (driver.Listener, error) {
		if down.Load() {
			return nil, errors.New("the test keeps the listener down")
		}
		return db.Driver.GetListener(db.Schema)
	}, &notifier.Config{Schema: db.Schema, ReconnectBackoff: func(int) time.Duration { return 10 * time.Millisecond }})
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop) // registered before the producer's: stops after it

	exec := &wrapExec{Executor: db.Exec()}
	var returned, foundBy atomic.Int64 // fetches returned; the one that returned a job
	exec.fetch = func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
		jobs, err := exec.Executor.JobGetAvailable(ctx, p)
		if n := returned.Add(1); len(jobs) > 0 {
			foundBy.Store(n)
		}
		return jobs, err
	}
	p := newProducer(t, db, exec, Config{FetchPollInterval: time.Hour, Notifier: n})
	startProducer(t, p)
	testwait.For(t, 10*time.Second, "the start-up fetch", func() bool { return returned.Load() == 1 })

	down.Store(true)
	var killed bool
	if err := db.Pool.QueryRow(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND query LIKE $1`, `%LISTEN "`+db.Schema+`.%`).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the listener: killed %v, %v", killed, err)
	}
	// The producer fetches when the connection goes down too; the job is
	// inserted after that fetch, while nobody listens.
	testwait.For(t, 10*time.Second, "the fetch when the listener went down", func() bool { return !n.Connected() && returned.Load() == 2 })
	job := db.InsertJobs(t, 1, "k", "default")[0]

	down.Store(false)
	testwait.For(t, 10*time.Second, "the job inserted while the listener was down completed", func() bool {
		return db.Job(t, job.ID).State == millracetype.JobStateCompleted
	})
	if got := foundBy.Load(); got != 3 {
		t.Errorf("the job was found by fetch %d, want 3 (after start-up and connection lost: connection back)", got)
	}
}
