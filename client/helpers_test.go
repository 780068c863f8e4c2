package client

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

func TestMain(m *testing.M) { testdb.Main(m) }

type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "noop" }

// testLogger logs warnings and errors to stderr only when MILLRACE_TEST_LOG
// is set, to keep test output readable.
func testLogger() *slog.Logger {
	if os.Getenv("MILLRACE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newClient makes a client on a fresh schema; cfg may leave Schema and
// Logger empty. It is stopped at cleanup.
func newClient(t *testing.T, db *testfixture.DB, cfg *Config) *Client[pgx.Tx] {
	t.Helper()
	return newClientOn(t, db.Driver, db.Schema, cfg)
}

// newClientOn is newClient on another driver (a pool of the test's own).
func newClientOn(t *testing.T, drv driver.Driver[pgx.Tx], schema string, cfg *Config) *Client[pgx.Tx] {
	t.Helper()
	if cfg == nil {
		cfg = &Config{}
	}
	cfg.Schema = schema
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if cfg.FetchPollInterval == 0 {
		cfg.FetchPollInterval = 50 * time.Millisecond
	}
	c, err := New(drv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.StopAndCancel(ctx); err != nil {
			t.Errorf("stop client at cleanup: %v", err)
		}
	})
	return c
}

func start(t *testing.T, c *Client[pgx.Tx]) {
	t.Helper()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// waitJob polls a job until cond holds (10 s at most).
func waitJob(t *testing.T, db *testfixture.DB, id int64, what string, cond func(*millracetype.JobRow) bool) *millracetype.JobRow {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		job := db.Job(t, id)
		if cond(job) {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d never became %s; last: state %s attempt %d errors %v metadata %s", id, what, job.State, job.Attempt, job.Errors, job.Metadata)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitState(t *testing.T, db *testfixture.DB, id int64, state millracetype.JobState) *millracetype.JobRow {
	t.Helper()
	return waitJob(t, db, id, string(state), func(j *millracetype.JobRow) bool { return j.State == state })
}

func waitEvent(t *testing.T, ch <-chan *Event) *Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return nil
	}
}

// recv receives from ch, failing the test after 10 s.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	return recvWithin(t, ch, 10*time.Second, what)
}

// recvWithin receives from ch, failing the test after d.
func recvWithin[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("nothing received within %v: %s", d, what)
		panic("unreachable")
	}
}

func oneQueue(workers int) map[string]QueueConfig {
	return map[string]QueueConfig{QueueDefault: {MaxWorkers: workers}}
}
