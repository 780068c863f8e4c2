package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

func TestInsertAndWork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	got := make(chan int, 1)
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		got <- job.Args.N
		return RecordOutput(ctx, map[string]int{"double": job.Args.N * 2})
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(5), Workers: workers})
	events, unsubscribe := c.Subscribe(EventKindJobCompleted)
	defer unsubscribe()
	start(t, c)

	res, err := c.Insert(ctx, noopArgs{N: 21}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Job.State != millracetype.JobStateAvailable || res.Job.Queue != "default" || res.Job.MaxAttempts != 25 || res.Job.Priority != 1 {
		t.Fatalf("inserted %+v", res.Job)
	}
	if n := <-got; n != 21 {
		t.Fatalf("worker got %d", n)
	}
	ev := waitEvent(t, events)
	if ev.Job.ID != res.Job.ID || ev.Job.State != millracetype.JobStateCompleted || ev.Job.FinalizedAt == nil {
		t.Fatalf("event %+v", ev.Job)
	}
	var meta struct {
		Output struct{ Double int } `json:"output"`
	}
	if err := json.Unmarshal(ev.Job.Metadata, &meta); err != nil || meta.Output.Double != 42 {
		t.Fatalf("metadata %s", ev.Job.Metadata)
	}
	if ev.Job.AttemptedBy[0] != c.ID() {
		t.Fatalf("attempted_by %v, want %s", ev.Job.AttemptedBy, c.ID())
	}
}

// TestOutcomes checks each way a job can end.
func TestOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)

	type args struct {
		Mode string `json:"mode"`
	}
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[outcomeArgs]) error {
		switch job.Args.Mode {
		case "ok":
			return nil
		case "error":
			return errors.New("boom")
		case "panic":
			panic("kaboom")
		case "cancel":
			return JobCancel(errors.New("no point"))
		case "snooze":
			return JobSnooze(time.Hour)
		case "snooze-short":
			if job.Attempt == 1 && !strings.Contains(string(job.Metadata), "snoozes") {
				return JobSnooze(time.Millisecond)
			}
			return nil
		case "snooze-negative":
			return JobSnooze(-time.Second)
		case "timeout":
			<-ctx.Done()
			return ctx.Err()
		}
		return fmt.Errorf("unknown mode %q", job.Args.Mode)
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(10), Workers: workers, JobTimeout: 200 * time.Millisecond})
	start(t, c)
	insert := func(mode string, opts *InsertOpts) int64 {
		res, err := c.Insert(ctx, outcomeArgs{Mode: mode}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return res.Job.ID
	}

	ok := waitState(t, db, insert("ok", nil), millracetype.JobStateCompleted)
	if ok.Attempt != 1 || len(ok.Errors) != 0 {
		t.Errorf("completed job: %+v", ok)
	}

	failed := waitJob(t, db, insert("error", nil), "errored", func(j *millracetype.JobRow) bool { return len(j.Errors) > 0 })
	if e := failed.Errors[0]; e.Error != "boom" || e.Attempt != 1 || e.At.IsZero() || e.Trace != "" {
		t.Errorf("error entry %+v", e)
	}
	// First retry is about 1 s away: written available with a future
	// scheduled_at (retryable needs the scheduler).
	if failed.State != millracetype.JobStateAvailable && failed.State != millracetype.JobStateRunning {
		t.Errorf("after first error: state %s", failed.State)
	}

	discarded := waitState(t, db, insert("error", &InsertOpts{MaxAttempts: 1}), millracetype.JobStateDiscarded)
	if discarded.FinalizedAt == nil || len(discarded.Errors) != 1 {
		t.Errorf("discarded job: %+v", discarded)
	}

	panicked := waitJob(t, db, insert("panic", &InsertOpts{MaxAttempts: 1}), "discarded", func(j *millracetype.JobRow) bool {
		return j.State == millracetype.JobStateDiscarded
	})
	if e := panicked.Errors[0]; e.Error != "kaboom" || !strings.Contains(e.Trace, "client.TestOutcomes") || !strings.Contains(e.Trace, "\n\t") {
		t.Errorf("panic entry: %q trace:\n%s", e.Error, e.Trace)
	}

	cancelled := waitState(t, db, insert("cancel", nil), millracetype.JobStateCancelled)
	if cancelled.FinalizedAt == nil || cancelled.Errors[0].Error != "JobCancelError: no point" {
		t.Errorf("cancelled job: %+v", cancelled)
	}

	snoozed := waitState(t, db, insert("snooze", nil), millracetype.JobStateScheduled)
	if snoozed.Attempt != 0 || len(snoozed.Errors) != 0 || !strings.Contains(string(snoozed.Metadata), `"snoozes": 1`) ||
		snoozed.ScheduledAt.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("snoozed job: attempt %d errors %v metadata %s scheduled %s", snoozed.Attempt, snoozed.Errors, snoozed.Metadata, snoozed.ScheduledAt)
	}

	short := waitState(t, db, insert("snooze-short", nil), millracetype.JobStateCompleted)
	if short.Attempt != 1 || !strings.Contains(string(short.Metadata), `"snoozes": 1`) {
		t.Errorf("short snooze then complete: attempt %d metadata %s", short.Attempt, short.Metadata)
	}

	neg := waitJob(t, db, insert("snooze-negative", &InsertOpts{MaxAttempts: 1}), "discarded", func(j *millracetype.JobRow) bool {
		return j.State == millracetype.JobStateDiscarded
	})
	if !strings.Contains(neg.Errors[0].Error, "negative") {
		t.Errorf("negative snooze: %v", neg.Errors)
	}

	timedOut := waitState(t, db, insert("timeout", &InsertOpts{MaxAttempts: 1}), millracetype.JobStateDiscarded)
	if !strings.Contains(timedOut.Errors[0].Error, "deadline exceeded") {
		t.Errorf("timed out job: %v", timedOut.Errors)
	}
	_ = args{}
}

