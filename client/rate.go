package client

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/producer"
	"github.com/millrace/millrace/millracetype"
)

// RateLimit bounds how many jobs of a queue, of one kind in it, or of each
// partition (by kind, by values of args keys) start per interval, across
// every millrace client on the database. See QueueConfig.RateLimits and
// "Rate limits and timed pauses" in the README.
type RateLimit = millracetype.RateLimit

// Pause is a timed pause of a queue or part of it (PauseUntil,
// JobPauseUntil).
type Pause = millracetype.Pause

// Bounds of a RateLimit's interval.
const (
	MinRateInterval = 100 * time.Millisecond
	MaxRateInterval = 24 * time.Hour
	// MaxRateLimits is how many rate limits a queue may have.
	MaxRateLimits = 16
)

// validateRateLimit checks one limit.
func validateRateLimit(l RateLimit) error {
	if l.N < 1 {
		return fmt.Errorf("rate limit %d per %v: the rate must be at least 1 per interval", l.N, l.Interval)
	}
	if l.Interval < MinRateInterval || l.Interval > MaxRateInterval || l.Interval%time.Millisecond != 0 {
		return fmt.Errorf("rate limit %d per %v: the interval must be a whole number of milliseconds from %v to %v",
			l.N, l.Interval, MinRateInterval, MaxRateInterval)
	}
	if l.Kind != "" {
		if len(l.Kind) > 127 || !kindRE.MatchString(l.Kind) {
			return fmt.Errorf("rate limit: kind %q must match %s and be at most 127 characters", l.Kind, kindRE)
		}
		if l.PartitionByKind {
			return fmt.Errorf("rate limit of kind %q: PartitionByKind is for limits of the whole queue", l.Kind)
		}
	}
	seen := map[string]bool{}
	for _, k := range l.PartitionByArgs {
		if k == "" || len(k) > 128 {
			return fmt.Errorf("rate limit: PartitionByArgs key %q must be 1 to 128 bytes", k)
		}
		if seen[k] {
			return fmt.Errorf("rate limit: PartitionByArgs key %q given twice", k)
		}
		seen[k] = true
	}
	return nil
}

// validateRateLimits checks a queue's limits.
func validateRateLimits(name string, lims []RateLimit) error {
	if len(lims) > MaxRateLimits {
		return fmt.Errorf("queue %q: %d rate limits, at most %d", name, len(lims), MaxRateLimits)
	}
	for _, l := range lims {
		if err := validateRateLimit(l); err != nil {
			return fmt.Errorf("queue %q: %w", name, err)
		}
	}
	return nil
}

// flowControlled reports whether the queue's fetches go through the rate
// and pause checks.
func (q QueueConfig) flowControlled() bool { return len(q.RateLimits) > 0 || q.TimedPauses }

// rateFetch wraps inner in the queue's rate limits and pauses, when it has
// any; else it returns inner.
func (q QueueConfig) rateFetch(schema, name string, inner producer.FetchStrategy) producer.FetchStrategy {
	if !q.flowControlled() {
		return inner
	}
	return producer.NewRateFetch(schema, name, q.RateLimits, inner)
}

// PauseOpts selects what PauseUntil pauses.
type PauseOpts struct {
	// Kind, when not empty, pauses only the jobs of this kind.
	Kind string
	// Args, when not nil, pauses only the jobs whose args contain it: a
	// value that encodes to a JSON object (json.RawMessage or []byte for
	// JSON text as is). {"token":"a"} pauses the jobs whose args have
	// "token":"a". Nil: all the jobs (of Kind).
	Args any
}

// pauseArgs encodes PauseOpts.Args as a JSON object ({} for nil).
func pauseArgs(a any) ([]byte, error) {
	var b []byte
	switch v := a.(type) {
	case nil:
		return []byte("{}"), nil
	case []byte:
		b = v
	case json.RawMessage:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("encode args %T: %w", a, err)
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, fmt.Errorf("args must be a JSON object: %.60s", b)
	}
	return b, nil
}

// MaxPause is the longest a timed pause may last.
const MaxPause = 30 * 24 * time.Hour

// PauseUntil pauses queue, or the part of it opts selects, until until:
// no millrace client whose queue has rate limits or TimedPauses fetches
// its jobs before then, and they resume by themselves at until (for
// example after an HTTP 429 with Retry-After). The pause is stored in the
// database (table millrace_pause), so every such client of every process
// sees it and it survives crashes. A second call for the same queue, kind
// and args replaces the time. River clients and millrace clients without
// flow control on the queue ignore it. It returns the pause as stored.
//
// A bad queue name or kind, args that are not a JSON object, or a time not
// in the future nor within MaxPause give an error wrapping ErrInvalidArgs.
func (c *Client[TTx]) PauseUntil(ctx context.Context, queue string, until time.Time, opts *PauseOpts) (*Pause, error) {
	p, err := c.pauseParams(queue, opts)
	if err != nil {
		return nil, fmt.Errorf("pause until: %w", err)
	}
	if d := time.Until(until); d <= 0 || d > MaxPause {
		return nil, fmt.Errorf("pause until: %w: time %v is not within the next %v", ErrInvalidArgs, until, MaxPause)
	}
	p.Until = until
	got, err := c.driver.GetExecutor().PauseSet(ctx, &driver.PauseSetParams{Schema: c.config.Schema, Pause: *p})
	if err != nil {
		return nil, fmt.Errorf("pause queue %q until %v: %w", queue, until, err)
	}
	return got, nil
}

