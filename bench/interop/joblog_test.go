package interop

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverlog"
	"github.com/riverqueue/river/rivertype"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/millracetype"
)

type loggedArgs struct {
	Final int `json:"final"` // the attempt that completes; earlier ones fail
}

func (loggedArgs) Kind() string { return "interop_logged" }

// noTimeHandler formats lines without their time, in both systems.
func noTimeHandler(w io.Writer) slog.Handler {
	return slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
}

// attemptOutcome fails attempts before final, to be retried an hour later
// (the test makes them due again by hand, for the other system).
func attemptOutcome(attempt, final int) error {
	if attempt < final {
		return errors.New("not yet")
	}
	return nil
}

type riverLoggedWorker struct {
	river.WorkerDefaults[loggedArgs]
}

func (riverLoggedWorker) Work(ctx context.Context, job *river.Job[loggedArgs]) error {
	riverlog.Logger(ctx).Info("worked by river", "attempt", job.Attempt)
	return attemptOutcome(job.Attempt, job.Args.Final)
}

func (riverLoggedWorker) NextRetry(*river.Job[loggedArgs]) time.Time {
	return time.Now().Add(time.Hour)
}

type millraceLoggedWorker struct {
	client.WorkerDefaults[loggedArgs]
}

func (millraceLoggedWorker) Work(ctx context.Context, job *client.Job[loggedArgs]) error {
	client.JobLogger(ctx).Info("worked by millrace", "attempt", job.Attempt)
	return attemptOutcome(job.Attempt, job.Args.Final)
}

func (millraceLoggedWorker) NextRetry(*client.Job[loggedArgs]) time.Time {
	return time.Now().Add(time.Hour)
}

// TestJobLogsInterop works one job's attempts in turn with millrace
// (JobLogMiddleware), River (riverlog) and millrace again: every attempt's
// entry is kept by the other system, and client.JobLogs reads River's.
func TestJobLogsInterop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, schema := setup(t, true)
	admin := newMillraceClient(t, schema, nil)
	res, err := admin.Insert(ctx, loggedArgs{Final: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := res.Job.ID
	mw, err := client.NewJobLogMiddleware(&client.JobLogConfig{NewHandler: noTimeHandler})
	if err != nil {
		t.Fatal(err)
	}
	// waitFor waits until the job reaches state after attempt, then makes
	// it due again for the next system.
	waitFor := func(attempt int, state millracetype.JobState) *millracetype.JobRow {
		t.Helper()
		var job *millracetype.JobRow
		if !eventually(20*time.Second, func() bool {
			job, err = admin.JobGet(ctx, id)
			return err == nil && job.Attempt == attempt && job.State == state
		}) {
			t.Fatalf("job never reached attempt %d %s: %+v, %v", attempt, state, job, err)
		}
		return job
	}
	runMillrace := func(attempt int, state millracetype.JobState) *millracetype.JobRow {
		t.Helper()
		workers := client.NewWorkers()
		client.AddWorker(workers, &millraceLoggedWorker{})
		c := newMillraceClient(t, schema, &client.Config{Workers: workers, WorkerMiddleware: []client.WorkerMiddleware{mw},
			Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 1}}, FetchPollInterval: 50 * time.Millisecond})
		job := waitFor(attempt, state)
		stopWithin(t, "millrace client", c.Stop)
		return job
	}
	runRiver := func(attempt int, state millracetype.JobState) *millracetype.JobRow {
		t.Helper()
		workers := river.NewWorkers()
		river.AddWorker(workers, &riverLoggedWorker{})
		c := newRiverClient(t, schema, &river.Config{Workers: workers,
			Middleware:        []rivertype.Middleware{riverlog.NewMiddleware(noTimeHandler, nil)},
			Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 1}},
			FetchPollInterval: 100 * time.Millisecond})
		job := waitFor(attempt, state)
		stopWithin(t, "River client", c.Stop)
		return job
	}
	retry := func() {
		t.Helper()
		if _, err := admin.JobRetry(ctx, id); err != nil {
			t.Fatal(err)
		}
	}

	runMillrace(1, millracetype.JobStateRetryable)
	retry()
	runRiver(2, millracetype.JobStateRetryable)
	retry()
	job := runMillrace(3, millracetype.JobStateCompleted)

	got, err := client.JobLogs(job)
	if err != nil {
		t.Fatal(err)
	}
	want := []client.JobLogEntry{
		{Attempt: 1, Log: "level=INFO msg=\"worked by millrace\" attempt=1\n"},
		{Attempt: 2, Log: "level=INFO msg=\"worked by river\" attempt=2\n"},
		{Attempt: 3, Log: "level=INFO msg=\"worked by millrace\" attempt=3\n"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("logs after millrace, River, millrace:\n%+v\nwant\n%+v\nmetadata %s", got, want, job.Metadata)
	}
}
