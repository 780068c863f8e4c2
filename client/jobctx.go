package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/millrace/millrace/millracetype"
)

// MaxOutputSize is the largest output RecordOutput accepts (32 MB).
const MaxOutputSize = 32 * 1024 * 1024

type jobStateKey struct{}

// jobState is what a running job's context carries: its client (as an
// untyped value, so ClientFromContext can check the type) and the metadata
// updates made while it runs, merged when the outcome is written.
type jobState struct {
	client  any
	mu      sync.Mutex
	updates map[string]json.RawMessage

	// row is the job being run; set before the worker is called.
	row *millracetype.JobRow
	// finished is set once the worker has returned: the helpers that act
	// on the running job refuse to act after that.
	finished bool
	// completedInTx is the row as JobCompleteTx left it, once a call
	// succeeded (its transaction may still roll back).
	completedInTx *millracetype.JobRow
	// resumable holds the progress of resumable steps; nil until a step
	// runs or saved progress is found in the job's metadata.
	resumable *resumableState
}

// jobValueCtx is a running job's context below its timeout: the context
// the producer gave the job, plus the job's state under jobStateKey. It
// is part of the job's jobRun (one allocation per run) rather than a
// context.WithValue of its own; like that, it only answers Value and
// passes Deadline, Done and Err through.
type jobValueCtx struct {
	context.Context
	state jobState
}

func (c *jobValueCtx) Value(key any) any {
	if key == (jobStateKey{}) {
		return &c.state
	}
	return c.Context.Value(key)
}

func (c *jobValueCtx) String() string { return "millrace job context" }

// withJobState makes parent, with a fresh state for client c, the context
// of the run r.
func withJobState[TTx any](r *jobRun, parent context.Context, c *Client[TTx]) context.Context {
	r.ctx.Context = parent
	r.ctx.state.client = c
	return &r.ctx
}

// jobStateFrom returns the state of the job whose context ctx is, or nil.
func jobStateFrom(ctx context.Context) *jobState {
	st, _ := ctx.Value(jobStateKey{}).(*jobState)
	return st
}

// setUpdate records one metadata update; the caller holds st.mu.
func (st *jobState) setUpdate(key string, value json.RawMessage) {
	if st.updates == nil {
		st.updates = map[string]json.RawMessage{}
	}
	st.updates[key] = value
}

// metadataUpdates returns the updates recorded in ctx as one JSON object,
// or nil when there are none.
func metadataUpdates(ctx context.Context) []byte {
	st, _ := ctx.Value(jobStateKey{}).(*jobState)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.updates) == 0 {
		return nil
	}
	b, err := json.Marshal(st.updates)
	if err != nil {
		return nil
	}
	return b
}

// ErrNotInWorker is returned when a function meant for a worker's context
// is called elsewhere.
var ErrNotInWorker = errors.New("not called with a job's context (from inside Work)")

// RecordOutput stores v (encoded as JSON, at most 32 MB) as the job's
// output, under metadata key "output", whatever the job's outcome. Call it
// from Work with Work's context; a later call replaces the output.
func RecordOutput(ctx context.Context, v any) error {
	st, _ := ctx.Value(jobStateKey{}).(*jobState)
	if st == nil {
		return fmt.Errorf("record output: %w", ErrNotInWorker)
	}
	b, err := encodeOutput(v)
	if err != nil {
		return fmt.Errorf("record output: %w", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.setUpdate("output", b)
	return nil
}

// encodeOutput encodes an output value and checks its size.
func encodeOutput(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	if len(b) > MaxOutputSize {
		return nil, fmt.Errorf("%d bytes is over the %d byte limit", len(b), MaxOutputSize)
	}
	return b, nil
}

// ClientFromContext returns the client running the job whose context ctx
// is, for a worker to insert follow-up jobs (InsertTx puts them in the
// worker's own transaction). It returns nil, and never panics, when ctx is
// not a job's context or the client's transaction type is not TTx; use
// ClientFromContextSafely to learn which.
func ClientFromContext[TTx any](ctx context.Context) *Client[TTx] {
	c, _ := ClientFromContextSafely[TTx](ctx)
	return c
}

// ClientFromContextSafely is ClientFromContext returning an error instead
// of nil: one wrapping ErrNotInWorker when ctx is not a job's context, or
// one naming both types when the client's transaction type is not TTx.
func ClientFromContextSafely[TTx any](ctx context.Context) (*Client[TTx], error) {
	st, _ := ctx.Value(jobStateKey{}).(*jobState)
	if st == nil {
		return nil, fmt.Errorf("client from context: %w", ErrNotInWorker)
	}
	c, ok := st.client.(*Client[TTx])
	if !ok || c == nil {
		return nil, fmt.Errorf("client from context: the client is a %T, not a *client.Client[%v]", st.client, reflect.TypeFor[TTx]())
	}
	return c, nil
}
