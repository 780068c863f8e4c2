package client

import (
	"context"
	"encoding/json"
	"log/slog"
)

// jobStateSetUpdate records a metadata update (key → raw JSON value) for the
// job whose context ctx is, merged into the row with its outcome. Unlike
// public metadata setters it accepts River's reserved "river:" keys: it is
// for millrace's own features. It reports false when ctx is not a job's
// context.
func jobStateSetUpdate(ctx context.Context, key string, value json.RawMessage) bool {
	st := jobStateFrom(ctx)
	if st == nil {
		return false
	}
	st.Mu.Lock()
	defer st.Mu.Unlock()
	st.SetUpdate(key, value)
	return true
}

// clientLogger is implemented by every *Client[TTx], so that code holding
// a job's context (which stores the client untyped) can reach its logger.
type clientLogger interface {
	clientLogger() *slog.Logger
}

func (c *Client[TTx]) clientLogger() *slog.Logger { return c.config.Logger }

// jobClientLogger returns the logger of the client running the job whose
// context ctx is, or nil.
func jobClientLogger(ctx context.Context) *slog.Logger {
	st := jobStateFrom(ctx)
	if st == nil {
		return nil
	}
	if cl, ok := st.Client.(clientLogger); ok {
		return cl.clientLogger()
	}
	return nil
}
