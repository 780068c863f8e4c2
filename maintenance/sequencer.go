package maintenance

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/millrace/millrace/driver"
)

// Sequencer defaults.
const (
	DefaultSequencerInterval         = time.Second
	defaultSequencerStatementTimeout = 30 * time.Second
)

// SequencerConfig configures a Sequencer.
type SequencerConfig struct {
	// Schema holds the job tables; empty means the connection's
	// search_path.
	Schema string
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
	// Interval between passes. Default (0) 1 s; negative is invalid.
	Interval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Sequencer moves on the sequences whose head was finalized or deleted
// without the completer of a millrace client seeing it: a job cancelled or
// deleted by an admin call or a River client, a job the rescuer discarded,
// a promotion that was passed over because an insert held the sequence.
// The completer moves a sequence on as soon as it writes its head's final
// outcome; this pass is the backstop, every Interval. Unlike the other
// services it runs on every started client, not on the leader only
// (River's client may be the leader): the passes of several clients skip
// the sequences another one holds.
type Sequencer struct {
	periodic
	exec driver.Executor
	cfg  SequencerConfig
}

// NewSequencer returns a sequencer, or an error wrapping ErrInvalidConfig
// for a nil cfg or exec or a negative Interval.
func NewSequencer(exec driver.Executor, cfg *SequencerConfig) (*Sequencer, error) {
	const name = "sequencer"
	if cfg == nil {
		return nil, invalid(name, "nil config")
	}
	c := *cfg
	var err error
	if c.Interval, err = setting(name, "interval", c.Interval, DefaultSequencerInterval); err != nil {
		return nil, err
	}
	if err := checkExec(name, exec); err != nil {
		return nil, err
	}
	s := &Sequencer{exec: exec, cfg: c}
	s.initBase(name, c.Schema, c.Logger, c.Now)
	s.interval, s.periodic.pass = c.Interval, s.pass
	return s, nil
}

func (s *Sequencer) pass(ctx context.Context) error {
	stmtCtx, cancel := context.WithTimeout(ctx, defaultSequencerStatementTimeout)
	defer cancel()
	res, err := s.exec.SequencePromote(stmtCtx, &driver.SequencePromoteParams{Schema: s.schema, All: true, SkipLocked: true})
	if err != nil {
		return fmt.Errorf("promote sequences: %w", err)
	}
	if res.Promoted > 0 {
		s.logger.Debug("maintenance: moved sequences on", "jobs", res.Promoted, "queues", res.Queues)
	}
	return nil
}
