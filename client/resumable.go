package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/millrace/millrace/millracetype"
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

// The metadata keys of resumable progress, exactly as River stores them:
// the name of the last completed step (a string), and an object of saved
// cursors by step name (or null once none is left).
const (
	metadataKeyResumableStep   = "river:resumable_step"
	metadataKeyResumableCursor = "river:resumable_cursor"
)

// Errors of resumable steps; test with errors.Is. A misuse inside a worker
// is also recorded as the job's error, so the attempt fails even if the
// worker drops the error.
var (
	// ErrResumableNotInStep: ResumableSetCursor or a checkpoint function
	// was called outside a step (or a cursor was set outside a cursor step).
	ErrResumableNotInStep = errors.New("not called inside a resumable step")
	// ErrResumableNested: a step was started inside another step.
	ErrResumableNested = errors.New("resumable steps cannot be nested")
	// ErrResumableDuplicateStep: a step name was used twice in one run.
	ErrResumableDuplicateStep = errors.New("resumable step name used twice in one run")
	// ErrResumableStepNotFound: the job's saved progress names a step (or
	// a cursor step) the worker did not run.
	ErrResumableStepNotFound = errors.New("saved resumable step not found in the worker")
	// ErrResumableStepMismatch: saved progress does not fit the step that
	// meets it: a plain step whose name has a saved cursor, a saved cursor
	// that does not decode into the step's cursor type, or saved cursors
	// that are not a JSON object.
	ErrResumableStepMismatch = errors.New("saved resumable progress does not fit this step")
	// ErrResumableCursorPending: a checkpoint was written before the run
	// reached the cursor step whose saved cursor it must resume first.
	ErrResumableCursorPending = errors.New("a step with a saved cursor has not been reached yet")
)

// resumableState is one run's view of a job's resumable progress.
type resumableState struct {
	// resumeStep is the saved last completed step ("" when none); until a
	// step of that name is met (resumeMatched), steps are skipped.
	resumeStep    string
	resumeMatched bool
	// cursors are the saved cursors by step name, updated as steps run;
	// cursorsDirty says they changed since they were last persisted.
	cursors      map[string]json.RawMessage
	cursorsDirty bool
	// pending lists the steps with a saved cursor still to be reached
	// when no completed step was saved (sorted).
	pending []string
	// names are the steps met in this run.
	names map[string]struct{}
	// completed is the last step completed (or skipped as completed) and
	// not yet persisted by a checkpoint.
	completed string
	// err is the first step failure or misuse; later steps do not run.
	err error
	// active is the step running now ("" when none); activeCursor says
	// whether it is a cursor step.
	active       string
	activeCursor bool
}

func newResumableState() *resumableState {
	return &resumableState{resumeMatched: true, cursors: map[string]json.RawMessage{}, names: map[string]struct{}{}}
}

// loadResumable reads saved progress from a job's metadata as River does:
// a string step name, and cursors when the key holds an object (null or a
// scalar means none). Metadata that is not an object holds no progress.
func loadResumable(metadata []byte) (*resumableState, error) {
	var m map[string]json.RawMessage
	if json.Unmarshal(metadata, &m) != nil {
		return nil, nil
	}
	r := newResumableState()
	if raw, ok := m[metadataKeyResumableStep]; ok {
		var name string
		if json.Unmarshal(raw, &name) == nil {
			r.resumeStep = name
		}
	}
	if raw := bytes.TrimSpace(m[metadataKeyResumableCursor]); len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') {
		if err := json.Unmarshal(raw, &r.cursors); err != nil {
			return nil, fmt.Errorf("saved cursors %.100s: %w: %w", raw, ErrResumableStepMismatch, err)
		}
		if r.cursors == nil {
			r.cursors = map[string]json.RawMessage{}
		}
	}
	if r.resumeStep != "" {
		r.resumeMatched = false
	} else {
		// Cursors without a completed step: every step runs again, and each
		// saved cursor must be reached by its cursor step before the job
		// may succeed or write a checkpoint.
		r.pending = slices.Sorted(maps.Keys(r.cursors))
	}
	return r, nil
}

// resumableLocked returns the run's state, made on first use; the caller
// holds st.mu.
func (st *jobState) resumableLocked() *resumableState {
	if st.resumable == nil {
		st.resumable = newResumableState()
	}
	return st.resumable
}

// fail records err as the run's step failure (the first one wins) and
// returns the recorded one.
func (st *jobState) fail(err error) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.resumableLocked()
	if r.err == nil {
		r.err = err
	}
	return r.err
}

// stepBegin registers a step and says whether it runs now and, for a
// cursor step, with which saved cursor.
func (st *jobState) stepBegin(name string, cursorStep bool) (saved json.RawMessage, run bool, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.finished {
		return nil, false, fmt.Errorf("resumable step %q: the job's run has ended: %w", name, ErrNotInWorker)
	}
	r := st.resumableLocked()
	if r.err != nil {
		return nil, false, r.err
	}
	fail := func(err error) (json.RawMessage, bool, error) {
		r.err = err
		return nil, false, err
	}
	if r.active != "" {
		return fail(fmt.Errorf("resumable step %q inside step %q: %w", name, r.active, ErrResumableNested))
	}
	if name == "" {
		return fail(fmt.Errorf("%w: a resumable step needs a name", ErrInvalidArgs))
	}
	if _, dup := r.names[name]; dup {
		return fail(fmt.Errorf("resumable step %q: %w", name, ErrResumableDuplicateStep))
	}
	r.names[name] = struct{}{}
	if !cursorStep && slices.Contains(r.pending, name) {
		return fail(fmt.Errorf("resumable step %q has a saved cursor, so it must be a cursor step (ResumableStepCursor): %w",
			name, ErrResumableStepMismatch))
	}
	if !r.resumeMatched {
		if name != r.resumeStep {
			return nil, false, nil // completed on an earlier attempt
		}
		r.completed, r.resumeMatched = name, true
		if _, partial := r.cursors[name]; !cursorStep || !partial {
			return nil, false, nil
		}
		// A checkpoint saved this cursor step as reached with a cursor:
		// it runs again from that cursor.
	}
	if cursorStep {
		saved = r.cursors[name]
	}
	return saved, true, nil
}

