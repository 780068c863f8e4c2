package maintenance

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/millrace/millrace/driver"
)

// PendingListCleaner defaults.
const (
	DefaultPendingListMinInterval = 100 * time.Millisecond
	DefaultPendingListMaxInterval = 2 * time.Second
	// DefaultPendingListTimeout bounds one pass's merge.
	DefaultPendingListTimeout = time.Minute
	// pendingListFirstInterval is the wait after the first pass while
	// nothing says how fast the lists grow.
	pendingListFirstInterval = time.Second
	// pendingListDefaultLimit stands in for a limit the driver did not
	// give (4 MB, Postgres' default gin_pending_list_limit).
	pendingListDefaultLimit = 4 << 20
	// pendingListPageBytes is a pending-list page (Postgres' block size).
	pendingListPageBytes = 8192
)

// PendingListCleanerConfig configures a PendingListCleaner.
type PendingListCleanerConfig struct {
	// Schema holds the job tables; empty means the connection's
	// search_path.
	Schema string
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
	// MinInterval and MaxInterval bound the wait between passes, which
	// adapts to how fast the lists grow. Defaults (0): 100 ms and 2 s;
	// negative, or MinInterval above MaxInterval, is invalid.
	MinInterval time.Duration
	MaxInterval time.Duration
	// Timeout bounds one pass. Default (0) 1 min; negative is invalid.
	Timeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// PendingListCleaner merges the pending lists of the job table's GIN
// indexes (driver.PendingListCleaner) often enough that no statement of
// the clients' hot path (a fetch, an insert, a completion) grows a list
// past gin_pending_list_limit and pays for merging it: measured on a
// 100,000-job burndown, that merge made one fetch of 800 jobs take 190 ms
// instead of 12 while the queue's workers waited for it.
//
// It aims to find each list at about a quarter of the limit: after each
// pass the wait until the next is scaled by how far the pages it merged
// were from that (at most halved twice or doubled at once, within
// [MinInterval, MaxInterval]), so a busy table is cleaned every few
// hundred milliseconds and an idle one every MaxInterval (a pass over
// empty lists is one short statement). When the database refuses because
// the connection's role does not own the indexes, it says so once and
// makes no more passes until it is started again (the next leadership).
type PendingListCleaner struct {
	serviceBase
	exec driver.PendingListCleaner
	cfg  PendingListCleanerConfig

	// Only the loop's goroutine touches these.
	interval time.Duration
	refused  bool
}

// NewPendingListCleaner returns a cleaner, or an error wrapping
// ErrInvalidConfig for a nil cfg or exec, a negative setting, or
// MinInterval above MaxInterval.
func NewPendingListCleaner(exec driver.PendingListCleaner, cfg *PendingListCleanerConfig) (*PendingListCleaner, error) {
	const name = "pending list cleaner"
	if cfg == nil {
		return nil, invalid(name, "nil config")
	}
	if exec == nil {
		return nil, invalid(name, "nil executor")
	}
	c := *cfg
	var err error
	if c.MinInterval, err = setting(name, "min interval", c.MinInterval, DefaultPendingListMinInterval); err != nil {
		return nil, err
	}
	if c.MaxInterval, err = setting(name, "max interval", c.MaxInterval, DefaultPendingListMaxInterval); err != nil {
		return nil, err
	}
	if c.MinInterval > c.MaxInterval {
		return nil, invalid(name, "min interval %s is above max interval %s", c.MinInterval, c.MaxInterval)
	}
	if c.Timeout, err = setting(name, "timeout", c.Timeout, DefaultPendingListTimeout); err != nil {
		return nil, err
	}
	s := &PendingListCleaner{exec: exec, cfg: c}
	s.initBase(name, c.Schema, c.Logger, c.Now)
	return s, nil
}

// Start runs a pass at once and then after each adapted interval.
func (s *PendingListCleaner) Start(ctx context.Context) error {
	first := func() time.Duration { // on the loop's goroutine, as next and pass
		s.interval, s.refused = clampDuration(pendingListFirstInterval, s.cfg.MinInterval, s.cfg.MaxInterval), false
		return 0
	}
	return s.startLoop(ctx, first, s.next, s.pass)
}

func (s *PendingListCleaner) next() time.Duration {
	if s.refused {
		return never
	}
	return s.interval
}

func (s *PendingListCleaner) pass(ctx context.Context) {
	if s.refused {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	res, err := s.exec.PendingListClean(pctx, &driver.PendingListCleanParams{Schema: s.schema})
	cancel()
	switch {
	case errors.Is(err, driver.ErrNotIndexOwner):
		s.refused = true
		s.logger.Warn("maintenance: not merging the job table's GIN pending lists: the connection's role does not "+
			"own the indexes; a statement that grows a list past gin_pending_list_limit merges it itself "+
			"(set client.Config.SkipPendingListCleaner to silence this)", "service", s.name, "error", err)
	case err != nil:
		s.logFailure(ctx, err, "retrying later")
		s.interval = s.cfg.MaxInterval
	default:
		s.interval = nextPendingListInterval(s.interval, res.Pages, res.LimitBytes, s.cfg.MinInterval, s.cfg.MaxInterval)
		if res.Pages > 0 {
			s.logger.Debug("maintenance: merged GIN pending lists", "service", s.name, "pages", res.Pages,
				"next_in", s.interval)
		}
	}
}

// nextPendingListInterval is the wait after a pass that merged pages
// pages, interval after the one before: scaled so that the next pass
// finds about a quarter of limitBytes (growth assumed steady), by a
// factor between 1/4 and 2, within [minI, maxI]. Empty lists double it.
func nextPendingListInterval(interval time.Duration, pages, limitBytes int64, minI, maxI time.Duration) time.Duration {
	if limitBytes <= 0 {
		limitBytes = pendingListDefaultLimit
	}
	target := float64(limitBytes) / 4 / pendingListPageBytes
	factor := 2.0
	if pages > 0 {
		factor = min(max(target/float64(pages), 0.25), 2)
	}
	return clampDuration(time.Duration(float64(interval)*factor), minI, maxI)
}

func clampDuration(d, lo, hi time.Duration) time.Duration { return min(max(d, lo), hi) }
