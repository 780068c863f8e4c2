package maintenance

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/retry"
	"github.com/millrace/millrace/millracetype"
)

// Rescuer defaults.
const (
	DefaultRescuerInterval      = 30 * time.Second
	DefaultRescueStuckJobsAfter = time.Hour
	DefaultRescuerBatch         = 10_000
	// RescueErrorMessage is the error recorded on a rescued job (River's
	// text).
	RescueErrorMessage = "Stuck job rescued by JobRescuer"
)

// RescuerConfig configures a Rescuer.
type RescuerConfig struct {
	Schema string
	Logger *slog.Logger
	// Interval between passes. Default 30 s.
	Interval time.Duration
	// RescueAfter: running jobs attempted longer ago are stuck. Default 1 h.
	RescueAfter time.Duration
	// Batch is the most jobs looked at per statement. Default 10,000.
	Batch int
	// WorkerTimeout tells a job's timeout as its worker sets it: known is
	// false when no worker of the kind is registered here; timeout -1
	// means none. Default: every kind unknown.
	WorkerTimeout func(job *millracetype.JobRow) (timeout time.Duration, known bool)
	// NextRetry gives a rescued job's retry time (default: River's
	// default policy).
	NextRetry func(job *millracetype.JobRow) time.Time
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Passes, if set, receives a value after each pass (tests).
	Passes chan struct{}
}

// Rescuer moves on running jobs whose client has disappeared: after
// RescueAfter, a job becomes cancelled (if a cancel was asked), retryable,
// or discarded (out of attempts), with an error recorded and metadata
// river:rescue_count incremented.
//
// Unlike River, a job of a kind this client has no worker for is made
// retryable, never discarded: another client may be the one that works it.
type Rescuer struct {
	periodic
	exec driver.Executor
	cfg  RescuerConfig
}

// NewRescuer returns a rescuer.
func NewRescuer(exec driver.Executor, cfg *RescuerConfig) *Rescuer {
	c := *cfg
	if c.Interval <= 0 {
		c.Interval = DefaultRescuerInterval
	}
	if c.RescueAfter <= 0 {
		c.RescueAfter = DefaultRescueStuckJobsAfter
	}
	if c.Batch <= 0 {
		c.Batch = DefaultRescuerBatch
	}
	if c.WorkerTimeout == nil {
		c.WorkerTimeout = func(*millracetype.JobRow) (time.Duration, bool) { return 0, false }
	}
	if c.NextRetry == nil {
		c.NextRetry = func(job *millracetype.JobRow) time.Time {
			return retry.DefaultNextRetry(len(job.Errors)+1, time.Now())
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Logger = orDiscard(c.Logger)
	r := &Rescuer{exec: exec, cfg: c}
	r.periodic = periodic{name: "rescuer", interval: c.Interval, logger: c.Logger, pass: r.pass, passes: c.Passes}
	return r
}

func (r *Rescuer) pass(ctx context.Context) error {
	var afterID int64
	for {
		now := r.cfg.Now().UTC()
		horizon := now.Add(-r.cfg.RescueAfter)
		stuck, err := r.exec.JobGetStuck(ctx, &driver.JobGetStuckParams{Schema: r.cfg.Schema,
			StuckHorizon: horizon, Max: r.cfg.Batch})
		if err != nil {
			return fmt.Errorf("find stuck jobs: %w", err)
		}
		var rescues []*driver.JobRescue
		for _, job := range stuck {
			if job.ID <= afterID {
				continue // skipped in an earlier batch of this pass
			}
			if rescue := r.verdict(job, now); rescue != nil {
				rescues = append(rescues, rescue)
			}
		}
		if len(rescues) > 0 {
			// The horizon again: a job that finished and was fetched again
			// since it was read is not stuck.
			n, err := r.exec.JobRescueMany(ctx, &driver.JobRescueManyParams{Schema: r.cfg.Schema, Jobs: rescues, StuckHorizon: &horizon})
			if err != nil {
				return fmt.Errorf("rescue %d stuck jobs: %w", len(rescues), err)
			}
			r.cfg.Logger.Info("maintenance: rescued stuck jobs", "jobs", n)
		}
		if len(stuck) < r.cfg.Batch {
			return nil
		}
		afterID = stuck[len(stuck)-1].ID
		if len(rescues) == 0 {
			// A full batch of jobs that must be skipped: the next query
			// would return the same ones. Stop here; the next pass tries
			// again.
			return nil
		}
	}
}

// verdict decides what becomes of a stuck job, or nil to leave it.
func (r *Rescuer) verdict(job *millracetype.JobRow, now time.Time) *driver.JobRescue {
	timeout, known := r.cfg.WorkerTimeout(job)
	if known && timeout == -1 {
		return nil // no timeout: the job may legitimately run this long
	}
	if known && timeout > 0 && job.AttemptedAt != nil && job.AttemptedAt.Add(timeout).After(now) {
		return nil
	}
	at := now
	if job.AttemptedAt != nil {
		at = *job.AttemptedAt
	}
	rescue := &driver.JobRescue{ID: job.ID, ScheduledAt: now,
		Error: millracetype.AttemptError{At: at, Attempt: job.Attempt, Error: RescueErrorMessage}}
	switch {
	case millracetype.MetadataHasKey(job.Metadata, "cancel_attempted_at"):
		rescue.State, rescue.FinalizedAt = millracetype.JobStateCancelled, &now
	case job.Attempt >= job.MaxAttempts:
		rescue.State, rescue.FinalizedAt = millracetype.JobStateDiscarded, &now
	default:
		rescue.State = millracetype.JobStateRetryable
		next := r.cfg.NextRetry(job)
		if next.IsZero() || next.Before(now) {
			next = retry.DefaultNextRetry(len(job.Errors)+1, now)
		}
		rescue.ScheduledAt = next.UTC()
	}
	return rescue
}
