package millracetest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetest"
	"github.com/millrace/millrace/millracetype"
)

// behaveArgs selects what behaveWorker does.
type behaveArgs struct {
	Do string `json:"do"`
}

func (behaveArgs) Kind() string { return "behave" }

type behaveWorker struct {
	client.WorkerDefaults[behaveArgs]
	sawClient atomic.Bool
}

func (w *behaveWorker) Timeout(job *client.Job[behaveArgs]) time.Duration {
	if job.Args.Do == "hang" {
		return 50 * time.Millisecond
	}
	return 0
}

func (w *behaveWorker) Work(ctx context.Context, job *client.Job[behaveArgs]) error {
	if c, err := client.ClientFromContextSafely[pgx.Tx](ctx); err == nil && c != nil {
		w.sawClient.Store(true)
	}
	switch job.Args.Do {
	case "ok":
		client.JobLogger(ctx).Info("worked it")
		return client.RecordOutput(ctx, map[string]int{"answer": 42})
	case "fail":
		return errors.New("it broke")
	case "panic":
		panic("it exploded")
	case "snooze":
		return client.JobSnooze(time.Minute)
	case "cancel":
		return client.JobCancel(errors.New("not worth it"))
	case "hang":
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func newHarness(t *testing.T, cfg *client.Config) (*testfixture.DB, *behaveWorker, *millracetest.Worker[behaveArgs, pgx.Tx]) {
	t.Helper()
	db := testfixture.New(t)
	if cfg == nil {
		cfg = &client.Config{}
	}
	cfg.Schema = db.Schema
	logs, err := client.NewJobLogMiddleware(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.WorkerMiddleware = append(cfg.WorkerMiddleware, logs)
	w := &behaveWorker{}
	return db, w, millracetest.NewWorker(t, db.Driver, cfg, client.Worker[behaveArgs](w))
}

func TestWorkerOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, w, h := newHarness(t, nil)

	res := h.Work(ctx, t, behaveArgs{Do: "ok"}, nil)
	if res.Kind != client.EventKindJobCompleted || res.Job.State != millracetype.JobStateCompleted || res.Job.Attempt != 1 || res.Err != "" {
		t.Errorf("ok: %+v (job %s attempt %d)", res, res.Job.State, res.Job.Attempt)
	}
	var out map[string]int
	if err := json.Unmarshal(res.Output, &out); err != nil || out["answer"] != 42 {
		t.Errorf("ok: output %s (%v)", res.Output, err)
	}
	if len(res.Logs) != 1 || !strings.Contains(res.Logs[0].Log, "worked it") {
		t.Errorf("ok: logs %+v", res.Logs)
	}
	if !w.sawClient.Load() {
		t.Error("ClientFromContext gave the worker no client")
	}

	res = h.Work(ctx, t, behaveArgs{Do: "fail"}, nil)
	if res.Kind != client.EventKindJobFailed || res.Err != "it broke" || res.Job.State != millracetype.JobStateAvailable && res.Job.State != millracetype.JobStateRetryable ||
		res.NextRetryAt.IsZero() || !res.NextRetryAt.Equal(res.Job.ScheduledAt) {
		t.Errorf("fail: %+v (job %s)", res, res.Job.State)
	}

	res = h.Work(ctx, t, behaveArgs{Do: "fail"}, &client.InsertOpts{MaxAttempts: 1})
	if res.Kind != client.EventKindJobFailed || res.Job.State != millracetype.JobStateDiscarded || !res.NextRetryAt.IsZero() {
		t.Errorf("fail out of attempts: %+v (job %s)", res, res.Job.State)
	}

	res = h.Work(ctx, t, behaveArgs{Do: "panic"}, nil)
	if res.Kind != client.EventKindJobFailed || !strings.Contains(res.Err, "it exploded") || len(res.Job.Errors) != 1 || res.Job.Errors[0].Trace == "" {
		t.Errorf("panic: %+v (errors %+v)", res, res.Job.Errors)
	}

	res = h.Work(ctx, t, behaveArgs{Do: "snooze"}, nil)
	if res.Kind != client.EventKindJobSnoozed || res.Job.State != millracetype.JobStateScheduled || res.Snooze < 59*time.Second || res.Snooze > 61*time.Second ||
		res.Job.Attempt != 0 {
		t.Errorf("snooze: %+v (job %s attempt %d)", res, res.Job.State, res.Job.Attempt)
	}

	res = h.Work(ctx, t, behaveArgs{Do: "cancel"}, nil)
	if res.Kind != client.EventKindJobCancelled || res.Job.State != millracetype.JobStateCancelled || !strings.Contains(res.Err, "not worth it") {
		t.Errorf("cancel: %+v (job %s)", res, res.Job.State)
	}

	// The worker's own Timeout applies.
	begin := time.Now()
	res = h.Work(ctx, t, behaveArgs{Do: "hang"}, nil)
	if res.Kind != client.EventKindJobFailed || !strings.Contains(res.Err, "deadline exceeded") || time.Since(begin) > 10*time.Second {
		t.Errorf("hang with a 50 ms timeout: %+v after %v", res, time.Since(begin))
	}
}

// Hooks and middleware of the config run around the job, as in a client.
func TestWorkerRunsMiddlewareAndHooks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var calls []string
	cfg := &client.Config{
		WorkerMiddleware: []client.WorkerMiddleware{client.WorkerMiddlewareFunc(func(ctx context.Context, job *millracetype.JobRow, next func(context.Context) error) error {
			calls = append(calls, "middleware")
			return next(ctx)
		})},
		Hooks: []client.Hook{client.HookWorkBeginFunc(func(ctx context.Context, job *millracetype.JobRow) error {
			calls = append(calls, "hook")
			return nil
		})},
	}
	_, _, h := newHarness(t, cfg)
	if res := h.Work(ctx, t, behaveArgs{Do: "ok"}, nil); res.Kind != client.EventKindJobCompleted {
		t.Fatalf("ok: %+v", res)
	}
	if strings.Join(calls, ",") != "middleware,hook" {
		t.Errorf("calls %v, want the middleware, then the hook", calls)
	}
}

// WorkTx leaves nothing once the transaction rolls back; WorkJob works an
// existing row, however far its scheduled time.
func TestWorkerTxAndExistingRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _, h := newHarness(t, nil)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res := h.WorkTx(ctx, t, tx, behaveArgs{Do: "ok"}, nil)
	if res.Kind != client.EventKindJobCompleted {
		t.Fatalf("in a tx: %+v", res)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.CountByState(t); len(n) != 0 {
		t.Fatalf("jobs after the rollback: %v", n)
	}

	later := time.Now().Add(time.Hour)
	row := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "behave", Args: []byte(`{"do":"fail"}`), State: millracetype.JobStateScheduled,
		ScheduledAt: &later, MaxAttempts: 25})
	res = h.WorkJob(ctx, t, row)
	if res.Kind != client.EventKindJobFailed || res.Job.ID != row.ID || res.Job.Attempt != 1 {
		t.Fatalf("WorkJob of a scheduled row: %+v", res)
	}
	// Again: attempt 2.
	if res = h.WorkJob(ctx, t, res.Job); res.Job.Attempt != 2 || len(res.Job.Errors) != 2 {
		t.Fatalf("second WorkJob: attempt %d errors %d", res.Job.Attempt, len(res.Job.Errors))
	}
}

func TestWorkerBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _, h := newHarness(t, nil)
	other := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "someone_elses"})
	running := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "behave", Args: []byte(`{}`), State: millracetype.JobStateRunning, Attempt: 1})
	for name, c := range map[string]struct {
		fn   func(tb testing.TB)
		want string
	}{
		"nil worker": {func(tb testing.TB) {
			millracetest.NewWorker[behaveArgs](tb, db.Driver, nil, nil)
		}, "the worker is nil"},
		"bad config": {func(tb testing.TB) {
			millracetest.NewWorker(tb, db.Driver, &client.Config{MaxAttempts: -1}, client.Worker[behaveArgs](&behaveWorker{}))
		}, "MaxAttempts"},
		"nil ctx": {func(tb testing.TB) {
			h.Work(nil, tb, behaveArgs{}, nil) //nolint:staticcheck // the point
		}, "ctx is nil"},
		"another kind": {func(tb testing.TB) { h.WorkJob(ctx, tb, other) }, `is of kind "someone_elses"`},
		"running row":  {func(tb testing.TB) { h.WorkJob(ctx, tb, running) }, "job is running"},
		"nil row":      {func(tb testing.TB) { h.WorkJob(ctx, tb, nil) }, "the job is nil"},
		"bad insert": {func(tb testing.TB) {
			h.Work(ctx, tb, behaveArgs{}, &client.InsertOpts{Priority: 9})
		}, "insert"},
	} {
		got := run(t, c.fn)
		if !got.stopped || len(got.msgs) != 1 || !strings.Contains(got.msgs[0], c.want) {
			t.Errorf("%s: %+v, want one fatal message containing %q", name, got, c.want)
		}
	}
}
