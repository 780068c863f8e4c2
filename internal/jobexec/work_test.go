package jobexec

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/millrace/millrace/millracetype"
)

// unitSink is a recordSink whose jobs all run unit (nil: no worker).
type unitSink struct {
	recordSink
	unit      Unit
	ephemeral bool
}

func (s *unitSink) Unit(context.Context, *millracetype.JobRow) (Unit, bool, bool, error) {
	return s.unit, s.ephemeral, s.unit != nil, nil
}

// fnUnit runs fn with the job's context.
type fnUnit struct {
	fn func(ctx context.Context) error
}

func (u fnUnit) Work(ctx context.Context) error { return u.fn(ctx) }
func (fnUnit) Timeout() time.Duration           { return -1 }
func (fnUnit) NextRetry() time.Time             { return time.Time{} }

// TestWork: Work runs the unit the sink gives in a job context carrying
// the client value, and hands the outcome to the sink with a *Done that
// says how the run ended and its timings; a kind without a worker is
// retried, its attempt given back.
func TestWork(t *testing.T) {
	t.Parallel()
	client := new(int)
	var seen any
	sink := &unitSink{ephemeral: true, unit: fnUnit{func(ctx context.Context) error {
		seen = StateFrom(ctx).Client
		return nil
	}}}
	e := New(&Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now, Client: client}, sink)
	at := time.Now().Add(-time.Second)
	row := &millracetype.JobRow{ID: 3, Kind: "k", Queue: "q", Attempt: 1, MaxAttempts: 2, ScheduledAt: at.Add(-time.Second), AttemptedAt: &at}
	e.Work(context.Background(), row)
	if seen != client {
		t.Errorf("the job context's client is %v, want the configured one", seen)
	}
	if len(sink.completed) != 1 || sink.completed[0].State != millracetype.JobStateCompleted || !sink.completed[0].Delete {
		t.Fatalf("completed %+v, want one ephemeral completion", sink.completed)
	}
	d, _ := sink.metas[0].(*Done)
	if d == nil || d.Kind != KindCompleted || d.Stats.QueueWaitDuration != time.Second || d.Stats.RunDuration <= 0 {
		t.Errorf("meta %+v", sink.metas[0])
	}

	sink.unit = nil
	e.Work(context.Background(), row)
	if s := sink.completed[1]; s.State != millracetype.JobStateAvailable || !s.AttemptDecrement {
		t.Errorf("unknown kind: %+v", s)
	}
	if d, _ := sink.metas[1].(*Done); d == nil || d.Kind != KindFailed {
		t.Errorf("unknown kind's meta %+v", sink.metas[1])
	}
}