type outcomeArgs struct {
	Mode string `json:"mode"`
}

func (outcomeArgs) Kind() string { return "outcome" }

type unknownArgs struct{}

func (unknownArgs) Kind() string { return "nobody_works_this" }

// TestUnknownKindAndBadArgs: a job no worker knows is left alone for a
// client that has a worker for it (not fetched, not discarded); one whose
// args do not decode gets an error recorded and is retried; others flow.
func TestUnknownKindAndBadArgs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil }))
	c := newClient(t, db, &Config{Queues: oneQueue(3), Workers: workers})
	start(t, c)

	unknown, err := c.Insert(ctx, unknownArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "noop", Args: []byte(`{"n": "not a number"}`)})
	good, err := c.Insert(ctx, noopArgs{N: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, db, good.Job.ID, millracetype.JobStateCompleted)
	b := waitJob(t, db, bad.ID, "errored", func(j *millracetype.JobRow) bool { return len(j.Errors) > 0 })
	if !strings.Contains(b.Errors[0].Error, "decode args") || b.State.Finalized() {
		t.Errorf("bad args: state %s errors %v", b.State, b.Errors)
	}
	// The unknown one, inserted first, was passed over: never fetched.
	if u := db.Job(t, unknown.Job.ID); u.State != millracetype.JobStateAvailable || u.Attempt != 0 || len(u.Errors) != 0 {
		t.Errorf("unknown kind: state %s attempt %d errors %v; want it left available and untouched", u.State, u.Attempt, u.Errors)
	}
	// A client that has the worker works it.
	knows := NewWorkers()
	AddWorker(knows, WorkFunc(func(ctx context.Context, job *Job[unknownArgs]) error { return nil }))
	start(t, newClient(t, db, &Config{Queues: oneQueue(1), Workers: knows}))
	waitState(t, db, unknown.Job.ID, millracetype.JobStateCompleted)
}

