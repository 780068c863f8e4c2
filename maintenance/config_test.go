package maintenance

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/startstop"
)

// stubExec is a non-nil executor for constructors that never run a pass.
type stubExec struct{ driver.Executor }

// Every constructor rejects a bad value with an error wrapping
// ErrInvalidConfig that names it, instead of silently using its default.
func TestConfigInvalid(t *testing.T) {
	t.Parallel()
	exec := stubExec{}
	svc := startstop.StartStopFunc(func(context.Context, bool, func(), func()) error { return nil })
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"scheduler nil config", func() error { _, err := NewScheduler(exec, nil); return err }, "nil config"},
		{"scheduler nil exec", func() error { _, err := NewScheduler(nil, &SchedulerConfig{}); return err }, "nil executor"},
		{"scheduler interval", func() error { _, err := NewScheduler(exec, &SchedulerConfig{Interval: -time.Second}); return err }, "interval -1s"},
		{"scheduler batch", func() error { _, err := NewScheduler(exec, &SchedulerConfig{Batch: -1}); return err }, "batch -1"},
		{"rescuer nil config", func() error { _, err := NewRescuer(exec, nil); return err }, "nil config"},
		{"rescuer nil exec", func() error { _, err := NewRescuer(nil, &RescuerConfig{}); return err }, "nil executor"},
		{"rescuer interval", func() error { _, err := NewRescuer(exec, &RescuerConfig{Interval: -time.Second}); return err }, "interval -1s"},
		{"rescuer rescue after", func() error { _, err := NewRescuer(exec, &RescuerConfig{RescueAfter: -time.Second}); return err }, "rescue after -1s"},
		{"rescuer batch", func() error { _, err := NewRescuer(exec, &RescuerConfig{Batch: -1}); return err }, "batch -1"},
		{"rescuer max pass duration", func() error {
			_, err := NewRescuer(exec, &RescuerConfig{MaxPassDuration: -time.Second})
			return err
		}, "max pass duration -1s"},
		{"cleaner nil config", func() error { _, err := NewCleaner(exec, nil); return err }, "nil config"},
		{"cleaner nil exec", func() error { _, err := NewCleaner(nil, &CleanerConfig{}); return err }, "nil executor"},
		{"cleaner interval", func() error { _, err := NewCleaner(exec, &CleanerConfig{Interval: -time.Second}); return err }, "interval -1s"},
		{"cleaner batch", func() error { _, err := NewCleaner(exec, &CleanerConfig{Batch: -1}); return err }, "batch -1"},
		{"cleaner statement timeout", func() error {
			_, err := NewCleaner(exec, &CleanerConfig{StatementTimeout: -time.Second})
			return err
		}, "statement timeout -1s"},
		{"cleaner completed retention", func() error {
			_, err := NewCleaner(exec, &CleanerConfig{CompletedJobRetention: -2})
			return err
		}, "completed job retention"},
		{"cleaner cancelled retention", func() error {
			_, err := NewCleaner(exec, &CleanerConfig{CancelledJobRetention: -2})
			return err
		}, "cancelled job retention"},
		{"cleaner discarded retention", func() error {
			_, err := NewCleaner(exec, &CleanerConfig{DiscardedJobRetention: -2})
			return err
		}, "discarded job retention"},
		{"queue cleaner nil config", func() error { _, err := NewQueueCleaner(exec, nil); return err }, "nil config"},
		{"queue cleaner nil exec", func() error { _, err := NewQueueCleaner(nil, &QueueCleanerConfig{}); return err }, "nil executor"},
		{"queue cleaner interval", func() error {
			_, err := NewQueueCleaner(exec, &QueueCleanerConfig{Interval: -time.Second})
			return err
		}, "interval -1s"},
		{"queue cleaner retention", func() error {
			_, err := NewQueueCleaner(exec, &QueueCleanerConfig{Retention: -time.Second})
			return err
		}, "retention -1s"},
		{"reindexer nil config", func() error { _, err := NewReindexer(exec, nil); return err }, "nil config"},
		{"reindexer nil exec", func() error { _, err := NewReindexer(nil, &ReindexerConfig{}); return err }, "nil executor"},
		{"reindexer timeout", func() error { _, err := NewReindexer(exec, &ReindexerConfig{Timeout: -time.Second}); return err }, "timeout -1s"},
		{"enqueuer nil config", func() error { _, err := NewPeriodicJobEnqueuer(exec, nil); return err }, "nil config"},
		{"enqueuer nil exec", func() error {
			_, err := NewPeriodicJobEnqueuer(nil, &PeriodicJobEnqueuerConfig{})
			return err
		}, "nil executor"},
		{"pending list cleaner nil config", func() error { _, err := NewPendingListCleaner(plStub{}, nil); return err }, "nil config"},
		{"pending list cleaner nil exec", func() error {
			_, err := NewPendingListCleaner(nil, &PendingListCleanerConfig{})
			return err
		}, "nil executor"},
		{"pending list cleaner min interval", func() error {
			_, err := NewPendingListCleaner(plStub{}, &PendingListCleanerConfig{MinInterval: -time.Second})
			return err
		}, "min interval -1s"},
		{"pending list cleaner max interval", func() error {
			_, err := NewPendingListCleaner(plStub{}, &PendingListCleanerConfig{MaxInterval: -time.Second})
			return err
		}, "max interval -1s"},
		{"pending list cleaner min above max", func() error {
			_, err := NewPendingListCleaner(plStub{}, &PendingListCleanerConfig{MinInterval: 3 * time.Second})
			return err
		}, "min interval 3s is above max interval 2s"},
		{"pending list cleaner timeout", func() error {
			_, err := NewPendingListCleaner(plStub{}, &PendingListCleanerConfig{Timeout: -time.Second})
			return err
		}, "timeout -1s"},
		{"maintainer nil leader", func() error { _, err := NewMaintainer(nil, nil, svc); return err }, "nil leader"},
		{"maintainer nil service", func() error { _, err := NewMaintainer(&fakeLeader{}, nil, svc, nil); return err }, "service 1 is nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error wrapping ErrInvalidConfig that mentions %q", err, tc.want)
			}
		})
	}
}

