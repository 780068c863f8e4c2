package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/millracetype"
)

// Hook is something the client calls at one step of a job's life. A hook
// type implements Hook (embed HookDefaults) and one or more of the step
// interfaces: HookInsertBegin, HookWorkBegin, HookWorkEnd and
// HookWorkMetrics. Hooks are installed for every job in Config.Hooks, or
// for one kind by its args type (JobArgsWithHooks).
//
// A hook runs at its step and returns; unlike middleware it does not wrap
// the step, so it cannot hand a context to what follows. Prefer a hook
// when that is all you need: it keeps stacks short and costs less.
//
// Its one method, IsHook() bool, marks the type as a hook on purpose (its
// result is not used).
type Hook = jobexec.Hook

// HookDefaults implements Hook; embed it in a hook struct.
type HookDefaults struct{}

// IsHook implements Hook.
func (HookDefaults) IsHook() bool { return true }

// HookInsertBegin is a hook called for each job of an insert just before it
// is written, after any insert middleware has run (so it sees and may
// change the final params). It runs for Insert, InsertMany, InsertManyFast
// (and their Tx variants) and for the runs of periodic jobs.
type HookInsertBegin interface {
	Hook
	// InsertBegin may change params. An error rejects the whole insert:
	// nothing is written and the error is returned to the caller, wrapped.
	// Params a hook changed are validated again (ErrInvalidArgs).
	InsertBegin(ctx context.Context, params *JobInsertParams) error
}

// HookWorkBegin is a hook called before a job's Work, inside the worker
// middleware and under the job's timeout.
//
// Its method WorkBegin(ctx context.Context, job *millracetype.JobRow) error
// gets the job as fetched. An error fails the attempt just as an error
// from Work would (retried, discarded or, for JobCancel and JobSnooze
// errors, cancelled or snoozed); Work and the hooks after this one do not
// run, nor do the WorkEnd hooks. A panic is recorded as the job's panic.
type HookWorkBegin = jobexec.HookWorkBegin

// HookWorkEnd is a hook called after a job's Work returns, inside the
// worker middleware.
//
// Its method WorkEnd(ctx context.Context, job *millracetype.JobRow, err
// error) error gets Work's error (nil on success) and returns the error to
// go on with: return err unchanged to keep it, or another error (or nil)
// to replace it. Each WorkEnd hook gets what the one before it returned,
// and the last one's result decides the outcome. The job is the row as
// fetched: its state and errors are not yet updated. WorkEnd hooks do not
// run when Work panics (the panic is recorded) or when a WorkBegin hook
// failed.
type HookWorkEnd = jobexec.HookWorkEnd

// HookWorkMetrics is a hook told of every finished attempt: its outcome and
// timings. It is how to feed a metrics system (Prometheus, OpenTelemetry,
// statsd) without the core depending on one.
//
// Its method WorkMetrics(ctx context.Context, m JobMetrics) is called once
// per attempt, in the job's goroutine, after the outcome is decided and
// handed over to be written. It must be fast (an increment, a histogram
// observation): the job's worker slot is held until it returns. ctx may
// already be cancelled (StopAndCancel). A panic is logged and otherwise
// ignored.
type HookWorkMetrics = jobexec.HookWorkMetrics

// HookInsertBeginFunc makes a HookInsertBegin of a function.
type HookInsertBeginFunc func(ctx context.Context, params *JobInsertParams) error

// IsHook implements Hook.
func (HookInsertBeginFunc) IsHook() bool { return true }

// InsertBegin implements HookInsertBegin.
func (f HookInsertBeginFunc) InsertBegin(ctx context.Context, params *JobInsertParams) error {
	return f(ctx, params)
}

// HookWorkBeginFunc makes a HookWorkBegin of a function.
type HookWorkBeginFunc func(ctx context.Context, job *millracetype.JobRow) error

// IsHook implements Hook.
func (HookWorkBeginFunc) IsHook() bool { return true }

// WorkBegin implements HookWorkBegin.
func (f HookWorkBeginFunc) WorkBegin(ctx context.Context, job *millracetype.JobRow) error {
	return f(ctx, job)
}

