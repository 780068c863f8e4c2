package client

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/liveness"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

type blockArgs struct{}

func (blockArgs) Kind() string { return "block" }

func clientTable(db *testfixture.DB) string {
	return pgx.Identifier{db.Schema, "millrace_client"}.Sanitize()
}

// A working client keeps a row in millrace_client from Start to the end of
// Stop, describing itself.
func TestHeartbeatRowLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(context.Context, *Job[noopArgs]) error { return nil }))
	AddWorker(workers, WorkFunc(func(context.Context, *Job[blockArgs]) error { return nil }))
	c := newClient(t, db, &Config{ID: "row_lifecycle", Queues: map[string]QueueConfig{"q1": {MaxWorkers: 1}, "q2": {MaxWorkers: 1}},
		Workers: workers, HeartbeatInterval: 50 * time.Millisecond})
	start(t, c)
	var meta []byte
	var first, second time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT metadata, heartbeat_at FROM `+clientTable(db)+` WHERE client_id = 'row_lifecycle'`).Scan(&meta, &first); err != nil {
		t.Fatalf("the client's row after Start: %v", err)
	}
	var m clientMetadata
	if err := json.Unmarshal(meta, &m); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Kinds, []string{"block", "noop"}) || !slices.Equal(m.Queues, []string{"q1", "q2"}) || m.PID == 0 {
		t.Errorf("metadata %s: want kinds [block noop], queues [q1 q2] and a pid", meta)
	}
	waitFor(t, "a heartbeat", func() bool {
		if err := db.Pool.QueryRow(ctx, `SELECT heartbeat_at FROM `+clientTable(db)+` WHERE client_id = 'row_lifecycle'`).Scan(&second); err != nil {
			t.Fatal(err)
		}
		return second.After(first)
	})
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+clientTable(db)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows after Stop: %d (%v), want 0", n, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A client whose row the database has dead (it was partitioned, say)
// cancels its running jobs, whose outcomes are guarded, and goes on with a
// new lease.
func TestLeaseLostCancelsRunningJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	started := make(chan struct{}, 1)
	causes := make(chan error, 1)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[blockArgs]) error {
		started <- struct{}{}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return ctx.Err()
	}))
	c := newClient(t, db, &Config{ID: "partitioned", Queues: oneQueue(1), Workers: workers,
		HeartbeatInterval: 50 * time.Millisecond, HeartbeatTimeout: time.Second})
	start(t, c)
	res, err := c.Insert(ctx, blockArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, started, "the job started")
	if _, err := db.Pool.Exec(ctx, `UPDATE `+clientTable(db)+` SET heartbeat_at = now() - interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
	if cause := recv(t, causes, "the job cancelled"); !errors.Is(cause, liveness.ErrLeaseLost) {
		t.Fatalf("the job's cancel cause: %v, want ErrLeaseLost", cause)
	}
	// Nobody rescued it (no other client): its own outcome applies, an
	// error on attempt 1 (it is then retried, and may run again at once).
	job := waitJob(t, db, res.Job.ID, "given attempt 1's error", func(j *millracetype.JobRow) bool { return len(j.Errors) > 0 })
	if e := job.Errors[0]; e.Attempt != 1 || e.Error != "context canceled" {
		t.Fatalf("job after the loss: errors %v, want attempt 1's cancellation", job.Errors)
	}
	// A new lease: the row is alive again.
	waitFor(t, "a live row again", func() bool {
		var alive bool
		if err := db.Pool.QueryRow(ctx, `SELECT heartbeat_at > now() - interval '1 second' FROM `+clientTable(db)).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		return alive
	})
}