// TestUnknownKindNeverDiscarded: a job of a kind the client has no worker
// for, if it reaches Work anyway (a client working every kind, as one with
// no workers at all does), gets an error recorded, its attempt given back
// and a retry, even when out of attempts: another client may know it.
func TestUnknownKindNeverDiscarded(t *testing.T) {
	t.Parallel()
	c, err := New(pgxv5.New(nil), &Config{Workers: NewWorkers()})
	if err != nil {
		t.Fatal(err)
	}
	row := &millracetype.JobRow{ID: 7, Kind: "nobody_works_this", Attempt: 1, MaxAttempts: 1, Args: []byte(`{}`)}
	s, kind := c.exec.Execute(context.Background(), row, time.Now())
	if s.State.Finalized() || !s.AttemptDecrement || s.Error == nil || s.ScheduledAt == nil || eventKind(kind) != EventKindJobFailed {
		t.Fatalf("outcome %+v (%s); want a retry with the attempt given back and an error", s, eventKind(kind))
	}
	if !strings.Contains(s.Error.Error, `job kind "nobody_works_this" is not registered`) {
		t.Errorf("error %q", s.Error.Error)
	}
}

type handler struct {
	errs, panics atomic.Int64
}

func (h *handler) HandleError(ctx context.Context, job *millracetype.JobRow, err error) *ErrorHandlerResult {
	h.errs.Add(1)
	return &ErrorHandlerResult{SetCancelled: true}
}

func (h *handler) HandlePanic(ctx context.Context, job *millracetype.JobRow, v any, trace string) *ErrorHandlerResult {
	h.panics.Add(1)
	return nil
}

type retryAtWorker struct {
	WorkerDefaults[outcomeArgs]
}

func (retryAtWorker) Work(ctx context.Context, job *Job[outcomeArgs]) error {
	if job.Args.Mode == "panic" {
		panic("p")
	}
	return errors.New("fail")
}

func (retryAtWorker) NextRetry(job *Job[outcomeArgs]) time.Time { return time.Now().Add(3 * time.Hour) }

func TestErrorHandlerAndNextRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, outcomeWorker(retryAtWorker{}))
	h := &handler{}
	c := newClient(t, db, &Config{Queues: oneQueue(3), Workers: workers, ErrorHandler: h})
	start(t, c)
	res, err := c.Insert(ctx, outcomeArgs{Mode: "error"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, db, res.Job.ID, millracetype.JobStateCancelled)
	res, err = c.Insert(ctx, outcomeArgs{Mode: "panic"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	job := waitState(t, db, res.Job.ID, millracetype.JobStateRetryable)
	if d := time.Until(job.ScheduledAt); d < 2*time.Hour || d > 4*time.Hour {
		t.Errorf("worker NextRetry ignored: scheduled in %s", d)
	}
	if h.errs.Load() != 1 || h.panics.Load() != 1 {
		t.Errorf("handler saw %d errors, %d panics", h.errs.Load(), h.panics.Load())
	}
}

func outcomeWorker(w Worker[outcomeArgs]) Worker[outcomeArgs] { return w }

// TestStopFinishesRunningJobs: Stop while 500 jobs run lets them all finish
// and leaves none running.
func TestStopFinishesRunningJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	const n = 500
	var started, finished atomic.Int64
	allStarted := make(chan struct{})
	release := make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		if started.Add(1) == n {
			close(allStarted)
		}
		<-release
		finished.Add(1)
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(n), Workers: workers})
	params := make([]InsertManyParams, n)
	for i := range params {
		params[i] = InsertManyParams{Args: noopArgs{N: i}}
	}
	if _, err := c.InsertManyFast(ctx, params); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	select {
	case <-allStarted:
	case <-time.After(20 * time.Second):
		t.Fatalf("only %d of %d jobs started", started.Load(), n)
	}
	stopDone := make(chan error, 1)
	go func() { stopDone <- c.Stop(ctx) }()
	select {
	case err := <-stopDone:
		t.Fatalf("Stop returned (%v) while jobs were still running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-stopDone; err != nil {
		t.Fatal(err)
	}
	if finished.Load() != n {
		t.Fatalf("%d jobs finished", finished.Load())
	}
	if counts := db.CountByState(t); counts[millracetype.JobStateCompleted] != n {
		t.Fatalf("states after Stop: %v", counts)
	}
	// A second Stop is harmless; the client can start again.
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	start(t, c)
}

