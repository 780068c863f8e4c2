package pgxv5_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/internal/pgexec"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// bouncerPool returns a pool of at most maxConns connections through the
// PgBouncer at url, in query mode mode. It has no search_path: PgBouncer
// refuses it as a startup parameter, so clients set Config.Schema.
func bouncerPool(t *testing.T, url string, mode pgx.QueryExecMode, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = mode
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestPgBouncerNeedsItsQueryMode shows why the configuration matters: with
// pgx's default query mode a statement prepared on one server connection is
// gone when PgBouncer (transaction mode) gives the client's next statement
// another one, which happens as soon as the first is busy with another
// client's transaction. The modes that prepare nothing in the session
// work in the same sequence.
func TestPgBouncerNeedsItsQueryMode(t *testing.T) {
	t.Parallel()
	url := testdb.PgBouncer(t)
	ctx := t.Context()
	for _, tc := range []struct {
		mode    pgx.QueryExecMode
		wantErr string
	}{
		{pgx.QueryExecModeCacheStatement, `prepared statement "stmtcache_`},
		{pgx.QueryExecModeExec, ""},
		{pgx.QueryExecModeSimpleProtocol, ""},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			connect := func() *pgx.Conn {
				cfg, err := pgx.ParseConfig(url)
				if err != nil {
					t.Fatal(err)
				}
				cfg.DefaultQueryExecMode = tc.mode
				conn, err := pgx.ConnectConfig(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = conn.Close(context.Background()) })
				return conn
			}
			const query = "SELECT $1::int + 1"
			a, b := connect(), connect()
			var n int
			// a's statement (prepared, in the default mode) lives on the
			// server connection that then goes idle ...
			if err := a.QueryRow(ctx, query, 1).Scan(&n); err != nil {
				t.Fatal(err)
			}
			// ... which b's transaction now takes and keeps ...
			tx, err := b.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(context.Background()) }()
			if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			// ... so a's next statement gets a fresh server connection.
			err = a.QueryRow(ctx, query, 2).Scan(&n)
			if tc.wantErr == "" {
				if err != nil || n != 3 {
					t.Fatalf("query through PgBouncer in mode %v: %d, %v", tc.mode, n, err)
				}
				return
			}
			var pgErr *pgconn.PgError
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &pgErr) || pgErr.Code != "26000" {
				t.Fatalf("query through PgBouncer in mode %v: got error %v, want SQLSTATE 26000 %s...", tc.mode, err, tc.wantErr)
			}
		})
	}
}

// pgbArgs is the job of TestPgBouncerTransactionMode: Block makes the
// worker wait until the job is cancelled.
type pgbArgs struct {
	Block bool `json:"block"`
}

func (pgbArgs) Kind() string { return "pgbouncer" }

// TestPgBouncerTransactionMode runs 10,000 jobs through a real PgBouncer in
// transaction mode, once listening through a direct connection (exec
// protocol) and once polling only (simple protocol). Along the way another
// client cancels the jobs that block (remotely: a control notification, or
// the cancel metadata that a polling client reads), pauses and resumes the
// queue, and the working client is stopped halfway and a new one finishes.
// No job may be lost, worked twice, or left running.
func TestPgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	url := testdb.PgBouncer(t)
	for _, tc := range []struct {
		name   string
		mode   pgx.QueryExecMode
		listen bool
	}{
		{"listen_direct_exec", pgx.QueryExecModeExec, true},
		{"poll_only_simple_protocol", pgx.QueryExecModeSimpleProtocol, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runThroughPgBouncer(t, url, tc.mode, tc.listen)
		})
	}
}

// listenerAppName marks the direct connection of the listener.
const listenerAppName = "millrace-pgbouncer-test-listener"

