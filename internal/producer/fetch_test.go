package producer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// recordingFetch passes every request to DefaultFetch and keeps a copy.
type recordingFetch struct {
	mu   sync.Mutex
	reqs []FetchRequest
}

func (r *recordingFetch) Fetch(ctx context.Context, exec driver.Executor, req *FetchRequest) (FetchResult, error) {
	r.mu.Lock()
	c := *req
	c.Kinds = slices.Clone(req.Kinds)
	r.reqs = append(r.reqs, c)
	r.mu.Unlock()
	return DefaultFetch{}.Fetch(ctx, exec, req)
}

// TestFetchStrategyGetsTheRequest: the producer fetches through
// Config.Fetch, asking for its queue, kinds, client ID and free slots.
func TestFetchStrategyGetsTheRequest(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	db.InsertJobs(t, 2, "k", "default")
	db.InsertJobs(t, 1, "other", "default")
	strategy := &recordingFetch{}
	p := newProducer(t, db, nil, Config{MaxWorkers: 3, Kinds: []string{"k"}, Fetch: strategy, FetchPollInterval: time.Hour})
	startProducer(t, p)
	testwait.For(t, 10*time.Second, "the jobs of kind k completed", func() bool { return db.CountByState(t)[millracetype.JobStateCompleted] == 2 })

	strategy.mu.Lock()
	defer strategy.mu.Unlock()
	want := FetchRequest{Schema: db.Schema, Queue: "default", ClientID: "producer_test", Kinds: []string{"k"}, Max: 3}
	if len(strategy.reqs) == 0 {
		t.Fatal("the strategy was never asked")
	}
	got := strategy.reqs[0]
	if got.Schema != want.Schema || got.Queue != want.Queue || got.ClientID != want.ClientID ||
		!slices.Equal(got.Kinds, want.Kinds) || got.Max != want.Max || got.After != nil {
		t.Fatalf("first request %+v, want %+v", got, want)
	}
	if n := db.CountByState(t)[millracetype.JobStateAvailable]; n != 1 {
		t.Fatalf("%d jobs available, want the one of another kind", n)
	}
}

// concurrencyLimit is the decorator the package doc describes: at most
// limit of its jobs run at once.
type concurrencyLimit struct {
	inner FetchStrategy
	limit int
	calls atomic.Int64

	mu   sync.Mutex
	held int // handed out and not yet finished
}

func (c *concurrencyLimit) Fetch(ctx context.Context, exec driver.Executor, req *FetchRequest) (FetchResult, error) {
	c.calls.Add(1)
	c.mu.Lock()
	room := c.limit - c.held
	ask := min(req.Max, room)
	c.held += max(ask, 0) // reserved while the inner fetch runs
	c.mu.Unlock()
	limited := ask < req.Max
	if ask <= 0 {
		return FetchResult{Limited: true}, nil
	}
	req.Max = ask // the producer fills req in afresh for its next fetch
	res, err := c.inner.Fetch(ctx, exec, req)
	c.mu.Lock()
	c.held -= ask - len(res.Jobs) // give back what was not taken
	c.mu.Unlock()
	res.Limited = res.Limited || limited
	return res, err
}

func (c *concurrencyLimit) JobFinished(*millracetype.JobRow) {
	c.mu.Lock()
	c.held--
	c.mu.Unlock()
}

// TestConcurrencyLimitStrategy: a concurrency limit plugs in as a
// strategy. With 5 workers but a limit of 2, at most 2 jobs run at once,
// and the queue still drains without polls or notifications: a fetch held
// back by the limit is made again when a job finishes, not in a busy loop.
func TestConcurrencyLimitStrategy(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const jobs = 7
	db.InsertJobs(t, jobs, "k", "default")
	limit := &concurrencyLimit{inner: DefaultFetch{}, limit: 2}
	var running, most atomic.Int64
	p := newProducer(t, db, nil, Config{MaxWorkers: 5, Fetch: limit, FetchPollInterval: time.Hour,
		Work: func(ctx context.Context, job *millracetype.JobRow) {
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(10 * time.Millisecond) // some work, so jobs overlap
			complete(t, db, job)
			running.Add(-1)
		}})
	startProducer(t, p)
	testwait.For(t, 10*time.Second, "every job completed", func() bool { return db.CountByState(t)[millracetype.JobStateCompleted] == jobs })
	if m := most.Load(); m > 2 {
		t.Errorf("%d jobs ran at once, over the limit of 2", m)
	}
	// One fetch per finished job at most, plus the start-up fetch and a
	// final empty one.
	if n := limit.calls.Load(); n > jobs+2 {
		t.Errorf("the strategy was asked %d times for %d jobs", n, jobs)
	}
}

// hintFetch holds every job back for its first calls, asking to be asked
// again after next (a rate limit with no tokens yet), then fetches.
type hintFetch struct {
	holdFor int64
	next    time.Duration
	calls   atomic.Int64
}

