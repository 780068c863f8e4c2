package client

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

type stuckArgs struct {
	Block bool `json:"block"`
}

func (stuckArgs) Kind() string { return "stuck_job" }

// stuckWorker blocks jobs with Block set until release is closed, ignoring
// their context, then returns the context's error; other jobs return nil.
type stuckWorker struct {
	WorkerDefaults[stuckArgs]
	started chan int64
	release chan struct{}
	once    sync.Once
}

// free lets blocked jobs return; it may be called more than once.
func (w *stuckWorker) free() { w.once.Do(func() { close(w.release) }) }

func newStuckWorker() *stuckWorker {
	return &stuckWorker{started: make(chan int64, 10), release: make(chan struct{})}
}

func (w *stuckWorker) Work(ctx context.Context, job *Job[stuckArgs]) error {
	if !job.Args.Block {
		return nil
	}
	w.started <- job.ID
	<-w.release
	return ctx.Err()
}

// TestJobStuck: two jobs ignore their 50 ms timeout in a queue of two
// slots. Each is reported once (handler and warning), the slots stay taken
// so a third job waits, and when they return their outcomes are recorded
// (the deadline's error) and the third job runs.
func TestJobStuck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	logs := &logSink{}
	reports := make(chan *JobStuck, 10)
	w := newStuckWorker()
	workers := NewWorkers()
	AddWorker(workers, w)
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers, Logger: logs.logger(),
		JobTimeout: 50 * time.Millisecond, JobStuckThreshold: 50 * time.Millisecond,
		JobStuckHandler: func(ctx context.Context, stuck *JobStuck) {
			if got, err := ClientFromContextSafely[pgx.Tx](ctx); err != nil || got == nil {
				t.Errorf("handler's context is not the job's: %v", err)
			}
			if ctx.Err() != nil {
				t.Errorf("handler's context is cancelled: %v", ctx.Err())
			}
			reports <- stuck
		}})
	t.Cleanup(w.free) // before the client's cleanup stop, should the test fail early
	start(t, c)
	var stuckIDs []int64
	for range 2 {
		res, err := c.Insert(ctx, stuckArgs{Block: true}, &InsertOpts{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		stuckIDs = append(stuckIDs, res.Job.ID)
	}
	recv(t, w.started, "first job started")
	recv(t, w.started, "second job started")
	waiting, err := c.Insert(ctx, stuckArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}

	var seenIDs []int64
	var totals []int
	for range 2 {
		r := recv(t, reports, "stuck report")
		seenIDs = append(seenIDs, r.Job.ID)
		totals = append(totals, r.TotalStuck)
		if r.Timeout != 50*time.Millisecond || r.Elapsed < 100*time.Millisecond || r.Job.Kind != "stuck_job" || r.Job.Attempt != 1 {
			t.Errorf("report %+v (job %+v)", r, r.Job)
		}
	}
	slices.Sort(seenIDs)
	slices.Sort(totals)
	if !slices.Equal(seenIDs, stuckIDs) || !slices.Equal(totals, []int{1, 2}) {
		t.Errorf("reported jobs %v with totals %v; want %v with 1 and 2", seenIDs, totals, stuckIDs)
	}
	logs.waitFor(t, "job is stuck")
	if !strings.Contains(logs.String(), "running=2 max_workers=2") {
		t.Errorf("warning does not show the taken slots:\n%s", logs)
	}
	// The slots stay taken: over many fetch opportunities (50 ms polls and
	// the insert's notification) the waiting job is not started.
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got := db.Job(t, waiting.Job.ID).State; got != millracetype.JobStateAvailable {
			t.Fatalf("a third job started while two stuck jobs held both slots (state %s)", got)
		}
		if n := c.producer(QueueDefault).Running(); n != 2 {
			t.Fatalf("producer counts %d running jobs, want 2", n)
		}
	}

	w.free()
	for _, id := range stuckIDs {
		job := waitState(t, db, id, millracetype.JobStateDiscarded)
		if len(job.Errors) != 1 || job.Errors[0].Error != context.DeadlineExceeded.Error() {
			t.Errorf("stuck job %d errors %+v", id, job.Errors)
		}
	}
	waitState(t, db, waiting.Job.ID, millracetype.JobStateCompleted)
	logs.waitFor(t, "stuck job returned")
	if n := strings.Count(logs.String(), "job is stuck"); n != 2 {
		t.Errorf("%d stuck warnings, want 2 (one per job)", n)
	}
	if len(reports) != 0 {
		t.Errorf("%d more reports", len(reports))
	}
	if n := c.exec.StuckCount(); n != 0 {
		t.Errorf("%d jobs still counted stuck", n)
	}
}

