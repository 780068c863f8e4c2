package client

import (
	"context"
	"time"

	"github.com/millrace/millrace/internal/jobexec"
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

// JobStuck describes a stuck job to a JobStuckHandler. Its fields:
//
//   - Job is the job as fetched for this attempt (a copy; its slices are
//     shared with the running worker, so do not modify them).
//   - Timeout is the job's timeout.
//   - Elapsed is how long the job has been running: at least Timeout plus
//     Config.JobStuckThreshold.
//   - TotalStuck is how many of this client's jobs are stuck now, this one
//     included.
type JobStuck = jobexec.JobStuck