func TestHeartbeatConfig(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	for name, cfg := range map[string]*Config{
		"negative interval":      {HeartbeatInterval: -time.Second},
		"negative timeout":       {HeartbeatTimeout: -time.Second},
		"timeout under 2 beats":  {HeartbeatInterval: time.Second, HeartbeatTimeout: 1500 * time.Millisecond},
		"timeout under interval": {HeartbeatInterval: 10 * time.Second, HeartbeatTimeout: 5 * time.Second},
	} {
		cfg.Schema = db.Schema
		if _, err := New(db.Driver, cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New returned %v, want ErrInvalidConfig", name, err)
		}
	}
	c, err := New(db.Driver, &Config{Schema: db.Schema, HeartbeatInterval: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if c.config.HeartbeatTimeout != 8*time.Second {
		t.Errorf("default timeout for a 4 s interval: %v, want 8 s (twice the interval)", c.config.HeartbeatTimeout)
	}
	c, err = New(db.Driver, &Config{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	if c.config.HeartbeatInterval != time.Second || c.config.HeartbeatTimeout != 5*time.Second {
		t.Errorf("defaults: %v %v, want 1 s and 5 s", c.config.HeartbeatInterval, c.config.HeartbeatTimeout)
	}
}

// A graceful Stop keeps the heartbeat while running jobs finish, and
// removes the row only once their outcomes are written.
func TestStopRemovesTheRowLast(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	started, release := make(chan struct{}), make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[blockArgs]) error {
		close(started)
		<-release
		return nil
	}))
	c := newClient(t, db, &Config{ID: "stops_last", Queues: oneQueue(1), Workers: workers, HeartbeatInterval: 50 * time.Millisecond})
	start(t, c)
	res, err := c.Insert(ctx, blockArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, started, "the job started")
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(ctx) }()
	rowAlive := func() bool {
		var alive bool
		err := db.Pool.QueryRow(ctx, `SELECT heartbeat_at > now() - interval '1 second' FROM `+clientTable(db)+` WHERE client_id = 'stops_last'`).Scan(&alive)
		if errors.Is(err, pgx.ErrNoRows) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return alive
	}
	// Stopping, the job still running: the heartbeat goes on (checked
	// over a few heartbeat intervals).
	for range 5 {
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned while a job ran: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if !rowAlive() {
			t.Fatal("the row was removed or went stale while a job still ran")
		}
	}
	close(release)
	if err := recv(t, stopped, "Stop returned"); err != nil {
		t.Fatal(err)
	}
	if job := db.Job(t, res.Job.ID); job.State != millracetype.JobStateCompleted {
		t.Fatalf("job after Stop: %s", job.State)
	}
	if rowAlive() {
		t.Fatal("the row is still there after Stop")
	}
}