// HookWorkEndFunc makes a HookWorkEnd of a function.
type HookWorkEndFunc func(ctx context.Context, job *millracetype.JobRow, err error) error

// IsHook implements Hook.
func (HookWorkEndFunc) IsHook() bool { return true }

// WorkEnd implements HookWorkEnd.
func (f HookWorkEndFunc) WorkEnd(ctx context.Context, job *millracetype.JobRow, err error) error {
	return f(ctx, job, err)
}

// HookWorkMetricsFunc makes a HookWorkMetrics of a function, e.g.
//
//	client.HookWorkMetricsFunc(func(ctx context.Context, m client.JobMetrics) {
//		runTime.WithLabelValues(m.Kind, string(m.Outcome)).Observe(m.RunDuration.Seconds())
//	})
type HookWorkMetricsFunc func(ctx context.Context, m JobMetrics)

// IsHook implements Hook.
func (HookWorkMetricsFunc) IsHook() bool { return true }

// WorkMetrics implements HookWorkMetrics.
func (f HookWorkMetricsFunc) WorkMetrics(ctx context.Context, m JobMetrics) { f(ctx, m) }

// JobArgsWithHooks is implemented by args types whose jobs get hooks of
// their own, run after the global ones (Config.Hooks) at each step.
//
// Hooks is called once per kind, on the zero value of the args type, and
// the result is kept: it must depend on the type only, never on a job's
// args. A nil hook, or one implementing no step interface, is an error:
// AddWorker reports it (through New, wrapping ErrInvalidConfig) and an
// insert of such args fails with ErrInvalidArgs.
type JobArgsWithHooks interface {
	JobArgs
	Hooks() []Hook
}

// WorkerWithMiddleware is implemented by workers that wrap their own jobs'
// Work in middleware, inside the global Config.WorkerMiddleware (first in
// the list is outermost). Middleware is called for every job; return the
// same slice each time (nil for none) to keep it cheap. A nil entry fails
// the job.
type WorkerWithMiddleware[T JobArgs] interface {
	Middleware(job *Job[T]) []WorkerMiddleware
}

// JobOutcome is how an attempt ended, as JobMetrics reports it.
type JobOutcome = jobexec.JobOutcome

// The outcomes of an attempt.
const (
	// JobOutcomeCompleted: Work succeeded.
	JobOutcomeCompleted = jobexec.JobOutcomeCompleted
	// JobOutcomeRetried: Work failed (an error or a panic) and the job will
	// run again (also for a job whose kind this client has no worker for,
	// or whose args could not be decoded).
	JobOutcomeRetried = jobexec.JobOutcomeRetried
	// JobOutcomeDiscarded: Work failed on the job's last attempt.
	JobOutcomeDiscarded = jobexec.JobOutcomeDiscarded
	// JobOutcomeCancelled: the job was cancelled (JobCancel, JobCancel from
	// outside, or the ErrorHandler).
	JobOutcomeCancelled = jobexec.JobOutcomeCancelled
	// JobOutcomeSnoozed: Work returned JobSnooze.
	JobOutcomeSnoozed = jobexec.JobOutcomeSnoozed
	// JobOutcomeInterrupted: a stopping client interrupted the job
	// (StopAndCancel or Config.SoftStopTimeout); it goes back to available
	// without using an attempt.
	JobOutcomeInterrupted = jobexec.JobOutcomeInterrupted
)

// JobMetrics are one attempt's outcome and timings, given to
// HookWorkMetrics hooks. The timings are the ones Subscribe's events carry
// (JobStatistics).
//
// Its fields:
//
//   - JobID, Kind, Queue and Attempt identify the attempt (Attempt counts
//     from 1).
//   - Outcome is how the attempt ended.
//   - State is the state the outcome writes (completed, available,
//     retryable, scheduled, discarded or cancelled). A job cancelled from
//     outside while it ran is written cancelled whatever this says.
//   - Panicked is true when Work (or its middleware or hooks) panicked.
//   - QueueWait is how long the job waited to be fetched once due
//     (attempted_at minus scheduled_at).
//   - RunDuration is how long the attempt ran, decoding, middleware and
//     hooks included.
type JobMetrics = jobexec.JobMetrics

