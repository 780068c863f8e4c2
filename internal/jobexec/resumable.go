package jobexec

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

// The metadata keys of resumable progress, exactly as River stores them:
// the name of the last completed step (a string), and an object of saved
// cursors by step name (or null once none is left).
const (
	MetadataKeyResumableStep   = "river:resumable_step"
	MetadataKeyResumableCursor = "river:resumable_cursor"
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

// ResumableState is one run's view of a job's resumable progress.
type ResumableState struct {
	// ResumeStep is the saved last completed step ("" when none); until a
	// step of that name is met (ResumeMatched), steps are skipped.
	ResumeStep    string
	ResumeMatched bool
	// Cursors are the saved cursors by step name, updated as steps run;
	// CursorsDirty says they changed since they were last persisted.
	Cursors      map[string]json.RawMessage
	CursorsDirty bool
	// Pending lists the steps with a saved cursor still to be reached
	// when no completed step was saved (sorted).
	Pending []string
	// Names are the steps met in this run.
	Names map[string]struct{}
	// Completed is the last step completed (or skipped as completed) and
	// not yet persisted by a checkpoint.
	Completed string
	// Err is the first step failure or misuse; later steps do not run.
	Err error
	// Active is the step running now ("" when none); ActiveCursor says
	// whether it is a cursor step.
	Active       string
	ActiveCursor bool
}

func newResumableState() *ResumableState {
	return &ResumableState{ResumeMatched: true, Cursors: map[string]json.RawMessage{}, Names: map[string]struct{}{}}
}

// LoadResumable reads saved progress from a job's metadata as River does:
// a string step name, and cursors when the key holds an object (null or a
// scalar means none). Metadata that is not an object holds no progress.
func LoadResumable(metadata []byte) (*ResumableState, error) {
	var m map[string]json.RawMessage
	if json.Unmarshal(metadata, &m) != nil {
		return nil, nil
	}
	r := newResumableState()
	if raw, ok := m[MetadataKeyResumableStep]; ok {
		var name string
		if json.Unmarshal(raw, &name) == nil {
			r.ResumeStep = name
		}
	}
	if raw := bytes.TrimSpace(m[MetadataKeyResumableCursor]); len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') {
		if err := json.Unmarshal(raw, &r.Cursors); err != nil {
			return nil, fmt.Errorf("saved cursors %.100s: %w: %w", raw, ErrResumableStepMismatch, err)
		}
		if r.Cursors == nil {
			r.Cursors = map[string]json.RawMessage{}
		}
	}
	if r.ResumeStep != "" {
		r.ResumeMatched = false
	} else {
		// Cursors without a completed step: every step runs again, and each
		// saved cursor must be reached by its cursor step before the job
		// may succeed or write a checkpoint.
		r.Pending = slices.Sorted(maps.Keys(r.Cursors))
	}
	return r, nil
}

// resumableLocked returns the run's state, made on first use; the caller
// holds st.Mu.
func (st *State) resumableLocked() *ResumableState {
	if st.Resumable == nil {
		st.Resumable = newResumableState()
	}
	return st.Resumable
}

// Fail records err as the run's step failure (the first one wins) and
// returns the recorded one.
func (st *State) Fail(err error) error {
	st.Mu.Lock()
	defer st.Mu.Unlock()
	r := st.resumableLocked()
	if r.Err == nil {
		r.Err = err
	}
	return r.Err
}

// StepBegin registers a step and says whether it runs now and, for a
// cursor step, with which saved cursor.
func (st *State) StepBegin(name string, cursorStep bool) (saved json.RawMessage, run bool, err error) {
	st.Mu.Lock()
	defer st.Mu.Unlock()
	if st.Finished {
		return nil, false, fmt.Errorf("resumable step %q: the job's run has ended: %w", name, ErrNotInWorker)
	}
	r := st.resumableLocked()
	if r.Err != nil {
		return nil, false, r.Err
	}
	fail := func(err error) (json.RawMessage, bool, error) {
		r.Err = err
		return nil, false, err
	}
	if r.Active != "" {
		return fail(fmt.Errorf("resumable step %q inside step %q: %w", name, r.Active, ErrResumableNested))
	}
	if name == "" {
		return fail(fmt.Errorf("%w: a resumable step needs a name", millracetype.ErrInvalidArgs))
	}
	if _, dup := r.Names[name]; dup {
		return fail(fmt.Errorf("resumable step %q: %w", name, ErrResumableDuplicateStep))
	}
	r.Names[name] = struct{}{}
	if !cursorStep && slices.Contains(r.Pending, name) {
		return fail(fmt.Errorf("resumable step %q has a saved cursor, so it must be a cursor step (ResumableStepCursor): %w",
			name, ErrResumableStepMismatch))
	}
	if !r.ResumeMatched {
		if name != r.ResumeStep {
			return nil, false, nil // completed on an earlier attempt
		}
		r.Completed, r.ResumeMatched = name, true
		if _, partial := r.Cursors[name]; !cursorStep || !partial {
			return nil, false, nil
		}
		// A checkpoint saved this cursor step as reached with a cursor:
		// it runs again from that cursor.
	}
	if cursorStep {
		saved = r.Cursors[name]
	}
	return saved, true, nil
}

