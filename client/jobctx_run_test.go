package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/producer"
	"github.com/millrace/millrace/internal/testfixture"
)

// ctxSeen is what a worker saw of its context once it ended.
type ctxSeen struct {
	deadline    time.Time
	hasDeadline bool
	client      bool
	state       bool
	err, cause  error
	derivedErr  error
}

// ctxWorker waits for its job's context (and one derived from it) to end
// and reports what it saw.
func ctxWorker(got chan<- ctxSeen) *Workers {
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		var s ctxSeen
		s.deadline, s.hasDeadline = ctx.Deadline()
		s.client = ClientFromContext[pgx.Tx](ctx) != nil
		derived, cancel := context.WithCancel(ctx)
		defer cancel()
		s.state = jobStateFrom(derived) != nil
		<-derived.Done()
		s.err, s.cause, s.derivedErr = ctx.Err(), context.Cause(ctx), derived.Err()
		got <- s
		return ctx.Err()
	}))
	return workers
}

// TestJobContextTimeout: a job's context carries its deadline, its client
// and its state (also through contexts derived from it), and ends at the
// deadline with DeadlineExceeded as its error and cause, as does a
// context derived from it.
func TestJobContextTimeout(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	got := make(chan ctxSeen, 1)
	const timeout = 300 * time.Millisecond
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: ctxWorker(got), JobTimeout: timeout})
	start(t, c)
	before := time.Now()
	if _, err := c.Insert(context.Background(), noopArgs{}, &InsertOpts{MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	s := recv(t, got, "the job's context to end")
	if !s.hasDeadline || s.deadline.Before(before.Add(timeout)) || s.deadline.After(time.Now()) {
		t.Errorf("deadline %v (set: %v); want one between %v and now", s.deadline, s.hasDeadline, before.Add(timeout))
	}
	if !s.client || !s.state {
		t.Errorf("ClientFromContext found a client: %v; a derived context has the job's state: %v; want both", s.client, s.state)
	}
	if s.err != context.DeadlineExceeded || s.cause != context.DeadlineExceeded || s.derivedErr != context.DeadlineExceeded {
		t.Errorf("err %v, cause %v, derived context's err %v; want DeadlineExceeded for all", s.err, s.cause, s.derivedErr)
	}
}

// TestJobContextRemoteCancel: JobCancel ends a running job's context with
// Canceled, its cause ErrJobCancelledRemotely, and ends contexts derived
// from it too.
func TestJobContextRemoteCancel(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	got := make(chan ctxSeen, 1)
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: ctxWorker(got), JobTimeout: time.Minute})
	start(t, c)
	res, err := c.Insert(context.Background(), noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, db, res.Job.ID, "running")
	if _, err := c.JobCancel(context.Background(), res.Job.ID); err != nil {
		t.Fatal(err)
	}
	s := recv(t, got, "the job's context to end")
	if s.err != context.Canceled || !errors.Is(s.cause, producer.ErrJobCancelledRemotely) || s.derivedErr != context.Canceled {
		t.Errorf("err %v, cause %v, derived context's err %v; want Canceled, ErrJobCancelledRemotely, Canceled", s.err, s.cause, s.derivedErr)
	}
	waitState(t, db, res.Job.ID, "cancelled")
}