// Zero values get the documented defaults; -1 keeps a retention forever.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	exec := stubExec{}
	s, err := NewScheduler(exec, &SchedulerConfig{})
	if err != nil || s.cfg.Interval != DefaultSchedulerInterval || s.cfg.Batch != DefaultSchedulerBatch {
		t.Errorf("scheduler: %+v, %v", s, err)
	}
	r, err := NewRescuer(exec, &RescuerConfig{})
	if err != nil || r.cfg.Interval != DefaultRescuerInterval || r.cfg.RescueAfter != DefaultRescueStuckJobsAfter ||
		r.cfg.Batch != DefaultRescuerBatch || r.cfg.MaxPassDuration != DefaultRescuerMaxPassDuration {
		t.Errorf("rescuer: %+v, %v", r, err)
	}
	c, err := NewCleaner(exec, &CleanerConfig{CancelledJobRetention: -1})
	if err != nil || c.cfg.Interval != DefaultCleanerInterval || c.cfg.Batch != DefaultCleanerBatch ||
		c.cfg.StatementTimeout != DefaultCleanerStatementTimeout || c.cfg.CompletedJobRetention != DefaultCompletedJobRetention ||
		c.cfg.CancelledJobRetention != -1 || c.cfg.DiscardedJobRetention != DefaultDiscardedJobRetention {
		t.Errorf("cleaner: %+v, %v", c, err)
	}
	q, err := NewQueueCleaner(exec, &QueueCleanerConfig{})
	if err != nil || q.cfg.Interval != DefaultQueueCleanerInterval || q.cfg.Retention != DefaultQueueRetention {
		t.Errorf("queue cleaner: %+v, %v", q, err)
	}
	ri, err := NewReindexer(exec, &ReindexerConfig{})
	if err != nil || ri.cfg.Timeout != DefaultReindexTimeout {
		t.Errorf("reindexer: %+v, %v", ri, err)
	}
	if _, err := NewPeriodicJobEnqueuer(exec, &PeriodicJobEnqueuerConfig{}); err != nil {
		t.Errorf("enqueuer: %v", err)
	}
	if _, err := NewMaintainer(&fakeLeader{}, nil); err != nil {
		t.Errorf("maintainer: %v", err)
	}
	pl, err := NewPendingListCleaner(plStub{}, &PendingListCleanerConfig{})
	if err != nil || pl.cfg.MinInterval != DefaultPendingListMinInterval || pl.cfg.MaxInterval != DefaultPendingListMaxInterval ||
		pl.cfg.Timeout != DefaultPendingListTimeout {
		t.Errorf("pending list cleaner: %+v, %v", pl, err)
	}
}
