package millracetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/clientbridge"
	"github.com/millrace/millrace/millracetype"
)

// Worker runs jobs through one of your workers synchronously, the way a
// working client would, without starting one: the job goes through the
// config's worker middleware and hooks, gets its timeout (the worker's
// Timeout, else Config.JobTimeout), its panic recovered and recorded, and a
// context from which client.ClientFromContext returns the worker's client.
// Its outcome is written to the job's row as the client's completer would
// write it, and returned for assertions.
//
// Make one with NewWorker; it is safe for concurrent use.
type Worker[T client.JobArgs, TTx any] struct {
	drv    driver.Driver[TTx]
	client *client.Client[TTx]
	schema string
}

// NewWorker returns a harness for worker w. cfg configures the client the
// jobs run in, as it would a working client (Schema, ID, JobTimeout,
// RetryPolicy, Hooks, WorkerMiddleware, ErrorHandler, ...); its Queues and
// Workers are ignored (the harness works only w's jobs, whatever their
// queue). A nil cfg is the default config. Invalid input fails tb.
func NewWorker[T client.JobArgs, TTx any](tb testing.TB, drv driver.Driver[TTx], cfg *client.Config, w client.Worker[T]) *Worker[T, TTx] {
	const fn = "NewWorker"
	requireTB(tb, fn)
	tb.Helper()
	if isNil(drv) {
		fatal(tb, fn, "the driver is nil")
		return nil
	}
	if isNil(w) {
		fatal(tb, fn, "the worker is nil")
		return nil
	}
	c := client.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Queues = nil
	c.Workers = client.NewWorkers()
	if err := safeAddWorker(c.Workers, w); err != nil {
		fatal(tb, fn, "%v", err)
		return nil
	}
	cl, err := client.New(drv, &c)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return nil
	}
	return &Worker[T, TTx]{drv: drv, client: cl, schema: c.Schema}
}

// safeAddWorker registers w, turning AddWorker's panic on a bad worker
// (an args type whose Kind panics, say) into an error.
func safeAddWorker[T client.JobArgs](ws *client.Workers, w client.Worker[T]) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("register the worker: %v", r)
		}
	}()
	client.AddWorker(ws, w)
	return nil
}

// Client returns the client the jobs run in (what ClientFromContext gives
// a worker), to insert or look at jobs with the same config.
func (w *Worker[T, TTx]) Client() *client.Client[TTx] { return w.client }

// WorkResult is what one attempt did.
type WorkResult struct {
	// Kind is how the attempt ended: client.EventKindJobCompleted,
	// EventKindJobFailed (an error or panic: the job is retryable, or
	// discarded when out of attempts), EventKindJobCancelled (JobCancel,
	// or a cancel asked while it ran) or EventKindJobSnoozed.
	Kind client.EventKind
	// Job is the job's row as the outcome left it. An ephemeral job is
	// deleted when it completes; Job is then the row as it was completed.
	Job *millracetype.JobRow
	// Err is the error recorded for the attempt ("" when none), the panic
	// value's text for a panic.
	Err string
	// NextRetryAt is when a failed job runs again (zero unless Kind is
	// EventKindJobFailed and the job is retryable).
	NextRetryAt time.Time
	// Snooze is how long a snoozed job waits (zero unless snoozed).
	Snooze time.Duration
	// Output is the output the worker recorded (client.RecordOutput), as
	// JSON; nil when none.
	Output json.RawMessage
	// Logs are the lines the attempt logged through client.JobLogger
	// (with client.NewJobLogMiddleware in Config.WorkerMiddleware).
	Logs []client.JobLogEntry
}

// Work inserts a job of args (with opts, through the client, so insert
// hooks and middleware run) and works it at once, whatever its scheduled
// time. Failures (the insert, the database) fail tb; what the worker did,
// error or panic included, is the result.
func (w *Worker[T, TTx]) Work(ctx context.Context, tb testing.TB, args T, opts *client.InsertOpts) *WorkResult {
	requireTB(tb, "Worker.Work")
	tb.Helper()
	exec, ok := w.executor(tb, "Worker.Work", ctx, nil)
	if !ok {
		return nil
	}
	res, err := w.client.Insert(ctx, args, opts)
	if err != nil {
		fatal(tb, "Worker.Work", "insert: %v", err)
		return nil
	}
	return w.work(ctx, tb, "Worker.Work", exec, res.Job)
}

// WorkTx is Work inside tx: the job is inserted, worked and its outcome
// written in tx, so a test that rolls tx back leaves nothing behind. The
// worker gets its usual context; a worker that uses a transaction of its
// own (JobCompleteTx) should be given tx by the test.
func (w *Worker[T, TTx]) WorkTx(ctx context.Context, tb testing.TB, tx TTx, args T, opts *client.InsertOpts) *WorkResult {
	requireTB(tb, "Worker.WorkTx")
	tb.Helper()
	exec, ok := w.executor(tb, "Worker.WorkTx", ctx, &tx)
	if !ok {
		return nil
	}
	res, err := w.client.InsertTx(ctx, tx, args, opts)
	if err != nil {
		fatal(tb, "Worker.WorkTx", "insert: %v", err)
		return nil
	}
	return w.work(ctx, tb, "Worker.WorkTx", exec, res.Job)
}

