package producer

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// blockingWork is a work function whose jobs wait for release (those for
// which block says so), recording each start and its context's cause.
type blockingWork struct {
	t       *testing.T
	db      *testfixture.DB
	block   func(job *millracetype.JobRow) bool
	release chan struct{}
	once    sync.Once

	mu      sync.Mutex
	starts  map[int64]int
	causes  map[int64]error
	started atomic.Int64
}

func newBlockingWork(t *testing.T, db *testfixture.DB, block func(*millracetype.JobRow) bool) *blockingWork {
	w := &blockingWork{t: t, db: db, block: block, release: make(chan struct{}), starts: map[int64]int{}, causes: map[int64]error{}}
	return w
}

func (w *blockingWork) Release() { w.once.Do(func() { close(w.release) }) }

func (w *blockingWork) work(ctx context.Context, job *millracetype.JobRow) {
	w.mu.Lock()
	w.starts[job.ID]++
	w.causes[job.ID] = context.Cause(ctx)
	w.mu.Unlock()
	w.started.Add(1)
	if w.block == nil || w.block(job) {
		<-w.release
	}
	complete(w.t, w.db, job)
}

// checkOnce fails for a job started more than once.
func (w *blockingWork) checkOnce(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, n := range w.starts {
		if n > 1 {
			t.Errorf("job %d started %d times", id, n)
		}
	}
}

// requireReturned checks that a job is back in the queue as it was
// inserted: available, no attempt used, no client recorded.
func requireReturned(t *testing.T, job *millracetype.JobRow) {
	t.Helper()
	if job.State != millracetype.JobStateAvailable || job.Attempt != 0 || job.AttemptedAt != nil || len(job.AttemptedBy) != 0 {
		t.Errorf("job %d: state %s, attempt %d, attempted_at %v, attempted_by %v; want available as inserted",
			job.ID, job.State, job.Attempt, job.AttemptedAt, job.AttemptedBy)
	}
}

// jobsIn lists the jobs of db in a state.
func jobsIn(t *testing.T, db *testfixture.DB, ids []int64, state millracetype.JobState) []*millracetype.JobRow {
	t.Helper()
	var out []*millracetype.JobRow
	for _, id := range ids {
		if j := db.Job(t, id); j.State == state {
			out = append(out, j)
		}
	}
	return out
}

