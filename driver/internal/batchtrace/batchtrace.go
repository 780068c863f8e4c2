// Package batchtrace records the batches a pgx connection sends, for the
// drivers' tests of their pipelined hot statements.
package batchtrace

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Recorder is a pgx tracer (pgx.QueryTracer and pgx.BatchTracer) that
// records the statements of each batch sent on its connections.
type Recorder struct {
	mu      sync.Mutex
	cur     []string
	batches [][]string
}

var (
	_ pgx.QueryTracer = (*Recorder)(nil)
	_ pgx.BatchTracer = (*Recorder)(nil)
)

func (r *Recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (r *Recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *Recorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (r *Recorder) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur = append(r.cur, d.SQL)
}

func (r *Recorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, r.cur)
	r.cur = nil
}

// Take returns the batches recorded since the last Take, each as its
// statements' text in order.
func (r *Recorder) Take() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.batches
	r.batches = nil
	return b
}
