package maintenance

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
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
	// DefaultRescuerMaxPassDuration bounds one pass over the stuck jobs.
	DefaultRescuerMaxPassDuration = 30 * time.Second
	// RescueErrorMessage is the error recorded on a rescued job (River's
	// text).
	RescueErrorMessage = "Stuck job rescued by JobRescuer"
)

// RescuerConfig configures a Rescuer.
type RescuerConfig struct {
	// Schema holds the job tables; empty means the connection's
	// search_path.
	Schema string
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
	// Interval between passes. Default (0) 30 s; negative is invalid.
	Interval time.Duration
	// RescueAfter: running jobs attempted longer ago are stuck. Default
	// (0) 1 h; negative is invalid.
	RescueAfter time.Duration
	// Batch is the most jobs looked at per statement (a page). Default
	// (0) 10,000; negative is invalid.
	Batch int
	// MaxPassDuration bounds a pass: once it has run this long, the pass
	// stops after the page at hand and the next pass continues after the
	// last job it looked at. Default (0) 30 s; negative is invalid.
	MaxPassDuration time.Duration
	// WorkerTimeout tells a job's timeout as its worker sets it: known is
	// false when no worker of the kind is registered here; timeout -1
	// means none. Default: every kind unknown.
	WorkerTimeout func(job *millracetype.JobRow) (timeout time.Duration, known bool)
	// NextRetry gives a rescued job's retry time (default: River's
	// default policy).
	NextRetry func(job *millracetype.JobRow) time.Time
	// Now is the clock (default time.Now).
	Now func() time.Time
	// SkipLiveClients leaves alone the jobs of clients alive in
	// millrace_client (the millrace line; by the database's clock): a
	// client that proves it is alive is never rescued. Their jobs, once
	// the client is dead, are rescued by internal/liveness within seconds.
	// Unset keeps River's rule for every job.
	SkipLiveClients bool
}

// Rescuer moves on running jobs whose client has disappeared: after
// RescueAfter, a job becomes cancelled (if a cancel was asked), retryable,
// or discarded (out of attempts), with an error recorded and metadata
// river:rescue_count incremented.
//
// Unlike River, a job of a kind this client has no worker for is made
// retryable even when it is out of attempts, never discarded: another
// client (another service sharing the database) may be the one that works
// it, and that client's next attempt decides (a failure then discards it).
// A cancel that was asked for (metadata cancel_attempted_at) still cancels
// it: that is the caller's decision, not the rescuer's.
//
// A pass pages through all the stuck jobs by id, however many of them it
// must leave running (a kind whose timeout has not run out, a kind without
// timeout), so a job behind them is not starved.
type Rescuer struct {
	periodic
	exec driver.Executor
	cfg  RescuerConfig
	// resumeAfter is where the next pass starts: 0, or the last job the
	// previous pass looked at when it stopped at its time bound. Passes
	// run one at a time; atomic only for the race detector's sake across
	// restarts of the loop.
	resumeAfter atomic.Int64
}

// NewRescuer returns a rescuer, or an error wrapping ErrInvalidConfig for
// a nil cfg or exec or a negative Interval, RescueAfter, Batch or
// MaxPassDuration.
func NewRescuer(exec driver.Executor, cfg *RescuerConfig) (*Rescuer, error) {
	const name = "rescuer"
	if cfg == nil {
		return nil, invalid(name, "nil config")
	}
	c := *cfg
	var err error
	if c.MaxPassDuration, err = setting(name, "max pass duration", c.MaxPassDuration, DefaultRescuerMaxPassDuration); err != nil {
		return nil, err
	}
	if c.Interval, err = setting(name, "interval", c.Interval, DefaultRescuerInterval); err != nil {
		return nil, err
	}
	if c.RescueAfter, err = setting(name, "rescue after", c.RescueAfter, DefaultRescueStuckJobsAfter); err != nil {
		return nil, err
	}
	if c.Batch, err = setting(name, "batch", c.Batch, DefaultRescuerBatch); err != nil {
		return nil, err
	}
	if err := checkExec(name, exec); err != nil {
		return nil, err
	}
	if c.WorkerTimeout == nil {
		c.WorkerTimeout = func(*millracetype.JobRow) (time.Duration, bool) { return 0, false }
	}
	if c.NextRetry == nil {
		c.NextRetry = func(job *millracetype.JobRow) time.Time {
			return retry.DefaultNextRetry(len(job.Errors)+1, time.Now())
		}
	}
	r := &Rescuer{exec: exec, cfg: c}
	r.initBase(name, c.Schema, c.Logger, c.Now)
	r.interval, r.periodic.pass = c.Interval, r.pass
	return r, nil
}

