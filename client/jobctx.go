package client

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/millrace/millrace/internal/jobexec"
)

// MaxOutputSize is the largest output RecordOutput accepts (32 MB).
const MaxOutputSize = 32 * 1024 * 1024

// jobState is what a running job's context carries (jobexec.State).
type jobState = jobexec.State

// jobStateFrom returns the state of the job whose context ctx is, or nil.
func jobStateFrom(ctx context.Context) *jobState { return jobexec.StateFrom(ctx) }

// ErrNotInWorker is returned when a function meant for a worker's context
// is called elsewhere.
var ErrNotInWorker = jobexec.ErrNotInWorker

// RecordOutput stores v (encoded as JSON, at most 32 MB) as the job's
// output, under metadata key "output", whatever the job's outcome. Call it
// from Work with Work's context; a later call replaces the output.
func RecordOutput(ctx context.Context, v any) error {
	st := jobStateFrom(ctx)
	if st == nil {
		return fmt.Errorf("record output: %w", ErrNotInWorker)
	}
	b, err := encodeOutput(v)
	if err != nil {
		return fmt.Errorf("record output: %w", err)
	}
	st.Mu.Lock()
	defer st.Mu.Unlock()
	st.SetUpdate("output", b)
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
	st := jobStateFrom(ctx)
	if st == nil {
		return nil, fmt.Errorf("client from context: %w", ErrNotInWorker)
	}
	c, ok := st.Client.(*Client[TTx])
	if !ok || c == nil {
		return nil, fmt.Errorf("client from context: the client is a %T, not a *client.Client[%v]", st.Client, reflect.TypeFor[TTx]())
	}
	return c, nil
}