// TestStopAndCancel: workers that honour ctx stop promptly; their jobs go
// back to available without using an attempt.
func TestStopAndCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	const n = 50
	var started atomic.Int64
	allStarted := make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		if started.Add(1) == n {
			close(allStarted)
		}
		<-ctx.Done()
		return ctx.Err()
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(n), Workers: workers, JobTimeout: -1})
	params := make([]InsertManyParams, n)
	for i := range params {
		params[i] = InsertManyParams{Args: noopArgs{N: i}}
	}
	if _, err := c.InsertMany(ctx, params); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	<-allStarted
	begin := time.Now()
	if err := c.StopAndCancel(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > time.Second {
		t.Fatalf("StopAndCancel took %s", took)
	}
	counts := db.CountByState(t)
	if counts[millracetype.JobStateAvailable] != n {
		t.Fatalf("states after StopAndCancel: %v", counts)
	}
	jobs, err := c.JobList(ctx, &JobListParams{Limit: n})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Jobs {
		if j.Attempt != 0 || len(j.Errors) != 0 {
			t.Fatalf("job %d after soft stop: attempt %d errors %v", j.ID, j.Attempt, j.Errors)
		}
	}
}

// TestStopDeadline: a worker that ignores ctx makes Stop return its
// context's error on time; StopAndCancel later still works.
func TestStopDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	release := make(chan struct{})
	running := make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		close(running)
		<-release
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, JobTimeout: -1})
	start(t, c)
	res, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-running
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if err := c.Stop(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with a deadline returned %v", err)
	}
	if took := time.Since(begin); took > time.Second {
		t.Fatalf("Stop with a 100ms deadline took %s", took)
	}
	close(release)
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
}

// failingListenerDriver makes the notifier's connection fail, to fail a
// client's Start half way.
type failingListenerDriver struct {
	driver.Driver[pgx.Tx]
	fail atomic.Bool
}

func (d *failingListenerDriver) GetListener(schema string) (driver.Listener, error) {
	if d.fail.Load() {
		return nil, errors.New("listener refused (test)")
	}
	return d.Driver.GetListener(schema)
}

func TestStartFailureRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	drv := &failingListenerDriver{Driver: db.Driver}
	drv.fail.Store(true)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil }))
	c, err := New[pgx.Tx](drv, &Config{Schema: db.Schema, Queues: oneQueue(2), Workers: workers, Logger: testLogger(),
		FetchPollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err == nil || !strings.Contains(err.Error(), "listener refused") {
		t.Fatalf("Start with a failing notifier: %v", err)
	}
	// Nothing runs: a job inserted now stays available.
	res, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop after a failed start: %v", err)
	}
	if job := db.Job(t, res.Job.ID); job.State != millracetype.JobStateAvailable {
		t.Fatalf("job %s after failed start", job.State)
	}
	drv.fail.Store(false)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCancelFromAnotherClient: JobCancel on an insert-only client reaches
// the job running in a worker client through the control notification.
func TestCancelFromAnotherClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	running := make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		close(running)
		<-ctx.Done()
		return ctx.Err()
	}))
	worker := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, JobTimeout: -1})
	start(t, worker)
	admin := newClient(t, db, nil)
	res, err := admin.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-running
	job, err := admin.JobCancel(ctx, res.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != millracetype.JobStateRunning {
		t.Fatalf("JobCancel of a running job returned state %s", job.State)
	}
	done := waitState(t, db, res.Job.ID, millracetype.JobStateCancelled)
	if done.Errors[len(done.Errors)-1].Error != "JobCancelError: job cancelled remotely" {
		t.Fatalf("errors %v", done.Errors)
	}
}

