package jobexec

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// ErrStopAndCancel is the cause given to running jobs' contexts by the
// client's StopAndCancel: a job that then returns an error goes back to
// available without using an attempt.
var ErrStopAndCancel = errors.New("client is stopping: job cancelled by StopAndCancel")

// ErrSoftStopTimeout is the cause given to running jobs' contexts when a
// stopping client's soft stop timeout has passed; such jobs are treated
// as StopAndCancel's.
var ErrSoftStopTimeout = errors.New("client is stopping: job cancelled because SoftStopTimeout passed")

// JobCancelError is the error a worker returns to cancel its job
// (client.JobCancelError; make it with NewJobCancelError).
type JobCancelError struct{ err error }

// NewJobCancelError returns the cancel error for reason err (not nil).
func NewJobCancelError(err error) *JobCancelError { return &JobCancelError{err: err} }

func (e *JobCancelError) Error() string { return "JobCancelError: " + e.err.Error() }

// Unwrap returns the reason given to JobCancel.
func (e *JobCancelError) Unwrap() error { return e.err }

// Is makes errors.Is(err, &JobCancelError{}) true for any cancel error.
func (e *JobCancelError) Is(target error) bool {
	_, ok := target.(*JobCancelError)
	return ok
}

// JobSnoozeError is the error a worker returns to snooze its job
// (client.JobSnoozeError).
type JobSnoozeError struct {
	// Duration is how long the job sleeps.
	Duration time.Duration
}

func (e *JobSnoozeError) Error() string { return fmt.Sprintf("JobSnoozeError: %s", e.Duration) }

// Is makes errors.Is(err, &JobSnoozeError{}) true for any snooze.
func (e *JobSnoozeError) Is(target error) bool {
	_, ok := target.(*JobSnoozeError)
	return ok
}

// ErrorHandler is told of job errors and panics and may change the
// outcome (client.ErrorHandler, where it is documented).
type ErrorHandler interface {
	// HandleError is called when Work returns an error (not a cancel or
	// snooze). A nil result keeps the normal outcome.
	HandleError(ctx context.Context, job *millracetype.JobRow, err error) *ErrorHandlerResult
	// HandlePanic is called when Work panics, with the value and the
	// stack.
	HandlePanic(ctx context.Context, job *millracetype.JobRow, panicVal any, trace string) *ErrorHandlerResult
}

// ErrorHandlerResult changes a failed job's outcome.
type ErrorHandlerResult struct {
	// SetCancelled cancels the job instead of retrying it.
	SetCancelled bool
}

// RunWorker calls the worker through the middleware and hooks, recovering
// a panic: panicVal is then what it panicked with and trace its stack.
func (e *Executor) RunWorker(ctx context.Context, row *millracetype.JobRow, unit Unit) (panicVal any, trace string, err error) {
	defer func() {
		if r := recover(); r != nil {
			panicVal, trace = r, stackTrace(3)
			if panicVal == nil {
				panicVal = "panic(nil)"
			}
		}
	}()
	return nil, "", e.WorkThrough(ctx, row, unit)
}

// stackTrace renders the current goroutine's stack, one "func\n\tfile:line\n"
// per frame, at most 100 frames.
func stackTrace(skip int) string {
	pcs := make([]uintptr, 100)
	n := runtime.Callers(skip, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	var b strings.Builder
	for {
		f, more := frames.Next()
		fmt.Fprintf(&b, "%s\n\t%s:%d\n", f.Function, f.File, f.Line)
		if !more {
			break
		}
	}
	return b.String()
}

// Completed fills s, and now, with the outcome of an attempt that
// succeeded (del: delete the job, it is ephemeral) and returns s. s and
// now are the caller's, so that they live in an allocation it makes
// anyway.
func (e *Executor) Completed(s *driver.JobSetState, now *time.Time, row *millracetype.JobRow, updates []byte, del bool) *driver.JobSetState {
	*now = e.cfg.Now().UTC()
	*s = driver.JobSetState{ID: row.ID, State: millracetype.JobStateCompleted, FinalizedAt: now,
		MetadataUpdates: updates, Delete: del}
	return s
}

// Unsuccessful turns an attempt that panicked (panicVal not nil, with its
// trace) or returned workErr into its outcome: the error handler's say,
// a snooze, a cancel, a stopping client's interruption, a cancel from
// outside, or a failure retried or discarded. ctx is the context the
// producer gave the job (its cause tells a stop or a remote cancel).
func (e *Executor) Unsuccessful(ctx context.Context, row *millracetype.JobRow, start time.Time, unit Unit, panicVal any, trace string, workErr error, updates []byte) (*driver.JobSetState, Kind) {
	return e.unsuccessful(ctx, context.Cause(ctx), row, start, unit, panicVal, trace, workErr, updates)
}

// unsuccessful is Unsuccessful with the cause of the job's end from
// outside given (nil: none); ctx goes to the error handler.
func (e *Executor) unsuccessful(ctx context.Context, cause error, row *millracetype.JobRow, start time.Time, unit Unit, panicVal any, trace string, workErr error, updates []byte) (*driver.JobSetState, Kind) {
	if panicVal != nil {
		err := fmt.Errorf("%v", panicVal)
		var res *ErrorHandlerResult
		if h := e.cfg.ErrorHandler; h != nil {
			res = e.safeHandler(func() *ErrorHandlerResult { return h.HandlePanic(ctx, row, panicVal, trace) })
		}
		return e.Failed(row, start, err, trace, res != nil && res.SetCancelled, unit, updates)
	}
	var snooze *JobSnoozeError
	if errors.As(workErr, &snooze) {
		d := snooze.Duration
		if d < 0 {
			return e.Failed(row, start, fmt.Errorf("JobSnooze with negative duration %s", d), "", false, unit, updates)
		}
		return e.Snoozed(row, d, updates), KindSnoozed
	}
	var cancelErr *JobCancelError
	if errors.As(workErr, &cancelErr) {
		return e.Cancelled(row, start, workErr.Error(), updates), KindCancelled
	}
	switch cause {
	case ErrStopAndCancel, ErrSoftStopTimeout:
		// Interrupted by shutdown: back to available, attempt given back.
		return e.Interrupted(row, updates), KindInterrupted
	case nil:
		// Not cancelled (nor a RemoteCancelCause left unset).
	case e.cfg.RemoteCancelCause:
		return e.Cancelled(row, start, "JobCancelError: "+e.cfg.RemoteCancelCause.Error(), updates), KindCancelled
	}
	var res *ErrorHandlerResult
	if h := e.cfg.ErrorHandler; h != nil {
		res = e.safeHandler(func() *ErrorHandlerResult { return h.HandleError(ctx, row, workErr) })
	}
	return e.Failed(row, start, workErr, "", res != nil && res.SetCancelled, unit, updates)
}

func (e *Executor) safeHandler(fn func() *ErrorHandlerResult) (res *ErrorHandlerResult) {
	defer func() {
		if r := recover(); r != nil {
			e.cfg.Logger.Error("millrace: error handler panicked; keeping the normal outcome", "panic", r)
			res = nil
		}
	}()
	return fn()
}
