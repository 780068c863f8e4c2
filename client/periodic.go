package client

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/uniquekey"
	"github.com/millrace/millrace/maintenance"
	"github.com/millrace/millrace/millracetype"
)

// PeriodicSchedule says when a periodic job runs.
type PeriodicSchedule interface {
	// Next returns the first run time strictly after t.
	Next(t time.Time) time.Time
}

// PeriodicInterval runs a job every d, at multiples of d (counted, like
// time.Time.Truncate, from year 1: every hour on the hour, every 15 minutes
// at :00, :15, ...), so every client computes the same run times. d must be
// at least one second (checked by Add).
func PeriodicInterval(d time.Duration) PeriodicSchedule { return intervalSchedule{d} }

type intervalSchedule struct{ d time.Duration }

func (s intervalSchedule) Next(t time.Time) time.Time {
	if s.d <= 0 {
		return time.Time{}
	}
	return t.UTC().Truncate(s.d).Add(s.d)
}

// ParseCron parses a standard five-field cron expression ("*/5 * * * *",
// "0 3 * * MON") or a descriptor ("@hourly", "@daily", "@every 10m"), in
// UTC unless it starts with "CRON_TZ=<zone> ".
func ParseCron(expr string) (_ PeriodicSchedule, err error) {
	// The parser panics on some malformed input ("CRON_TZ=UTC" with no
	// fields slices out of range): that is an invalid expression too.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: cron expression %q: malformed (%v)", ErrInvalidArgs, expr, r)
		}
	}()
	s, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: cron expression %q: %w", ErrInvalidArgs, expr, err)
	}
	return cronSchedule{s}, nil
}

type cronSchedule struct{ s cron.Schedule }

func (c cronSchedule) Next(t time.Time) time.Time { return c.s.Next(t.UTC()) }

// PeriodicJobConstructor returns the job for one run; returning nil args
// skips the run.
type PeriodicJobConstructor func() (JobArgs, *InsertOpts)

// PeriodicJobOpts are a periodic job's options.
type PeriodicJobOpts struct {
	// ID names the job (stored in metadata as river:periodic_job_id) and
	// keeps its runs apart from another periodic job of the same kind.
	ID string
	// RunOnStart also enqueues the job whenever this client becomes the
	// leader of its domain (Config.Domain; the database leader in the
	// default domain).
	RunOnStart bool
}

// PeriodicJob is a job enqueued on a schedule by the leader of the client's
// domain (Config.Domain; the database leader in the default domain).
type PeriodicJob struct {
	schedule    PeriodicSchedule
	constructor PeriodicJobConstructor
	opts        PeriodicJobOpts
}

// NewPeriodicJob returns a periodic job; Add checks it.
func NewPeriodicJob(schedule PeriodicSchedule, constructor PeriodicJobConstructor, opts *PeriodicJobOpts) *PeriodicJob {
	j := &PeriodicJob{schedule: schedule, constructor: constructor}
	if opts != nil {
		j.opts = *opts
	}
	return j
}

// PeriodicJobHandle identifies a periodic job added to a client.
type PeriodicJobHandle = maintenance.PeriodicJobHandle

// PeriodicJobBundle manages a client's periodic jobs. Changes apply at once,
// also while the client runs and leads.
type PeriodicJobBundle[TTx any] struct {
	c *Client[TTx]
}

// PeriodicJobs returns the client's periodic jobs.
func (c *Client[TTx]) PeriodicJobs() *PeriodicJobBundle[TTx] { return &PeriodicJobBundle[TTx]{c: c} }

// Add adds a periodic job. Each run is inserted once, whichever client
// leads and however often leadership changes: runs carry a unique key made
// of the kind, the run time and the job's ID (unless the job's InsertOpts
// set their own unique options).
func (b *PeriodicJobBundle[TTx]) Add(job *PeriodicJob) (PeriodicJobHandle, error) {
	if job == nil || job.constructor == nil || job.schedule == nil {
		return 0, fmt.Errorf("%w: periodic job needs a schedule and a constructor", ErrInvalidArgs)
	}
	if s, ok := job.schedule.(intervalSchedule); ok && s.d < time.Second {
		return 0, fmt.Errorf("%w: periodic interval %s is shorter than 1s", ErrInvalidArgs, s.d)
	}
	if len(job.opts.ID) > 128 {
		return 0, fmt.Errorf("%w: periodic job ID longer than 128 characters", ErrInvalidArgs)
	}
	if b.c.config.LeaderElectionDisabled {
		return 0, fmt.Errorf("%w: periodic jobs need a client that can lead (LeaderElectionDisabled is set)", ErrInvalidConfig)
	}
	c := b.c
	return c.periodic.Add(&maintenance.PeriodicJob{
		Next:       job.schedule.Next,
		RunOnStart: job.opts.RunOnStart,
		Construct:  func(runAt time.Time) (*driver.JobInsertParams, error) { return c.constructPeriodic(job, runAt) },
	}), nil
}

// Remove removes a periodic job.
func (b *PeriodicJobBundle[TTx]) Remove(h PeriodicJobHandle) { b.c.periodic.Remove(h) }

// Clear removes every periodic job.
func (b *PeriodicJobBundle[TTx]) Clear() { b.c.periodic.Clear() }

// constructPeriodic builds one run of a periodic job.
func (c *Client[TTx]) constructPeriodic(job *PeriodicJob, runAt time.Time) (*driver.JobInsertParams, error) {
	args, opts := job.constructor()
	if args == nil {
		return nil, nil
	}
	p, err := c.prepareOne(InsertManyParams{Args: args, InsertOpts: opts}, c.config.clock().UTC())
	if err != nil {
		return nil, err
	}
	if p.ReplaceArgs || p.ReplaceScheduledAt {
		// A run's time is the schedule's; a debounce would fight it.
		return nil, fmt.Errorf("%w: periodic job of kind %q: replace options (InsertOpts.Replace) are not for periodic jobs", ErrInvalidArgs, p.Kind)
	}
	runAt = runAt.UTC()
	if p.State != millracetype.JobStatePending {
		p.State = millracetype.JobStateAvailable
	}
	p.ScheduledAt = runAt
	var meta map[string]any
	if err := json.Unmarshal(p.Metadata, &meta); err != nil {
		return nil, err
	}
	meta["periodic"] = true
	if job.opts.ID != "" {
		meta["river:periodic_job_id"] = job.opts.ID
	}
	if p.Metadata, err = json.Marshal(meta); err != nil {
		return nil, err
	}
	if p.UniqueKey == nil {
		key := sha256.Sum256([]byte("&kind=" + p.Kind + "&periodic_run=" + runAt.Format(time.RFC3339Nano) + "&periodic_id=" + job.opts.ID))
		p.UniqueKey, p.UniqueStates = key[:], uniquekey.DefaultStatesMask
	}
	// Insert hooks see (and may reject) periodic runs as any insert.
	if err := c.runInsertBegin(context.Background(), []*JobInsertParams{p}); err != nil {
		return nil, err
	}
	return toDriverParams([]*JobInsertParams{p})[0], nil
}
