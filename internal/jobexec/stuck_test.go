package jobexec

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testlog"
	"github.com/millrace/millrace/millracetype"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSink reports one queue's load and accepts nothing else.
type fakeSink struct{}

func (fakeSink) QueueLoad(queue string) (int, int, bool) { return 2, 2, queue == "q" }

func (fakeSink) Complete(*driver.JobSetState, any) error { return errors.New("not here") }

func (fakeSink) Poke(string, time.Time) {}

func (fakeSink) KindHooks(string, Unit) (*WorkHooks, error) { return nil, nil }

func (fakeSink) KindMetricsHooks(string) *WorkHooks { return nil }

func (fakeSink) Unit(context.Context, *millracetype.JobRow) (Unit, bool, bool, error) {
	return nil, false, false, nil
}

// TestStuckWatch: a job that outlives its timeout plus the threshold is
// reported once, to the log (with the queue's load from the sink) and to
// the handler (a panicking one is recovered), and counted stuck until its
// watch ends; a job that returns in time is never reported.
func TestStuckWatch(t *testing.T) {
	t.Parallel()
	logs := &testlog.Buffer{}
	reports := make(chan *JobStuck, 2)
	e := New(&Config{Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: time.Now,
		StuckThreshold: 10 * time.Millisecond,
		StuckHandler: func(_ context.Context, s *JobStuck) {
			reports <- s
			panic("handler")
		}}, fakeSink{})
	row := &millracetype.JobRow{ID: 3, Kind: "k", Queue: "q"}

	var quick StuckWatch
	e.WatchStuck(&quick, context.Background(), row, time.Hour)
	e.EndStuckWatch(&quick, row, time.Hour)

	var w StuckWatch
	e.WatchStuck(&w, context.Background(), row, 10*time.Millisecond)
	s := <-reports
	if s.Job.ID != 3 || s.Job == row || s.Timeout != 10*time.Millisecond || s.Elapsed < 20*time.Millisecond || s.TotalStuck != 1 {
		t.Errorf("report %+v", s)
	}
	if n := e.StuckCount(); n != 1 {
		t.Errorf("stuck count %d while stuck, want 1", n)
	}
	e.EndStuckWatch(&w, row, 10*time.Millisecond)
	if n := e.StuckCount(); n != 0 {
		t.Errorf("stuck count %d after return, want 0", n)
	}
	out := logs.String()
	for _, want := range []string{"job is stuck", "running=2 max_workers=2", "JobStuckHandler panicked", "stuck job returned"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if len(reports) != 0 || strings.Count(out, "job is stuck") != 1 {
		t.Errorf("more than one report:\n%s", out)
	}
}
