package maintenance

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/millrace/millrace/driver"
)

// Cleaner defaults.
const (
	DefaultCleanerInterval           = 30 * time.Second
	DefaultCompletedJobRetention     = 24 * time.Hour
	DefaultCancelledJobRetention     = 24 * time.Hour
	DefaultDiscardedJobRetention     = 7 * 24 * time.Hour
	DefaultCleanerBatch              = 10_000
	DefaultCleanerStatementTimeout   = 30 * time.Second
	DefaultQueueCleanerInterval      = time.Hour
	DefaultQueueRetention            = 24 * time.Hour
	DefaultQueueCleanerBatch         = 1000
	defaultQueueCleanerStatementTime = 30 * time.Second
)

// CleanerConfig configures a Cleaner. For each retention, 0 means the
// default, -1 keeps jobs of that state forever, and below -1 is invalid.
type CleanerConfig struct {
	// Schema holds the job tables; empty means the connection's
	// search_path.
	Schema string
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
	// Interval between passes. Default (0) 30 s; negative is invalid.
	Interval time.Duration
	// CompletedJobRetention: default 24 h.
	CompletedJobRetention time.Duration
	// CancelledJobRetention: default 24 h.
	CancelledJobRetention time.Duration
	// DiscardedJobRetention: default 7 days.
	DiscardedJobRetention time.Duration
	// Batch is the most jobs deleted per statement, so no statement holds
	// locks for long. Default (0) 10,000; negative is invalid.
	Batch int
	// StatementTimeout bounds each delete. Default (0) 30 s; negative is
	// invalid.
	StatementTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Cleaner deletes finalized jobs past their retention, in bounded batches.
type Cleaner struct {
	periodic
	exec driver.Executor
	cfg  CleanerConfig
}

// NewCleaner returns a cleaner, or an error wrapping ErrInvalidConfig for a
// nil cfg or exec, a retention below -1, or a negative Interval, Batch or
// StatementTimeout.
func NewCleaner(exec driver.Executor, cfg *CleanerConfig) (*Cleaner, error) {
	const name = "cleaner"
	if cfg == nil {
		return nil, invalid(name, "nil config")
	}
	c := *cfg
	var err error
	for _, r := range []struct {
		state string
		v     *time.Duration
		def   time.Duration
	}{{"completed", &c.CompletedJobRetention, DefaultCompletedJobRetention},
		{"cancelled", &c.CancelledJobRetention, DefaultCancelledJobRetention},
		{"discarded", &c.DiscardedJobRetention, DefaultDiscardedJobRetention}} {
		if *r.v, err = retention(name, r.state+" job retention", *r.v, r.def); err != nil {
			return nil, err
		}
	}
	if c.Interval, err = setting(name, "interval", c.Interval, DefaultCleanerInterval); err != nil {
		return nil, err
	}
	if c.Batch, err = setting(name, "batch", c.Batch, DefaultCleanerBatch); err != nil {
		return nil, err
	}
	if c.StatementTimeout, err = setting(name, "statement timeout", c.StatementTimeout, DefaultCleanerStatementTimeout); err != nil {
		return nil, err
	}
	if err := checkExec(name, exec); err != nil {
		return nil, err
	}
	cl := &Cleaner{exec: exec, cfg: c}
	cl.initBase(name, c.Schema, c.Logger, c.Now)
	cl.interval, cl.periodic.pass = c.Interval, cl.pass
	return cl, nil
}

func horizon(now time.Time, retention time.Duration) *time.Time {
	if retention < 0 {
		return nil
	}
	t := now.Add(-retention)
	return &t
}

func (c *Cleaner) pass(ctx context.Context) error {
	now := c.now().UTC()
	params := &driver.JobDeleteBeforeParams{Schema: c.schema, Max: c.cfg.Batch,
		CompletedFinalizedAtBefore: horizon(now, c.cfg.CompletedJobRetention),
		CancelledFinalizedAtBefore: horizon(now, c.cfg.CancelledJobRetention),
		DiscardedFinalizedAtBefore: horizon(now, c.cfg.DiscardedJobRetention)}
	if params.CompletedFinalizedAtBefore == nil && params.CancelledFinalizedAtBefore == nil && params.DiscardedFinalizedAtBefore == nil {
		return nil
	}
	total := 0
	for {
		stmtCtx, cancel := context.WithTimeout(ctx, c.cfg.StatementTimeout)
		n, err := c.exec.JobDeleteBefore(stmtCtx, params)
		cancel()
		if err != nil {
			return fmt.Errorf("delete finalized jobs: %w", err)
		}
		total += n
		if n < c.cfg.Batch {
			break
		}
	}
	if total > 0 {
		c.logger.Info("maintenance: deleted finalized jobs past retention", "jobs", total)
	}
	return nil
}

// QueueCleanerConfig configures a QueueCleaner.
type QueueCleanerConfig struct {
	// Schema holds the job tables; empty means the connection's
	// search_path.
	Schema string
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
	// Interval between passes. Default (0) 1 h; negative is invalid.
	Interval time.Duration
	// Retention: queues not reported for this long are deleted. Default
	// (0) 24 h; negative is invalid.
	Retention time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// QueueCleaner deletes river_queue rows no producer has reported for
// Retention (a producer re-registers its queue when it runs again).
type QueueCleaner struct {
	periodic
	exec driver.Executor
	cfg  QueueCleanerConfig
}

// NewQueueCleaner returns a queue cleaner, or an error wrapping
// ErrInvalidConfig for a nil cfg or exec or a negative Interval or
// Retention.
func NewQueueCleaner(exec driver.Executor, cfg *QueueCleanerConfig) (*QueueCleaner, error) {
	const name = "queue_cleaner"
	if cfg == nil {
		return nil, invalid(name, "nil config")
	}
	c := *cfg
	var err error
	if c.Interval, err = setting(name, "interval", c.Interval, DefaultQueueCleanerInterval); err != nil {
		return nil, err
	}
	if c.Retention, err = setting(name, "retention", c.Retention, DefaultQueueRetention); err != nil {
		return nil, err
	}
	if err := checkExec(name, exec); err != nil {
		return nil, err
	}
	q := &QueueCleaner{exec: exec, cfg: c}
	q.initBase(name, c.Schema, c.Logger, c.Now)
	q.interval, q.periodic.pass = c.Interval, q.pass
	return q, nil
}

func (q *QueueCleaner) pass(ctx context.Context) error {
	for {
		stmtCtx, cancel := context.WithTimeout(ctx, defaultQueueCleanerStatementTime)
		names, err := q.exec.QueueDeleteExpired(stmtCtx, &driver.QueueDeleteExpiredParams{Schema: q.schema,
			UpdatedAtHorizon: q.now().UTC().Add(-q.cfg.Retention), Max: DefaultQueueCleanerBatch})
		cancel()
		if err != nil {
			return fmt.Errorf("delete expired queues: %w", err)
		}
		if len(names) > 0 {
			q.logger.Info("maintenance: deleted queues not reported for a long time", "queues", names)
		}
		if len(names) < DefaultQueueCleanerBatch {
			return nil
		}
	}
}
