package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
	"github.com/millrace/millrace/startstop"
)

// The client's lifecycle on the startstop contract: partial start-ups
// rolled back, Stopped, concurrent and bounded Stops, SoftStopTimeout, and
// the client composed with other services through startstop.

// ourGoroutines returns the stacks of the goroutines running millrace code
// other than tests (a client's services, their timers' functions), so a
// test can check that a client left nothing behind without counting the
// pool's or the test framework's goroutines.
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var ours []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/millrace/millrace/") && !strings.Contains(g, "testing.") {
			ours = append(ours, g)
		}
	}
	return ours
}

// requireNoGoroutinesLeft fails the test if millrace goroutines are still
// running once those that are ending have had up to 5 s to end.
func requireNoGoroutinesLeft(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := ourGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d millrace goroutines left:\n%s", what, len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOurGoroutinesSeesAClient checks the checker: a running client's
// goroutines are found, and are gone once it has stopped.
func TestOurGoroutinesSeesAClient(t *testing.T) {
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: gateWorkers(nil, nil)})
	start(t, c)
	if n := len(ourGoroutines()); n == 0 {
		t.Fatal("no millrace goroutine found while a client runs: the leak check cannot see leaks")
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	requireNoGoroutinesLeft(t, "after Stop")
}

// faultDriver wraps the test database's driver to fail chosen parts of a
// client's start-up and to count the listener connections left open.
type faultDriver struct {
	driver.Driver[pgx.Tx]
	// failListener makes the notifier's connection fail.
	failListener atomic.Bool
	// failQueue makes registering this queue fail (its producer's Start),
	// once waitBeforeFail (if set) returns.
	failQueue      string
	waitBeforeFail func(ctx context.Context)
	openListeners  atomic.Int64
}

var errInjected = errors.New("injected start-up failure (test)")

func (d *faultDriver) GetExecutor() driver.Executor {
	return &faultExec{Executor: d.Driver.GetExecutor(), d: d}
}

func (d *faultDriver) GetListener(schema string) (driver.Listener, error) {
	if d.failListener.Load() {
		return nil, fmt.Errorf("listener: %w", errInjected)
	}
	l, err := d.Driver.GetListener(schema)
	if err != nil {
		return nil, err
	}
	return &countingListener{Listener: l, open: &d.openListeners}, nil
}

type faultExec struct {
	driver.Executor
	d *faultDriver
}

func (e *faultExec) QueueCreateOrSetUpdatedAt(ctx context.Context, p *driver.QueueCreateParams) (*millracetype.Queue, error) {
	if p.Name == e.d.failQueue {
		if e.d.waitBeforeFail != nil {
			e.d.waitBeforeFail(ctx)
		}
		return nil, fmt.Errorf("register queue %s: %w", p.Name, errInjected)
	}
	return e.Executor.QueueCreateOrSetUpdatedAt(ctx, p)
}

// countingListener counts connections opened and not yet closed.
type countingListener struct {
	driver.Listener
	open   *atomic.Int64
	closed atomic.Bool
	opened atomic.Bool
}

func (l *countingListener) Connect(ctx context.Context) error {
	if err := l.Listener.Connect(ctx); err != nil {
		return err
	}
	if l.opened.CompareAndSwap(false, true) {
		l.open.Add(1)
	}
	return nil
}

func (l *countingListener) Close(ctx context.Context) error {
	if l.opened.Load() && l.closed.CompareAndSwap(false, true) {
		l.open.Add(-1)
	}
	return l.Listener.Close(ctx)
}