// ErrHookPanic is wrapped by the error of an insert whose HookInsertBegin
// hook or insert middleware panicked. (Work-side panics are recorded on
// the job, like a worker's.)
var ErrHookPanic = errors.New("hook or middleware panicked")

// hookSet is a list of hooks sorted by step, in their configured order.
type hookSet struct {
	insertBegin []HookInsertBegin
	// work are the work-side hooks, as the executor runs them.
	work jobexec.WorkHooks
}

// newHookSet validates hooks and sorts them by step. what names the list in
// errors.
func newHookSet(hooks []Hook, what string) (*hookSet, error) {
	s := &hookSet{}
	for i, h := range hooks {
		if isNilValue(h) {
			return nil, fmt.Errorf("%s[%d] is nil", what, i)
		}
		known := false
		if x, ok := h.(HookInsertBegin); ok {
			s.insertBegin, known = append(s.insertBegin, x), true
		}
		if x, ok := h.(HookWorkBegin); ok {
			s.work.Begin, known = append(s.work.Begin, x), true
		}
		if x, ok := h.(HookWorkEnd); ok {
			s.work.End, known = append(s.work.End, x), true
		}
		if x, ok := h.(HookWorkMetrics); ok {
			s.work.Metrics, known = append(s.work.Metrics, x), true
		}
		if !known {
			return nil, fmt.Errorf("%s[%d] (%T) implements none of HookInsertBegin, HookWorkBegin, HookWorkEnd, HookWorkMetrics", what, i, h)
		}
	}
	return s, nil
}

// isNilValue reports whether v is nil or a typed nil (a nil pointer or
// func in an interface), whose methods would panic or misbehave.
func isNilValue(v any) bool { return jobexec.IsNilValue(v) }

// plugins is a client's hooks: the global set and a per-kind cache of the
// sets args types give (JobArgsWithHooks).
type plugins struct {
	global hookSet
	// byKind maps a kind to its hooks (nil: none of its own). It is copied
	// on write (once per kind), so that the per-job lookup neither locks
	// nor allocates.
	byKind atomic.Pointer[map[string]*hookSet]
	mu     sync.Mutex // serializes writers of byKind
	// kindMetrics is set once any kind has HookWorkMetrics hooks.
	kindMetrics atomic.Bool
}

// newPlugins validates the config's hooks and middleware.
func newPlugins(cfg *Config) (*plugins, error) {
	for i, mw := range cfg.JobInsertMiddleware {
		if isNilValue(mw) {
			return nil, fmt.Errorf("JobInsertMiddleware[%d] is nil", i)
		}
	}
	for i, mw := range cfg.WorkerMiddleware {
		if isNilValue(mw) {
			return nil, fmt.Errorf("WorkerMiddleware[%d] is nil", i)
		}
	}
	set, err := newHookSet(cfg.Hooks, "Hooks")
	if err != nil {
		return nil, err
	}
	p := &plugins{global: *set}
	p.byKind.Store(&map[string]*hookSet{})
	return p, nil
}

// argsHooks returns the hooks an args type gives its kind (nil when it
// gives none), from the type's zero value; a panic in Hooks is an error.
func argsHooks(args JobArgs) (set *hookSet, err error) {
	if _, ok := args.(JobArgsWithHooks); !ok {
		return nil, nil
	}
	zero, _ := reflect.Zero(reflect.TypeOf(args)).Interface().(JobArgsWithHooks)
	defer func() {
		if r := recover(); r != nil {
			set, err = nil, fmt.Errorf("args %T: Hooks() panicked: %v (args types should have value receivers)", args, r)
		}
	}()
	set, err = newHookSet(zero.Hooks(), "Hooks()")
	if err != nil {
		return nil, fmt.Errorf("args %T: %w", args, err)
	}
	if len(set.insertBegin)+len(set.work.Begin)+len(set.work.End)+len(set.work.Metrics) == 0 {
		return nil, nil
	}
	return set, nil
}

