package jobexec

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/millrace/millrace/millracetype"
)

// TestDeadlineGroups: jobs that start within the slack with one parent
// and timeout share a deadline context, each getting at least its timeout
// and at most the slack more; another timeout or parent gets its own; a
// group that was replaced is cancelled once its last job is released,
// not before, and the current one is not cancelled when idle.
func TestDeadlineGroups(t *testing.T) {
	t.Parallel()
	var d deadlines
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	const timeout = time.Hour
	before := time.Now()
	g1 := d.acquire(parent, timeout)
	g2 := d.acquire(parent, timeout)
	if g1 != g2 {
		t.Fatal("two jobs starting together got different groups")
	}
	dl, ok := g1.ctx.Deadline()
	if !ok || dl.Before(before.Add(timeout)) || dl.After(time.Now().Add(timeout+maxDeadlineSlack)) {
		t.Errorf("deadline %v; want between %v and %v", dl, before.Add(timeout), time.Now().Add(timeout+maxDeadlineSlack))
	}
	if g := d.acquire(parent, 2*timeout); g == g1 {
		t.Error("another timeout shares the group")
	}
	other, stopOther := context.WithCancel(context.Background())
	defer stopOther()
	if g := d.acquire(other, timeout); g == g1 {
		t.Error("another parent shares the group")
	}

	// A job starting once the slack has passed needs a later deadline:
	// a new group, and the old one ends with its last job.
	time.Sleep(maxDeadlineSlack + time.Millisecond)
	g3 := d.acquire(parent, timeout)
	if g3 == g1 {
		t.Fatal("a job starting after the slack shares a deadline it would not reach")
	}
	if dl3, _ := g3.ctx.Deadline(); dl3.Before(dl) {
		t.Errorf("new deadline %v before the old %v", dl3, dl)
	}
	d.release(g1)
	if g1.ctx.Err() != nil {
		t.Fatal("a replaced group was cancelled while a job still uses it")
	}
	d.release(g2)
	if !errors.Is(g1.ctx.Err(), context.Canceled) {
		t.Errorf("a replaced group with no job left: err %v, want Canceled", g1.ctx.Err())
	}
	d.release(g3)
	if g3.ctx.Err() != nil {
		t.Error("the current group was cancelled when idle")
	}
	if g := d.acquire(parent, timeout); g != g3 {
		t.Error("the idle current group was not used again")
	} else {
		d.release(g)
	}
}

// TestDeadlineGroupsSmallTimeout: a short timeout gets a proportionally
// small slack, so it never runs much past its timeout.
func TestDeadlineGroupsSmallTimeout(t *testing.T) {
	t.Parallel()
	if s := deadlineSlack(64 * time.Millisecond); s != time.Millisecond {
		t.Errorf("slack of 64ms is %v, want 1ms", s)
	}
	if s := deadlineSlack(time.Minute); s != maxDeadlineSlack {
		t.Errorf("slack of 1m is %v, want %v", s, maxDeadlineSlack)
	}
}

// binder records what cancels the job WorkBound hands over.
type binder struct{ cancel Canceller }

func (b *binder) Bind(cancel Canceller) { b.cancel = cancel }

