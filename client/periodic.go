package client

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
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

// PeriodicRunAtMetadataKey is the metadata key under which each run of a
// periodic job records the time of the run it is (RFC 3339, UTC): its
// scheduled_at moves when it is retried, snoozed or rescued, this does
// not.
const PeriodicRunAtMetadataKey = "millrace:periodic_run_at"

type intervalSchedule struct{ d time.Duration }

func (s intervalSchedule) Next(t time.Time) time.Time {
	if s.d <= 0 {
		return time.Time{}
	}
	return t.UTC().Truncate(s.d).Add(s.d)
}

// ParseCron parses a standard five-field cron expression ("*/5 * * * *",
// "0 3 * * MON") or a descriptor ("@hourly", "@daily", "@every 10m"), in
// UTC unless it starts with "CRON_TZ=<zone> " (an IANA zone such as
// America/New_York; its daylight saving time is followed as described in
// the README). A malformed expression, an unknown zone, or an expression
// that never fires ("0 0 30 2 *") gives an error wrapping ErrInvalidArgs.
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
	c := cronSchedule{s}
	if err := checkFires(c, time.Now()); err != nil {
		return nil, fmt.Errorf("%w: cron expression %q: %w", ErrInvalidArgs, expr, err)
	}
	return c, nil
}

type cronSchedule struct{ s cron.Schedule }

func (c cronSchedule) Next(t time.Time) time.Time {
	spec, ok := c.s.(*cron.SpecSchedule)
	if !ok || spec.Location == time.Local || spec.Location == time.UTC || spec.Hour&cronStarBit != 0 {
		// No zone of its own (the parser's time.Local follows the time
		// given, UTC), or a job of every hour: the parser's times, which
		// follow the clock's jumps.
		return c.s.Next(t.UTC()).UTC()
	}
	return zonedNext(spec, t.UTC()).UTC()
}

// cronStarBit is set in a SpecSchedule field written "*".
const cronStarBit = 1 << 63

// zonedNext is the next run of a schedule with a time zone whose hours
// are fixed ("30 2 * * *"), keeping to one run per matching wall-clock
// time across daylight saving changes: a time the clock skips when it
// goes forward runs at the moment of the jump (03:00 instead of 02:30), and
// a time the clock passes twice when it goes back runs the first time
// only.
func zonedNext(spec *cron.SpecSchedule, t time.Time) time.Time {
	loc := spec.Location
	for {
		n := spec.Next(t)
		if n.IsZero() {
			return n
		}
		// A forward jump between t and n that skipped a matching time.
		for cur := t; ; {
			_, end := cur.In(loc).ZoneBounds()
			if end.IsZero() || !end.Before(n) {
				break
			}
			_, before := cur.In(loc).Zone()
			_, after := end.In(loc).Zone()
			if after > before && skippedMatch(spec, end, before, after) {
				return end
			}
			cur = end
		}
		// n's wall-clock time came once already, before a backward jump.
		start, _ := n.In(loc).ZoneBounds()
		if !start.IsZero() {
			_, after := n.In(loc).Zone()
			_, before := start.Add(-time.Second).In(loc).Zone()
			if before > after && n.Before(start.Add(time.Duration(before-after)*time.Second)) {
				t = n
				continue
			}
		}
		return n
	}
}

// skippedMatch reports whether the schedule matches a wall-clock minute
// that a forward jump at end (from UTC offset before to after, in seconds)
// skipped.
func skippedMatch(spec *cron.SpecSchedule, end time.Time, before, after int) bool {
	inUTC := *spec
	inUTC.Location = time.UTC
	w := end.In(time.FixedZone("", before))
	wall := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), 0, 0, time.UTC)
	for m := wall; m.Before(wall.Add(time.Duration(after-before) * time.Second)); m = m.Add(time.Minute) {
		if inUTC.Next(m.Add(-time.Second)).Equal(m) {
			return true
		}
	}
	return false
}