func (h *hintFetch) Fetch(ctx context.Context, exec driver.Executor, req *FetchRequest) (FetchResult, error) {
	if h.calls.Add(1) <= h.holdFor {
		return FetchResult{Limited: true, NextFetch: h.next}, nil
	}
	return DefaultFetch{}.Fetch(ctx, exec, req)
}

// TestFetchHint: a strategy's NextFetch brings the next fetch, with polls
// an hour apart and no notifications.
func TestFetchHint(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	job := db.InsertJobs(t, 1, "k", "default")[0]
	strategy := &hintFetch{holdFor: 2, next: 20 * time.Millisecond}
	p := newProducer(t, db, nil, Config{Fetch: strategy, FetchPollInterval: time.Hour})
	startProducer(t, p)
	testwait.For(t, 10*time.Second, "the job completed", func() bool { return db.Job(t, job.ID).State == millracetype.JobStateCompleted })
	if n := strategy.calls.Load(); n != 3 {
		t.Errorf("the strategy was asked %d times, want 3 (two held back, then the job)", n)
	}
}

// stubExec returns the same jobs from every fetch.
type stubExec struct {
	driver.Executor
	jobs []*millracetype.JobRow
}

func (s *stubExec) JobGetAvailable(context.Context, *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
	return s.jobs, nil
}

// TestDefaultFetchAllocations: going through the strategy costs the
// default fetch nothing per job, and nothing per fetch beyond the driver's
// parameters (which the producer allocated before strategies too).
func TestDefaultFetchAllocations(t *testing.T) {
	exec := &stubExec{jobs: make([]*millracetype.JobRow, 100)}
	req := &FetchRequest{Schema: "s", Queue: "q", ClientID: "c", Max: 100}
	var strategy FetchStrategy = DefaultFetch{}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		res, err := strategy.Fetch(ctx, exec, req)
		if err != nil || len(res.Jobs) != 100 {
			t.Fatalf("fetch: %d jobs, %v", len(res.Jobs), err)
		}
	})
	if allocs > 1 {
		t.Fatalf("%v allocations per fetch, want at most 1 (the driver's parameters)", allocs)
	}
}

// failingAfterAnswer fetches with DefaultFetch inside a transaction and
// then fails, as a fetch whose connection died after its answer arrived:
// with commit set its transaction committed, else it rolled back.
type failingAfterAnswer struct {
	commit bool
	once   atomic.Bool
}

var errAfterAnswer = errors.New("test: the connection died after the fetch's answer")

func (f *failingAfterAnswer) Fetch(ctx context.Context, exec driver.Executor, req *FetchRequest) (FetchResult, error) {
	if f.once.Swap(true) {
		return FetchResult{}, nil // later fetches find nothing (and do not take the rolled-back jobs)
	}
	tx, err := exec.Begin(ctx)
	if err != nil {
		return FetchResult{}, err
	}
	res, err := DefaultFetch{}.Fetch(ctx, tx, req)
	if err != nil {
		_ = tx.Rollback(ctx)
		return res, err
	}
	if f.commit {
		err = tx.Commit(ctx)
	} else {
		err = tx.Rollback(ctx)
	}
	if err != nil {
		return res, err
	}
	return res, errAfterAnswer
}

// TestFailedFetchJobsConfirmed: the jobs of a fetch that failed after its
// answer arrived start only if the fetch committed; those of one that
// rolled back stay available (another fetch may take them), never run
// here on a lock the database does not hold.
func TestFailedFetchJobsConfirmed(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("committed=%v", commit), func(t *testing.T) {
			t.Parallel()
			db := testfixture.New(t)
			jobs := db.InsertJobs(t, 3, "k", "default")
			var ran atomic.Int64
			p := newProducer(t, db, nil, Config{MaxWorkers: 5, Fetch: &failingAfterAnswer{commit: commit}, FetchPollInterval: 20 * time.Millisecond,
				Work: func(ctx context.Context, job *millracetype.JobRow) { ran.Add(1); complete(t, db, job) }})
			startProducer(t, p)
			if commit {
				testwait.For(t, 10*time.Second, "the committed fetch's jobs completed", func() bool {
					return db.CountByState(t)[millracetype.JobStateCompleted] == len(jobs)
				})
				return
			}
			// The rolled-back fetch's jobs: never started. Several fetch
			// cycles pass (the strategy answers nothing after the first).
			time.Sleep(20 * 20 * time.Millisecond) // the absence of a start can only be waited for
			if n := ran.Load(); n != 0 {
				t.Fatalf("%d jobs of a rolled-back fetch ran", n)
			}
			if n := db.CountByState(t)[millracetype.JobStateAvailable]; n != len(jobs) {
				t.Fatalf("%d jobs available, want all %d", n, len(jobs))
			}
		})
	}
}