// PauseDelete ends a pause before its time (the clients' next fetch
// sees it, within FetchPollInterval) and reports whether there was one.
func (c *Client[TTx]) PauseDelete(ctx context.Context, queue string, opts *PauseOpts) (bool, error) {
	p, err := c.pauseParams(queue, opts)
	if err != nil {
		return false, fmt.Errorf("delete pause: %w", err)
	}
	ok, err := c.driver.GetExecutor().PauseDelete(ctx, &driver.PauseDeleteParams{Schema: c.config.Schema, Queue: queue, Kind: p.Kind, Args: p.Args})
	if err != nil {
		return false, fmt.Errorf("delete pause of queue %q: %w", queue, err)
	}
	return ok, nil
}

// PauseList returns the current pauses of queue ("" for every queue),
// ordered by queue, kind and args.
func (c *Client[TTx]) PauseList(ctx context.Context, queue string) ([]*Pause, error) {
	if queue != "" {
		if err := validateQueueName(queue); err != nil {
			return nil, fmt.Errorf("list pauses: %w: %w", ErrInvalidQueue, err)
		}
	}
	ps, err := c.driver.GetExecutor().PauseGetMany(ctx, &driver.PauseGetManyParams{Schema: c.config.Schema, Queue: queue})
	if err != nil {
		return nil, fmt.Errorf("list pauses: %w", err)
	}
	return ps, nil
}

// pauseParams validates a pause's queue and opts.
func (c *Client[TTx]) pauseParams(queue string, opts *PauseOpts) (*Pause, error) {
	if err := validateQueueName(queue); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidQueue, err)
	}
	if opts == nil {
		opts = &PauseOpts{}
	}
	if opts.Kind != "" && (len(opts.Kind) > 127 || !kindRE.MatchString(opts.Kind)) {
		return nil, fmt.Errorf("%w: kind %q must match %s and be at most 127 characters", ErrInvalidArgs, opts.Kind, kindRE)
	}
	args, err := pauseArgs(opts.Args)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgs, err)
	}
	return &Pause{Queue: queue, Kind: opts.Kind, Args: args}, nil
}

// JobPauseOpts selects what JobPauseUntil pauses of the job's queue.
type JobPauseOpts struct {
	// ByKind pauses only the jobs of the job's kind.
	ByKind bool
	// ByArgs pauses only the jobs with the job's values of these top-level
	// args keys (a key the job's args lack is left out). Empty: not by
	// args.
	ByArgs []string
}

// pauser is what JobPauseUntil needs of the job's client, whatever TTx.
type pauser interface {
	pauseFromJob(ctx context.Context, row *millracetype.JobRow, until time.Time, opts *JobPauseOpts) error
}

// JobPauseUntil, called from Work with Work's context, pauses the job's
// queue (or the part of it opts selects: its kind, its values of some args
// keys) until until, as PauseUntil does, and returns the error that snoozes
// the job until then: return it from Work. Typical use: a worker got an
// HTTP 429 with Retry-After for its API token and pauses every job of that
// token. The job's queue must have flow control on this client
// (QueueConfig.RateLimits or TimedPauses; else the error wraps
// ErrInvalidConfig and nothing is paused).
func JobPauseUntil(ctx context.Context, until time.Time, opts *JobPauseOpts) error {
	st := jobStateFrom(ctx)
	if st == nil {
		return fmt.Errorf("job pause until: %w", ErrNotInWorker)
	}
	c, ok := st.Client.(pauser)
	if !ok {
		return fmt.Errorf("job pause until: the job's client is a %T", st.Client)
	}
	if err := c.pauseFromJob(ctx, st.Row, until, opts); err != nil {
		return fmt.Errorf("job pause until: %w", err)
	}
	return JobSnooze(max(time.Until(until), 0))
}

func (c *Client[TTx]) pauseFromJob(ctx context.Context, row *millracetype.JobRow, until time.Time, opts *JobPauseOpts) error {
	c.mu.Lock()
	q, ok := c.config.Queues[row.Queue]
	c.mu.Unlock()
	if !ok || !q.flowControlled() {
		return fmt.Errorf("%w: queue %q has no rate limits nor TimedPauses on this client: a pause would not be seen", ErrInvalidConfig, row.Queue)
	}
	if opts == nil {
		opts = &JobPauseOpts{}
	}
	po := &PauseOpts{}
	if opts.ByKind {
		po.Kind = row.Kind
	}
	if len(opts.ByArgs) > 0 {
		var args map[string]json.RawMessage
		if err := json.Unmarshal(row.Args, &args); err != nil {
			return fmt.Errorf("%w: the job's args are not a JSON object: %w", ErrInvalidArgs, err)
		}
		sel := map[string]json.RawMessage{}
		for _, k := range slices.Compact(slices.Sorted(slices.Values(opts.ByArgs))) {
			if v, ok := args[k]; ok && string(v) != "null" {
				sel[k] = v
			}
		}
		po.Args = sel
	}
	_, err := c.PauseUntil(ctx, row.Queue, until, po)
	return err
}