// A live client rescues a dead client's jobs at once, each by River's rule
// but never discarding a job of a kind it has no worker for (another
// service's): that one is retried, for its own service to judge. The error
// names both clients.
func TestHeartbeatRescueOfAnotherServicesJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO `+clientTable(db)+` (client_id, heartbeat_at) VALUES ('dead_a', now() - interval '30 seconds')`); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Minute)
	theirs := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "service_a_kind", State: millracetype.JobStateRunning, Attempt: 1, MaxAttempts: 1,
		AttemptedAt: &at, AttemptedBy: []string{"dead_a"}})
	ours := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "noop", Args: []byte(`{}`), State: millracetype.JobStateRunning, Attempt: 1,
		MaxAttempts: 1, AttemptedAt: &at, AttemptedBy: []string{"dead_a"}})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(context.Context, *Job[noopArgs]) error { return nil }))
	// Out of leadership, so no scheduler makes the retryable job available
	// before the test reads it (the rescue is every client's, leader or not).
	c := newClient(t, db, &Config{ID: "live_b", Queues: map[string]QueueConfig{"other_queue": {MaxWorkers: 1}}, Workers: workers,
		HeartbeatInterval: 50 * time.Millisecond, LeaderElectionDisabled: true})
	start(t, c)
	want := HeartbeatRescueMessage + " (client dead_a, rescued by live_b)"
	got := waitJob(t, db, theirs.ID, "rescued", func(j *millracetype.JobRow) bool { return j.State != millracetype.JobStateRunning })
	if got.State != millracetype.JobStateRetryable || len(got.Errors) != 1 || got.Errors[0].Error != want {
		t.Errorf("another service's job out of attempts: %s, errors %+v; want retryable with %q", got.State, got.Errors, want)
	}
	got = waitJob(t, db, ours.ID, "rescued", func(j *millracetype.JobRow) bool { return j.State != millracetype.JobStateRunning })
	if got.State != millracetype.JobStateDiscarded || len(got.Errors) != 1 || got.Errors[0].Error != want {
		t.Errorf("a known job out of attempts: %s, errors %+v; want discarded with %q", got.State, got.Errors, want)
	}
}

// Two processes must not share an ID: a second client's Start fails with
// ErrClientIDInUse while the first lives, after waiting for it to die.
func TestClientIDInUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(context.Context, *Job[noopArgs]) error { return nil }))
	cfg := func() *Config {
		return &Config{ID: "one_id", Queues: oneQueue(1), Workers: workers, HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second}
	}
	first := newClient(t, db, cfg())
	start(t, first)
	second := newClient(t, db, cfg())
	if err := second.Start(ctx); !errors.Is(err, ErrClientIDInUse) {
		t.Fatalf("second Start with the same ID: %v, want ErrClientIDInUse", err)
	}
	// After a graceful stop the ID is free at once.
	if err := first.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := second.Start(ctx); err != nil {
		t.Fatalf("Start once the first stopped: %v", err)
	}
}

// A leading client whose heartbeats fail (cut off from the database, in
// this test for heartbeats only) gives its lease up and steps down; the
// other client, seeing its row dead, resigns its term if still there, and
// leads within seconds rather than when the term expires (TTL 15 s,
// extended every 5 s). Once its heartbeats succeed again, it registers anew
// and follows.
func TestLeaseLostGivesUpLeadership(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	leader := func() string {
		var id string
		if err := db.Pool.QueryRow(ctx, `SELECT coalesce((SELECT leader_id FROM `+pgx.Identifier{db.Schema, "river_leader"}.Sanitize()+
			` WHERE expires_at > now()), '')`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	cfg := func(id string) *Config {
		return &Config{ID: id, Queues: oneQueue(1), Workers: NewWorkers(), HeartbeatInterval: 50 * time.Millisecond, HeartbeatTimeout: time.Second}
	}
	cut := &heartbeatCut{Driver: db.Driver}
	a := newClientOn(t, cut, db.Schema, cfg("a"))
	start(t, a)
	waitFor(t, "a leads", func() bool { return leader() == "a" })
	b := newClient(t, db, cfg("b"))
	start(t, b)

	cut.fail.Store(true)
	cutAt := time.Now()
	waitFor(t, "b leads", func() bool { return leader() == "b" })
	if took := time.Since(cutAt); took > 5*time.Second {
		t.Errorf("b led %v after a's heartbeats began to fail (timeout 1 s): leadership waited for a's term to expire", took)
	}
	cut.fail.Store(false)
	waitFor(t, "a's new lease", func() bool {
		var alive bool
		if err := db.Pool.QueryRow(ctx, `SELECT heartbeat_at > now() - interval '1 second' FROM `+clientTable(db)+` WHERE client_id = 'a'`).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		return alive
	})
	if id := leader(); id != "b" {
		t.Errorf("leader %q once a is back, want b still", id)
	}
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a leads again once b stopped", func() bool { return leader() == "a" })
}

// heartbeatCut is a driver whose heartbeats fail while fail is set.
type heartbeatCut struct {
	driver.Driver[pgx.Tx]
	fail atomic.Bool
}

func (d *heartbeatCut) GetExecutor() driver.Executor {
	return &heartbeatCutExec{Executor: d.Driver.GetExecutor(), fail: &d.fail}
}

type heartbeatCutExec struct {
	driver.Executor
	fail *atomic.Bool
}

func (e *heartbeatCutExec) ClientHeartbeat(ctx context.Context, p *driver.ClientHeartbeatParams) (*driver.ClientHeartbeatResult, error) {
	if e.fail.Load() {
		return nil, errors.New("test: heartbeats cut off")
	}
	return e.Executor.ClientHeartbeat(ctx, p)
}