// leaderOf returns the leader row's client ID, or "" when nobody leads.
func leaderOf(t *testing.T, db *testfixture.DB) string {
	t.Helper()
	var id string
	err := db.Pool.QueryRow(context.Background(), "SELECT leader_id FROM river_leader").Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestStartFailureRollsBackEachService fails each service of a client's
// start-up that can fail: the notifier (its connection), and a producer
// started after the completer, notifier, maintainer and elector (which has
// become leader by then) and after another producer. Each time Start
// returns the error, Started and Stopped taken before Start are released,
// nothing is left behind (no millrace goroutine, no listener connection, no
// leader row, no job taken), and the next Start works. The completer,
// maintainer and elector cannot fail under the client: their Start only
// launches goroutines (the elector fails only on an ended context, and the
// client starts it with one that has not ended).
//
// Not parallel: it counts every millrace goroutine in the process.
func TestStartFailureRollsBackEachService(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(d *faultDriver, db *testfixture.DB, id string)
	}{
		{"notifier", func(d *faultDriver, _ *testfixture.DB, _ string) { d.failListener.Store(true) }},
		{"second producer, after the elector took leadership", func(d *faultDriver, db *testfixture.DB, id string) {
			d.failQueue = "zz_second"
			d.waitBeforeFail = func(context.Context) {
				deadline := time.Now().Add(10 * time.Second)
				for leaderOf(t, db) != id && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			db := testfixture.New(t)
			drv := &faultDriver{Driver: db.Driver}
			var worked atomic.Int64
			workers := NewWorkers()
			AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
				worked.Add(1)
				return nil
			}))
			c := newClientOn(t, drv, db.Schema, &Config{ID: "rollback_" + strings.Fields(tc.name)[0], Workers: workers,
				Queues: map[string]QueueConfig{QueueDefault: {MaxWorkers: 2}, "zz_second": {MaxWorkers: 2}}})
			c.config.leaderTTL, c.config.electInterval = 5*time.Second, 10*time.Millisecond
			tc.setup(drv, db, c.ID())
			// Jobs in the queue whose producer starts first: in the
			// second case it may be working them when the rollback comes.
			params := make([]InsertManyParams, 50)
			for i := range params {
				params[i] = InsertManyParams{Args: noopArgs{N: i}}
			}
			if _, err := c.InsertMany(ctx, params); err != nil {
				t.Fatal(err)
			}
			res, err := c.Insert(ctx, noopArgs{}, &InsertOpts{Queue: "zz_second"})
			if err != nil {
				t.Fatal(err)
			}
			started, stopped := c.Started(), c.Stopped()
			err = c.Start(ctx)
			if !errors.Is(err, errInjected) {
				t.Fatalf("Start returned %v, want the injected failure", err)
			}
			requireClosedCh(t, started, "Started taken before a failed Start")
			requireClosedCh(t, stopped, "Stopped taken before a failed Start")
			requireNoGoroutinesLeft(t, "after the failed Start")
			if n := drv.openListeners.Load(); n != 0 {
				t.Fatalf("%d listener connections left open after the failed Start", n)
			}
			if l := leaderOf(t, db); l != "" {
				t.Fatalf("leader row of %q left after the failed Start", l)
			}
			// Whatever the producers took is written (completed) or back to
			// available: nothing is left running.
			counts := db.CountByState(t)
			if counts[millracetype.JobStateRunning] != 0 || int64(counts[millracetype.JobStateCompleted]) != worked.Load() {
				t.Fatalf("after the failed Start: %v, %d worked", counts, worked.Load())
			}
			if job := db.Job(t, res.Job.ID); job.State != millracetype.JobStateAvailable {
				t.Fatalf("after the failed Start: job of the failed queue %s", job.State)
			}
			t.Logf("%d jobs worked before the rollback", worked.Load())
			// Stop after a failed Start is a no-op; the client starts again.
			if err := c.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			drv.failListener.Store(false)
			drv.failQueue = ""
			start(t, c)
			waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
			if err := c.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			requireNoGoroutinesLeft(t, "after Stop")
			if n := drv.openListeners.Load(); n != 0 {
				t.Fatalf("%d listener connections left open after Stop", n)
			}
		})
	}
}

// requireClosedCh fails unless ch closes within 10 s.
func requireClosedCh(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not closed after 10 s", what)
	}
}

// requireOpenCh fails if ch is closed now.
func requireOpenCh(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: closed, want open", what)
	default:
	}
}

