package jobexec

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// ErrNotInWorker is returned when a function meant for a worker's context
// is called elsewhere (client.ErrNotInWorker).
var ErrNotInWorker = errors.New("not called with a job's context (from inside Work)")

type stateKey struct{}

// State is what a running job's context carries: its client (as an
// untyped value, so that the client can check its type) and the metadata
// updates made while it runs, merged when the outcome is written.
type State struct {
	// Client is the client running the job.
	Client any
	// Mu guards the fields below.
	Mu sync.Mutex
	// Updates are the metadata updates made while the job runs.
	Updates map[string]json.RawMessage
	// Row is the job being run; set before the worker is called.
	Row *millracetype.JobRow
	// Finished is set once the worker has returned: the helpers that act
	// on the running job refuse to act after that.
	Finished bool
	// CompletedInTx is the row as JobCompleteTx left it, once a call
	// succeeded (its transaction may still roll back).
	CompletedInTx *millracetype.JobRow
	// Resumable holds the progress of resumable steps; nil until a step
	// runs or saved progress is found in the job's metadata.
	Resumable *ResumableState
}

// ValueCtx is a running job's context below its timeout: the context the
// producer gave the job, plus the job's state. It is part of the job's
// run (one allocation per run) rather than a context.WithValue of its
// own; like that, it only answers Value and passes Deadline, Done and Err
// through.
type ValueCtx struct {
	context.Context
	state State
}

// Value returns the job's state for the state key, else parent's value.
func (c *ValueCtx) Value(key any) any {
	if key == (stateKey{}) {
		return &c.state
	}
	return c.Context.Value(key)
}

func (c *ValueCtx) String() string { return "millrace job context" }

// Bind makes c, with a fresh state for client, the context of a run below
// parent, and returns it.
func (c *ValueCtx) Bind(parent context.Context, client any) context.Context {
	c.Context = parent
	c.state.Client = client
	return c
}

// NewJobContext returns a job's context below parent with a fresh state
// for client, as a run makes it (for tests of the helpers that use it).
func NewJobContext(parent context.Context, client any) context.Context {
	return new(ValueCtx).Bind(parent, client)
}

// StateFrom returns the state of the job whose context ctx is, or nil.
func StateFrom(ctx context.Context) *State {
	st, _ := ctx.Value(stateKey{}).(*State)
	return st
}

// SetUpdate records one metadata update; the caller holds st.Mu.
func (st *State) SetUpdate(key string, value json.RawMessage) {
	if st.Updates == nil {
		st.Updates = map[string]json.RawMessage{}
	}
	st.Updates[key] = value
}

// MetadataUpdates returns the updates recorded in ctx as one JSON object,
// or nil when there are none.
func MetadataUpdates(ctx context.Context) []byte {
	st := StateFrom(ctx)
	if st == nil {
		return nil
	}
	st.Mu.Lock()
	defer st.Mu.Unlock()
	if len(st.Updates) == 0 {
		return nil
	}
	b, err := json.Marshal(st.Updates)
	if err != nil {
		return nil
	}
	return b
}

// NoteCompletedInTx runs once a job's outcome is decided. If the worker
// completed the job in its own transaction (JobCompleteTx), the outcome is
// sent so that it changes nothing should that transaction have committed,
// and the completed row is returned, for the job's event; otherwise it
// returns nil.
func NoteCompletedInTx(jobCtx context.Context, outcome *driver.JobSetState) *millracetype.JobRow {
	st := StateFrom(jobCtx)
	if st == nil || outcome == nil {
		return nil
	}
	st.Mu.Lock()
	st.Finished = true
	done := st.CompletedInTx
	st.Mu.Unlock()
	if done != nil {
		outcome.OnlyIfRunning = true
	}
	return done
}
