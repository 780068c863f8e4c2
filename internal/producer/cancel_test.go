package producer

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// TestCancelBeforeBind: a cancel asked for before the job's context
// exists is applied, with its cause, when the context's cancel function
// is bound; the first cause wins; a cancel after binding goes straight
// through.
func TestCancelBeforeBind(t *testing.T) {
	t.Parallel()
	first, second := errors.New("first"), errors.New("second")
	var early Cancel
	early.Cancel(first)
	early.Cancel(second)
	ctx, cancel := context.WithCancelCause(context.Background())
	early.Bind(cancelFunc(cancel))
	if ctx.Err() == nil || context.Cause(ctx) != first {
		t.Errorf("after Bind: err %v, cause %v; want cancelled by the first cause", ctx.Err(), context.Cause(ctx))
	}

	var late Cancel
	ctx, cancel = context.WithCancelCause(context.Background())
	late.Bind(cancelFunc(cancel))
	if ctx.Err() != nil {
		t.Fatal("Bind cancelled a job nobody cancelled")
	}
	late.Cancel(second)
	if context.Cause(ctx) != second {
		t.Errorf("cause %v, want the cancel's", context.Cause(ctx))
	}
}

// TestWorkBound: with WorkBound, the work function makes the job's
// context below WorkCtx and binds its cancel function: CancelJob reaches
// it with ErrJobCancelledRemotely, and the slot frees once it returns.
func TestWorkBound(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	jobs := db.InsertJobs(t, 1, "k", "default")
	type marker struct{}
	workCtx := context.WithValue(context.Background(), marker{}, true)
	started := make(chan bool, 1)
	causes := make(chan error, 1)
	p := newProducer(t, db, nil, Config{WorkCtx: workCtx,
		WorkBound: func(parent context.Context, job *millracetype.JobRow, bind *Cancel) {
			ctx, cancel := context.WithCancelCause(parent)
			bind.Bind(cancelFunc(cancel))
			started <- ctx.Value(marker{}) == true
			<-ctx.Done()
			causes <- context.Cause(ctx)
			complete(t, db, job)
		}})
	startProducer(t, p)
	if !recv(t, started, "the job to start") {
		t.Error("the job's parent is not WorkCtx")
	}
	if !p.CancelJob(jobs[0].ID) {
		t.Fatal("CancelJob of a running job reported false")
	}
	if cause := recv(t, causes, "the cancelled job"); !errors.Is(cause, ErrJobCancelledRemotely) {
		t.Errorf("cause %v", cause)
	}
	testwait.For(t, 10*time.Second, "no job running", func() bool { return p.Running() == 0 })
}

// TestHandOffAllocs: handing a fetched job to a worker goroutine and
// recording it finished allocates nothing once the workers exist (the
// job's Cancel is reused; the job's context is the work function's).
func TestHandOffAllocs(t *testing.T) {
	p, err := New(nil, &Config{Queue: "q", MaxWorkers: 2, FetchCooldown: time.Second, FetchPollInterval: time.Second,
		WorkBound: func(context.Context, *millracetype.JobRow, *Cancel) {}})
	if err != nil {
		t.Fatal(err)
	}
	jobs := []*millracetype.JobRow{{ID: 1}}
	allocs := testing.AllocsPerRun(1000, func() {
		p.takeAll(jobs, true)
		for p.Running() > 0 { // the worker finishes it and waits for the next
			runtime.Gosched()
		}
	})
	close(p.work)
	p.workers.Wait()
	if allocs > 0 {
		t.Errorf("%.0f allocations per job handed off, want none", allocs)
	}
}