// TestStoppedChannel: Stopped taken before Start, while running and during
// Stop is one channel, closed only once the client has stopped with every
// outcome written; taken after Stop it is the next run's.
func TestStoppedChannel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	release := make(chan struct{})
	running := make(chan struct{}, 1)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		running <- struct{}{}
		<-release
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, JobTimeout: -1})
	before := c.Stopped()
	start(t, c)
	requireClosedCh(t, c.Started(), "Started after Start")
	res, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, running, "the job running")
	during := c.Stopped()
	if during != before {
		t.Fatal("Stopped while running is not the channel taken before Start")
	}
	stopErr := make(chan error, 1)
	go func() { stopErr <- c.Stop(ctx) }()
	// The stop is under way (the producers no longer fetch) but the job
	// runs: the channel stays open.
	testwait.For(t, 10*time.Second, "the stop to begin", func() bool { return c.workCtxOf() != nil && c.stoppingNow() })
	if c.Stopped() != before {
		t.Fatal("Stopped during Stop is not the run's channel")
	}
	requireOpenCh(t, before, "Stopped while a job still runs")
	close(release)
	requireClosedCh(t, before, "Stopped after the job returned")
	// Closed means every outcome is written.
	if job := db.Job(t, res.Job.ID); job.State != millracetype.JobStateCompleted {
		t.Fatalf("job %s when Stopped closed", job.State)
	}
	if err := <-stopErr; err != nil {
		t.Fatal(err)
	}
	after := c.Stopped()
	requireOpenCh(t, after, "Stopped taken after Stop (the next run's)")
	start(t, c)
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	requireClosedCh(t, after, "the channel taken after the first Stop, after the second")
}

// stoppingNow reports whether a Stop holds the lifecycle lock (tests).
func (c *Client[TTx]) stoppingNow() bool {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	return c.stopping
}

// workCtxOf returns the current run's work context (tests).
func (c *Client[TTx]) workCtxOf() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.workCtx
}