// TestJobStuckStop: Stop and StopAndCancel wait for a stuck job; when their
// context ends first they return its error, and the job's outcome is still
// recorded when it returns (a later Stop waits for that). A handler that
// panics is recovered.
func TestJobStuckStop(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// want is the job's state once it returns.
		want millracetype.JobState
	}{
		{"Stop", millracetype.JobStateDiscarded},
		// The job's error is blamed on StopAndCancel: back to available,
		// attempt given back.
		{"StopAndCancel", millracetype.JobStateAvailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := testfixture.New(t)
			logs := &logSink{}
			var reported atomic.Int32
			w := newStuckWorker()
			workers := NewWorkers()
			AddWorker(workers, w)
			c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, Logger: logs.logger(),
				JobTimeout: 20 * time.Millisecond, JobStuckThreshold: 20 * time.Millisecond,
				JobStuckHandler: func(context.Context, *JobStuck) {
					reported.Add(1)
					panic("handler bug")
				}})
			t.Cleanup(w.free)
			start(t, c)
			res, err := c.Insert(ctx, stuckArgs{Block: true}, &InsertOpts{MaxAttempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			recv(t, w.started, "job started")
			logs.waitFor(t, "JobStuckHandler panicked")

			stopCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			err = stopWith(c, tc.name, stopCtx)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s with a stuck job: %v, want a deadline error", tc.name, err)
			}
			if job := db.Job(t, res.Job.ID); job.State != millracetype.JobStateRunning {
				t.Fatalf("job %s while its worker still runs", job.State)
			}
			w.free()
			if err := c.Stop(ctx); err != nil {
				t.Fatalf("Stop after the job returned: %v", err)
			}
			job := db.Job(t, res.Job.ID)
			if job.State != tc.want {
				t.Errorf("job %s, want %s (errors %+v)", job.State, tc.want, job.Errors)
			}
			if reported.Load() != 1 {
				t.Errorf("handler called %d times", reported.Load())
			}
			if !strings.Contains(logs.String(), "stuck job returned") {
				t.Errorf("no log of the stuck job's return:\n%s", logs)
			}
		})
	}
}

// stopWith calls Stop or StopAndCancel by name.
func stopWith[TTx any](c *Client[TTx], name string, ctx context.Context) error {
	if name == "StopAndCancel" {
		return c.StopAndCancel(ctx)
	}
	return c.Stop(ctx)
}

// TestJobNotStuck: a job that returns at its timeout, and a job without a
// timeout that runs past the threshold, are never reported.
func TestJobNotStuck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	var reported atomic.Int32
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[stuckArgs]) error {
		<-ctx.Done() // honours its 20 ms timeout
		return ctx.Err()
	}))
	AddWorker(workers, &untimedWorker{})
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers,
		// A threshold of a second: the timed job returns at once when its
		// context ends, but a loaded machine (CI runs packages in
		// parallel) once took over 200 ms to run it again.
		JobTimeout: 20 * time.Millisecond, JobStuckThreshold: time.Second,
		JobStuckHandler: func(context.Context, *JobStuck) { reported.Add(1) }})
	start(t, c)
	timed, err := c.Insert(ctx, stuckArgs{}, &InsertOpts{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	untimed, err := c.Insert(ctx, untimedArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The watch ends before an outcome is written: once both are written,
	// no report can come any more.
	waitState(t, db, timed.Job.ID, millracetype.JobStateDiscarded)
	waitState(t, db, untimed.Job.ID, millracetype.JobStateCompleted)
	if n := reported.Load(); n != 0 {
		t.Errorf("%d stuck reports for jobs that were not stuck", n)
	}
}

type untimedArgs struct{}

func (untimedArgs) Kind() string { return "untimed" }

// untimedWorker has no timeout and works 1.2 s, past TestJobNotStuck's
// JobTimeout and threshold together.
type untimedWorker struct{ WorkerDefaults[untimedArgs] }

func (untimedWorker) Timeout(*Job[untimedArgs]) time.Duration { return -1 }

func (untimedWorker) Work(ctx context.Context, _ *Job[untimedArgs]) error {
	select {
	case <-time.After(1200 * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestJobStuckThresholdConfig(t *testing.T) {
	t.Parallel()
	cfg, err := (&Config{}).withDefaults()
	if err != nil || cfg.JobStuckThreshold != DefaultJobStuckThreshold {
		t.Errorf("default JobStuckThreshold %v, %v", cfg, err)
	}
	if _, err := (&Config{JobStuckThreshold: -time.Second}).withDefaults(); !errors.Is(err, ErrInvalidConfig) ||
		!strings.Contains(err.Error(), "JobStuckThreshold") {
		t.Errorf("negative JobStuckThreshold: %v", err)
	}
}
