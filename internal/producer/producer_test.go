package producer

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/notifier"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testlog"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// wrapExec lets a test watch and disturb the producer's queries.
type wrapExec struct {
	driver.Executor
	// fetch, when set, replaces JobGetAvailable (it may call the real one).
	fetch func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error)

	fetches   atomic.Int64
	queueGets atomic.Int64
}

func (w *wrapExec) JobGetAvailable(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
	w.fetches.Add(1)
	if w.fetch != nil {
		return w.fetch(ctx, p)
	}
	return w.Executor.JobGetAvailable(ctx, p)
}

func (w *wrapExec) QueueGet(ctx context.Context, p *driver.QueueGetParams) (*millracetype.Queue, error) {
	w.queueGets.Add(1)
	return w.Executor.QueueGet(ctx, p)
}

// complete records a job completed, as the client's work function would.
func complete(t *testing.T, db *testfixture.DB, job *millracetype.JobRow) {
	now := time.Now()
	if _, err := db.Exec().JobSetStateIfRunningMany(context.Background(), &driver.JobSetStateIfRunningManyParams{
		Schema: db.Schema, Jobs: []*driver.JobSetState{{ID: job.ID, State: millracetype.JobStateCompleted, FinalizedAt: &now}}}); err != nil {
		t.Errorf("complete job %d: %v", job.ID, err)
	}
}