// RunStep runs a step that StepBegin let through. A step that returns nil
// completes (unless a misuse was recorded while it ran); one that returns
// an error fails the run; a panic goes on up to the client, which records
// the progress made so far.
func (st *State) RunStep(name string, cursorStep bool, fn func() error) (err error) {
	st.Mu.Lock()
	r := st.resumableLocked()
	if cursorStep {
		r.Pending = slices.DeleteFunc(r.Pending, func(p string) bool { return p == name })
	}
	r.Active, r.ActiveCursor = name, cursorStep
	st.Mu.Unlock()

	var stepErr error
	completed := false
	defer func() {
		st.Mu.Lock()
		defer st.Mu.Unlock()
		r.Active, r.ActiveCursor = "", false
		switch {
		case stepErr != nil:
			r.Err = stepErr
		case completed && r.Err == nil:
			r.Completed = name
			if _, ok := r.Cursors[name]; ok && cursorStep {
				delete(r.Cursors, name)
				r.CursorsDirty = true
			}
		}
		err = r.Err
	}()
	stepErr = fn()
	completed = stepErr == nil
	return nil
}

// StartJob binds the running job to its state and reads its saved
// resumable progress; an error fails the attempt before the worker runs
// (as River does with saved cursors it cannot read).
func StartJob(ctx context.Context, row *millracetype.JobRow) error {
	st := StateFrom(ctx)
	if st == nil {
		return nil
	}
	st.Mu.Lock()
	defer st.Mu.Unlock()
	st.Row = row
	// Most jobs have no resumable progress: skip decoding their metadata.
	if !bytes.Contains(row.Metadata, []byte("resumable_")) {
		return nil
	}
	r, err := LoadResumable(row.Metadata)
	if err != nil {
		return fmt.Errorf("job %d: %w", row.ID, err)
	}
	st.Resumable = r
	return nil
}

// FinishJob ends the run: the job's error becomes a recorded step failure
// when Work returned nil, or a saved step or cursor the worker never met;
// and if the attempt did not succeed, the progress made is added to the
// metadata updates. (River saves nothing when the worker panics; millrace
// saves the steps completed before the panic too, in the same format.)
func FinishJob(ctx context.Context, panicked bool, workErr error) error {
	st := StateFrom(ctx)
	if st == nil {
		return workErr
	}
	st.Mu.Lock()
	defer st.Mu.Unlock()
	st.Finished = true
	r := st.Resumable
	if r == nil {
		return workErr
	}
	err := workErr
	if err == nil && !panicked {
		switch {
		case r.Err != nil:
			err = r.Err
		case !r.ResumeMatched:
			err = fmt.Errorf("saved step %q: %w", r.ResumeStep, ErrResumableStepNotFound)
		case len(r.Pending) > 0:
			err = fmt.Errorf("saved cursor of step %q: %w", r.Pending[0], ErrResumableStepNotFound)
		}
	}
	// While a saved cursor is still to be reached, moving the skip point
	// could make its step unreachable: save nothing.
	if (err != nil || panicked) && len(r.Pending) == 0 {
		if r.CursorsDirty {
			cursors := json.RawMessage("null")
			if len(r.Cursors) > 0 {
				if b, mErr := json.Marshal(r.Cursors); mErr == nil {
					cursors = b
				}
			}
			st.SetUpdate(MetadataKeyResumableCursor, cursors)
		}
		if r.Completed != "" {
			if b, mErr := json.Marshal(r.Completed); mErr == nil {
				st.SetUpdate(MetadataKeyResumableStep, b)
			}
		}
	}
	return err
}

// RunJob runs the worker of a job (RunWorker) with its resumable progress
// read before and saved after; ctx is the job's context.
func (e *Executor) RunJob(ctx context.Context, row *millracetype.JobRow, unit Unit) (panicVal any, trace string, err error) {
	if err := StartJob(ctx, row); err != nil {
		return nil, "", FinishJob(ctx, false, err)
	}
	panicVal, trace, err = e.RunWorker(ctx, row, unit)
	return panicVal, trace, FinishJob(ctx, panicVal != nil, err)
}
