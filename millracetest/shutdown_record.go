package millracetest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/millracetype"
)

// call is one Work call, as the harness's middleware saw it.
type call struct {
	Client  string    `json:"client"`
	JobID   int64     `json:"job"`
	Attempt int       `json:"attempt"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	// OK is true when Work returned nil.
	OK  bool   `json:"ok"`
	Err string `json:"err,omitempty"`
	// Panicked is true when Work panicked (or did not return).
	Panicked bool `json:"panicked,omitempty"`
	// CtxEnded is when the job's context ended, if it did while Work ran
	// (zero otherwise); Timeout is true when it ended by its deadline.
	CtxEnded time.Time `json:"ctx_ended,omitzero"`
	Timeout  bool      `json:"timeout,omitempty"`
}

// recorder keeps the calls of the clients of a run.
type recorder struct {
	mu    sync.Mutex
	calls []call
	// sink, when set, receives each call instead (a child process prints
	// it for the parent).
	sink func(call)
}

func newRecorder() *recorder { return &recorder{} }

func (r *recorder) add(c call) {
	if r.sink != nil {
		r.sink(c)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

// succeeded counts the calls of a client that succeeded.
func (r *recorder) succeeded(clientID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c.Client == clientID && c.OK {
			n++
		}
	}
	return n
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// middleware records every Work call of the client clientID.
func (r *recorder) middleware(clientID string) client.WorkerMiddleware {
	return client.WorkerMiddlewareFunc(func(ctx context.Context, job *millracetype.JobRow, next func(context.Context) error) error {
		c := call{Client: clientID, JobID: job.ID, Attempt: job.Attempt, Start: time.Now()}
		// When the context ends is noted as it happens, so that a worker
		// that returns late is seen to.
		var mu sync.Mutex
		stop := context.AfterFunc(ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			c.CtxEnded = time.Now()
		})
		returned := false
		defer func() {
			stop()
			c.End = time.Now()
			mu.Lock()
			defer mu.Unlock()
			if !returned {
				c.Panicked = true
			}
			if c.CtxEnded.IsZero() && ctx.Err() != nil {
				// Ended, but the AfterFunc has not run yet.
				c.CtxEnded = c.End
			}
			if !c.CtxEnded.IsZero() {
				c.Timeout = errors.Is(context.Cause(ctx), context.DeadlineExceeded)
			}
			r.add(c)
		}()
		err := next(ctx)
		returned = true
		c.OK = err == nil
		if err != nil {
			c.Err = err.Error()
		}
		return err
	})
}