// newProducer makes a producer on db's default queue with quick polling;
// cfg's zero fields get test defaults. It is stopped at cleanup.
func newProducer(t *testing.T, db *testfixture.DB, exec driver.Executor, cfg Config) *Producer {
	t.Helper()
	if exec == nil {
		exec = db.Exec()
	}
	if cfg.Queue == "" {
		cfg.Queue = "default"
	}
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = 5
	}
	if cfg.FetchPollInterval == 0 {
		cfg.FetchPollInterval = 50 * time.Millisecond
	}
	if cfg.FetchCooldown == 0 {
		cfg.FetchCooldown = 100 * time.Millisecond
	}
	cfg.Schema = db.Schema
	cfg.ClientID = "producer_test"
	if cfg.Work == nil {
		cfg.Work = func(ctx context.Context, job *millracetype.JobRow) { complete(t, db, job) }
	}
	p, err := New(exec, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func startProducer(t *testing.T, p *Producer) {
	t.Helper()
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func newNotifier(t *testing.T, db *testfixture.DB) *notifier.Notifier {
	t.Helper()
	n := notifier.New(func() (driver.Listener, error) { return db.Driver.GetListener(db.Schema) }, &notifier.Config{Schema: db.Schema})
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop) // registered before the producer's: stops after it
	return n
}

func notify(t *testing.T, db *testfixture.DB, topic string, payloads ...string) {
	t.Helper()
	if err := db.Exec().NotifyMany(context.Background(), &driver.NotifyManyParams{Schema: db.Schema, Topic: topic, Payloads: payloads}); err != nil {
		t.Fatal(err)
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	work := func(context.Context, *millracetype.JobRow) {}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxWorkers: 1, Work: work}, "queue name is empty"},
		{Config{Queue: "q", Work: work}, "MaxWorkers 0 must be at least 1"},
		{Config{Queue: "q", MaxWorkers: 1}, "Work is nil"},
		{Config{Queue: "q", MaxWorkers: 1, Work: work, FetchPollInterval: time.Second}, "FetchCooldown 0s and FetchPollInterval 1s must be positive"},
		{Config{Queue: "q", MaxWorkers: 1, Work: work, FetchCooldown: time.Millisecond}, "FetchCooldown 1ms and FetchPollInterval 0s must be positive"},
	} {
		if _, err := New(nil, &tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestMaxWorkers: jobs never run more than MaxWorkers at once, and each
// fetch asks for no more than the free slots.
func TestMaxWorkers(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const maxWorkers, n = 3, 20
	db.InsertJobs(t, n, "k", "default")
	exec := &wrapExec{Executor: db.Exec()}
	var maxAsked atomic.Int64
	exec.fetch = func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
		for {
			cur := maxAsked.Load()
			if int64(p.Max) <= cur || maxAsked.CompareAndSwap(cur, int64(p.Max)) {
				break
			}
		}
		return exec.Executor.JobGetAvailable(ctx, p)
	}
	var running, peak atomic.Int64
	started := make(chan int64, n)
	release := make(chan struct{})
	p := newProducer(t, db, exec, Config{MaxWorkers: maxWorkers, Work: func(ctx context.Context, job *millracetype.JobRow) {
		cur := running.Add(1)
		for {
			old := peak.Load()
			if cur <= old || peak.CompareAndSwap(old, cur) {
				break
			}
		}
		started <- job.ID
		<-release
		complete(t, db, job)
		running.Add(-1)
	}})
	startProducer(t, p)
	seen := map[int64]bool{}
	for i := range n {
		// Wait for the slots to fill (fewer at the end), then let one go.
		for len(seen) < min(i+maxWorkers, n) {
			seen[recv(t, started, "a job to start")] = true
		}
		if r := p.Running(); r > maxWorkers {
			t.Fatalf("producer reports %d running", r)
		}
		release <- struct{}{}
	}
	testwait.For(t, 10*time.Second, "all jobs completed", func() bool { return db.CountByState(t)[millracetype.JobStateCompleted] == n })
	if peak.Load() != maxWorkers {
		t.Errorf("peak concurrency %d, want %d", peak.Load(), maxWorkers)
	}
	if maxAsked.Load() > maxWorkers {
		t.Errorf("a fetch asked for %d jobs with %d workers", maxAsked.Load(), maxWorkers)
	}
}

// TestBusyQueueDrainsWithoutPolling: after a fetch that filled every slot,
// the producer fetches again as slots free up, without waiting for a poll
// or a notification.
func TestBusyQueueDrainsWithoutPolling(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const n = 12
	db.InsertJobs(t, n, "k", "default")
	p := newProducer(t, db, nil, Config{MaxWorkers: 2, FetchPollInterval: time.Hour})
	startProducer(t, p)
	testwait.For(t, 10*time.Second, "all jobs completed", func() bool { return db.CountByState(t)[millracetype.JobStateCompleted] == n })
}

// TestTrailingFetch: after an insert notification, the producer fetches
// again FetchCooldown later, catching a job inserted just after its first
// fetch (whose notification another client's debounce swallowed).
func TestTrailingFetch(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	exec := &wrapExec{Executor: db.Exec()}
	var late, returned atomic.Int64
	exec.fetch = func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
		jobs, err := exec.Executor.JobGetAvailable(ctx, p)
		defer returned.Add(1)
		if err == nil && len(jobs) > 0 && late.Load() == 0 {
			// Inserted after this fetch's snapshot, with no notification.
			res, err := db.Exec().JobInsertMany(ctx, &driver.JobInsertManyParams{Schema: db.Schema, Jobs: []*driver.JobInsertParams{{
				Args: []byte(`{}`), Kind: "k", MaxAttempts: 25, Priority: 1, Queue: "default", State: millracetype.JobStateAvailable}}})
			if err != nil {
				t.Errorf("insert the late job: %v", err) // not Fatal: this is the producer's goroutine
				return jobs, nil
			}
			late.Store(res[0].Job.ID)
		}
		return jobs, err
	}
	p := newProducer(t, db, exec, Config{FetchPollInterval: time.Hour, FetchCooldown: 20 * time.Millisecond})
	startProducer(t, p)
	// The start-up fetch finds nothing; the first job comes with a poke.
	testwait.For(t, 10*time.Second, "the start-up fetch", func() bool { return returned.Load() == 1 })
	first := db.InsertJobs(t, 1, "k", "default")[0]
	p.Poke()
	testwait.For(t, 10*time.Second, "both jobs completed", func() bool { return db.CountByState(t)[millracetype.JobStateCompleted] == 2 })
	if late.Load() == 0 || late.Load() == first.ID {
		t.Fatalf("late job %d", late.Load())
	}
	// Start-up, poke, and the trailing fetch that found the late job.
	if n := exec.fetches.Load(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
}

// TestStopDrains: Stop waits for running jobs and fetches nothing more.
func TestStopDrains(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const n = 4
	db.InsertJobs(t, n, "k", "default")
	started := make(chan struct{}, n)
	release := make(chan struct{})
	var finished atomic.Int64
	p := newProducer(t, db, nil, Config{MaxWorkers: n, Work: func(ctx context.Context, job *millracetype.JobRow) {
		started <- struct{}{}
		<-release
		complete(t, db, job)
		finished.Add(1)
	}})
	startProducer(t, p)
	for range n {
		recv(t, started, "jobs to start")
	}
	stopped := make(chan struct{})
	go func() {
		p.Stop()
		close(stopped)
	}()
	// More jobs arrive while it drains, and it is poked: none is fetched.
	more := db.InsertJobs(t, 3, "k", "default")
	p.Poke()
	select {
	case <-stopped:
		t.Fatal("Stop returned while jobs were running")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	recv(t, stopped, "Stop to return")
	if finished.Load() != n {
		t.Fatalf("Stop returned with %d of %d jobs finished", finished.Load(), n)
	}
	if r := p.Running(); r != 0 {
		t.Fatalf("%d running after Stop", r)
	}
	for _, j := range more {
		if job := db.Job(t, j.ID); job.State != millracetype.JobStateAvailable {
			t.Errorf("job inserted during drain went %s", job.State)
		}
	}
}

// TestStopDuringFetch: Stop while a fetch is in flight. The database may
// already have locked the rows when the stop arrives; the producer must
// not throw the fetched jobs away (they would stay running until rescued).
// The executor here commits the fetch whatever its context, then reports
// the context's end as the driver does when a cancel cuts the connection
// before the result is read.
func TestStopDuringFetch(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const n = 3
	db.InsertJobs(t, n, "k", "default")
	exec := &wrapExec{Executor: db.Exec()}
	entered := make(chan struct{})
	proceed := make(chan struct{})
	var once sync.Once
	exec.fetch = func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
		first := false
		once.Do(func() { first = true })
		if !first {
			return exec.Executor.JobGetAvailable(ctx, p)
		}
		close(entered)
		<-proceed
		jobs, err := exec.Executor.JobGetAvailable(context.WithoutCancel(ctx), p)
		if err != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return jobs, nil
	}
	var worked atomic.Int64
	p := newProducer(t, db, exec, Config{MaxWorkers: n, Work: func(ctx context.Context, job *millracetype.JobRow) {
		complete(t, db, job)
		worked.Add(1)
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	recv(t, entered, "the first fetch")
	cancel() // the producer's run context ends while its fetch runs
	close(proceed)
	<-p.Stopped()
	counts := db.CountByState(t)
	if counts[millracetype.JobStateRunning] != 0 {
		t.Fatalf("jobs left running after a stop during a fetch: %v", counts)
	}
	if counts[millracetype.JobStateCompleted]+counts[millracetype.JobStateAvailable] != n {
		t.Fatalf("states %v", counts)
	}
	if int(worked.Load()) != counts[millracetype.JobStateCompleted] {
		t.Fatalf("%d worked, %d completed", worked.Load(), counts[millracetype.JobStateCompleted])
	}
}

// TestCancelJob: CancelJob and a cancel notification cancel the job's
// context with ErrJobCancelledRemotely; other queues' cancels and unknown
// jobs are ignored.
func TestCancelJob(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	n := newNotifier(t, db)
	jobs := db.InsertJobs(t, 2, "k", "default")
	type running struct {
		id  int64
		ctx context.Context
	}
	started := make(chan running, 2)
	causes := make(chan error, 2)
	p := newProducer(t, db, nil, Config{Notifier: n, Work: func(ctx context.Context, job *millracetype.JobRow) {
		started <- running{job.ID, ctx}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		complete(t, db, job)
	}})
	startProducer(t, p)
	byID := map[int64]context.Context{}
	for range 2 {
		r := recv(t, started, "jobs to start")
		byID[r.id] = r.ctx
	}
	if p.CancelJob(999999) {
		t.Error("CancelJob of a job not running here reported true")
	}
	if !p.CancelJob(jobs[0].ID) {
		t.Error("CancelJob of a running job reported false")
	}
	if cause := recv(t, causes, "the cancelled job"); !errors.Is(cause, ErrJobCancelledRemotely) {
		t.Errorf("cause %v", cause)
	}

	// By notification: one for another queue (ignored), then ours.
	notify(t, db, driver.TopicControl,
		`{"action":"cancel","job_id":`+itoa(jobs[1].ID)+`,"queue":"elsewhere"}`,
		`{"action" : "cancel", "job_id" : `+itoa(jobs[1].ID)+`, "queue" : "default"}`)
	if cause := recv(t, causes, "the job cancelled by notification"); !errors.Is(cause, ErrJobCancelledRemotely) {
		t.Errorf("cause %v", cause)
	}
	testwait.For(t, 10*time.Second, "jobs completed", func() bool { return db.CountByState(t)[millracetype.JobStateCompleted] == 2 })
	// The slots free up once the work functions have returned.
	testwait.For(t, 10*time.Second, "no job running", func() bool { return p.Running() == 0 })
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// pauseRecorder records OnPaused calls.
type pauseRecorder struct {
	mu    sync.Mutex
	calls []bool
}

func (r *pauseRecorder) on(paused bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, paused)
}

func (r *pauseRecorder) get() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// TestPausedAtStart: a queue paused before the producer starts is never
// fetched from, until it is resumed (seen here by polling the queue row,
// without notifications).
func TestPausedAtStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	if _, err := db.Exec().QueueCreateOrSetUpdatedAt(ctx, &driver.QueueCreateParams{Schema: db.Schema, Name: "default"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Exec().QueuePause(ctx, &driver.QueuePauseParams{Schema: db.Schema, Name: "default"}); err != nil {
		t.Fatal(err)
	}
	job := db.InsertJobs(t, 1, "k", "default")[0]
	exec := &wrapExec{Executor: db.Exec()}
	rec := &pauseRecorder{}
	p := newProducer(t, db, exec, Config{ControlPollInterval: 10 * time.Millisecond, FetchPollInterval: 10 * time.Millisecond,
		OnPaused: rec.on})
	startProducer(t, p)
	if !p.Paused() {
		t.Fatal("producer of a paused queue does not report paused")
	}
	p.Poke()
	// Several rounds of the loop (each reads the queue row) go by.
	testwait.For(t, 10*time.Second, "the queue row to be read 5 times", func() bool { return exec.queueGets.Load() >= 5 })
	if f := exec.fetches.Load(); f != 0 {
		t.Fatalf("%d fetches from a paused queue", f)
	}
	if err := db.Exec().QueueResume(ctx, &driver.QueuePauseParams{Schema: db.Schema, Name: "default"}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the job to complete", func() bool { return db.Job(t, job.ID).State == millracetype.JobStateCompleted })
	if got := rec.get(); !slices.Equal(got, []bool{true, false}) {
		t.Errorf("OnPaused calls %v, want [true false]", got)
	}
}

// TestMalformedNotifications: payloads that do not parse, or that name
// another queue or an unknown action, change nothing; the next valid one
// still works.
func TestMalformedNotifications(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	n := newNotifier(t, db)
	logs := &testlog.Buffer{}
	job := db.InsertJobs(t, 1, "k", "default")[0]
	jobCtx := make(chan context.Context, 1)
	release := make(chan struct{})
	rec := &pauseRecorder{}
	p := newProducer(t, db, nil, Config{Notifier: n, OnPaused: rec.on,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Work: func(ctx context.Context, job *millracetype.JobRow) {
			jobCtx <- ctx
			<-release
			complete(t, db, job)
		}})
	startProducer(t, p)
	ctx := recv(t, jobCtx, "the job to start")

	notify(t, db, driver.TopicInsert, `not json`, `{"queue": 5}`, `[]`, `{"queue": "other"}`)
	notify(t, db, driver.TopicControl,
		`{`,
		`{"action": "cancel", "job_id": "`+itoa(job.ID)+`", "queue": "default"}`, // job_id not a number
		`{"action": "cancel", "job_id": `+itoa(job.ID)+`, "queue": "*"}`,         // cancels name their own queue
		`{"action": "cancel", "job_id": `+itoa(job.ID)+`}`,
		`{"action": "pause"}`,
		`{"action": "pause", "queue": "other"}`,
		`{"action": "explode", "queue": "default"}`,
		`null`,
		`{"action": "pause", "queue": "default"}`,
	)
	// Notifications are handled in order: once the valid pause is applied,
	// every payload before it has been handled.
	testwait.For(t, 10*time.Second, "the valid pause", p.Paused)
	if err := ctx.Err(); err != nil {
		t.Errorf("a malformed or foreign notification cancelled the job: %v", context.Cause(ctx))
	}
	if got := rec.get(); !slices.Equal(got, []bool{true}) {
		t.Errorf("OnPaused calls %v", got)
	}
	if got := strings.Count(logs.String(), "malformed"); got != 5 {
		t.Errorf("%d malformed-notification warnings, want 5:\n%s", got, logs.String())
	}
	notify(t, db, driver.TopicControl, `{"action":"resume","queue":"*"}`)
	testwait.For(t, 10*time.Second, "the resume", func() bool { return !p.Paused() })
	close(release)
	// The producer still fetches on notifications.
	next := db.InsertJobs(t, 1, "k", "default")[0]
	notify(t, db, driver.TopicInsert, `{"queue": "default"}`)
	testwait.For(t, 10*time.Second, "the next job", func() bool { return db.Job(t, next.ID).State == millracetype.JobStateCompleted })
}

// TestFetchErrorBackoff: failed fetches are retried with a growing wait and
// the producer recovers, without relying on the poll.
func TestFetchErrorBackoff(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	job := db.InsertJobs(t, 1, "k", "default")[0]
	exec := &wrapExec{Executor: db.Exec()}
	var mu sync.Mutex
	var calls []time.Time
	exec.fetch = func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
		mu.Lock()
		calls = append(calls, time.Now())
		n := len(calls)
		mu.Unlock()
		if n <= 4 {
			return nil, errors.New("database on fire (test)")
		}
		return exec.Executor.JobGetAvailable(ctx, p)
	}
	logs := &testlog.Buffer{}
	p := newProducer(t, db, exec, Config{FetchPollInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	startProducer(t, p)
	testwait.For(t, 10*time.Second, "the job to complete", func() bool { return db.Job(t, job.ID).State == millracetype.JobStateCompleted })
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 5 {
		t.Fatalf("%d fetches", len(calls))
	}
	// Waits of 20, 40, 80 and 160 ms at least.
	for i := 1; i <= 4; i++ {
		want := time.Duration(10<<i) * time.Millisecond
		if gap := calls[i].Sub(calls[i-1]); gap < want {
			t.Errorf("retry %d after %s, want at least %s", i, gap, want)
		}
	}
	if got := strings.Count(logs.String(), "fetch failed"); got != 4 {
		t.Errorf("%d fetch-failed warnings, want 4", got)
	}
}

// TestFetchBackoffCappedByPollInterval: the retry wait never exceeds the
// poll interval.
func TestFetchBackoffCappedByPollInterval(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	exec := &wrapExec{Executor: db.Exec()}
	exec.fetch = func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
		return nil, errors.New("down (test)")
	}
	p := newProducer(t, db, exec, Config{FetchPollInterval: 5 * time.Millisecond})
	startProducer(t, p)
	// Uncapped, 11 retries would take 20+40+...+10240 ms (about 20 s).
	begin := time.Now()
	testwait.For(t, 10*time.Second, "11 fetch attempts", func() bool { return exec.fetches.Load() >= 12 })
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("11 retries took %s", took)
	}
}

// TestPollControlCancels: without notifications, a job cancelled in the
// database (metadata cancel_attempted_at) is cancelled by the periodic read.
func TestPollControlCancels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	job := db.InsertJobs(t, 1, "k", "default")[0]
	started := make(chan struct{})
	cause := make(chan error, 1)
	p := newProducer(t, db, nil, Config{ControlPollInterval: 10 * time.Millisecond, Work: func(ctx context.Context, job *millracetype.JobRow) {
		close(started)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		complete(t, db, job)
	}})
	startProducer(t, p)
	recv(t, started, "the job to start")
	if _, err := db.Exec().JobCancel(ctx, &driver.JobCancelParams{Schema: db.Schema, ID: job.ID, CancelAttemptedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, cause, "the cancel"); !errors.Is(err, ErrJobCancelledRemotely) {
		t.Errorf("cause %v", err)
	}
}

// TestPollControlRegistersDeletedQueue: a queue row deleted while the
// producer runs (the queue cleaner) is registered again.
func TestPollControlRegistersDeletedQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	p := newProducer(t, db, nil, Config{ControlPollInterval: 10 * time.Millisecond})
	startProducer(t, p)
	if err := db.Exec().Exec(ctx, `DELETE FROM `+db.Schema+`.river_queue`); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the queue row to come back", func() bool {
		_, err := db.Exec().QueueGet(ctx, &driver.QueueGetParams{Schema: db.Schema, Name: "default"})
		return err == nil
	})
}

// TestWorkCtxCancelsJobs: cancelling WorkCtx interrupts running jobs with
// its cause.
func TestWorkCtxCancelsJobs(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	db.InsertJobs(t, 2, "k", "default")
	workCtx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stopCause := errors.New("stopping (test)")
	started := make(chan struct{}, 2)
	causes := make(chan error, 2)
	p := newProducer(t, db, nil, Config{WorkCtx: workCtx, Work: func(ctx context.Context, job *millracetype.JobRow) {
		started <- struct{}{}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		complete(t, db, job)
	}})
	startProducer(t, p)
	recv(t, started, "job 1")
	recv(t, started, "job 2")
	cancel(stopCause)
	for range 2 {
		if err := recv(t, causes, "a cancelled job"); !errors.Is(err, stopCause) {
			t.Errorf("cause %v", err)
		}
	}
	p.Stop()
}

// TestFetchesOverlap: while a draining fetch is slow, slots freed
// meanwhile wait for it (a draining queue fetches one batch at a time),
// but a fetch asked for runs beside it at once (never more than two in
// flight, and never more jobs than MaxWorkers running or asked for).
func TestFetchesOverlap(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const maxWorkers, n = 4, 12
	db.InsertJobs(t, n, "k", "default")
	exec := &wrapExec{Executor: db.Exec()}
	var calls, inFlight, peakInFlight atomic.Int64
	// asked[i] is how many jobs fetch i+1 asked for (the free slots the
	// producer counted then, which depends on how far it has counted the
	// finished jobs).
	var asked [3]atomic.Int64
	unblock := make(chan struct{})
	exec.fetch = func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			old := peakInFlight.Load()
			if cur <= old || peakInFlight.CompareAndSwap(old, cur) {
				break
			}
		}
		call := calls.Add(1)
		if call <= int64(len(asked)) {
			asked[call-1].Store(int64(p.Max))
		}
		if call == 2 {
			<-unblock // the second fetch is slow
		}
		return exec.Executor.JobGetAvailable(ctx, p)
	}
	var running, peak atomic.Int64
	release := make(chan struct{}, n)
	failed := make(chan struct{}) // closed at cleanup: the jobs still waiting return
	p := newProducer(t, db, exec, Config{MaxWorkers: maxWorkers, FetchPollInterval: time.Hour,
		Work: func(ctx context.Context, job *millracetype.JobRow) {
			cur := running.Add(1)
			for {
				old := peak.Load()
				if cur <= old || peak.CompareAndSwap(old, cur) {
					break
				}
			}
			select {
			case <-release:
				complete(t, db, job)
			case <-failed:
			}
			running.Add(-1)
		}})
	// The slow fetch and the jobs still waiting return before the
	// producer's stop at cleanup, also when the test fails.
	var unblockOnce sync.Once
	letGo := func() { unblockOnce.Do(func() { close(unblock) }) }
	t.Cleanup(func() {
		letGo()
		close(failed)
	})
	startProducer(t, p)
	testwait.For(t, 10*time.Second, "the first fetch's jobs", func() bool { return running.Load() == maxWorkers })
	// Two jobs finish: the second fetch asks for their slots and hangs.
	// (It asks for 1 when the drain timer fires before the producer has
	// counted the second job finished, else for 2.)
	release <- struct{}{}
	release <- struct{}{}
	testwait.For(t, 10*time.Second, "the second fetch", func() bool { return inFlight.Load() == 1 && calls.Load() == 2 })
	if a := asked[1].Load(); a < 1 || a > 2 {
		t.Fatalf("the second fetch asked for %d jobs with 2 slots free; want 1 or 2", a)
	}
	// Two more finish while it hangs: the queue drains one fetch at a
	// time, so no draining fetch joins it, even past the cooldown. (The
	// producer's own count, not only the workers': a job is done for the
	// producer once its worker has handed it back.)
	release <- struct{}{}
	release <- struct{}{}
	testwait.For(t, 10*time.Second, "the first fetch's jobs done", func() bool { return running.Load() == 0 && p.Running() == 0 })
	time.Sleep(3 * p.cfg.FetchCooldown)
	if got := calls.Load(); got != 2 {
		t.Fatalf("%d fetches while the draining one hung; want it alone", got)
	}
	// A fetch asked for (an insert notification) runs beside it, for
	// every slot the slow one has not reserved.
	p.Poke()
	testwait.For(t, 10*time.Second, "a fetch asked for beside the slow one", func() bool { return calls.Load() >= 3 })
	want := maxWorkers - asked[1].Load()
	if a := asked[2].Load(); a != want {
		t.Fatalf("the fetch asked for beside the slow one asked for %d jobs; want %d (%d workers idle, %d slots reserved)",
			a, want, maxWorkers, asked[1].Load())
	}
	testwait.For(t, 10*time.Second, "its jobs", func() bool { return running.Load() == want })
	letGo()
	for range n - 4 {
		release <- struct{}{}
	}
	testwait.For(t, 10*time.Second, "all jobs completed", func() bool { return db.CountByState(t)[millracetype.JobStateCompleted] == n })
	if got := peakInFlight.Load(); got != 2 {
		t.Errorf("at most %d fetches ran at once, want 2", got)
	}
	if got := peak.Load(); got > maxWorkers {
		t.Errorf("%d jobs ran at once with %d workers", got, maxWorkers)
	}
}

