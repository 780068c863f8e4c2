package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// ephemeralArgs are the args of an ephemeral kind; Mode tells the worker
// what to do.
type ephemeralArgs struct {
	Mode string `json:"mode"`
	N    int    `json:"n"`
}

func (ephemeralArgs) Kind() string    { return "ephemeral" }
func (ephemeralArgs) Ephemeral() bool { return true }

// keptArgs are the args of a kind that is not ephemeral, declaring so.
type keptArgs struct {
	N int `json:"n"`
}

func (keptArgs) Kind() string    { return "kept" }
func (keptArgs) Ephemeral() bool { return false }

// panickyEphemeralArgs have an Ephemeral that panics.
type panickyEphemeralArgs struct{}

func (panickyEphemeralArgs) Kind() string    { return "panicky_ephemeral" }
func (panickyEphemeralArgs) Ephemeral() bool { panic("no idea") }

// waitGone waits until a job no longer exists (10 s at most).
func waitGone(t *testing.T, c *Client[pgx.Tx], id int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		job, err := c.JobGet(context.Background(), id)
		if errors.Is(err, ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d never went away; last: state %s attempt %d errors %v", id, job.State, job.Attempt, job.Errors)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func requireGone(t *testing.T, c *Client[pgx.Tx], id int64) {
	t.Helper()
	if job, err := c.JobGet(context.Background(), id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("job %d: got %+v, %v; want it deleted", id, job, err)
	}
}

func TestEphemeralRegistration(t *testing.T) {
	t.Parallel()
	workers := NewWorkers()
	if err := AddWorkerSafely(workers, WorkFunc(func(context.Context, *Job[panickyEphemeralArgs]) error { return nil })); err == nil {
		t.Fatal("AddWorkerSafely accepted args whose Ephemeral panics")
	}
	AddWorker(workers, WorkFunc(func(context.Context, *Job[panickyEphemeralArgs]) error { return nil }))
	_, err := New(testfixture.New(t).Driver, &Config{Queues: oneQueue(1), Workers: workers})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with a worker whose args' Ephemeral panics: got %v, want ErrInvalidConfig", err)
	}

	workers = NewWorkers()
	AddWorker(workers, WorkFunc(func(context.Context, *Job[ephemeralArgs]) error { return nil }))
	AddWorker(workers, WorkFunc(func(context.Context, *Job[keptArgs]) error { return nil }))
	AddWorker(workers, WorkFunc(func(context.Context, *Job[noopArgs]) error { return nil }))
	for kind, want := range map[string]bool{"ephemeral": true, "kept": false, "noop": false} {
		if got := workers.lookup(kind).ephemeral; got != want {
			t.Errorf("kind %s: ephemeral = %v, want %v", kind, got, want)
		}
	}
}