// WorkJob works an existing job (in any state but running: it is marked
// running first, its attempt counted, as a fetch would). Its kind must be
// the worker's.
func (w *Worker[T, TTx]) WorkJob(ctx context.Context, tb testing.TB, job *millracetype.JobRow) *WorkResult {
	requireTB(tb, "Worker.WorkJob")
	tb.Helper()
	exec, ok := w.executor(tb, "Worker.WorkJob", ctx, nil)
	if !ok {
		return nil
	}
	return w.work(ctx, tb, "Worker.WorkJob", exec, job)
}

// WorkJobTx is WorkJob inside tx.
func (w *Worker[T, TTx]) WorkJobTx(ctx context.Context, tb testing.TB, tx TTx, job *millracetype.JobRow) *WorkResult {
	requireTB(tb, "Worker.WorkJobTx")
	tb.Helper()
	exec, ok := w.executor(tb, "Worker.WorkJobTx", ctx, &tx)
	if !ok {
		return nil
	}
	return w.work(ctx, tb, "Worker.WorkJobTx", exec, job)
}

// executor checks the call's input and returns where it runs: tx (when
// given, the Tx variants) or the driver's pool.
func (w *Worker[T, TTx]) executor(tb testing.TB, fn string, ctx context.Context, tx *TTx) (driver.Executor, bool) {
	tb.Helper()
	switch {
	case w == nil || w.client == nil:
		fatal(tb, fn, "the Worker is nil (make it with NewWorker)")
	case ctx == nil:
		fatal(tb, fn, "ctx is nil")
	case tx != nil && isNil(*tx):
		fatal(tb, fn, "the transaction is nil")
	case tx != nil:
		return w.drv.UnwrapExecutor(*tx), true
	case !w.drv.PoolIsSet():
		fatal(tb, fn, "the driver has no pool; use the Tx variant")
	default:
		return w.drv.GetExecutor(), true
	}
	return nil, false
}

// work marks job running, runs it through the client's executor and writes
// its outcome through exec.
func (w *Worker[T, TTx]) work(ctx context.Context, tb testing.TB, fn string, exec driver.Executor, job *millracetype.JobRow) *WorkResult {
	tb.Helper()
	if job == nil {
		fatal(tb, fn, "the job is nil")
		return nil
	}
	var zero T
	if kind, err := kindOf(zero); err == nil && job.Kind != kind {
		fatal(tb, fn, "job %d is of kind %q; this worker works %q", job.ID, job.Kind, kind)
		return nil
	}
	row, err := exec.JobMarkRunning(ctx, &driver.JobMarkRunningParams{Schema: w.schema, ID: job.ID, ClientID: w.client.ID()})
	if err != nil {
		fatal(tb, fn, "mark job %d running: %v", job.ID, err)
		return nil
	}
	outcome, kind, err := clientbridge.WorkJob(ctx, w.client, row)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return nil
	}
	written, err := exec.JobSetStateIfRunningMany(context.WithoutCancel(ctx), &driver.JobSetStateIfRunningManyParams{Schema: w.schema,
		Jobs: []*driver.JobSetState{outcome}})
	if err != nil {
		fatal(tb, fn, "write the outcome of job %d: %v", job.ID, err)
		return nil
	}
	after := (*millracetype.JobRow)(nil)
	if len(written) == 1 {
		after = written[0]
	} else {
		// Nothing written: the worker finished the job itself
		// (JobCompleteTx), and the row is as it left it.
		if after, err = exec.JobGetByID(ctx, &driver.JobGetByIDParams{Schema: w.schema, ID: job.ID}); err != nil {
			fatal(tb, fn, "read job %d after its attempt: %v", job.ID, err)
			return nil
		}
	}
	res := &WorkResult{Kind: client.EventKind(kind), Job: after}
	if outcome.Error != nil {
		res.Err = outcome.Error.Error
	}
	switch {
	case res.Kind == client.EventKindJobFailed && after.State == millracetype.JobStateRetryable:
		res.NextRetryAt = after.ScheduledAt
	case res.Kind == client.EventKindJobFailed && after.State == millracetype.JobStateAvailable:
		res.NextRetryAt = after.ScheduledAt // due within the scheduler's look-ahead
	case res.Kind == client.EventKindJobSnoozed && after.AttemptedAt != nil:
		res.Snooze = after.ScheduledAt.Sub(*after.AttemptedAt)
	}
	var md map[string]json.RawMessage
	if json.Unmarshal(after.Metadata, &md) == nil {
		res.Output = md["output"]
	}
	logs, err := client.JobLogs(after)
	if err != nil && !errors.Is(err, client.ErrMalformedJobLogs) {
		fatal(tb, fn, "job %d's logs: %v", job.ID, err)
		return nil
	}
	for _, l := range logs {
		if l.Attempt == after.Attempt {
			res.Logs = append(res.Logs, l)
		}
	}
	return res
}