// TestDrainContinuesAfterCursor: a draining queue's fetches continue after
// the last job taken, scanning from the front on the first fetch and at
// least every fetchesBetweenFullScans+1 fetches; a job inserted ahead of the
// cursor meanwhile is still worked without a poll or a notification.
func TestDrainContinuesAfterCursor(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const n = 120
	db.InsertJobs(t, n, "k", "default")
	exec := &wrapExec{Executor: db.Exec()}
	var mu sync.Mutex
	var afters []*driver.JobFetchKey
	var early *millracetype.JobRow
	fetches := 0
	exec.fetch = func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
		mu.Lock()
		if fetches++; fetches == 3 {
			// Ahead of every cursor: due long ago.
			past := time.Now().Add(-time.Hour)
			early = db.InsertJob(t, &driver.JobInsertFullParams{Kind: "k", Queue: "default", ScheduledAt: &past})
		}
		mu.Unlock()
		return exec.Executor.JobGetAvailable(ctx, p)
	}
	p := newProducer(t, db, exec, Config{MaxWorkers: 4, FetchPollInterval: time.Hour})
	// The requests in the order the loop makes them (two fetchers may call
	// the database in the other order).
	p.onFetchRequest = func(req fetchRequest) {
		mu.Lock()
		afters = append(afters, req.after)
		mu.Unlock()
	}
	startProducer(t, p)
	testwait.For(t, 10*time.Second, "all jobs completed", func() bool { return db.CountByState(t)[millracetype.JobStateCompleted] == n+1 })
	mu.Lock()
	defer mu.Unlock()
	if early == nil || db.Job(t, early.ID).State != millracetype.JobStateCompleted {
		t.Fatal("the job inserted ahead of the cursor was not worked")
	}
	if afters[0] != nil {
		t.Error("the first fetch continued after a cursor")
	}
	continued, run := 0, 0
	for i, a := range afters {
		if a == nil {
			run = 0
			continue
		}
		continued++
		if run++; run > fetchesBetweenFullScans {
			t.Errorf("fetch %d: %d continued fetches in a row", i, run)
		}
	}
	if continued == 0 {
		t.Errorf("no fetch continued after a cursor in %d fetches", len(afters))
	}
}