// knownKindHooks returns the hooks of a kind if they are known yet.
func (p *plugins) knownKindHooks(kind string) (*hookSet, bool) {
	set, ok := (*p.byKind.Load())[kind]
	return set, ok
}

// kindHooks returns the hooks of a kind, computing them from args the
// first time (args may be nil to only look up).
func (p *plugins) kindHooks(kind string, args JobArgs) (*hookSet, error) {
	if set, ok := p.knownKindHooks(kind); ok || args == nil {
		return set, nil
	}
	set, err := argsHooks(args)
	if err != nil {
		return nil, err // not cached: the insert fails, and so will the next
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.byKind.Load()
	if existing, ok := old[kind]; ok {
		return existing, nil
	}
	m := make(map[string]*hookSet, len(old)+1)
	maps.Copy(m, old)
	m[kind] = set
	p.byKind.Store(&m)
	if set != nil && len(set.work.Metrics) > 0 {
		p.kindMetrics.Store(true)
	}
	return set, nil
}

// runInsertChain runs an insert through the insert middleware (outermost
// first) and the HookInsertBegin hooks (just before last writes). A panic
// anywhere in it is returned as an error wrapping ErrHookPanic.
func (c *Client[TTx]) runInsertChain(ctx context.Context, params []*JobInsertParams, last func(ctx context.Context) ([]*InsertResult, error)) (res []*InsertResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("insert: %w: %v", ErrHookPanic, r)
		}
	}()
	pl := c.config.plugins
	// Kinds' hooks are resolved first, so that a bad Hooks() fails the
	// insert before any middleware runs.
	hooked := len(pl.global.insertBegin) > 0
	for i, p := range params {
		if _, ok := p.Args.(JobArgsWithHooks); !ok {
			continue
		}
		set, err := pl.kindHooks(p.Kind, p.Args)
		if err != nil {
			return nil, fmt.Errorf("%w: %s%w", ErrInvalidArgs, jobPrefix(i, len(params)), err)
		}
		hooked = hooked || (set != nil && len(set.insertBegin) > 0)
	}
	next := last
	if hooked {
		next = func(ctx context.Context) ([]*InsertResult, error) {
			if err := c.runInsertBegin(ctx, params); err != nil {
				return nil, err
			}
			return last(ctx)
		}
	}
	for i := len(c.config.JobInsertMiddleware) - 1; i >= 0; i-- {
		mw, inner := c.config.JobInsertMiddleware[i], next
		next = func(ctx context.Context) ([]*InsertResult, error) { return mw.InsertMany(ctx, params, inner) }
	}
	return next(ctx)
}

func jobPrefix(i, n int) string {
	if n == 1 {
		return ""
	}
	return fmt.Sprintf("job %d: ", i)
}

// runInsertBegin calls the HookInsertBegin hooks of every job, global ones
// first, and validates the jobs hooks ran on again.
func (c *Client[TTx]) runInsertBegin(ctx context.Context, params []*JobInsertParams) error {
	pl := c.config.plugins
	for i, p := range params {
		if p == nil {
			return fmt.Errorf("%w: %sinsert middleware left a nil job", ErrInvalidArgs, jobPrefix(i, len(params)))
		}
		var kindSet *hookSet
		if _, ok := p.Args.(JobArgsWithHooks); ok {
			var err error
			if kindSet, err = pl.kindHooks(p.Kind, p.Args); err != nil {
				return fmt.Errorf("%w: %s%w", ErrInvalidArgs, jobPrefix(i, len(params)), err)
			}
		}
		ran := false
		for _, list := range [2][]HookInsertBegin{pl.global.insertBegin, kindSet.insertBeginOrNil()} {
			for _, h := range list {
				ran = true
				if err := callInsertBegin(ctx, h, p); err != nil {
					return fmt.Errorf("%sinsert hook %T: %w", jobPrefix(i, len(params)), h, err)
				}
			}
		}
		if ran {
			if err := validateHookedParams(p); err != nil {
				return fmt.Errorf("%w: %safter insert hooks: %w", ErrInvalidArgs, jobPrefix(i, len(params)), err)
			}
		}
	}
	return nil
}

// The lists of a set that may be nil.