// TestEphemeralKind: jobs of an ephemeral kind are deleted when they
// complete, with a normal completed event (the row as completed, output
// included) and metrics; jobs of other kinds in the same queue are kept.
func TestEphemeralKind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[ephemeralArgs]) error {
		if err := MetadataSet(ctx, "seen", job.Args.N); err != nil {
			return err
		}
		return RecordOutput(ctx, map[string]int{"n": job.Args.N})
	}))
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[keptArgs]) error { return nil }))
	var metricsMu sync.Mutex
	metrics := map[int64]JobMetrics{}
	c := newClient(t, db, &Config{Queues: oneQueue(5), Workers: workers, Hooks: []Hook{
		HookWorkMetricsFunc(func(_ context.Context, m JobMetrics) {
			metricsMu.Lock()
			metrics[m.JobID] = m
			metricsMu.Unlock()
		})}})
	events, unsubscribe := c.Subscribe(EventKindJobCompleted)
	defer unsubscribe()
	start(t, c)

	const n = 20
	var params []InsertManyParams
	for i := range n {
		params = append(params, InsertManyParams{Args: ephemeralArgs{N: i}}, InsertManyParams{Args: keptArgs{N: i}})
	}
	res, err := c.InsertMany(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int64]*Event{}
	for range 2 * n {
		ev := waitEvent(t, events)
		byID[ev.Job.ID] = ev
	}
	for _, r := range res {
		ev := byID[r.Job.ID]
		if ev == nil {
			t.Fatalf("no completed event for job %d (%s)", r.Job.ID, r.Job.Kind)
		}
		if ev.Job.State != millracetype.JobStateCompleted || ev.Job.FinalizedAt == nil || ev.Job.Attempt != 1 {
			t.Errorf("job %d (%s): event row state %s finalized %v attempt %d", r.Job.ID, r.Job.Kind, ev.Job.State, ev.Job.FinalizedAt, ev.Job.Attempt)
		}
		if r.Job.Kind == "ephemeral" {
			var args ephemeralArgs
			if err := json.Unmarshal(r.Job.Args, &args); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf(`{"seen":%d,"output":{"n":%d}}`, args.N, args.N)
			if !sameJSON(t, ev.Job.Metadata, []byte(want)) {
				t.Errorf("job %d: event metadata %s, want %s", r.Job.ID, ev.Job.Metadata, want)
			}
			requireGone(t, c, r.Job.ID)
		} else if job := db.Job(t, r.Job.ID); job.State != millracetype.JobStateCompleted {
			t.Errorf("job %d of a kept kind: state %s, want completed", r.Job.ID, job.State)
		}
	}
	metricsMu.Lock()
	defer metricsMu.Unlock()
	for _, r := range res {
		if m := metrics[r.Job.ID]; m.Outcome != JobOutcomeCompleted || m.State != millracetype.JobStateCompleted {
			t.Errorf("job %d (%s): metrics outcome %s state %s, want completed", r.Job.ID, r.Job.Kind, m.Outcome, m.State)
		}
	}
}

// TestEphemeralKindNoSubscriber: with no one subscribed the completer does
// not read rows back (another statement); the rows are deleted all the
// same, and Stop writes them before it returns.
func TestEphemeralKindNoSubscriber(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	var worked atomic.Int64 // ephemeral jobs handed to the worker
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[ephemeralArgs]) error {
		worked.Add(1)
		return nil
	}))
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[keptArgs]) error { return nil }))
	c := newClient(t, db, &Config{Queues: oneQueue(5), Workers: workers})
	start(t, c)
	eph, err := c.Insert(ctx, ephemeralArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := c.Insert(ctx, keptArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, eph.Job.ID)
	waitState(t, db, kept.Job.ID, millracetype.JobStateCompleted)

	// Many at once, then a graceful stop: every one is gone when Stop
	// returns.
	var params []InsertManyParams
	for i := range 300 {
		params = append(params, InsertManyParams{Args: ephemeralArgs{N: i}})
	}
	if _, err := c.InsertMany(ctx, params); err != nil {
		t.Fatal(err)
	}
	// Every one worked (not merely fetched: a fetched job still in the
	// fetch buffer at Stop goes back to available, unstarted), then Stop.
	deadline := time.Now().Add(10 * time.Second)
	for worked.Load() < 301 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 301 jobs worked after 10 s: %v", worked.Load(), db.CountByState(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if counts := db.CountByState(t); len(counts) != 1 || counts[millracetype.JobStateCompleted] != 1 {
		t.Fatalf("jobs left after Stop: %v, want only the kept kind's completed job", counts)
	}
}

