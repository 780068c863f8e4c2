package client

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/millrace/millrace/millracetype"
)

// DefaultJobStuckThreshold is the default Config.JobStuckThreshold.
const DefaultJobStuckThreshold = 10 * time.Second

// JobStuckHandler is told of a stuck job: one still running
// Config.JobStuckThreshold after its timeout elapsed, so its worker is not
// returning when its context ends (easily done in Go: a blocking call that
// takes no context). It is called once per stuck job, from a goroutine of
// its own, while the job still runs. ctx carries the job's context values
// (ClientFromContext works) but not its cancellation.
//
// What the client does with a stuck job:
//   - It cannot stop the worker's goroutine, so the job keeps its worker
//     slot: its queue runs at most MaxWorkers jobs, stuck ones included,
//     and fetches no replacement. (River's handler may open an extra slot;
//     millrace never runs more than MaxWorkers of a queue's jobs at once.)
//   - It logs a warning (job, queue, timeout, time elapsed, how many jobs
//     are stuck) and calls the handler, recovering and logging a panic.
//   - When the worker returns at last, the client logs it and records the
//     outcome as for any job (usually the deadline's error, so a retry); a
//     worker that returns nil completes the job. The outcome is written
//     after the handler has returned, so the handler must not wait for the
//     client to stop (call Stop from a goroutine of its own).
//   - Stop and StopAndCancel wait for a stuck job like any running job
//     (StopAndCancel cancels its context, which has already ended). When
//     their context ends first they return its error and the client goes
//     on stopping in the background: the job's outcome is still recorded
//     if it returns, and a later Stop waits for that. If the process exits
//     instead, the job stays running in the database until the leader
//     rescues it (Config.RescueStuckJobsAfter).
//
// Jobs without a timeout (JobTimeout or a worker Timeout of -1) are never
// reported stuck.
type JobStuckHandler func(ctx context.Context, stuck *JobStuck)

// JobStuck describes a stuck job to a JobStuckHandler.
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

// stuckJobs counts a client's stuck jobs.
type stuckJobs struct{ n atomic.Int64 }

// stuckWatch is the stuck watch of one run (part of its jobRun).
type stuckWatch struct {
	began time.Time
	timer *time.Timer
	// report counts the report the timer's function makes; endStuckWatch
	// waits for it, so no report outlives the job.
	report sync.WaitGroup
}

// watchStuck starts w watching a job running with a timeout (ctx is its
// context): if it has not returned JobStuckThreshold after the timeout,
// jobStuck reports it. Once the worker has returned (and the context has
// been cancelled), endStuckWatch must be called.
func (c *Client[TTx]) watchStuck(w *stuckWatch, ctx context.Context, row *millracetype.JobRow, timeout time.Duration) {
	w.began = time.Now()
	w.report.Add(1)
	w.timer = time.AfterFunc(timeout+c.config.JobStuckThreshold, func() {
		defer w.report.Done()
		c.jobStuck(context.WithoutCancel(ctx), row, timeout, time.Since(w.began))
	})
}

// endStuckWatch ends w's watch: it stops the timer or, if the job was
// reported stuck, waits for the report to finish and logs the job's
// return.
func (c *Client[TTx]) endStuckWatch(w *stuckWatch, row *millracetype.JobRow, timeout time.Duration) {
	if w.timer.Stop() {
		w.report.Done() // the report will never run
		return
	}
	w.report.Wait()
	n := c.stuck.n.Add(-1)
	c.config.Logger.Info("millrace: stuck job returned; recording its outcome",
		"job_id", row.ID, "kind", row.Kind, "queue", row.Queue, "timeout", timeout,
		"elapsed", time.Since(w.began), "stuck_jobs", n)
}

// jobStuck logs a stuck job and calls the handler.
func (c *Client[TTx]) jobStuck(ctx context.Context, row *millracetype.JobRow, timeout, elapsed time.Duration) {
	total := c.stuck.n.Add(1)
	attrs := []any{"job_id", row.ID, "kind", row.Kind, "queue", row.Queue, "timeout", timeout,
		"elapsed", elapsed, "stuck_jobs", total}
	if p := c.producer(row.Queue); p != nil {
		attrs = append(attrs, "running", p.Running(), "max_workers", c.config.Queues[row.Queue].MaxWorkers)
	}
	c.config.Logger.Warn("millrace: job is stuck: it ran past its timeout and has not returned "+
		"(does its worker ignore its context?); it keeps its worker slot until it returns", attrs...)
	h := c.config.JobStuckHandler
	if h == nil {
		return
	}
	job := *row
	if err := safeStuckHandler(h, ctx, &JobStuck{Job: &job, Timeout: timeout, Elapsed: elapsed, TotalStuck: int(total)}); err != nil {
		c.config.Logger.Error("millrace: JobStuckHandler panicked", "job_id", row.ID, "error", err)
	}
}

func safeStuckHandler(h JobStuckHandler, ctx context.Context, stuck *JobStuck) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	h(ctx, stuck)
	return nil
}