// pass rescues the stuck jobs it may, a page at a time by id, until the
// last page or its time bound.
func (r *Rescuer) pass(ctx context.Context) error {
	start := time.Now() // the real clock: r.now may be a test's shifted one
	afterID := r.resumeAfter.Load()
	r.resumeAfter.Store(0)
	for {
		now := r.now().UTC()
		horizon := now.Add(-r.cfg.RescueAfter)
		stuck, err := r.exec.JobGetStuck(ctx, &driver.JobGetStuckParams{Schema: r.schema,
			StuckHorizon: horizon, Max: r.cfg.Batch, AfterID: afterID, SkipLiveClients: r.cfg.SkipLiveClients})
		if err != nil {
			// The next pass starts over: a job skipped meanwhile is
			// still stuck then.
			return fmt.Errorf("find stuck jobs after job %d: %w", afterID, err)
		}
		var rescues []*driver.JobRescue
		for _, job := range stuck {
			if rescue := r.verdict(job, now); rescue != nil {
				rescues = append(rescues, rescue)
			}
		}
		if len(rescues) > 0 {
			// The horizon again: a job that finished and was fetched again
			// since it was read is not stuck.
			n, err := r.exec.JobRescueMany(ctx, &driver.JobRescueManyParams{Schema: r.schema, Jobs: rescues, StuckHorizon: &horizon})
			if err != nil {
				return fmt.Errorf("rescue %d stuck jobs: %w", len(rescues), err)
			}
			r.logger.Info("maintenance: rescued stuck jobs", "jobs", n)
		}
		if len(stuck) < r.cfg.Batch {
			return nil
		}
		// A full page, rescued or left alone: the next one starts after
		// it, so jobs that must stay running never hide those behind them.
		afterID = stuck[len(stuck)-1].ID
		if elapsed := time.Since(start); elapsed >= r.cfg.MaxPassDuration {
			r.resumeAfter.Store(afterID)
			r.logger.Warn("maintenance: rescuer pass reached its time bound; the next pass continues after the last job it looked at",
				"elapsed", elapsed, "max_pass_duration", r.cfg.MaxPassDuration, "after_job_id", afterID)
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
	return RescueVerdict(job, now, RescueErrorMessage, r.cfg.NextRetry, known)
}

// RescueVerdict is River's rescue rule for a running job whose worker is
// gone, at now: cancelled when a cancel was asked (metadata
// cancel_attempted_at), discarded when out of attempts, else retryable at
// nextRetry(job) (River's default policy when nextRetry is nil or gives a
// time before now). The attempt's error records message. Unlike River, a
// job whose kind the judge has no worker for (known false) is never
// discarded: out of attempts, it is made retryable, and a client that
// works its kind decides on its next attempt.
func RescueVerdict(job *millracetype.JobRow, now time.Time, message string, nextRetry func(*millracetype.JobRow) time.Time, known bool) *driver.JobRescue {
	at := now
	if job.AttemptedAt != nil {
		at = *job.AttemptedAt
	}
	rescue := &driver.JobRescue{ID: job.ID, ScheduledAt: now,
		Error: millracetype.AttemptError{At: at, Attempt: job.Attempt, Error: message}}
	switch {
	case millracetype.MetadataHasKey(job.Metadata, "cancel_attempted_at"):
		rescue.State, rescue.FinalizedAt = millracetype.JobStateCancelled, &now
	case job.Attempt >= job.MaxAttempts && known:
		rescue.State, rescue.FinalizedAt = millracetype.JobStateDiscarded, &now
	default:
		rescue.State = millracetype.JobStateRetryable
		var next time.Time
		if nextRetry != nil {
			next = nextRetry(job)
		}
		if next.IsZero() || next.Before(now) {
			next = retry.DefaultNextRetry(len(job.Errors)+1, now)
		}
		rescue.ScheduledAt = next.UTC()
	}
	return rescue
}