// TestEphemeralQueue: every job a client completes in an ephemeral queue
// is deleted, whatever its kind; the same kind is kept in other queues.
// Queues added at run time take the setting too.
func TestEphemeralQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil }))
	c := newClient(t, db, &Config{Workers: workers, Queues: map[string]QueueConfig{
		QueueDefault: {MaxWorkers: 2},
		"fleeting":   {MaxWorkers: 2, Ephemeral: true},
	}})
	events, unsubscribe := c.Subscribe(EventKindJobCompleted)
	defer unsubscribe()
	start(t, c)
	if err := c.Queues().Add("fleeting_later", QueueConfig{MaxWorkers: 2, Ephemeral: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Queues().Add("kept_later", QueueConfig{MaxWorkers: 2}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, q := range []string{QueueDefault, "fleeting", "fleeting_later", "kept_later"} {
		res, err := c.Insert(ctx, noopArgs{}, &InsertOpts{Queue: q})
		if err != nil {
			t.Fatal(err)
		}
		ids[q] = res.Job.ID
	}
	for range ids {
		if ev := waitEvent(t, events); ev.Job.State != millracetype.JobStateCompleted {
			t.Fatalf("event of job %d: state %s", ev.Job.ID, ev.Job.State)
		}
	}
	for q, id := range ids {
		if q == "fleeting" || q == "fleeting_later" {
			requireGone(t, c, id)
		} else if job := db.Job(t, id); job.State != millracetype.JobStateCompleted {
			t.Errorf("job of queue %s: state %s, want completed", q, job.State)
		}
	}
}

// TestEphemeralFailuresKeepRows: only a success deletes. An error, a
// discard, a snooze, a cancel (from the worker and from outside) and a
// StopAndCancel interruption keep the row as for any job; a job that fails
// then succeeds is deleted when it succeeds.
func TestEphemeralFailuresKeepRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	started := make(chan int64, 10)
	var flakyRuns atomic.Int32
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[ephemeralArgs]) error {
		if err := RecordOutput(ctx, job.Args.Mode); err != nil {
			return err
		}
		switch job.Args.Mode {
		case "error":
			return errors.New("boom")
		case "flaky":
			if flakyRuns.Add(1) == 1 {
				return errors.New("first try fails")
			}
			return nil
		case "snooze":
			return JobSnooze(time.Hour)
		case "cancel":
			return JobCancel(errors.New("give up"))
		case "block":
			started <- job.ID
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(10), Workers: workers, RetryPolicy: soonRetry{}})
	events, unsubscribe := c.Subscribe()
	defer unsubscribe()
	start(t, c)
	insert := func(mode string, opts *InsertOpts) int64 {
		t.Helper()
		res, err := c.Insert(ctx, ephemeralArgs{Mode: mode}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return res.Job.ID
	}
	retried := insert("error", &InsertOpts{MaxAttempts: 5})
	discarded := insert("error", &InsertOpts{MaxAttempts: 1})
	snoozed := insert("snooze", nil)
	cancelled := insert("cancel", nil)
	flaky := insert("flaky", &InsertOpts{MaxAttempts: 5})
	remote := insert("block", nil)

	waitJob(t, db, retried, "failed at least once", func(j *millracetype.JobRow) bool { return len(j.Errors) > 0 })
	if job := waitState(t, db, discarded, millracetype.JobStateDiscarded); !sameJSON(t, job.Metadata, []byte(`{"output":"error"}`)) {
		t.Errorf("discarded job's metadata %s", job.Metadata)
	}
	waitState(t, db, snoozed, millracetype.JobStateScheduled)
	waitState(t, db, cancelled, millracetype.JobStateCancelled)

	// Cancelled from outside while it runs: its worker returns the
	// context's error.
	if got := recv(t, started, "the blocking job started"); got != remote {
		t.Fatalf("started job %d, want %d", got, remote)
	}
	if _, err := c.JobCancel(ctx, remote); err != nil {
		t.Fatal(err)
	}
	waitState(t, db, remote, millracetype.JobStateCancelled)

	// Fails once, then succeeds: deleted, with a completed event for the
	// second attempt.
	for {
		ev := waitEvent(t, events)
		if ev.Job.ID == flaky && ev.Kind == EventKindJobCompleted {
			if ev.Job.Attempt != 2 || len(ev.Job.Errors) != 1 {
				t.Errorf("flaky job's completed event: attempt %d errors %v", ev.Job.Attempt, ev.Job.Errors)
			}
			break
		}
	}
	requireGone(t, c, flaky)

	// Interrupted by StopAndCancel: back to available, attempt given back.
	interrupted := insert("block", nil)
	if got := recv(t, started, "the second blocking job started"); got != interrupted {
		t.Fatalf("started job %d, want %d", got, interrupted)
	}
	if err := c.StopAndCancel(ctx); err != nil {
		t.Fatal(err)
	}
	if job := db.Job(t, interrupted); job.State != millracetype.JobStateAvailable || job.Attempt != 0 {
		t.Errorf("interrupted job: state %s attempt %d, want available 0", job.State, job.Attempt)
	}
	if job := db.Job(t, retried); job.State == millracetype.JobStateCompleted || len(job.Errors) == 0 {
		t.Errorf("failing job: state %s errors %d", job.State, len(job.Errors))
	}
}

// TestEphemeralRescuedWhileRunning: a job rescued while it runs (the row
// no longer running its attempt) is not deleted when the worker completes
// it; the late outcome only merges its metadata, as for any job.
func TestEphemeralRescuedWhileRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	started, release := make(chan int64, 1), make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[ephemeralArgs]) error {
		started <- job.ID
		<-release
		return RecordOutput(ctx, "late")
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	events, unsubscribe := c.Subscribe(EventKindJobCompleted)
	defer unsubscribe()
	start(t, c)
	res, err := c.Insert(ctx, ephemeralArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, started, "the job started")
	// What the rescuer does to a stuck job, by hand; the queue is paused
	// so that the job is not fetched again meanwhile.
	if err := c.QueuePause(ctx, QueueDefault); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "UPDATE "+pgx.Identifier{db.Schema, "river_job"}.Sanitize()+
		" SET state = 'retryable', scheduled_at = now() + interval '1 hour' WHERE id = $1", res.Job.ID); err != nil {
		t.Fatal(err)
	}
	close(release)
	if ev := waitEvent(t, events); ev.Job.ID != res.Job.ID || ev.Job.State != millracetype.JobStateRetryable {
		t.Fatalf("event: job %d state %s, want job %d as rescued (retryable)", ev.Job.ID, ev.Job.State, res.Job.ID)
	}
	job := db.Job(t, res.Job.ID)
	if job.State != millracetype.JobStateRetryable || !sameJSON(t, job.Metadata, []byte(`{"output":"late"}`)) {
		t.Fatalf("rescued job: state %s metadata %s, want retryable with the late output", job.State, job.Metadata)
	}
}