// checkFires checks that a schedule gives a run after from (the cron
// parser looks five years ahead), and one after that: a schedule that
// never fires, or fires once, is a mistake.
func checkFires(s PeriodicSchedule, from time.Time) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("schedule panicked: %v", r)
		}
	}()
	first := s.Next(from)
	if first.IsZero() || !first.After(from) {
		return errors.New("never fires")
	}
	if second := s.Next(first); second.IsZero() || !second.After(first) {
		return fmt.Errorf("fires once (%s), then never", first.Format(time.RFC3339))
	}
	return nil
}

// PeriodicJobConstructor returns the job for one run; returning nil args
// skips the run.
type PeriodicJobConstructor func() (JobArgs, *InsertOpts)

// PeriodicJobOpts are a periodic job's options.
type PeriodicJobOpts struct {
	// ID names the job (stored in metadata as river:periodic_job_id) and
	// keeps its runs apart from another periodic job of the same kind. It
	// also makes the job durable: its next run is kept in the database
	// (table millrace_periodic), so that restarts and changes of leader
	// neither skip nor repeat a run. A client's jobs have distinct IDs; at
	// most 128 characters. A job without an ID is scheduled in the
	// leader's memory from the time it starts leading.
	ID string
	// RunOnStart also enqueues the job whenever this client becomes the
	// leader of its domain (Config.Domain; the database leader in the
	// default domain).
	RunOnStart bool
	// SkipMissed drops the runs of a durable job that fell due while no
	// client was running. By default one run stands for all of them,
	// enqueued when a client leads again.
	SkipMissed bool
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

// Add adds a periodic job. It returns an error wrapping ErrInvalidArgs
// for a job without schedule or constructor, an interval under a second, a
// schedule that never fires, or an ID that is too long or that another
// job of the client has.
//
// Each run is inserted once, whichever client leads and however often
// leadership changes. A durable job (one with an ID) is enqueued by the
// leader in the transaction that moves its row of millrace_periodic on to
// its next run, compare-and-set: a leader that lost its leadership
// unknowingly finds the row moved and inserts nothing. Every run also
// carries a unique key made of the kind, the run time and the job's ID
// (unless the job's InsertOpts set their own unique options).
func (b *PeriodicJobBundle[TTx]) Add(job *PeriodicJob) (PeriodicJobHandle, error) {
	if job == nil || job.constructor == nil || job.schedule == nil {
		return 0, fmt.Errorf("%w: periodic job needs a schedule and a constructor", ErrInvalidArgs)
	}
	if s, ok := job.schedule.(intervalSchedule); ok && s.d < time.Second {
		return 0, fmt.Errorf("%w: periodic interval %s is shorter than 1s", ErrInvalidArgs, s.d)
	}
	if err := checkFires(job.schedule, b.c.config.clock()); err != nil {
		return 0, fmt.Errorf("%w: periodic job schedule: %w", ErrInvalidArgs, err)
	}
	if len(job.opts.ID) > 128 {
		return 0, fmt.Errorf("%w: periodic job ID longer than 128 characters", ErrInvalidArgs)
	}
	if b.c.config.LeaderElectionDisabled {
		return 0, fmt.Errorf("%w: periodic jobs need a client that can lead (LeaderElectionDisabled is set)", ErrInvalidConfig)
	}
	c := b.c
	h, err := c.periodic.Add(&maintenance.PeriodicJob{
		ID:         job.opts.ID,
		SkipMissed: job.opts.SkipMissed,
		Next:       job.schedule.Next,
		RunOnStart: job.opts.RunOnStart,
		Construct:  func(runAt time.Time) (*driver.JobInsertParams, error) { return c.constructPeriodic(job, runAt) },
	})
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidArgs, err)
	}
	return h, nil
}

// Remove removes a periodic job from this client. When this client leads,
// the row of a durable job is deleted too (unless a job of the same ID has
// been added again), so that adding it later starts its schedule afresh;
// another client that has the job goes on enqueuing it when it leads.
func (b *PeriodicJobBundle[TTx]) Remove(h PeriodicJobHandle) { b.c.periodic.Remove(h) }

// Clear removes every periodic job, as Remove does each.
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
	meta[PeriodicRunAtMetadataKey] = runAt.Format(time.RFC3339Nano)
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
