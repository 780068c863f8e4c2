package jobexec

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/millrace/millrace/millracetype"
)

// JobStuck describes a stuck job to a stuck handler: one still running the
// stuck threshold after its timeout elapsed. The client re-exports it as
// client.JobStuck.
type JobStuck struct {
	// Job is the job as fetched for this attempt (a copy; its slices are
	// shared with the running worker, so do not modify them).
	Job *millracetype.JobRow
	// Timeout is the job's timeout.
	Timeout time.Duration
	// Elapsed is how long the job has been running: at least Timeout plus
	// Config.JobStuckThreshold.
	Elapsed time.Duration
	// TotalStuck is how many of this client's jobs are stuck now, this one
	// included.
	TotalStuck int
}

// StuckWatch is the stuck watch of one run; the zero value is ready. A
// watch may be used again once EndStuckWatch has returned: its timer is
// made on first use and reset after, so a watch taken from the
// executor's pool costs a run no allocation.
type StuckWatch struct {
	began time.Time
	timer *time.Timer
	// report counts the report the timer's function makes; EndStuckWatch
	// waits for it, so no report outlives the job.
	report sync.WaitGroup
	// What the report needs, set by WatchStuck.
	e       *Executor
	ctx     context.Context
	row     *millracetype.JobRow
	timeout time.Duration
}

// WatchStuck starts w watching a job running with a timeout (ctx is its
// context): if it has not returned StuckThreshold after the timeout, it is
// reported stuck. Once the worker has returned (and the context has been
// cancelled), EndStuckWatch must be called.
func (e *Executor) WatchStuck(w *StuckWatch, ctx context.Context, row *millracetype.JobRow, timeout time.Duration) {
	w.began = time.Now()
	w.e, w.ctx, w.row, w.timeout = e, ctx, row, timeout
	w.report.Add(1)
	if w.timer == nil {
		w.timer = time.AfterFunc(timeout+e.cfg.StuckThreshold, w.fire)
		return
	}
	w.timer.Reset(timeout + e.cfg.StuckThreshold)
}

// fire reports w's job stuck (the timer's function).
func (w *StuckWatch) fire() {
	defer w.report.Done()
	w.e.jobStuck(context.WithoutCancel(w.ctx), w.row, w.timeout, time.Since(w.began))
}

// EndStuckWatch ends w's watch: it stops the timer or, if the job was
// reported stuck, waits for the report to finish and logs the job's
// return.
func (e *Executor) EndStuckWatch(w *StuckWatch, row *millracetype.JobRow, timeout time.Duration) {
	defer func() { w.ctx, w.row = nil, nil }()
	if w.timer.Stop() {
		w.report.Done() // the report will never run
		return
	}
	w.report.Wait()
	n := e.stuck.Add(-1)
	e.cfg.Logger.Info("millrace: stuck job returned; recording its outcome",
		"job_id", row.ID, "kind", row.Kind, "queue", row.Queue, "timeout", timeout,
		"elapsed", time.Since(w.began), "stuck_jobs", n)
}

// StuckCount returns how many of the client's jobs are stuck now.
func (e *Executor) StuckCount() int64 { return e.stuck.Load() }

// jobStuck logs a stuck job and calls the handler.
func (e *Executor) jobStuck(ctx context.Context, row *millracetype.JobRow, timeout, elapsed time.Duration) {
	total := e.stuck.Add(1)
	attrs := []any{"job_id", row.ID, "kind", row.Kind, "queue", row.Queue, "timeout", timeout,
		"elapsed", elapsed, "stuck_jobs", total}
	if running, maxWorkers, ok := e.sink.QueueLoad(row.Queue); ok {
		attrs = append(attrs, "running", running, "max_workers", maxWorkers)
	}
	e.cfg.Logger.Warn("millrace: job is stuck: it ran past its timeout and has not returned "+
		"(does its worker ignore its context?); it keeps its worker slot until it returns", attrs...)
	h := e.cfg.StuckHandler
	if h == nil {
		return
	}
	job := *row
	if err := safeStuckHandler(h, ctx, &JobStuck{Job: &job, Timeout: timeout, Elapsed: elapsed, TotalStuck: int(total)}); err != nil {
		e.cfg.Logger.Error("millrace: JobStuckHandler panicked", "job_id", row.ID, "error", err)
	}
}

func safeStuckHandler(h func(context.Context, *JobStuck), ctx context.Context, stuck *JobStuck) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	h(ctx, stuck)
	return nil
}
