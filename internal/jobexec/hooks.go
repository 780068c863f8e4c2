package jobexec

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// Hook marks a type as a hook (client.Hook re-exports it).
type Hook interface {
	// IsHook marks the type as a hook on purpose (its result is not used).
	IsHook() bool
}

// HookWorkBegin is a hook called before a job's Work (client.HookWorkBegin).
type HookWorkBegin interface {
	Hook
	// WorkBegin gets the job as fetched; an error fails the attempt.
	WorkBegin(ctx context.Context, job *millracetype.JobRow) error
}

// HookWorkEnd is a hook called after a job's Work returns
// (client.HookWorkEnd).
type HookWorkEnd interface {
	Hook
	// WorkEnd gets Work's error and returns the error to go on with.
	WorkEnd(ctx context.Context, job *millracetype.JobRow, err error) error
}

// HookWorkMetrics is a hook told of every finished attempt
// (client.HookWorkMetrics).
type HookWorkMetrics interface {
	Hook
	// WorkMetrics is called once per attempt, in the job's goroutine.
	WorkMetrics(ctx context.Context, m JobMetrics)
}

// WorkerMiddleware wraps a job's Work (client.WorkerMiddleware).
type WorkerMiddleware interface {
	Work(ctx context.Context, job *millracetype.JobRow, next func(ctx context.Context) error) error
}

// JobOutcome is how an attempt ended, as JobMetrics reports it
// (client.JobOutcome, where the values are documented).
type JobOutcome string

// The outcomes of an attempt.
const (
	JobOutcomeCompleted   JobOutcome = "completed"
	JobOutcomeRetried     JobOutcome = "retried"
	JobOutcomeDiscarded   JobOutcome = "discarded"
	JobOutcomeCancelled   JobOutcome = "cancelled"
	JobOutcomeSnoozed     JobOutcome = "snoozed"
	JobOutcomeInterrupted JobOutcome = "interrupted"
)

// JobMetrics are one attempt's outcome and timings (client.JobMetrics,
// where the fields are documented).
type JobMetrics struct {
	// JobID, Kind, Queue and Attempt identify the attempt.
	JobID   int64
	Kind    string
	Queue   string
	Attempt int
	// Outcome is how the attempt ended.
	Outcome JobOutcome
	// State is the state the outcome writes.
	State millracetype.JobState
	// Panicked is true when Work (or its middleware or hooks) panicked.
	Panicked bool
	// QueueWait is attempted_at minus scheduled_at.
	QueueWait time.Duration
	// RunDuration is how long the attempt ran.
	RunDuration time.Duration
}

// WorkHooks are the work-side hooks of one list (the global ones, or a
// kind's), sorted by step in their configured order.
type WorkHooks struct {
	Begin   []HookWorkBegin
	End     []HookWorkEnd
	Metrics []HookWorkMetrics
}

// The lists of a set that may be nil.

func (h *WorkHooks) beginOrNil() []HookWorkBegin {
	if h == nil {
		return nil
	}
	return h.Begin
}

func (h *WorkHooks) endOrNil() []HookWorkEnd {
	if h == nil {
		return nil
	}
	return h.End
}

func (h *WorkHooks) metricsOrNil() []HookWorkMetrics {
	if h == nil {
		return nil
	}
	return h.Metrics
}

// PluggableUnit is a unit whose worker may bring middleware of its own.
type PluggableUnit interface {
	Unit
	// Middleware is the worker's middleware for the job (nil for none).
	Middleware() []WorkerMiddleware
}

