package jobexec

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

var testNow = time.Date(2026, time.December, 4, 7, 0, 0, 0, time.UTC)

type policyFunc func(*millracetype.JobRow) time.Time

func (f policyFunc) NextRetry(row *millracetype.JobRow) time.Time { return f(row) }

type retryUnit struct{ next time.Time }

func (retryUnit) Work(context.Context) error { return nil }
func (retryUnit) Timeout() time.Duration     { return 0 }
func (u retryUnit) NextRetry() time.Time     { return u.next }

func newTestExecutor(policy RetryPolicy) *Executor {
	return New(&Config{ClientID: "c1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return testNow }, RetryPolicy: policy}, nil)
}

// TestFailedRetryTimes: the worker's NextRetry wins over the policy, the
// policy over the default; a retry due within SoonHorizon is written
// available, a later one retryable; out of attempts is discarded, and the
// error handler's cancel cancels.
func TestFailedRetryTimes(t *testing.T) {
	t.Parallel()
	policy := policyFunc(func(*millracetype.JobRow) time.Time { return testNow.Add(time.Minute) })
	e := newTestExecutor(policy)
	row := &millracetype.JobRow{ID: 7, Attempt: 1, MaxAttempts: 3}
	err := errors.New("boom")

	s, k := e.Failed(row, testNow, err, "", false, retryUnit{next: testNow.Add(SoonHorizon)}, nil)
	if k != KindFailed || s.State != millracetype.JobStateAvailable || !s.ScheduledAt.Equal(testNow.Add(SoonHorizon)) {
		t.Errorf("worker retry at the horizon: %v %s at %v", k, s.State, s.ScheduledAt)
	}
	s, _ = e.Failed(row, testNow, err, "", false, retryUnit{}, nil)
	if s.State != millracetype.JobStateRetryable || !s.ScheduledAt.Equal(testNow.Add(time.Minute)) {
		t.Errorf("policy retry: %s at %v", s.State, s.ScheduledAt)
	}
	if s.Error == nil || s.Error.Error != "boom" || s.Error.Attempt != 1 {
		t.Errorf("error %+v", s.Error)
	}
	s, k = e.Failed(row, testNow, err, "", true, nil, nil)
	if k != KindCancelled || s.State != millracetype.JobStateCancelled {
		t.Errorf("handler cancel: %v %s", k, s.State)
	}
	last := &millracetype.JobRow{ID: 7, Attempt: 3, MaxAttempts: 3}
	if s, k = e.Failed(last, testNow, err, "", false, nil, nil); k != KindFailed || s.State != millracetype.JobStateDiscarded {
		t.Errorf("last attempt: %v %s", k, s.State)
	}

	panicky := newTestExecutor(policyFunc(func(*millracetype.JobRow) time.Time { panic("policy") }))
	s, _ = panicky.Failed(row, testNow, err, "", false, nil, nil)
	if d := s.ScheduledAt.Sub(testNow); d < 900*time.Millisecond || d >= 1100*time.Millisecond {
		t.Errorf("panicking policy: default retry in %v, want about 1 s", d)
	}
}

// TestUnknownKindAndSnooze: an unknown kind gives its attempt back and is
// retried even out of attempts; a snooze within SoonHorizon is available,
// a longer one scheduled.
func TestUnknownKindAndSnooze(t *testing.T) {
	t.Parallel()
	e := newTestExecutor(policyFunc(func(*millracetype.JobRow) time.Time { return time.Time{} }))
	row := &millracetype.JobRow{ID: 7, Kind: "nope", Attempt: 3, MaxAttempts: 3}
	s := e.UnknownKind(row, testNow)
	if !s.AttemptDecrement || s.State != millracetype.JobStateAvailable || s.Error == nil ||
		s.Error.Error != `job kind "nope" is not registered in client c1` {
		t.Errorf("unknown kind: %+v", s)
	}
	if s := e.Snoozed(row, SoonHorizon, nil); s.State != millracetype.JobStateAvailable || !s.SnoozeIncrement {
		t.Errorf("short snooze: %+v", s)
	}
	if s := e.Snoozed(row, SoonHorizon+time.Nanosecond, nil); s.State != millracetype.JobStateScheduled {
		t.Errorf("long snooze: %+v", s)
	}
}

// recordSink records what Finish hands over.
type recordSink struct {
	fakeSink
	completed []*driver.JobSetState
	metas     []any
	pokes     []time.Time
}

func (s *recordSink) Complete(outcome *driver.JobSetState, meta any) error {
	s.completed, s.metas = append(s.completed, outcome), append(s.metas, meta)
	return nil
}

func (s *recordSink) Poke(queue string, at time.Time) {
	if queue == "q" {
		s.pokes = append(s.pokes, at)
	}
}

// TestFinish: the outcome is stamped with the attempt and handed to the
// sink with its meta; only an available outcome with a run time pokes
// the producer.
func TestFinish(t *testing.T) {
	t.Parallel()
	sink := &recordSink{}
	e := New(&Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return testNow }}, sink)
	row := &millracetype.JobRow{ID: 7, Queue: "q", Attempt: 2, MaxAttempts: 3}
	meta := new(int)
	e.Finish(context.Background(), row, e.Snoozed(row, time.Second, nil), KindSnoozed, meta, 0, 0)
	e.Finish(context.Background(), row, e.Snoozed(row, time.Hour, nil), KindSnoozed, meta, 0, 0)
	e.Finish(context.Background(), row, e.Interrupted(row, nil), KindInterrupted, meta, 0, 0)
	if len(sink.completed) != 3 || sink.completed[0].Attempt != 2 || sink.metas[0] != meta {
		t.Fatalf("completed %+v, metas %v", sink.completed, sink.metas)
	}
	if len(sink.pokes) != 2 || !sink.pokes[0].Equal(testNow.Add(time.Second)) || !sink.pokes[1].Equal(testNow) {
		t.Errorf("pokes %v, want the short snooze's and the interruption's", sink.pokes)
	}
}

// TestUnsuccessfulCauses: a job whose context a stop interrupted goes
// back to available, one cancelled from outside is cancelled, whatever
// error it returned; without a cause the error is a failure.
func TestUnsuccessfulCauses(t *testing.T) {
	t.Parallel()
	remote := errors.New("job cancelled remotely")
	e := New(&Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return testNow },
		RetryPolicy: policyFunc(func(*millracetype.JobRow) time.Time { return time.Time{} }), RemoteCancelCause: remote}, nil)
	row := &millracetype.JobRow{ID: 7, Queue: "q", Attempt: 1, MaxAttempts: 3}
	for _, tc := range []struct {
		cause error
		kind  Kind
		state millracetype.JobState
	}{
		{nil, KindFailed, millracetype.JobStateAvailable},
		{ErrStopAndCancel, KindInterrupted, millracetype.JobStateAvailable},
		{ErrSoftStopTimeout, KindInterrupted, millracetype.JobStateAvailable},
		{remote, KindCancelled, millracetype.JobStateCancelled},
	} {
		ctx, cancel := context.WithCancelCause(context.Background())
		if tc.cause != nil {
			cancel(tc.cause)
		}
		s, k := e.Unsuccessful(ctx, row, testNow, nil, nil, "", errors.New("boom"), nil)
		cancel(nil)
		if k != tc.kind || s.State != tc.state {
			t.Errorf("cause %v: %v %s, want %v %s", tc.cause, k, s.State, tc.kind, tc.state)
		}
	}
}
