package maintenance

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/millrace/millrace/driver"
)

// Scheduler defaults.
const (
	DefaultSchedulerInterval = 5 * time.Second
	DefaultSchedulerBatch    = 10_000
)

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	// Schema holds the job tables; empty means the connection's
	// search_path.
	Schema string
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
	// Interval between passes; also the look-ahead: jobs due within it are
	// made available now (with their future scheduled_at, which the fetch
	// waits for). Default (0) 5 s; negative is invalid.
	Interval time.Duration
	// Batch is the most jobs moved per statement. Default (0) 10,000;
	// negative is invalid.
	Batch int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Scheduler makes due retryable and scheduled jobs available, and discards
// one whose unique key now collides with a live job. It wakes producers of
// the queues concerned with an insert notification when each job is due.
type Scheduler struct {
	periodic
	exec driver.Executor
	cfg  SchedulerConfig

	mu     sync.Mutex
	timers map[*time.Timer]struct{}
}

// NewScheduler returns a scheduler, or an error wrapping ErrInvalidConfig
// for a nil cfg or exec or a negative Interval or Batch.
func NewScheduler(exec driver.Executor, cfg *SchedulerConfig) (*Scheduler, error) {
	const name = "scheduler"
	if cfg == nil {
		return nil, invalid(name, "nil config")
	}
	c := *cfg
	var err error
	if c.Interval, err = setting(name, "interval", c.Interval, DefaultSchedulerInterval); err != nil {
		return nil, err
	}
	if c.Batch, err = setting(name, "batch", c.Batch, DefaultSchedulerBatch); err != nil {
		return nil, err
	}
	if err := checkExec(name, exec); err != nil {
		return nil, err
	}
	s := &Scheduler{exec: exec, cfg: c, timers: map[*time.Timer]struct{}{}}
	s.initBase(name, c.Schema, c.Logger, c.Now)
	s.interval, s.periodic.pass = c.Interval, s.pass
	return s, nil
}

// Stop stops the scheduler and its pending wake-ups.
func (s *Scheduler) Stop() {
	s.periodic.Stop()
	s.mu.Lock()
	for t := range s.timers {
		t.Stop()
	}
	clear(s.timers)
	s.mu.Unlock()
}

func (s *Scheduler) pass(ctx context.Context) error {
	for {
		now := s.now().UTC()
		res, err := s.exec.JobSchedule(ctx, &driver.JobScheduleParams{Schema: s.schema, Max: s.cfg.Batch,
			Now: now, Horizon: now.Add(s.cfg.Interval)})
		if err != nil {
			return fmt.Errorf("schedule jobs: %w", err)
		}
		// The earliest due time of each queue's newly available jobs.
		due := map[string]time.Time{}
		discarded := 0
		for _, r := range res {
			if r.ConflictDiscarded {
				discarded++
				continue
			}
			if t, ok := due[r.Job.Queue]; !ok || r.Job.ScheduledAt.Before(t) {
				due[r.Job.Queue] = r.Job.ScheduledAt
			}
		}
		if len(res) > 0 {
			s.logger.Debug("maintenance: scheduled jobs", "available", len(res)-discarded, "discarded_unique_conflict", discarded)
		}
		s.wake(ctx, due, now)
		if len(res) < s.cfg.Batch {
			return nil
		}
	}
}

// wake notifies each queue now or when its first job is due (within the
// look-ahead). Pending wake-ups are cancelled by Stop.
func (s *Scheduler) wake(ctx context.Context, due map[string]time.Time, now time.Time) {
	var nowQueues []string
	for queue, at := range due {
		d := at.Sub(now)
		if d <= 5*time.Millisecond {
			nowQueues = append(nowQueues, queue)
			continue
		}
		var t *time.Timer
		s.mu.Lock()
		t = time.AfterFunc(d, func() {
			s.mu.Lock()
			delete(s.timers, t)
			s.mu.Unlock()
			s.notify(context.WithoutCancel(ctx), []string{queue})
		})
		s.timers[t] = struct{}{}
		s.mu.Unlock()
	}
	s.notify(ctx, nowQueues)
}

func (s *Scheduler) notify(ctx context.Context, queues []string) {
	if len(queues) == 0 {
		return
	}
	// The driver builds the payload (River's form, byte for byte), as it
	// does for the inserts' own notifications.
	payloads := make([]string, len(queues))
	for i, q := range queues {
		payloads[i] = driver.InsertNotifyPayload(q)
	}
	if err := s.exec.NotifyMany(ctx, &driver.NotifyManyParams{Schema: s.schema, Topic: driver.TopicInsert, Payloads: payloads}); err != nil && ctx.Err() == nil {
		s.logger.Warn("maintenance: notifying queues of scheduled jobs failed", "error", err)
	}
}