// IsNilValue reports whether v is nil or a typed nil (a nil pointer or
// func in an interface), whose methods would panic or misbehave.
func IsNilValue(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// WorkThrough runs a job's Work through the global worker middleware, the
// worker's own middleware and the work hooks. With none of them it calls
// Work directly; without middleware it builds no closures. Panics are the
// caller's to recover.
func (e *Executor) WorkThrough(ctx context.Context, row *millracetype.JobRow, unit Unit) error {
	var kindSet *WorkHooks
	var own []WorkerMiddleware
	if pu, ok := unit.(PluggableUnit); ok {
		var err error
		if kindSet, err = e.sink.KindHooks(row.Kind, unit); err != nil {
			return err
		}
		own = pu.Middleware()
	}
	global := e.cfg.WorkerMiddleware
	if len(global) == 0 && len(own) == 0 {
		return e.workWithHooks(ctx, row, unit, kindSet)
	}
	next := func(ctx context.Context) error { return e.workWithHooks(ctx, row, unit, kindSet) }
	for _, list := range [2][]WorkerMiddleware{own, global} {
		for i := len(list) - 1; i >= 0; i-- {
			mw, inner := list[i], next
			if IsNilValue(mw) {
				return fmt.Errorf("worker middleware %d of kind %q is nil", i, row.Kind)
			}
			next = func(ctx context.Context) error { return mw.Work(ctx, row, inner) }
		}
	}
	return next(ctx)
}

// workWithHooks calls the WorkBegin hooks, Work, then the WorkEnd hooks;
// global hooks before the kind's.
func (e *Executor) workWithHooks(ctx context.Context, row *millracetype.JobRow, unit Unit, kindSet *WorkHooks) error {
	global := &e.cfg.Hooks
	if kindSet == nil && len(global.Begin) == 0 && len(global.End) == 0 {
		return unit.Work(ctx)
	}
	for _, list := range [2][]HookWorkBegin{global.Begin, kindSet.beginOrNil()} {
		for _, h := range list {
			if err := h.WorkBegin(ctx, row); err != nil {
				return err
			}
		}
	}
	err := unit.Work(ctx)
	for _, list := range [2][]HookWorkEnd{global.End, kindSet.endOrNil()} {
		for _, h := range list {
			err = h.WorkEnd(ctx, row, err)
		}
	}
	return err
}

// EmitMetrics tells the HookWorkMetrics hooks (global, then the kind's) of
// an attempt's outcome. It does nothing, and allocates nothing, when there
// are none.
func (e *Executor) EmitMetrics(ctx context.Context, row *millracetype.JobRow, outcome *driver.JobSetState, kind Kind, queueWait, runDuration time.Duration) {
	kindSet := e.sink.KindMetricsHooks(row.Kind)
	if len(e.cfg.Hooks.Metrics) == 0 && len(kindSet.metricsOrNil()) == 0 {
		return
	}
	m := JobMetrics{JobID: row.ID, Kind: row.Kind, Queue: row.Queue, Attempt: row.Attempt,
		Outcome: jobOutcome(kind, outcome.State), State: outcome.State,
		Panicked:  outcome.Error != nil && outcome.Error.Trace != "",
		QueueWait: queueWait, RunDuration: runDuration}
	for _, list := range [2][]HookWorkMetrics{e.cfg.Hooks.Metrics, kindSet.metricsOrNil()} {
		for _, h := range list {
			e.callMetrics(ctx, h, m)
		}
	}
}

func (e *Executor) callMetrics(ctx context.Context, h HookWorkMetrics, m JobMetrics) {
	defer func() {
		if r := recover(); r != nil {
			e.cfg.Logger.Error("millrace: metrics hook panicked", "hook", fmt.Sprintf("%T", h), "job_id", m.JobID, "panic", r)
		}
	}()
	h.WorkMetrics(ctx, m)
}

// jobOutcome names an outcome from its kind and the state written.
func jobOutcome(kind Kind, state millracetype.JobState) JobOutcome {
	switch kind {
	case KindCompleted:
		return JobOutcomeCompleted
	case KindCancelled:
		return JobOutcomeCancelled
	case KindSnoozed:
		return JobOutcomeSnoozed
	case KindFailed:
		if state == millracetype.JobStateDiscarded {
			return JobOutcomeDiscarded
		}
		return JobOutcomeRetried
	}
	return JobOutcomeInterrupted
}