// TestEphemeralUniqueKeyFreed: a unique ephemeral job frees its key when
// it is deleted, so the same job can be inserted again at once; a kept
// completed job holds it.
func TestEphemeralUniqueKeyFreed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[ephemeralArgs]) error { return nil }))
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[keptArgs]) error { return nil }))
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers})
	events, unsubscribe := c.Subscribe(EventKindJobCompleted)
	defer unsubscribe()
	start(t, c)
	unique := &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true}}
	for _, args := range []JobArgs{ephemeralArgs{Mode: "unique"}, keptArgs{N: 7}} {
		first, err := c.Insert(ctx, args, unique)
		if err != nil {
			t.Fatal(err)
		}
		if ev := waitEvent(t, events); ev.Job.ID != first.Job.ID {
			t.Fatalf("completed job %d, want %d", ev.Job.ID, first.Job.ID)
		}
		again, err := c.Insert(ctx, args, unique)
		if err != nil {
			t.Fatal(err)
		}
		switch args.Kind() {
		case "ephemeral":
			requireGone(t, c, first.Job.ID)
			if again.UniqueSkippedAsDuplicate || again.Job.ID == first.Job.ID {
				t.Fatalf("insert after the ephemeral job completed: duplicate %v (job %d, first %d), want a new job",
					again.UniqueSkippedAsDuplicate, again.Job.ID, first.Job.ID)
			}
			if ev := waitEvent(t, events); ev.Job.ID != again.Job.ID {
				t.Fatalf("completed job %d, want %d", ev.Job.ID, again.Job.ID)
			}
			requireGone(t, c, again.Job.ID)
		default:
			if !again.UniqueSkippedAsDuplicate || again.Job.ID != first.Job.ID {
				t.Fatalf("insert after the kept job completed: duplicate %v (job %d, first %d), want the completed job",
					again.UniqueSkippedAsDuplicate, again.Job.ID, first.Job.ID)
			}
		}
	}
}

