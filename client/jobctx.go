package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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
}

func withJobState[TTx any](ctx context.Context, c *Client[TTx]) context.Context {
	return context.WithValue(ctx, jobStateKey{}, &jobState{client: c})
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
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("record output: encode %T: %w", v, err)
	}
	if len(b) > MaxOutputSize {
		return fmt.Errorf("record output: %d bytes is over the %d byte limit", len(b), MaxOutputSize)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.updates == nil {
		st.updates = map[string]json.RawMessage{}
	}
	st.updates["output"] = b
	return nil
}

// ClientFromContext returns the client running the job whose context ctx
// is, to insert follow-up jobs; it errors when ctx is not a job's context
// or the client's transaction type is not TTx.
func ClientFromContext[TTx any](ctx context.Context) (*Client[TTx], error) {
	st, _ := ctx.Value(jobStateKey{}).(*jobState)
	if st == nil {
		return nil, fmt.Errorf("client from context: %w", ErrNotInWorker)
	}
	c, ok := st.client.(*Client[TTx])
	if !ok {
		return nil, fmt.Errorf("client from context: the client is a %T, not a *Client[%T]", st.client, *new(TTx))
	}
	return c, nil
}