// TestWorkBoundContext: WorkBound runs the job in a context of its own
// below the parent, whose cancel function it hands to the binder (a
// cancel with a cause reaches the job and decides its outcome), with the
// job's timeout as its deadline; the timeout ends it with
// DeadlineExceeded, on derived contexts too.
func TestWorkBoundContext(t *testing.T) {
	t.Parallel()
	parent := context.Background()
	row := func() *millracetype.JobRow {
		return &millracetype.JobRow{ID: 1, Kind: "k", Queue: "q", Attempt: 1, MaxAttempts: 3}
	}

	t.Run("remote cancel", func(t *testing.T) {
		t.Parallel()
		b := &binder{}
		var cause error
		sink := &unitSink{unit: fnUnit{func(ctx context.Context) error {
			b.cancel.CancelCause(errRemote)
			<-ctx.Done()
			cause = context.Cause(ctx)
			return ctx.Err()
		}}}
		e := New(&Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now,
			JobTimeout: time.Hour, RemoteCancelCause: errRemote}, sink)
		e.WorkBound(parent, row(), b)
		if cause != errRemote {
			t.Errorf("cause %v, want the remote cancel's", cause)
		}
		if s := sink.completed[0]; s.State != millracetype.JobStateCancelled {
			t.Errorf("outcome %+v, want cancelled", s)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		const timeout = 50 * time.Millisecond
		var err, cause, derivedErr error
		var deadline time.Time
		before := time.Now()
		sink := &unitSink{unit: timeoutUnit{timeout: timeout, fn: func(ctx context.Context) error {
			deadline, _ = ctx.Deadline()
			derived, cancel := context.WithCancel(ctx)
			defer cancel()
			<-derived.Done()
			err, cause, derivedErr = ctx.Err(), context.Cause(ctx), derived.Err()
			return ctx.Err()
		}}}
		e := New(&Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}, sink)
		e.WorkBound(context.Background(), row(), &binder{})
		if deadline.Before(before.Add(timeout)) || deadline.After(before.Add(timeout+time.Second)) {
			t.Errorf("deadline %v, want from %v on", deadline, before.Add(timeout))
		}
		if err != context.DeadlineExceeded || cause != context.DeadlineExceeded || derivedErr != context.DeadlineExceeded {
			t.Errorf("err %v, cause %v, derived err %v; want DeadlineExceeded for all", err, cause, derivedErr)
		}
		if s := sink.completed[0]; s.State != millracetype.JobStateAvailable || s.Error == nil {
			t.Errorf("outcome %+v, want a retry", s)
		}
	})
}

// TestWorkBoundOutsideCauseAfterTimeout: a job whose timeout passed and
// that is then interrupted by a stopping client, or cancelled, gets the
// outcome of the stop or the cancel, as when the timeout context was the
// job's own below its producer's: the deadline that ended its context
// first does not hide what was asked from outside.
func TestWorkBoundOutsideCauseAfterTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(stop context.CancelCauseFunc, b *binder)
		want millracetype.JobState
	}{
		{"stop", func(stop context.CancelCauseFunc, _ *binder) { stop(ErrStopAndCancel) }, millracetype.JobStateAvailable},
		{"cancel", func(_ context.CancelCauseFunc, b *binder) { b.cancel.CancelCause(errRemote) }, millracetype.JobStateCancelled},
		{"none", func(context.CancelCauseFunc, *binder) {}, millracetype.JobStateDiscarded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parent, stop := context.WithCancelCause(context.Background())
			defer stop(nil)
			b := &binder{}
			sink := &unitSink{unit: timeoutUnit{timeout: time.Millisecond, fn: func(ctx context.Context) error {
				<-ctx.Done()
				tc.end(stop, b)
				return ctx.Err()
			}}}
			e := New(&Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now,
				RemoteCancelCause: errRemote}, sink)
			e.WorkBound(parent, &millracetype.JobRow{ID: 1, Kind: "k", Queue: "q", Attempt: 1, MaxAttempts: 1}, b)
			if s := sink.completed[0]; s.State != tc.want {
				t.Errorf("outcome %s, want %s", s.State, tc.want)
			}
		})
	}
}

var errRemote = errors.New("cancelled remotely")

// timeoutUnit is a fnUnit with a timeout.
type timeoutUnit struct {
	timeout time.Duration
	fn      func(ctx context.Context) error
}

func (u timeoutUnit) Work(ctx context.Context) error { return u.fn(ctx) }
func (u timeoutUnit) Timeout() time.Duration         { return u.timeout }
func (timeoutUnit) NextRetry() time.Time             { return time.Time{} }
