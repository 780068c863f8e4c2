package maintenance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/millrace/millrace/driver"
)

// ReindexerIndexes are the job table's indexes the reindexer rebuilds.
var ReindexerIndexes = []string{
	"river_job_args_index", "river_job_kind", "river_job_metadata_index", "river_job_pkey",
	"river_job_prioritized_fetching_index", "river_job_state_and_finalized_at_index", "river_job_unique_idx",
}

// DefaultReindexTimeout bounds the rebuild of one index.
const DefaultReindexTimeout = time.Minute

// ReindexerConfig configures a Reindexer.
type ReindexerConfig struct {
	// Schema holds the job tables; empty means the connection's
	// search_path.
	Schema string
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
	// Next gives the first run after t. Default: daily at 00:00 UTC.
	Next func(t time.Time) time.Time
	// Timeout bounds each index's rebuild. Default (0) 1 min; negative is
	// invalid.
	Timeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Reindexer rebuilds the job table's indexes with REINDEX INDEX
// CONCURRENTLY on a schedule, which keeps them compact under the heavy
// update churn of a job table. An index with a leftover _ccnew or _ccold
// copy (an earlier rebuild that was interrupted) is skipped and logged:
// drop the leftover by hand.
type Reindexer struct {
	serviceBase
	exec driver.Executor
	cfg  ReindexerConfig
}

// NewReindexer returns a reindexer, or an error wrapping ErrInvalidConfig
// for a nil cfg or exec or a negative Timeout.
func NewReindexer(exec driver.Executor, cfg *ReindexerConfig) (*Reindexer, error) {
	const name = "reindexer"
	if cfg == nil {
		return nil, invalid(name, "nil config")
	}
	c := *cfg
	var err error
	if c.Timeout, err = setting(name, "timeout", c.Timeout, DefaultReindexTimeout); err != nil {
		return nil, err
	}
	if err := checkExec(name, exec); err != nil {
		return nil, err
	}
	if c.Next == nil {
		c.Next = func(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour) }
	}
	r := &Reindexer{exec: exec, cfg: c}
	r.initBase(name, c.Schema, c.Logger, c.Now)
	return r, nil
}

// RunNow asks for a pass at once instead of at the next scheduled time.
// It does not block; requests made while a pass runs fold into one more
// pass.
func (r *Reindexer) RunNow() { r.wakeUp() }

// Start waits for each scheduled time and rebuilds the indexes then.
func (r *Reindexer) Start(ctx context.Context) error {
	return r.startOnSchedule(ctx, r.cfg.Next, r.pass)
}

func (r *Reindexer) pass(ctx context.Context) error {
	var errs []error
	for _, index := range ReindexerIndexes {
		leftover := false
		for _, suffix := range []string{"_ccnew", "_ccold"} {
			ok, err := r.exec.IndexExists(ctx, &driver.IndexParams{Schema: r.schema, Index: index + suffix})
			if err != nil {
				return fmt.Errorf("check for a leftover copy of %s: %w", index, err)
			}
			leftover = leftover || ok
		}
		if leftover {
			r.logger.Warn("maintenance: skipping reindex: a leftover copy from an interrupted rebuild exists; drop it",
				"index", index)
			continue
		}
		ictx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		err := r.exec.IndexReindex(ictx, &driver.IndexParams{Schema: r.schema, Index: index})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("reindex %s: %w", index, err))
			continue
		}
		r.logger.Info("maintenance: reindexed", "index", index)
	}
	return errors.Join(errs...)
}