// TestUniqueInsertsUnderConcurrency: many goroutines insert the same unique
// job; exactly one is created.
func TestUniqueInsertsUnderConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	var wg sync.WaitGroup
	var inserted, dup atomic.Int64
	ids := sync.Map{}
	for range 20 {
		wg.Go(func() {
			for range 10 {
				res, err := c.Insert(ctx, noopArgs{N: 7}, &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true}})
				if err != nil {
					t.Error(err)
					return
				}
				ids.Store(res.Job.ID, true)
				if res.UniqueSkippedAsDuplicate {
					dup.Add(1)
				} else {
					inserted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	count := 0
	ids.Range(func(_, _ any) bool { count++; return true })
	if inserted.Load() != 1 || dup.Load() != 199 || count != 1 {
		t.Fatalf("inserted %d, duplicates %d, distinct ids %d", inserted.Load(), dup.Load(), count)
	}
	if counts := db.CountByState(t); counts[millracetype.JobStateAvailable] != 1 {
		t.Fatalf("states: %v", counts)
	}
}

// TestInsertTx: a job inserted in a transaction exists only once it
// commits, and is then worked promptly (its notification is sent at commit).
func TestInsertTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	got := make(chan int64, 10)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { got <- job.ID; return nil }))
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers, FetchPollInterval: time.Hour})
	start(t, c)

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rolledBack, err := c.InsertTx(ctx, tx, noopArgs{N: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.JobGet(ctx, rolledBack.Job.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rolled back job: %v", err)
	}

	tx, err = db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := c.InsertTx(ctx, tx, noopArgs{N: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// FetchPollInterval is an hour: only the notification can start it.
	select {
	case id := <-got:
		if id != committed.Job.ID {
			t.Fatalf("worked job %d, want %d", id, committed.Job.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("committed job not worked: no insert notification?")
	}
}

// TestInsertLatency measures insert-to-start latency, from the working
// client itself (its producer is poked at once) and from another client
// (through the insert notification), and reports it: the numbers go in the
// closing note; they are not asserted.
func TestInsertLatency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	startedAt := make(chan time.Time, 1)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { startedAt <- time.Now(); return nil }))
	c := newClient(t, db, &Config{Queues: oneQueue(5), Workers: workers, FetchPollInterval: time.Hour,
		FetchCooldown: time.Millisecond})
	start(t, c)
	other := newClient(t, db, &Config{FetchCooldown: time.Millisecond})
	for _, tc := range []struct {
		name     string
		inserter *Client[pgx.Tx]
	}{{"same client", c}, {"another client", other}} {
		const n = 50
		lat := make([]time.Duration, 0, n)
		for i := range n {
			before := time.Now()
			if _, err := tc.inserter.Insert(ctx, noopArgs{N: i}, nil); err != nil {
				t.Fatal(err)
			}
			select {
			case at := <-startedAt:
				lat = append(lat, at.Sub(before))
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: job %d never started", tc.name, i)
			}
			time.Sleep(2 * time.Millisecond) // past the notification window
		}
		slices.Sort(lat)
		t.Logf("insert->start latency, %s, %d jobs: p50 %s, p90 %s, max %s", tc.name, n, lat[n/2], lat[n*9/10], lat[n-1])
	}
}

// TestTrailingInsertNotification: an insert that goes without a
// notification because the inserting client's pace was spent (a burst of
// notifyBurst within its FetchCooldown) is followed by one when the pace
// allows, so a worker whose trailing fetch came earlier still starts it
// without a poll.
func TestTrailingInsertNotification(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	got := make(chan int64, 10)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { got <- job.ID; return nil }))
	// The worker's own trailing fetch comes 2 ms after a notification; the
	// inserter's pace is one notification per 3 s; nothing polls.
	worker := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers, FetchPollInterval: time.Hour,
		FetchCooldown: 2 * time.Millisecond})
	start(t, worker)
	inserter := newClient(t, db, &Config{FetchCooldown: 3 * time.Second})
	expect := func(want int64) {
		t.Helper()
		select {
		case id := <-got:
			if id != want {
				t.Fatalf("worked job %d, want %d", id, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("job %d not worked", want)
		}
	}
	for i := range notifyBurst {
		res, err := inserter.Insert(ctx, noopArgs{N: i}, nil)
		if err != nil {
			t.Fatal(err)
		}
		expect(res.Job.ID) // through the burst's notifications
	}
	// The burst took less than half a token's time (FetchCooldown /
	// notifyPerCooldown), so the bucket holds less than half a token: the
	// next insert goes without a notification.
	lim := inserter.notifyLimit
	lim.mu.Lock()
	tokens := lim.bucket(QueueDefault, time.Now()).tokens
	lim.mu.Unlock()
	if tokens >= 0.5 {
		t.Fatalf("%.2f tokens left after the burst, want fewer than 0.5 (the burst took more than %v)", tokens, lim.window/2)
	}
	last, err := inserter.Insert(ctx, noopArgs{N: notifyBurst}, nil)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	expect(last.Job.ID) // only a trailing notification can start it
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("the job beyond the burst started %s after its insert", d)
	}
}