func (s *hookSet) insertBeginOrNil() []HookInsertBegin {
	if s == nil {
		return nil
	}
	return s.insertBegin
}

func callInsertBegin(ctx context.Context, h HookInsertBegin, p *JobInsertParams) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrHookPanic, r)
		}
	}()
	return h.InsertBegin(ctx, p)
}

// validateHookedParams checks what a hook may have broken in a job that was
// valid before it.
func validateHookedParams(p *JobInsertParams) error {
	if len(p.Kind) > 127 || !kindRE.MatchString(p.Kind) {
		return fmt.Errorf("kind %q must match %s and be at most 127 characters", p.Kind, kindRE)
	}
	if err := validateQueueName(p.Queue); err != nil {
		return err
	}
	if p.Priority < 1 || p.Priority > 4 {
		return fmt.Errorf("priority %d out of range 1..4", p.Priority)
	}
	if p.MaxAttempts < 1 || p.MaxAttempts > 32767 {
		return fmt.Errorf("max attempts %d out of range 1..32767", p.MaxAttempts)
	}
	switch p.State {
	case millracetype.JobStateAvailable, millracetype.JobStateScheduled, millracetype.JobStatePending, millracetype.JobStateRetryable:
	default:
		return fmt.Errorf("state %q: a job is inserted available, scheduled, pending or retryable", p.State)
	}
	if p.CreatedAt.IsZero() || p.ScheduledAt.IsZero() {
		return errors.New("created and scheduled times must be set")
	}
	for _, tag := range p.Tags {
		if len(tag) > 255 || !tagRE.MatchString(tag) {
			return fmt.Errorf("tag %q must match %s and be at most 255 characters", tag, tagRE)
		}
	}
	if !isJSONObject(p.EncodedArgs) {
		return fmt.Errorf("encoded args %.40q are not a JSON object", p.EncodedArgs)
	}
	if !isJSONObject(p.Metadata) {
		return fmt.Errorf("metadata %.40q is not a JSON object", p.Metadata)
	}
	return nil
}

func isJSONObject(b []byte) bool {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// pluggableUnit is what a work unit offers its kind's hooks: its args
// type's zero value. (Its worker's middleware it offers the executor, as
// a jobexec.PluggableUnit.)
type pluggableUnit interface {
	zeroArgs() JobArgs
}

var (
	_ pluggableUnit         = (*typedUnit[noHookArgs])(nil)
	_ jobexec.PluggableUnit = (*typedUnit[noHookArgs])(nil)
)

type noHookArgs struct{}

func (noHookArgs) Kind() string { return "no_hook_args" }

func (u *typedUnit[T]) zeroArgs() JobArgs {
	var zero T
	return zero
}

// Middleware implements jobexec.PluggableUnit: the worker's own
// middleware for the job.
func (u *typedUnit[T]) Middleware() []WorkerMiddleware {
	if w, ok := u.worker.(WorkerWithMiddleware[T]); ok {
		return w.Middleware(u.job)
	}
	return nil
}

// workHooksFor is the hooks of a job's kind (the executor asks through
// execSink.KindHooks), worked out from the unit's args type on the kind's
// first job here.
func (p *plugins) workHooksFor(kind string, unit workUnit) (*jobexec.WorkHooks, error) {
	pu, ok := unit.(pluggableUnit)
	if !ok {
		return nil, nil
	}
	set, known := p.knownKindHooks(kind)
	if !known {
		// The first job of its kind here (zeroArgs may allocate).
		var err error
		if set, err = p.kindHooks(kind, pu.zeroArgs()); err != nil {
			return nil, err
		}
	}
	if set == nil {
		return nil, nil
	}
	return &set.work, nil
}

// metricsHooksFor is the hooks of a kind (the executor asks through
// execSink.KindMetricsHooks), once any kind has HookWorkMetrics hooks and
// this one's are known.
func (p *plugins) metricsHooksFor(kind string) *jobexec.WorkHooks {
	if !p.kindMetrics.Load() {
		return nil
	}
	set, _ := p.knownKindHooks(kind)
	if set == nil {
		return nil
	}
	return &set.work
}