func runThroughPgBouncer(t *testing.T, url string, mode pgx.QueryExecMode, listen bool) {
	const (
		total    = 10_000
		blockers = 20 // every 250th of the first 5,000 jobs
		workers  = 50
	)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	db := testfixture.New(t) // migrated directly; the clients below go through PgBouncer
	opts := &pgxv5.Options{Pooler: true, PollOnly: true}
	if listen {
		direct, err := pgx.ParseConfig(testdb.AdminURL(t))
		if err != nil {
			t.Fatal(err)
		}
		direct.RuntimeParams["application_name"] = listenerAppName
		opts = &pgxv5.Options{Pooler: true, ListenerConfig: direct}
	}
	quiet := slog.New(slog.DiscardHandler)
	newDriver := func() *pgxv5.Driver {
		drv, err := pgxv5.NewWithOptions(bouncerPool(t, url, mode, 10), opts)
		if err != nil {
			t.Fatal(err)
		}
		return drv
	}

	var (
		mu      sync.Mutex
		worked  = map[int64]int{}
		started atomic.Int64
		done    atomic.Int64 // normal jobs that returned
	)
	blocked := make(chan int64, blockers)
	ws := client.NewWorkers()
	client.AddWorker(ws, client.WorkFunc(func(ctx context.Context, job *client.Job[pgbArgs]) error {
		started.Add(1)
		mu.Lock()
		worked[job.ID]++
		mu.Unlock()
		if job.Args.Block {
			blocked <- job.ID
			<-ctx.Done()
			return ctx.Err()
		}
		done.Add(1)
		return nil
	}))
	newWorking := func() *client.Client[pgx.Tx] {
		c, err := client.New(newDriver(), &client.Config{Schema: db.Schema, Workers: ws, JobTimeout: -1, Logger: quiet,
			Queues: map[string]client.QueueConfig{"default": {MaxWorkers: workers}}, FetchPollInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = c.Stop(ctx)
		})
		return c
	}

	// The other client: inserts, cancels, pauses and resumes.
	admin, err := client.New(newDriver(), &client.Config{Schema: db.Schema, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	params := make([]client.InsertManyParams, total)
	for i := range params {
		params[i] = client.InsertManyParams{Args: pgbArgs{Block: i < total/2 && i%(total/2/blockers) == 0}}
	}
	if n, err := admin.InsertManyFast(ctx, params); err != nil || n != total {
		t.Fatalf("insert %d jobs through PgBouncer: %d, %v", total, n, err)
	}

	a := newWorking()
	events, unsubscribe := a.Subscribe(client.EventKindQueuePaused, client.EventKindQueueResumed, client.EventKindJobCancelled)
	defer unsubscribe()
	var cancelled atomic.Int64
	nextEvent := func(kind client.EventKind) {
		t.Helper()
		for {
			select {
			case ev := <-events:
				if ev.Kind == client.EventKindJobCancelled {
					cancelled.Add(1)
				}
				if ev.Kind == kind {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %s event: %v", kind, ctx.Err())
			}
		}
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var cancellers sync.WaitGroup
	defer cancellers.Wait()
	cancellers.Add(1)
	go func() {
		defer cancellers.Done()
		for range blockers {
			select {
			case id := <-blocked:
				if _, err := admin.JobCancel(ctx, id); err != nil {
					t.Errorf("cancel running job %d through PgBouncer: %v", id, err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()

	// The listener is on its direct connection.
	if listen {
		testwait.Until(t, 30*time.Second, func() bool {
			var n int
			err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", listenerAppName).Scan(&n)
			return err == nil && n == 1
		}, "the client listens on its direct connection")
	}

	// Pause: once the client has seen it, at most the jobs already fetched
	// (MaxWorkers) may still start; resume.
	testwait.Until(t, time.Minute, func() bool { return done.Load() >= total/4 }, "%d jobs are done", total/4)
	if err := admin.QueuePause(ctx, "default"); err != nil {
		t.Fatalf("pause through PgBouncer: %v", err)
	}
	nextEvent(client.EventKindQueuePaused)
	atPause := started.Load()
	time.Sleep(500 * time.Millisecond) // a pause that did not hold would start hundreds of jobs here
	if n := started.Load() - atPause; n > workers {
		t.Fatalf("%d jobs started in the 500 ms after the client saw the pause", n)
	}
	if err := admin.QueueResume(ctx, "default"); err != nil {
		t.Fatalf("resume through PgBouncer: %v", err)
	}
	nextEvent(client.EventKindQueueResumed)

	// Stop halfway, once every blocking job has been cancelled: nothing
	// may be left running.
	testwait.Until(t, time.Minute, func() bool { return done.Load() >= total/2 }, "%d jobs are done", total/2)
	for cancelled.Load() < blockers {
		nextEvent(client.EventKindJobCancelled)
	}
	stopCtx, stopCancel := context.WithTimeout(ctx, 30*time.Second)
	defer stopCancel()
	if err := a.Stop(stopCtx); err != nil {
		t.Fatalf("stop through PgBouncer: %v", err)
	}
	if n := countState(t, db, millracetype.JobStateRunning); n != 0 {
		t.Fatalf("%d jobs left running after Stop", n)
	}
	t.Logf("stopped the first client after %d jobs", started.Load())

	b := newWorking()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 2*time.Minute, func() bool { return done.Load() >= total-blockers }, "all %d jobs are done", total-blockers)
	if err := b.Stop(stopCtx); err != nil {
		t.Fatalf("stop through PgBouncer: %v", err)
	}

	if n := countState(t, db, millracetype.JobStateCompleted); n != total-blockers {
		t.Errorf("%d jobs completed, want %d", n, total-blockers)
	}
	if n := countState(t, db, millracetype.JobStateCancelled); n != blockers {
		t.Errorf("%d jobs cancelled, want %d", n, blockers)
	}
	var all int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM river_job").Scan(&all); err != nil || all != total {
		t.Errorf("%d jobs in the table (%v), want %d", all, err, total)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(worked) != total {
		t.Errorf("%d jobs worked, want %d", len(worked), total)
	}
	for id, n := range worked {
		if n != 1 {
			t.Errorf("job %d worked %d times", id, n)
		}
	}
}

// countState counts the schema's jobs in state, reading directly.
func countState(t *testing.T, db *testfixture.DB, state millracetype.JobState) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM river_job WHERE state = $1", string(state)).Scan(&n); err != nil {
		t.Fatal(fmt.Errorf("count %s jobs: %w", state, err))
	}
	return n
}

// TestPgBouncerHotBatch checks what the hot statements rely on behind
// PgBouncer in transaction mode: a pipelined batch (one Sync) is one
// implicit transaction, so its transaction-local setting holds for the
// statement after it on the same server connection, and is gone after the
// batch.
func TestPgBouncerHotBatch(t *testing.T) {
	t.Parallel()
	url := testdb.PgBouncer(t)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			pool := bouncerPool(t, url, mode, 2)
			for range 5 {
				b := &pgx.Batch{}
				b.Queue(pgexec.SQLNoSeqScan)
				var inBatch string
				b.Queue("SELECT current_setting('enable_seqscan')").QueryRow(func(row pgx.Row) error { return row.Scan(&inBatch) })
				if err := pool.SendBatch(ctx, b).Close(); err != nil {
					t.Fatal(err)
				}
				if inBatch != "off" {
					t.Fatalf("enable_seqscan is %q inside the batch, want off", inBatch)
				}
				var after string
				if err := pool.QueryRow(ctx, "SELECT current_setting('enable_seqscan')").Scan(&after); err != nil {
					t.Fatal(err)
				}
				if after != "on" {
					t.Fatalf("enable_seqscan is %q after the batch, want on", after)
				}
			}
		})
	}
}