// TestConcurrentStopsHonourTheirContexts: while a Stop without a deadline
// waits for a job that ignores its context, a second Stop returns at its
// own deadline (it does not queue behind the first one's lock), Stop of a
// never-started client and a third Stop do no harm, and StopAndCancel cuts
// the first Stop short for jobs that honour their context.
func TestConcurrentStopsHonourTheirContexts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	idle, err := New(db.Driver, &Config{Schema: db.Schema, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Stop(ctx); err != nil {
		t.Fatalf("Stop of a client never started: %v", err)
	}
	if err := idle.StopAndCancel(ctx); err != nil {
		t.Fatalf("StopAndCancel of a client never started: %v", err)
	}

	ignore := make(chan struct{})
	var releaseOnce sync.Once
	releaseIgnoring := func() { releaseOnce.Do(func() { close(ignore) }) }
	// A failing test must not leave the job holding the cleanup's stop.
	t.Cleanup(releaseIgnoring)
	running := make(chan struct{}, 2)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		running <- struct{}{}
		if job.Args.N == 1 {
			<-ignore // ignores its context
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers, JobTimeout: -1})
	start(t, c)
	ignoring, err := c.Insert(ctx, noopArgs{N: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	honouring, err := c.Insert(ctx, noopArgs{N: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, running, "first job running")
	recv(t, running, "second job running")

	first := make(chan error, 1)
	go func() { first <- c.Stop(ctx) }()
	testwait.For(t, 10*time.Second, "the first Stop to hold the lifecycle", c.stoppingNow)

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	second := make(chan error, 1)
	go func() { second <- c.Stop(short) }()
	select {
	case err := <-second:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second Stop with a deadline returned %v", err)
		}
	case <-time.After(5 * time.Second):
		releaseIgnoring() // lets both Stops end, so the test ends
		t.Fatalf("second Stop with a 100 ms deadline still waits after %s", time.Since(begin))
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Fatalf("second Stop with a 100 ms deadline took %s", took)
	}
	select {
	case err := <-first:
		t.Fatalf("first Stop returned (%v) while a job still runs", err)
	default:
	}

	// StopAndCancel during the first Stop interrupts the job that honours
	// its context; the other still holds the stop.
	cancelDone := make(chan error, 1)
	go func() { cancelDone <- c.StopAndCancel(ctx) }()
	// The interrupted job's outcome is written while the other job still
	// holds the stops.
	waitState(t, db, honouring.Job.ID, millracetype.JobStateAvailable)
	select {
	case err := <-first:
		t.Fatalf("first Stop returned (%v) while a job still runs", err)
	case err := <-cancelDone:
		t.Fatalf("StopAndCancel returned (%v) while a job still runs", err)
	default:
	}
	releaseIgnoring()
	for _, ch := range []chan error{first, cancelDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a Stop did not return after the jobs ended")
		}
	}
	if job := db.Job(t, honouring.Job.ID); job.State != millracetype.JobStateAvailable || job.Attempt != 0 {
		t.Fatalf("interrupted job: %s, attempt %d", job.State, job.Attempt)
	}
	if job := db.Job(t, ignoring.Job.ID); job.State != millracetype.JobStateCompleted {
		t.Fatalf("job that ignored the cancel: %s", job.State)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop after stopped: %v", err)
	}
}

// TestSoftStopTimeout: a job that finishes within SoftStopTimeout completes;
// one still running then is interrupted: it goes back to available without
// using an attempt, with an interrupted event carrying the written row, and
// Stop waits for its outcome.
func TestSoftStopTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	const soft = 300 * time.Millisecond
	quickDone := make(chan struct{})
	running := make(chan struct{}, 2)
	var causes sync.Map
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		running <- struct{}{}
		if job.Args.N == 1 {
			<-ctx.Done() // a stopping client ends it (the soft timeout)
			causes.Store(job.ID, context.Cause(ctx))
			return ctx.Err()
		}
		<-quickDone // released right after Stop begins
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("quick job's context ended: %w", err)
		}
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers, JobTimeout: -1, SoftStopTimeout: soft})
	events, unsubscribe := c.Subscribe(EventKindJobInterrupted, EventKindJobCompleted, EventKindJobFailed)
	defer unsubscribe()
	start(t, c)
	slow, err := c.Insert(ctx, noopArgs{N: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	quick, err := c.Insert(ctx, noopArgs{N: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, running, "first job running")
	recv(t, running, "second job running")
	begin := time.Now()
	stopErr := make(chan error, 1)
	// Bounded, so that a soft timeout that does not fire fails the test
	// rather than hanging it.
	bounded, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go func() { stopErr <- c.Stop(bounded) }()
	testwait.For(t, 10*time.Second, "the stop to begin", c.stoppingNow)
	close(quickDone)
	if err := <-stopErr; err != nil {
		t.Fatalf("Stop with a soft timeout of %s: %v", soft, err)
	}
	took := time.Since(begin)
	if took < soft {
		t.Fatalf("Stop returned after %s, before the soft timeout of %s", took, soft)
	}
	if job := db.Job(t, quick.Job.ID); job.State != millracetype.JobStateCompleted {
		t.Fatalf("job that finished within the soft timeout: %s (errors %v)", job.State, job.Errors)
	}
	job := db.Job(t, slow.Job.ID)
	if job.State != millracetype.JobStateAvailable || job.Attempt != 0 || len(job.Errors) != 0 {
		t.Fatalf("interrupted job: %s, attempt %d, errors %v", job.State, job.Attempt, job.Errors)
	}
	if cause, _ := causes.Load(slow.Job.ID); cause != errSoftStopTimeout {
		t.Fatalf("interrupted job's context cause: %v", cause)
	}
	got := map[int64]EventKind{}
	for range 2 {
		ev := waitEvent(t, events)
		got[ev.Job.ID] = ev.Kind
		if ev.Kind == EventKindJobInterrupted && (ev.Job.State != millracetype.JobStateAvailable || ev.Job.Attempt != 0) {
			t.Fatalf("interrupted event's row: %s, attempt %d", ev.Job.State, ev.Job.Attempt)
		}
	}
	if got[slow.Job.ID] != EventKindJobInterrupted || got[quick.Job.ID] != EventKindJobCompleted {
		t.Fatalf("events: %v", got)
	}
}

// TestSoftStopTimeoutWaitsForIgnoringJob: a job that ignores its context
// keeps Stop waiting past the soft timeout until it returns (outcomes are
// never dropped), and its outcome is recorded as it returned.
func TestSoftStopTimeoutWaitsForIgnoringJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	release := make(chan struct{})
	running := make(chan struct{}, 1)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		running <- struct{}{}
		<-release
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, JobTimeout: -1,
		SoftStopTimeout: 50 * time.Millisecond})
	start(t, c)
	res, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, running, "the job running")
	stopped := c.Stopped()
	stopErr := make(chan error, 1)
	go func() { stopErr <- c.Stop(ctx) }()
	// Wait until the soft timeout has cancelled the job's context.
	testwait.For(t, 10*time.Second, "the soft timeout to cancel the work", func() bool {
		wc := c.workCtxOf()
		return wc != nil && context.Cause(wc) == errSoftStopTimeout
	})
	requireOpenCh(t, stopped, "Stopped while a job ignoring its cancelled context runs")
	close(release)
	if err := <-stopErr; err != nil {
		t.Fatal(err)
	}
	if job := db.Job(t, res.Job.ID); job.State != millracetype.JobStateCompleted {
		t.Fatalf("job %s", job.State)
	}
}