func ids(jobs []*millracetype.JobRow) []int64 {
	out := make([]int64, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

// bufferedProducer starts a producer of 2 workers and a buffer of up to
// 10 that believes its jobs run in a microsecond (so the buffer is full
// size from the first fetch), polling never; the fetch requests' sizes go
// to asked.
func bufferedProducer(t *testing.T, db *testfixture.DB, w *blockingWork, cfg Config, asked *[]int, mu *sync.Mutex, stale bool) *Producer {
	t.Helper()
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = 2
	}
	if cfg.FetchBuffer == 0 {
		cfg.FetchBuffer = 10
	}
	cfg.FetchPollInterval = time.Hour
	cfg.Work = w.work
	p := newProducer(t, db, nil, cfg)
	t.Cleanup(w.Release) // before the producer's Stop, should the test fail first
	p.meanRun = time.Microsecond
	if !stale {
		// Only TestFetchBufferStale sees stale returns: the others must
		// see their jobs returned by the stop or the pause.
		p.staleAfter = time.Hour
	}
	p.onFetchRequest = func(r fetchRequest) {
		mu.Lock()
		*asked = append(*asked, r.limit)
		mu.Unlock()
	}
	startProducer(t, p)
	return p
}

// fullBuffer starts bufferedProducer (2 workers, a buffer of 10) on 20
// jobs whose work blocks until released, and waits until 2 run and 10
// more are buffered.
func fullBuffer(t *testing.T) (*testfixture.DB, []int64, *blockingWork, *Producer, *[]int, *sync.Mutex) {
	t.Helper()
	db := testfixture.New(t)
	all := ids(db.InsertJobs(t, 20, "k", "default"))
	w := newBlockingWork(t, db, nil)
	mu := new(sync.Mutex)
	asked := new([]int)
	p := bufferedProducer(t, db, w, Config{}, asked, mu, false)
	testwait.For(t, 10*time.Second, "2 jobs started and 10 more fetched", func() bool {
		return w.started.Load() == 2 && len(jobsIn(t, db, all, millracetype.JobStateRunning)) == 12
	})
	return db, all, w, p, asked, mu
}

// TestFetchBufferReturnsOnStop: a producer with a buffer fetches beyond
// its workers; on Stop the buffered jobs that never started go back to
// available with no attempt used, and the started ones finish.
func TestFetchBufferReturnsOnStop(t *testing.T) {
	t.Parallel()
	db, all, w, p, asked, mu := fullBuffer(t)
	if got := p.Running(); got != 2 {
		t.Errorf("Running() = %d with 2 jobs started and 10 buffered; want 2", got)
	}
	mu.Lock()
	if len(*asked) == 0 || (*asked)[0] != 12 {
		t.Errorf("fetch requests %v: want the first for 12 (2 workers + a buffer of 10)", *asked)
	}
	mu.Unlock()

	stopped := make(chan struct{})
	go func() { p.Stop(); close(stopped) }()
	testwait.For(t, 10*time.Second, "the 10 buffered jobs back to available (18 with those never fetched)", func() bool {
		return len(jobsIn(t, db, all, millracetype.JobStateAvailable)) == 18
	})
	select {
	case <-stopped:
		t.Fatal("Stop returned while 2 jobs were still running")
	default:
	}
	w.Release()
	<-stopped
	for _, j := range jobsIn(t, db, all, millracetype.JobStateAvailable) {
		requireReturned(t, j)
	}
	if done := jobsIn(t, db, all, millracetype.JobStateCompleted); len(done) != 2 {
		t.Errorf("%d jobs completed; want the 2 started", len(done))
	}
	if n := w.started.Load(); n != 2 {
		t.Errorf("%d jobs started; want 2", n)
	}
}

// TestFetchBufferPauseAndCancel: a buffered job is running here (Runs,
// CancelJob); a pause of the queue returns the buffered jobs, that one
// too, and none starts while paused; after the resume every job runs
// once, at attempt 1. (A cancelled buffered job that starts is
// TestFetchBufferCancelBeforeStart's.)
func TestFetchBufferPauseAndCancel(t *testing.T) {
	t.Parallel()
	db, all, w, p, _, _ := fullBuffer(t)

	// A cancel of a buffered job: it is running here, and starts cancelled.
	w.mu.Lock()
	var cancelled int64
	for _, j := range jobsIn(t, db, all, millracetype.JobStateRunning) {
		if w.starts[j.ID] == 0 {
			cancelled = j.ID
			break
		}
	}
	w.mu.Unlock()
	if !p.Runs(cancelled) || !p.CancelJob(cancelled) {
		t.Fatalf("buffered job %d: Runs or CancelJob false", cancelled)
	}

	p.SetPaused(true)
	testwait.For(t, 10*time.Second, "the buffered jobs back to available", func() bool {
		return len(jobsIn(t, db, all, millracetype.JobStateAvailable)) == 18
	})
	w.Release()
	testwait.For(t, 10*time.Second, "the 2 started jobs completed", func() bool {
		return len(jobsIn(t, db, all, millracetype.JobStateCompleted)) == 2
	})
	if n := w.started.Load(); n != 2 {
		t.Fatalf("%d jobs started while paused; want the 2 started before", n)
	}
	for _, j := range jobsIn(t, db, all, millracetype.JobStateAvailable) {
		requireReturned(t, j)
	}
	if p.Runs(cancelled) {
		t.Errorf("job %d returned to the table but still running here", cancelled)
	}

	p.SetPaused(false)
	testwait.For(t, 10*time.Second, "every job completed", func() bool {
		return len(jobsIn(t, db, all, millracetype.JobStateCompleted)) == 20
	})
	w.checkOnce(t)
	for _, id := range all {
		if a := db.Job(t, id).Attempt; a != 1 {
			t.Errorf("job %d completed at attempt %d; want 1", id, a)
		}
	}
}

// TestFetchBufferCancelBeforeStart: a buffered job cancelled remotely
// starts with its context already cancelled (ErrJobCancelledRemotely).
func TestFetchBufferCancelBeforeStart(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	all := ids(db.InsertJobs(t, 6, "k", "default"))
	w := newBlockingWork(t, db, nil)
	var mu sync.Mutex
	var asked []int
	p := bufferedProducer(t, db, w, Config{MaxWorkers: 1, FetchBuffer: 5}, &asked, &mu, false)
	testwait.For(t, 10*time.Second, "1 job started and 5 more fetched", func() bool {
		return w.started.Load() == 1 && len(jobsIn(t, db, all, millracetype.JobStateRunning)) == 6
	})
	last := all[len(all)-1]
	if !p.CancelJob(last) {
		t.Fatalf("CancelJob(%d) of a buffered job: false", last)
	}
	w.Release()
	testwait.For(t, 10*time.Second, "every job worked", func() bool { return w.started.Load() == 6 })
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, cause := range w.causes {
		switch {
		case id == last && cause != ErrJobCancelledRemotely:
			t.Errorf("cancelled buffered job %d started with cause %v; want ErrJobCancelledRemotely", id, cause)
		case id != last && cause != nil:
			t.Errorf("job %d started with cause %v", id, cause)
		}
	}
}

// TestFetchBufferStale: buffered jobs waiting behind a job that runs much
// longer than the mean go back to the table after bufferMaxWait, while
// that job still runs; then the queue is worked without a buffer.
func TestFetchBufferStale(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	all := ids(db.InsertJobs(t, 10, "k", "default"))
	first := all[0]
	w := newBlockingWork(t, db, func(j *millracetype.JobRow) bool { return j.ID == first })
	var mu sync.Mutex
	var asked []int
	bufferedProducer(t, db, w, Config{MaxWorkers: 1, FetchBuffer: 5}, &asked, &mu, true)
	testwait.For(t, 10*time.Second, "1 job started and 5 more fetched", func() bool {
		return w.started.Load() == 1 && len(jobsIn(t, db, all, millracetype.JobStateRunning)) == 6
	})
	start := time.Now()
	testwait.For(t, 10*time.Second, "the buffered jobs back to available", func() bool {
		return len(jobsIn(t, db, all, millracetype.JobStateAvailable)) == 9
	})
	if waited := time.Since(start); waited < bufferMaxWait/2 {
		t.Errorf("buffered jobs returned after %v; want about %v", waited, bufferMaxWait)
	}
	if n := w.started.Load(); n != 1 {
		t.Errorf("%d jobs started while the first blocked its only worker", n)
	}
	for _, j := range jobsIn(t, db, all, millracetype.JobStateAvailable) {
		requireReturned(t, j)
	}
	w.Release()
	testwait.For(t, 10*time.Second, "every job completed", func() bool {
		return len(jobsIn(t, db, all, millracetype.JobStateCompleted)) == 10
	})
	w.checkOnce(t)
}

// TestFetchWantedWhileFull: a fetch asked for (here by a resume) while no
// slot is free, on a queue that is not draining (its last fetch came up
// short), goes out as soon as a job finishes: the workers wake the loop
// for it. The buffered jobs went back to the table as stale, turning
// buffering off, so the one running job fills the producer. (A Poke would
// not do: its trailing fetch FetchCooldown later wakes the loop anyway;
// polls of jobs and of the control state are an hour apart.)
func TestFetchWantedWhileFull(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	all := ids(db.InsertJobs(t, 4, "k", "default"))
	first := all[0]
	w := newBlockingWork(t, db, func(j *millracetype.JobRow) bool { return j.ID == first })
	var mu sync.Mutex
	var asked []int
	p := bufferedProducer(t, db, w, Config{MaxWorkers: 1, FetchBuffer: 5, ControlPollInterval: time.Hour}, &asked, &mu, true)
	testwait.For(t, 10*time.Second, "the 3 buffered jobs back to available", func() bool {
		return w.started.Load() == 1 && len(jobsIn(t, db, all, millracetype.JobStateAvailable)) == 3
	})
	p.SetPaused(false) // handled after the stale return: nothing is free
	w.Release()
	testwait.For(t, 10*time.Second, "every job completed", func() bool {
		return len(jobsIn(t, db, all, millracetype.JobStateCompleted)) == 4
	})
	w.checkOnce(t)
}

// noBuffer is DefaultFetch without BufferAllower.
type noBuffer struct{}

func (noBuffer) Fetch(ctx context.Context, exec driver.Executor, req *FetchRequest) (FetchResult, error) {
	return DefaultFetch{}.Fetch(ctx, exec, req)
}

// TestFetchBufferOnlyWhenAllowed: a strategy that does not allow a buffer
// (flow control) gets fetch requests of the free workers only.
func TestFetchBufferOnlyWhenAllowed(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	all := ids(db.InsertJobs(t, 20, "k", "default"))
	w := newBlockingWork(t, db, nil)
	var mu sync.Mutex
	var asked []int
	bufferedProducer(t, db, w, Config{Fetch: noBuffer{}}, &asked, &mu, false)
	testwait.For(t, 10*time.Second, "2 jobs started", func() bool { return w.started.Load() == 2 })
	w.Release()
	testwait.For(t, 10*time.Second, "every job completed", func() bool {
		return len(jobsIn(t, db, all, millracetype.JobStateCompleted)) == 20
	})
	mu.Lock()
	defer mu.Unlock()
	for _, n := range asked {
		if n > 2 {
			t.Fatalf("fetch requests %v: one beyond the 2 workers without a buffer allowed", asked)
		}
	}
}

// TestLimitFetchBufferAllowed: concurrency limits of the whole queue
// (which count buffered jobs as running) allow a fetch buffer; kind and
// partition limits do not, nor does a LimitFetch that has not read the
// limits yet.
func TestLimitFetchBufferAllowed(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	for _, tc := range []struct {
		name   string
		limits []millracetype.ConcurrencyLimit
		want   bool
	}{
		{"none", nil, true},
		{"global", []millracetype.ConcurrencyLimit{{Global: 10}}, true},
		{"local", []millracetype.ConcurrencyLimit{{Local: 5}}, true},
		{"kind", []millracetype.ConcurrencyLimit{{Kind: "k", Global: 3}}, false},
		{"partitions", []millracetype.ConcurrencyLimit{{PerPartition: 2, PartitionByKind: true}}, false},
	} {
		f := NewLimitFetch(db.Schema, "default", tc.limits)
		if f.BufferAllowed() {
			t.Errorf("%s: allowed before the limits were read", tc.name)
		}
		if _, err := f.Fetch(context.Background(), db.Exec(), &FetchRequest{Schema: db.Schema, Queue: "default",
			ClientID: "producer_test", Max: 1}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := f.BufferAllowed(); got != tc.want {
			t.Errorf("%s: BufferAllowed %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestWorkCtxEndedDuringFetch: when the work context has ended (as
// StopAndCancel ends it) while a fetch is in flight and then the producer
// stops, the jobs that fetch locked go back to the table as they were
// instead of starting only to be interrupted (which would use an
// attempt).
func TestWorkCtxEndedDuringFetch(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	all := ids(db.InsertJobs(t, 3, "k", "default"))
	exec := &wrapExec{Executor: db.Exec()}
	entered, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	exec.fetch = func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(entered)
			<-proceed
		}
		return exec.Executor.JobGetAvailable(ctx, p)
	}
	workCtx, endWork := context.WithCancel(context.Background())
	defer endWork()
	var worked atomic.Int64
	p := newProducer(t, db, exec, Config{MaxWorkers: 3, WorkCtx: workCtx, Work: func(ctx context.Context, job *millracetype.JobRow) {
		worked.Add(1)
		complete(t, db, job)
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	recv(t, entered, "the first fetch")
	endWork()
	cancel()
	close(proceed)
	<-p.Stopped()
	if n := worked.Load(); n != 0 {
		t.Errorf("%d jobs started after the work context ended", n)
	}
	for _, id := range all {
		requireReturned(t, db.Job(t, id))
	}
}