// runStep runs a step that stepBegin let through. A step that returns nil
// completes (unless a misuse was recorded while it ran); one that returns
// an error fails the run; a panic goes on up to the client, which records
// the progress made so far.
func (st *jobState) runStep(name string, cursorStep bool, fn func() error) (err error) {
	st.mu.Lock()
	r := st.resumableLocked()
	if cursorStep {
		r.pending = slices.DeleteFunc(r.pending, func(p string) bool { return p == name })
	}
	r.active, r.activeCursor = name, cursorStep
	st.mu.Unlock()

	var stepErr error
	completed := false
	defer func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		r.active, r.activeCursor = "", false
		switch {
		case stepErr != nil:
			r.err = stepErr
		case completed && r.err == nil:
			r.completed = name
			if _, ok := r.cursors[name]; ok && cursorStep {
				delete(r.cursors, name)
				r.cursorsDirty = true
			}
		}
		err = r.err
	}()
	stepErr = fn()
	completed = stepErr == nil
	return nil
}

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
		return st.fail(fmt.Errorf("%w: resumable step %q has a nil function", ErrInvalidArgs, name))
	}
	if _, run, err := st.stepBegin(name, false); err != nil || !run {
		return err
	}
	return st.runStep(name, false, func() error { return fn(ctx) })
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
		return st.fail(fmt.Errorf("%w: resumable step %q has a nil function", ErrInvalidArgs, name))
	}
	saved, run, err := st.stepBegin(name, true)
	if err != nil || !run {
		return err
	}
	var cursor T
	if len(saved) > 0 {
		if err := json.Unmarshal(saved, &cursor); err != nil {
			return st.fail(fmt.Errorf("resumable step %q: saved cursor %.100s does not decode into %T: %w: %w",
				name, saved, cursor, ErrResumableStepMismatch, err))
		}
	}
	return st.runStep(name, true, func() error { return fn(ctx, cursor) })
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
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.finished {
		return fmt.Errorf("set resumable cursor: the job's run has ended: %w", ErrNotInWorker)
	}
	r := st.resumable
	if r == nil || r.active == "" || !r.activeCursor {
		return fmt.Errorf("set resumable cursor: %w (call it from a ResumableStepCursor function)", ErrResumableNotInStep)
	}
	r.cursors[r.active] = b
	r.cursorsDirty = true
	return nil
}

// startJob binds the running job to its state and reads its saved
// resumable progress; an error fails the attempt before the worker runs
// (as River does with saved cursors it cannot read).
func startJob(ctx context.Context, row *millracetype.JobRow) error {
	st := jobStateFrom(ctx)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.row = row
	// Most jobs have no resumable progress: skip decoding their metadata.
	if !bytes.Contains(row.Metadata, []byte("resumable_")) {
		return nil
	}
	r, err := loadResumable(row.Metadata)
	if err != nil {
		return fmt.Errorf("job %d: %w", row.ID, err)
	}
	st.resumable = r
	return nil
}

// finishJob ends the run: the job's error becomes a recorded step failure
// when Work returned nil, or a saved step or cursor the worker never met;
// and if the attempt did not succeed, the progress made is added to the
// metadata updates. (River saves nothing when the worker panics; millrace
// saves the steps completed before the panic too, in the same format.)
func finishJob(ctx context.Context, panicked bool, workErr error) error {
	st := jobStateFrom(ctx)
	if st == nil {
		return workErr
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.finished = true
	r := st.resumable
	if r == nil {
		return workErr
	}
	err := workErr
	if err == nil && !panicked {
		switch {
		case r.err != nil:
			err = r.err
		case !r.resumeMatched:
			err = fmt.Errorf("saved step %q: %w", r.resumeStep, ErrResumableStepNotFound)
		case len(r.pending) > 0:
			err = fmt.Errorf("saved cursor of step %q: %w", r.pending[0], ErrResumableStepNotFound)
		}
	}
	// While a saved cursor is still to be reached, moving the skip point
	// could make its step unreachable: save nothing.
	if (err != nil || panicked) && len(r.pending) == 0 {
		if r.cursorsDirty {
			cursors := json.RawMessage("null")
			if len(r.cursors) > 0 {
				if b, mErr := json.Marshal(r.cursors); mErr == nil {
					cursors = b
				}
			}
			st.setUpdate(metadataKeyResumableCursor, cursors)
		}
		if r.completed != "" {
			if b, mErr := json.Marshal(r.completed); mErr == nil {
				st.setUpdate(metadataKeyResumableStep, b)
			}
		}
	}
	return err
}

// runJob runs the worker of a job with its resumable progress read before
// and saved after.
func (c *Client[TTx]) runJob(ctx context.Context, row *millracetype.JobRow, unit workUnit) (panicVal any, trace string, err error) {
	if err := startJob(ctx, row); err != nil {
		return nil, "", finishJob(ctx, false, err)
	}
	panicVal, trace, err = c.runWorker(ctx, row, unit)
	return panicVal, trace, finishJob(ctx, panicVal != nil, err)
}