// failingService fails its Start.
type failingService struct{ startstop.BaseStartStop }

func (s *failingService) Start(ctx context.Context) error {
	_, shouldStart, _, stopped := s.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	s.StartFailed(stopped)
	return errInjected
}

// TestAsServiceInStartAll: a client composed with other services through
// startstop. When a service after it fails to start, StartAll stops the
// client again: nothing is left running. Composed with services that
// start, StartAll, WaitAllStarted and StopAllParallel run it like any
// service, and StopAllParallel returns once its outcomes are written.
//
// Not parallel: it counts every millrace goroutine in the process.
func TestAsServiceInStartAll(t *testing.T) {
	ctx := context.Background()
	db := testfixture.New(t)
	drv := &faultDriver{Driver: db.Driver}
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil }))
	c := newClientOn(t, drv, db.Schema, &Config{Queues: oneQueue(2), Workers: workers})
	c.config.leaderTTL, c.config.electInterval = 5*time.Second, 10*time.Millisecond
	svc := c.AsService()
	var _ startstop.Service = svc

	stopped := c.Stopped()
	if err := startstop.StartAll(ctx, svc, &failingService{}); !errors.Is(err, errInjected) {
		t.Fatalf("StartAll with a failing service: %v", err)
	}
	requireClosedCh(t, stopped, "client's Stopped after StartAll rolled back")
	requireNoGoroutinesLeft(t, "after StartAll rolled the client back")
	if n := drv.openListeners.Load(); n != 0 {
		t.Fatalf("%d listener connections left open", n)
	}
	if l := leaderOf(t, db); l != "" {
		t.Fatalf("leader row of %q left after the rollback", l)
	}

	other := startstop.StartStopFunc(func(ctx context.Context, shouldStart bool, started, stopped func()) error {
		if !shouldStart {
			return nil
		}
		go func() {
			defer stopped()
			started()
			<-ctx.Done()
		}()
		return nil
	})
	if err := startstop.StartAll(ctx, other, svc); err != nil {
		t.Fatal(err)
	}
	startstop.WaitAllStarted(other, svc)
	res, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
	stopped = c.Stopped()
	startstop.StopAllParallel(other, svc)
	requireClosedCh(t, stopped, "client's Stopped after StopAllParallel")
	requireNoGoroutinesLeft(t, "after StopAllParallel")
}
