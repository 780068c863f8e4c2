package client

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/millracetype"
)

// ResumableSetStepTx records, inside tx, the step running now as
// completed, so that the checkpoint commits or rolls back with the
// worker's own writes in tx, and a retry skips the step even if the
// process dies before the attempt's outcome is written. The saved cursors
// of other steps are written with it.
//
// Call it from inside a ResumableStep or ResumableStepCursor function with
// that function's context and the job Work received; commit tx before the
// step function returns (and return tx's error from it). A step whose
// function returns nil counts as completed for the rest of the run even if
// tx rolled back; if tx rolled back, the progress before the checkpoint may
// be replayed on a retry, never progress that was rolled back.
//
// Errors (each wrapped): ErrNotInWorker outside a worker;
// ErrResumableNotInStep outside a step; ErrResumableCursorPending while a
// step with a saved cursor has not been reached yet; ErrJobNotRunning when
// the job is no longer running this attempt; ErrNotFound when it was
// deleted; ErrInvalidArgs for a nil job or tx, or a job other than the one
// being worked.
func ResumableSetStepTx[TTx any, TArgs JobArgs](ctx context.Context, tx TTx, job *Job[TArgs]) (*Job[TArgs], error) {
	return resumableSetStepTx(ctx, tx, job, nil, "resumable checkpoint")
}

// ResumableSetStepCursorTx is ResumableSetStepTx for a cursor step that
// has come as far as cursor (encoded as JSON): the checkpoint records the
// step and its cursor, and a retry runs the step again from that cursor.
// It must be called from a ResumableStepCursor function; elsewhere it
// returns an error wrapping ErrResumableNotInStep.
func ResumableSetStepCursorTx[TTx any, TArgs JobArgs](ctx context.Context, tx TTx, job *Job[TArgs], cursor any) (*Job[TArgs], error) {
	b, err := json.Marshal(cursor)
	if err != nil {
		return nil, fmt.Errorf("resumable checkpoint: encode cursor %T: %w", cursor, err)
	}
	return resumableSetStepTx(ctx, tx, job, b, "resumable checkpoint")
}

func resumableSetStepTx[TTx any, TArgs JobArgs](ctx context.Context, tx TTx, job *Job[TArgs], cursor json.RawMessage, what string) (*Job[TArgs], error) {
	st, c, row, err := runningJobTx[TTx](ctx, tx, job)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	st.Mu.Lock()
	r := st.Resumable
	switch {
	case r == nil || r.Active == "":
		st.Mu.Unlock()
		return nil, fmt.Errorf("%s: %w", what, ErrResumableNotInStep)
	case cursor != nil && !r.ActiveCursor:
		st.Mu.Unlock()
		return nil, fmt.Errorf("%s: step %q is not a cursor step: %w", what, r.Active, ErrResumableNotInStep)
	case len(r.Pending) > 0:
		st.Mu.Unlock()
		return nil, fmt.Errorf("%s: step %q: %w", what, r.Pending[0], ErrResumableCursorPending)
	}
	step := r.Active
	cursors := maps.Clone(r.Cursors)
	if cursor != nil {
		cursors[step] = cursor
	}
	st.Mu.Unlock()

	merge := map[string]any{jobexec.MetadataKeyResumableStep: step, jobexec.MetadataKeyResumableCursor: nil}
	if len(cursors) > 0 {
		merge[jobexec.MetadataKeyResumableCursor] = cursors
	}
	b, err := json.Marshal(merge)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	updated, err := c.driver.UnwrapExecutor(tx).JobUpdate(ctx, &driver.JobUpdateParams{Schema: c.config.Schema,
		ID: job.ID, MetadataMerge: b, RunningAttempt: row.Attempt})
	if err != nil {
		return nil, fmt.Errorf("%s of step %q: %w", what, step, err)
	}
	// The database now holds this checkpoint (and rolls it back with tx):
	// only progress made after it belongs in the attempt's own update.
	st.Mu.Lock()
	r.Completed, r.Cursors, r.CursorsDirty = "", cursors, false
	st.Mu.Unlock()
	return &Job[TArgs]{JobRow: updated, Args: job.Args}, nil
}

// runningJobTx checks what every in-transaction helper needs: a job's
// context, a client of transaction type TTx, a non-nil tx, and job being
// the running job of that context.
func runningJobTx[TTx any, TArgs JobArgs](ctx context.Context, tx TTx, job *Job[TArgs]) (*jobState, *Client[TTx], *millracetype.JobRow, error) {
	if job == nil || job.JobRow == nil {
		return nil, nil, nil, fmt.Errorf("%w: job is nil", ErrInvalidArgs)
	}
	if any(tx) == nil {
		return nil, nil, nil, fmt.Errorf("%w: transaction is nil", ErrInvalidArgs)
	}
	if job.State != millracetype.JobStateRunning {
		return nil, nil, nil, fmt.Errorf("job %d is %s: %w", job.ID, job.State, ErrJobNotRunning)
	}
	st := jobStateFrom(ctx)
	if st == nil {
		return nil, nil, nil, ErrNotInWorker
	}
	c, err := ClientFromContextSafely[TTx](ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	st.Mu.Lock()
	row, finished := st.Row, st.Finished
	st.Mu.Unlock()
	if row == nil || finished {
		return nil, nil, nil, fmt.Errorf("the job's run has ended: %w", ErrNotInWorker)
	}
	if row.ID != job.ID {
		return nil, nil, nil, fmt.Errorf("%w: job %d is not the job this context runs (%d)", ErrInvalidArgs, job.ID, row.ID)
	}
	return st, c, row, nil
}
