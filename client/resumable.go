package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/millrace/millrace/internal/jobexec"
)

// Resumable jobs
//
// A worker splits its work into named steps with ResumableStep and
// ResumableStepCursor. When an attempt fails (an error, a panic, a snooze,
// a cancel, a timeout, a stop), the last step that completed and the
// cursors of unfinished cursor steps are saved in the job's metadata, under
// River's own keys and in River's own format, so a retry skips the steps
// already done and resumes a cursor step where it stopped, whichever of
// River and millrace runs the retry. A successful attempt saves nothing.
//
// The rules are River's: steps run in the order the worker calls them; a
// step name is used once per run; steps do not nest; once a step fails, the
// later steps do not run and the job fails with that step's error (even if
// Work then returns nil); code outside steps runs on every attempt. Saved
// progress that names a step the worker no longer has fails the job rather
// than skipping work silently.

// Errors of resumable steps; test with errors.Is. A misuse inside a worker
// is also recorded as the job's error, so the attempt fails even if the
// worker drops the error.
var (
	// ErrResumableNotInStep: ResumableSetCursor or a checkpoint function
	// was called outside a step (or a cursor was set outside a cursor step).
	ErrResumableNotInStep = jobexec.ErrResumableNotInStep
	// ErrResumableNested: a step was started inside another step.
	ErrResumableNested = jobexec.ErrResumableNested
	// ErrResumableDuplicateStep: a step name was used twice in one run.
	ErrResumableDuplicateStep = jobexec.ErrResumableDuplicateStep
	// ErrResumableStepNotFound: the job's saved progress names a step (or
	// a cursor step) the worker did not run.
	ErrResumableStepNotFound = jobexec.ErrResumableStepNotFound
	// ErrResumableStepMismatch: saved progress does not fit the step that
	// meets it: a plain step whose name has a saved cursor, a saved cursor
	// that does not decode into the step's cursor type, or saved cursors
	// that are not a JSON object.
	ErrResumableStepMismatch = jobexec.ErrResumableStepMismatch
	// ErrResumableCursorPending: a checkpoint was written before the run
	// reached the cursor step whose saved cursor it must resume first.
	ErrResumableCursorPending = jobexec.ErrResumableCursorPending
)

// ResumableStep runs fn as the step called name, unless an earlier attempt
// of the job completed that step, in which case it returns nil at once.
// It returns fn's error, and once a step has failed (or steps were
// misused), it and every later step return that error without running.
// Called outside a worker it returns an error wrapping ErrNotInWorker; it
// never panics (a panic in fn is the job's, recorded as any worker panic).
//
// River's ResumableStep has an options argument reserved for later use
// and returns nothing; otherwise the two behave alike and store the same
// metadata.
func ResumableStep(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	st := jobStateFrom(ctx)
	if st == nil {
		return fmt.Errorf("resumable step %q: %w", name, ErrNotInWorker)
	}
	if fn == nil {
		return st.Fail(fmt.Errorf("%w: resumable step %q has a nil function", ErrInvalidArgs, name))
	}
	if _, run, err := st.StepBegin(name, false); err != nil || !run {
		return err
	}
	return st.RunStep(name, false, func() error { return fn(ctx) })
}

// ResumableStepCursor runs fn as the cursor step called name: a step that
// saves how far it got with ResumableSetCursor, so that after a failure
// the next attempt calls fn again with that cursor (decoded into T) rather
// than from the start. The first run gets T's zero value. A completed
// cursor step is skipped like any step, and its cursor is dropped.
//
// The cursor is stored as JSON in the job's metadata; T must encode and
// decode with encoding/json. A saved cursor that does not decode into T
// fails the job with an error wrapping ErrResumableStepMismatch. Errors,
// skipping and failures are as for ResumableStep.
func ResumableStepCursor[T any](ctx context.Context, name string, fn func(ctx context.Context, cursor T) error) error {
	st := jobStateFrom(ctx)
	if st == nil {
		return fmt.Errorf("resumable step %q: %w", name, ErrNotInWorker)
	}
	if fn == nil {
		return st.Fail(fmt.Errorf("%w: resumable step %q has a nil function", ErrInvalidArgs, name))
	}
	saved, run, err := st.StepBegin(name, true)
	if err != nil || !run {
		return err
	}
	var cursor T
	if len(saved) > 0 {
		if err := json.Unmarshal(saved, &cursor); err != nil {
			return st.Fail(fmt.Errorf("resumable step %q: saved cursor %.100s does not decode into %T: %w: %w",
				name, saved, cursor, ErrResumableStepMismatch, err))
		}
	}
	return st.RunStep(name, true, func() error { return fn(ctx, cursor) })
}

// ResumableSetCursor records cursor (encoded as JSON) as the progress of
// the cursor step running now. It is saved if the attempt ends in an
// error, panic, snooze, cancel or stop, and handed back to the step on the
// next attempt; a later call replaces it. It returns an error wrapping
// ErrResumableNotInStep outside a cursor step (millrace refuses a cursor
// on a plain step, which River would accept but could never resume), and
// one wrapping ErrNotInWorker outside a worker. To save progress durably
// at once, in a transaction, use ResumableSetStepCursorTx.
func ResumableSetCursor(ctx context.Context, cursor any) error {
	st := jobStateFrom(ctx)
	if st == nil {
		return fmt.Errorf("set resumable cursor: %w", ErrNotInWorker)
	}
	b, err := json.Marshal(cursor)
	if err != nil {
		return fmt.Errorf("set resumable cursor: encode %T: %w", cursor, err)
	}
	st.Mu.Lock()
	defer st.Mu.Unlock()
	if st.Finished {
		return fmt.Errorf("set resumable cursor: the job's run has ended: %w", ErrNotInWorker)
	}
	r := st.Resumable
	if r == nil || r.Active == "" || !r.ActiveCursor {
		return fmt.Errorf("set resumable cursor: %w (call it from a ResumableStepCursor function)", ErrResumableNotInStep)
	}
	r.Cursors[r.Active] = b
	r.CursorsDirty = true
	return nil
}