// TestPauseWaitsForFetchInFlight: a pause that arrives while a fetch runs
// takes effect (and is reported) once that fetch is back, and from then on
// nothing is fetched, even with jobs inserted and polls due.
func TestPauseWaitsForFetchInFlight(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	exec := &wrapExec{Executor: db.Exec()}
	var calls atomic.Int64
	entered := make(chan struct{}, 1)
	unblock := make(chan struct{})
	exec.fetch = func(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
		if calls.Add(1) == 2 {
			entered <- struct{}{}
			<-unblock // the second fetch (a poll's) is slow
		}
		return exec.Executor.JobGetAvailable(ctx, p)
	}
	pausedAt := make(chan int64, 1)
	p := newProducer(t, db, exec, Config{FetchPollInterval: 20 * time.Millisecond, OnPaused: func(paused bool) {
		if paused {
			pausedAt <- calls.Load()
		}
	}})
	var once sync.Once
	release := func() { once.Do(func() { close(unblock) }) }
	t.Cleanup(release) // before the producer's Stop, should the test fail first
	startProducer(t, p)
	recv(t, entered, "the slow fetch")
	p.SetPaused(true)
	select {
	case <-pausedAt:
		t.Fatal("paused while a fetch was still running")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	n := recv(t, pausedAt, "the pause")
	job := db.InsertJobs(t, 1, "k", "default")[0]
	for range 10 { // several poll intervals
		time.Sleep(20 * time.Millisecond)
		if got := calls.Load(); got != n {
			t.Fatalf("%d fetches after the pause took effect", got-n)
		}
	}
	if st := db.Job(t, job.ID).State; st != millracetype.JobStateAvailable {
		t.Fatalf("job in the paused queue is %s", st)
	}
}

// TestDrainFetchesInBatches: while a queue drains, a slot or two freeing
// up does not make a fetch of their own until FetchCooldown has passed,
// and half of MaxWorkers freeing up makes one at once, asking for them
// all.
func TestDrainFetchesInBatches(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const maxWorkers, n = 10, 40
	db.InsertJobs(t, n, "k", "default")
	release := make(chan struct{}, n)
	reqs := make(chan fetchRequest, 100)
	p := newProducer(t, db, nil, Config{MaxWorkers: maxWorkers, FetchPollInterval: time.Hour, FetchCooldown: time.Hour,
		Work: func(ctx context.Context, job *millracetype.JobRow) {
			<-release
			complete(t, db, job)
		}})
	p.onFetchRequest = func(req fetchRequest) { reqs <- req }
	startProducer(t, p)
	if req := recv(t, reqs, "the first fetch"); req.limit != maxWorkers {
		t.Fatalf("first fetch asked for %d, want %d", req.limit, maxWorkers)
	}
	testwait.For(t, 10*time.Second, "every slot busy", func() bool { return p.Running() == maxWorkers })
	// Four slots free (less than half): no fetch, the cooldown being an hour.
	for range 4 {
		release <- struct{}{}
	}
	testwait.For(t, 10*time.Second, "four jobs done", func() bool { return p.Running() == maxWorkers-4 })
	select {
	case req := <-reqs:
		t.Fatalf("fetched %d with 4 of %d slots free before the cooldown", req.limit, maxWorkers)
	case <-time.After(100 * time.Millisecond):
	}
	// The fifth makes half: one fetch for all five.
	release <- struct{}{}
	if req := recv(t, reqs, "the fetch at half the slots"); req.limit != maxWorkers/2 {
		t.Fatalf("fetch asked for %d, want %d", req.limit, maxWorkers/2)
	}
	for range n {
		release <- struct{}{}
	}
	testwait.For(t, 10*time.Second, "all jobs completed", func() bool { return db.CountByState(t)[millracetype.JobStateCompleted] == n })
}

// TestDrainRefillsSlotAfterCooldown: a draining queue whose jobs are slow
// refills a single freed slot FetchCooldown later, without a poll or a
// notification.
func TestDrainRefillsSlotAfterCooldown(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const maxWorkers, n = 10, 30
	db.InsertJobs(t, n, "k", "default")
	release := make(chan struct{}, n)
	reqs := make(chan fetchRequest, 100)
	p := newProducer(t, db, nil, Config{MaxWorkers: maxWorkers, FetchPollInterval: time.Hour, FetchCooldown: 20 * time.Millisecond,
		Work: func(ctx context.Context, job *millracetype.JobRow) {
			<-release
			complete(t, db, job)
		}})
	p.onFetchRequest = func(req fetchRequest) { reqs <- req }
	startProducer(t, p)
	recv(t, reqs, "the first fetch")
	testwait.For(t, 10*time.Second, "every slot busy", func() bool { return p.Running() == maxWorkers })
	release <- struct{}{}
	if req := recv(t, reqs, "the fetch for one freed slot"); req.limit != 1 {
		t.Fatalf("fetch asked for %d, want 1", req.limit)
	}
	testwait.For(t, 10*time.Second, "the freed slot refilled", func() bool { return p.Running() == maxWorkers })
	for range n {
		release <- struct{}{}
	}
	testwait.For(t, 10*time.Second, "all jobs completed", func() bool { return db.CountByState(t)[millracetype.JobStateCompleted] == n })
}

// TestNoFetchOnceWorkCtxEnds: once the work context has ended (the client's
// StopAndCancel cancels it before it stops the producers), the producer
// fetches nothing more. An interrupted job goes back to available at once;
// fetched again, it would run again with a context already cancelled, and
// the same job ID running twice made drain miscount the running jobs and
// leave a worker behind (TestMetricsHook's StopAndCancel under load).
func TestNoFetchOnceWorkCtxEnds(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	db.InsertJobs(t, 1, "k", "default")
	workCtx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var runs atomic.Int64
	started := make(chan struct{}, 100)
	returned := make(chan struct{}, 100)
	// One worker: while the job runs no fetch can be in flight, so none
	// can have been asked for before the cancel and find the job
	// available after it.
	p := newProducer(t, db, nil, Config{WorkCtx: workCtx, MaxWorkers: 1, FetchPollInterval: 5 * time.Millisecond,
		Work: func(ctx context.Context, job *millracetype.JobRow) {
			runs.Add(1)
			started <- struct{}{}
			<-ctx.Done()
			// Interrupted: back to available, as the client's outcome for
			// a job cancelled by StopAndCancel is.
			now := time.Now()
			if _, err := db.Exec().JobSetStateIfRunningMany(context.Background(), &driver.JobSetStateIfRunningManyParams{
				Schema: db.Schema, Jobs: []*driver.JobSetState{{ID: job.ID, State: millracetype.JobStateAvailable,
					ScheduledAt: &now, AttemptDecrement: true, Attempt: job.Attempt}}}); err != nil {
				t.Errorf("interrupt job %d: %v", job.ID, err)
			}
			returned <- struct{}{}
		}})
	startProducer(t, p)
	recv(t, started, "the job")
	cancel(errors.New("stop and cancel (test)"))
	recv(t, returned, "the interrupted job")
	// Many poll intervals with the job available and the producer still
	// running: it must not be fetched again.
	time.Sleep(300 * time.Millisecond)
	p.Stop()
	if n := runs.Load(); n != 1 {
		t.Errorf("the job ran %d times, want 1 (fetched again after the work context ended)", n)
	}
}
