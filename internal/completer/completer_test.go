package completer

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

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testlog"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// fetchAll marks the schema's available jobs running, as a producer would.
func fetchAll(t *testing.T, db *testfixture.DB, n int) []*millracetype.JobRow {
	t.Helper()
	jobs, err := db.Exec().JobGetAvailable(context.Background(), &driver.JobGetAvailableParams{
		Schema: db.Schema, Queue: "default", Max: n, ClientID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != n {
		t.Fatalf("fetched %d jobs, want %d", len(jobs), n)
	}
	return jobs
}

func completed(id int64) *driver.JobSetState {
	now := time.Now()
	return &driver.JobSetState{ID: id, State: millracetype.JobStateCompleted, FinalizedAt: &now}
}

func TestCompletesManyConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	const n = 3000
	db.InsertJobs(t, n, "k", "default")
	jobs := fetchAll(t, db, n)

	var written atomic.Int64
	var batches atomic.Int64
	c := New(db.Exec(), &Config{Schema: db.Schema, MaxBatch: 500, OnWritten: func(r []Result) {
		batches.Add(1)
		for _, res := range r {
			if res.Job == nil || res.Job.State != millracetype.JobStateCompleted {
				t.Errorf("result for job %d: %+v", res.SetState.ID, res.Job)
			}
		}
		written.Add(int64(len(r)))
	}})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			for i := w; i < n; i += 20 {
				if err := c.Complete(ctx, completed(jobs[i].ID), nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	c.Stop()
	if got := written.Load(); got != n {
		t.Fatalf("%d outcomes reported, want %d", got, n)
	}
	if counts := db.CountByState(t); counts[millracetype.JobStateCompleted] != n {
		t.Fatalf("states after stop: %v", counts)
	}
	// Batching happened: far fewer statements than jobs.
	if b := batches.Load(); b >= n/2 {
		t.Fatalf("%d batches for %d jobs: not batching", b, n)
	}
}

// TestStopFlushes queues outcomes and stops at once: all are written.
func TestStopFlushes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	db.InsertJobs(t, 200, "k", "default")
	jobs := fetchAll(t, db, 200)
	c := New(db.Exec(), &Config{Schema: db.Schema, MaxBatch: 10})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if err := c.Complete(ctx, completed(j.ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop()
	if counts := db.CountByState(t); counts[millracetype.JobStateCompleted] != 200 {
		t.Fatalf("states after stop: %v", counts)
	}
	// Restartable.
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.Stop()
}

// flakyExec fails the first writes, as a database that is briefly gone.
type flakyExec struct {
	driver.Executor
	failures atomic.Int64
	calls    atomic.Int64
	gate     chan struct{} // when set, each write waits for it
}

func (f *flakyExec) JobSetStateIfRunningMany(ctx context.Context, p *driver.JobSetStateIfRunningManyParams) ([]*millracetype.JobRow, error) {
	f.calls.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.failures.Add(-1) >= 0 {
		return nil, errors.New("connection refused (simulated)")
	}
	return f.Executor.JobSetStateIfRunningMany(ctx, p)
}

func TestRetriesFailedWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	db.InsertJobs(t, 5, "k", "default")
	jobs := fetchAll(t, db, 5)
	exec := &flakyExec{Executor: db.Exec()}
	exec.failures.Store(3)
	c := New(exec, &Config{Schema: db.Schema, RetryBackoff: time.Millisecond})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for _, j := range jobs {
		if err := c.Complete(ctx, completed(j.ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitIdle()
	if counts := db.CountByState(t); counts[millracetype.JobStateCompleted] != 5 {
		t.Fatalf("states: %v", counts)
	}
	if exec.calls.Load() < 4 {
		t.Fatalf("%d write attempts, want at least 4 (3 failures, then success)", exec.calls.Load())
	}
}

// TestBackPressure: with MaxPending outcomes waiting, Complete blocks until
// the database takes some.
func TestBackPressure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	db.InsertJobs(t, 10, "k", "default")
	jobs := fetchAll(t, db, 10)
	exec := &flakyExec{Executor: db.Exec(), gate: make(chan struct{})}
	c := New(exec, &Config{Schema: db.Schema, MaxPending: 2, MaxBatch: 2})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	// The first outcome is taken into a write that waits at the gate; two
	// more fill the queue; the next must block.
	if err := c.Complete(ctx, completed(jobs[0].ID), nil); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the first write to start", func() bool { return exec.calls.Load() == 1 })
	for i := 1; i <= 2; i++ {
		if err := c.Complete(ctx, completed(jobs[i].ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := c.Complete(short, completed(jobs[3].ID), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Complete on a full queue returned %v, want it to block until the deadline", err)
	}
	close(exec.gate)
	for i := 3; i < 10; i++ {
		if err := c.Complete(ctx, completed(jobs[i].ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitIdle()
	if counts := db.CountByState(t); counts[millracetype.JobStateCompleted] != 10 {
		t.Fatalf("states: %v", counts)
	}
}

// TestStopGivesUpAfterLimit: with the database gone for good, Stop returns
// after StopFlushLimit and the job stays running for the rescuer.
func TestStopGivesUpAfterLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	db.InsertJobs(t, 1, "k", "default")
	jobs := fetchAll(t, db, 1)
	exec := &flakyExec{Executor: db.Exec()}
	exec.failures.Store(1 << 40)
	c := New(exec, &Config{Schema: db.Schema, RetryBackoff: time.Millisecond, StopFlushLimit: 200 * time.Millisecond})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(ctx, completed(jobs[0].ID), nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Stop()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Stop took %s with StopFlushLimit 200ms", took)
	}
	if job := db.Job(t, jobs[0].ID); job.State != millracetype.JobStateRunning {
		t.Fatalf("job is %s, want still running", job.State)
	}
}

// WantRows false: outcomes are written without reading rows back and
// OnWritten is not called; true again: it is.
func TestWantRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	db.InsertJobs(t, 4, "k", "default")
	jobs := fetchAll(t, db, 4)
	var want atomic.Bool
	var reported atomic.Int64
	c := New(db.Exec(), &Config{Schema: db.Schema, WantRows: want.Load, OnWritten: func(r []Result) {
		for _, res := range r {
			if res.Job == nil || res.Job.State != millracetype.JobStateCompleted {
				t.Errorf("result for job %d: %+v", res.SetState.ID, res.Job)
			}
		}
		reported.Add(int64(len(r)))
	}})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for _, j := range jobs[:2] {
		if err := c.Complete(ctx, completed(j.ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitIdle()
	if n := reported.Load(); n != 0 {
		t.Fatalf("%d results reported while WantRows says no", n)
	}
	if counts := db.CountByState(t); counts[millracetype.JobStateCompleted] != 2 {
		t.Fatalf("states after writing without rows: %v", counts)
	}
	want.Store(true)
	for _, j := range jobs[2:] {
		if err := c.Complete(ctx, completed(j.ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitIdle()
	if n := reported.Load(); n != 2 {
		t.Fatalf("%d results reported once WantRows says yes, want 2", n)
	}
	if counts := db.CountByState(t); counts[millracetype.JobStateCompleted] != 4 {
		t.Fatalf("states: %v", counts)
	}
}

// TestMinWriteInterval: after a quiet spell an outcome is written at once;
// one right after waits for MinWriteInterval since the previous write
// began, unless a full batch waits.
func TestMinWriteInterval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	db.InsertJobs(t, 12, "k", "default")
	jobs := fetchAll(t, db, 12)
	writes := make(chan time.Time, 20)
	const interval = time.Second
	c := New(db.Exec(), &Config{Schema: db.Schema, MaxBatch: 10, MinWriteInterval: interval,
		OnWritten: func([]Result) { writes <- time.Now() }})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	recvWrite := func(what string) time.Time {
		t.Helper()
		select {
		case at := <-writes:
			return at
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
			return time.Time{}
		}
	}
	began := time.Now()
	if err := c.Complete(ctx, completed(jobs[0].ID), nil); err != nil {
		t.Fatal(err)
	}
	first := recvWrite("the first write")
	if d := first.Sub(began); d >= interval {
		t.Errorf("the first outcome after a quiet spell took %s to be written", d)
	}
	if err := c.Complete(ctx, completed(jobs[1].ID), nil); err != nil {
		t.Fatal(err)
	}
	second := recvWrite("the second write")
	// The second write began at least interval after the first began,
	// which was before began+d; OnWritten runs after the write ends.
	if d := second.Sub(began); d < interval {
		t.Errorf("the second write came %s after the first outcome, want at least %s", d, interval)
	}

	// A full batch does not wait: set a long interval's worth of outcomes
	// at once, right after a write.
	c2 := New(db.Exec(), &Config{Schema: db.Schema, MaxBatch: 10, MinWriteInterval: time.Hour,
		OnWritten: func([]Result) { writes <- time.Now() }})
	if err := c2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c2.Stop()
	db.InsertJobs(t, 11, "k", "default")
	more := fetchAll(t, db, 11)
	if err := c2.Complete(ctx, completed(more[0].ID), nil); err != nil {
		t.Fatal(err)
	}
	recvWrite("c2's first write")
	for _, j := range more[1:] {
		if err := c2.Complete(ctx, completed(j.ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	recvWrite("the full batch's write, without waiting for the hour")
	if counts := db.CountByState(t); counts[millracetype.JobStateCompleted] != 13 {
		t.Errorf("states: %v, want 13 completed", counts)
	}
}

// TestBackPressureReleasesAllWaiters: when a write makes room for many
// outcomes, every Complete blocked on the full completer goes through, not
// one per write.
func TestBackPressureReleasesAllWaiters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	db.InsertJobs(t, 9, "k", "default")
	jobs := fetchAll(t, db, 9)
	exec := &flakyExec{Executor: db.Exec(), gate: make(chan struct{})}
	c := New(exec, &Config{Schema: db.Schema, MaxPending: 4, MaxBatch: 4, MinWriteInterval: -1})
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(exec.gate)
		c.Stop()
	}()
	// The first outcome goes into a write held at the gate; four more fill
	// the queue; four Completes then block.
	if err := c.Complete(ctx, completed(jobs[0].ID), nil); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the first write to start", func() bool { return exec.calls.Load() == 1 })
	for i := 1; i <= 4; i++ {
		if err := c.Complete(ctx, completed(jobs[i].ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	var returned atomic.Int64
	var wg sync.WaitGroup
	for i := 5; i <= 8; i++ {
		wg.Go(func() {
			if err := c.Complete(ctx, completed(jobs[i].ID), nil); err != nil {
				t.Error(err)
			}
			returned.Add(1)
		})
	}
	time.Sleep(20 * time.Millisecond)
	if n := returned.Load(); n != 0 {
		t.Fatalf("%d Completes returned on a full completer", n)
	}
	// One write passes the gate; the next takes the four queued outcomes
	// (and waits at the gate): there is room for all four blocked ones.
	exec.gate <- struct{}{}
	testwait.For(t, 10*time.Second, "the second write to start", func() bool { return exec.calls.Load() == 2 })
	testwait.For(t, 10*time.Second, "the four blocked Completes to return", func() bool { return returned.Load() == 4 })
	wg.Wait()
}

// An outcome for an attempt the job has moved past (it was rescued and
// fetched again) is dropped by the database and named in a log line, with
// or without rows read back; the others of its batch are written.
func TestLogsDroppedLateOutcomes(t *testing.T) {
	for _, rows := range []bool{false, true} {
		t.Run(fmt.Sprintf("rows=%v", rows), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := testfixture.New(t)
			db.InsertJobs(t, 3, "k", "default")
			jobs := fetchAll(t, db, 3)
			// Job 0 was rescued and runs attempt 2 elsewhere now; job 1
			// was deleted.
			if _, err := db.Pool.Exec(ctx, `UPDATE `+pgx.Identifier{db.Schema, "river_job"}.Sanitize()+
				` SET attempt = 2, attempted_by = attempted_by || '{other}' WHERE id = $1`, jobs[0].ID); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Pool.Exec(ctx, `DELETE FROM `+pgx.Identifier{db.Schema, "river_job"}.Sanitize()+` WHERE id = $1`, jobs[1].ID); err != nil {
				t.Fatal(err)
			}
			var logs testlog.Buffer
			cfg := &Config{Schema: db.Schema, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			if rows {
				cfg.OnWritten = func([]Result) {}
			}
			c := New(db.Exec(), cfg)
			// Queued before Start: one batch.
			for _, j := range jobs {
				s := completed(j.ID)
				s.Attempt = 1
				if err := c.Complete(ctx, s, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			c.Stop()
			if got := db.Job(t, jobs[0].ID); got.State != millracetype.JobStateRunning || got.Attempt != 2 {
				t.Errorf("the rescued job: %s attempt %d, want running attempt 2 (untouched)", got.State, got.Attempt)
			}
			if got := db.Job(t, jobs[2].ID); got.State != millracetype.JobStateCompleted {
				t.Errorf("the job still ours: %s, want completed", got.State)
			}
			out := logs.String()
			want := fmt.Sprintf("outcomes=2 jobs=\"[%d %d]\"", jobs[0].ID, jobs[1].ID)
			if !strings.Contains(out, "job outcomes not recorded") || !strings.Contains(out, want) {
				t.Fatalf("log:\n%s\nwant the dropped outcomes' line with %s", out, want)
			}
		})
	}
}

// TestCompleteWakesOnlyWhenNeeded: Complete wakes the writer when it waits
// for a wake-up (nothing was pending when it last looked) or when a full
// batch waits; a writer that looks again by itself (it is writing, or its
// interval timer is armed) is not woken once per outcome.
func TestCompleteWakesOnlyWhenNeeded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := New(nil, &Config{MaxBatch: 3})
	wakes := func() int {
		select {
		case <-c.wake:
			return 1
		default:
			return 0
		}
	}
	_ = c.Complete(ctx, &driver.JobSetState{ID: 1}, nil)
	if wakes() != 1 {
		t.Error("a new completer was not woken by its first outcome")
	}
	_ = c.Complete(ctx, &driver.JobSetState{ID: 2}, nil)
	if wakes() != 0 {
		t.Error("woken again while the writer had not looked yet")
	}
	_ = c.Complete(ctx, &driver.JobSetState{ID: 3}, nil)
	if wakes() != 1 {
		t.Error("not woken when a full batch waits")
	}
	if n := c.pendingLenListen(); n != 3 {
		t.Fatalf("%d pending, want 3", n)
	}
	c.mu.Lock()
	c.pending = nil
	c.mu.Unlock()
	if c.pendingLenListen() != 0 {
		t.Fatal("pending not emptied")
	}
	_ = c.Complete(ctx, &driver.JobSetState{ID: 4}, nil)
	if wakes() != 1 {
		t.Error("not woken after the writer found nothing pending")
	}
}