// TestEphemeralJobCompleteTx: JobCompleteTx deletes an ephemeral job in
// the worker's transaction: gone with a commit (and the event says
// completed), back to the usual outcome with a rollback.
func TestEphemeralJobCompleteTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	table := appTable(t, db)
	returned := make(chan *Job[ephemeralArgs], 3)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[ephemeralArgs]) error {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, $2)", job.ID, job.Args.Mode); err != nil {
			return err
		}
		if err := RecordOutput(ctx, job.Args.Mode); err != nil {
			return err
		}
		done, err := JobCompleteTx(ctx, tx, job)
		if err != nil {
			return err
		}
		returned <- done
		switch job.Args.Mode {
		case "commit":
			return tx.Commit(ctx)
		case "rollback_then_error":
			if err := tx.Rollback(ctx); err != nil {
				return err
			}
			return errors.New("error after rollback")
		}
		return tx.Rollback(ctx) // rollback, then success
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(3), Workers: workers})
	events, unsubscribe := c.Subscribe()
	defer unsubscribe()
	start(t, c)
	ids := map[string]int64{}
	for _, mode := range []string{"commit", "rollback", "rollback_then_error"} {
		res, err := c.Insert(ctx, ephemeralArgs{Mode: mode}, &InsertOpts{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		ids[mode] = res.Job.ID
	}
	for range 3 {
		done := recv(t, returned, "JobCompleteTx results")
		if done.State != millracetype.JobStateCompleted || done.FinalizedAt == nil ||
			!sameJSON(t, done.Metadata, []byte(fmt.Sprintf(`{"output":%q}`, done.Args.Mode))) {
			t.Errorf("JobCompleteTx returned state %s finalized %v metadata %s", done.State, done.FinalizedAt, done.Metadata)
		}
	}
	evs := map[int64]*Event{}
	for range 3 {
		ev := waitEvent(t, events)
		evs[ev.Job.ID] = ev
	}
	for mode, id := range ids {
		ev := evs[id]
		if ev == nil {
			t.Fatalf("%s: no event", mode)
		}
		switch mode {
		case "commit", "rollback":
			// Deleted: in the worker's transaction, or by the completer
			// after the rollback.
			requireGone(t, c, id)
			if ev.Kind != EventKindJobCompleted || ev.Job.State != millracetype.JobStateCompleted {
				t.Errorf("%s: event %s with state %s, want job_completed", mode, ev.Kind, ev.Job.State)
			}
		case "rollback_then_error":
			if job := db.Job(t, id); job.State != millracetype.JobStateDiscarded {
				t.Errorf("%s: state %s, want discarded (kept)", mode, job.State)
			}
			if ev.Kind != EventKindJobFailed {
				t.Errorf("%s: event %s, want job_failed", mode, ev.Kind)
			}
		}
	}
	if n := appWrites(t, db, table, ids["commit"]); n != 1 {
		t.Errorf("committed worker writes: %d, want 1", n)
	}
	if n := appWrites(t, db, table, ids["rollback"]); n != 0 {
		t.Errorf("rolled back worker writes: %d, want 0", n)
	}
}
