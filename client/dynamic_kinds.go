package client

import (
	"bytes"
	"encoding/json"
	"errors"
)

// AddWorkerArgs registers a worker for the kind that args.Kind() returns,
// rather than the kind of T's zero value as AddWorker does. One Go type can
// then serve several kinds decided at run time: give it a field its Kind
// method returns, and register it once per kind. (River has the same
// function, meant there for tests.)
//
// Jobs are decoded as for AddWorker, into a fresh T: fields that JSON does
// not fill (an unexported kind, say) keep their zero values, so a worker
// serving several kinds reads the job's kind from job.Kind. Like AddWorker
// it never panics: an error is reported by client.New (use
// AddWorkerArgsSafely to get it at once).
func AddWorkerArgs[T JobArgs](workers *Workers, args T, worker Worker[T]) {
	workers.remember(AddWorkerArgsSafely(workers, args, worker))
}

// remember keeps the first registration error for client.New to report.
func (w *Workers) remember(err error) {
	if err == nil || w == nil {
		return
	}
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// AddWorkerArgsSafely is AddWorkerArgs returning its error: a nil worker,
// args whose Kind panics or returns an invalid kind, args whose InsertOpts
// panics, or a kind already registered (wrapping ErrDuplicateKind).
func AddWorkerArgsSafely[T JobArgs](workers *Workers, args T, worker Worker[T]) error {
	return addWorker(workers, args, worker)
}

// RawArgs are a job's args as stored, undecoded: the args type of raw
// workers, which handle kinds generically (a proxy to another service, a
// tool that works jobs of any type) without a Go type per kind. Kind
// returns the job's kind.
//
// RawArgs can be inserted too: NewRawArgs("email", []byte(`{"to":"a@b"}`))
// inserts a job of kind email with exactly those args.
type RawArgs struct {
	// JSON is the args exactly as stored (for a worker), or as they will be
	// stored (for an insert: it must be a JSON object; empty means {}).
	JSON json.RawMessage

	kind string
}

// NewRawArgs returns args of the given kind holding the given JSON.
func NewRawArgs(kind string, args json.RawMessage) RawArgs {
	return RawArgs{JSON: args, kind: kind}
}

// Kind returns the job's kind.
func (a RawArgs) Kind() string { return a.kind }

// MarshalJSON returns JSON as it is ({} when empty).
func (a RawArgs) MarshalJSON() ([]byte, error) {
	if len(a.JSON) == 0 {
		return []byte("{}"), nil
	}
	return a.JSON, nil
}

// UnmarshalJSON keeps a copy of the JSON.
func (a *RawArgs) UnmarshalJSON(b []byte) error {
	a.JSON = bytes.Clone(b)
	return nil
}

// setRowKind gives decoded RawArgs the kind of the job they came from.
func (a *RawArgs) setRowKind(kind string) { a.kind = kind }

// setRowKind tells decoded args their job's kind when their type wants to
// know it (RawArgs).
func setRowKind[T any](args *T, kind string) {
	if s, ok := any(args).(interface{ setRowKind(string) }); ok {
		s.setRowKind(kind)
	}
}

// AddRawWorker registers a raw worker for a kind: its jobs come with
// RawArgs (the args JSON undecoded, and the kind), so one worker can serve
// any number of kinds without a Go type for each. The kind is validated as
// for AddWorker. It never panics: an error is reported by client.New (use
// AddRawWorkerSafely to get it at once).
//
//	client.AddRawWorker(workers, "resize_image", client.WorkFunc(func(ctx context.Context, job *client.Job[client.RawArgs]) error {
//		return forward(ctx, job.Kind, job.Args.JSON)
//	}))
func AddRawWorker(workers *Workers, kind string, worker Worker[RawArgs]) {
	workers.remember(AddRawWorkerSafely(workers, kind, worker))
}

// AddRawWorkerSafely is AddRawWorker returning its error: a nil worker, an
// invalid kind, or a kind already registered (wrapping ErrDuplicateKind).
func AddRawWorkerSafely(workers *Workers, kind string, worker Worker[RawArgs]) error {
	if kind == "" {
		return errors.New("add raw worker: kind is empty")
	}
	return addWorker(workers, RawArgs{kind: kind}, worker)
}
