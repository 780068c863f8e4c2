package startstop_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/millrace/millrace/startstop"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait in these tests so that a bug shows up as a
// failure rather than a hung test binary. It is never reached when the code
// is correct.
const waitTimeout = 10 * time.Second

// requireClosed fails the test unless ch is (or soon becomes) closed.
func requireClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	if ch == nil {
		t.Fatalf("%s: channel is nil", what)
	}
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("%s: channel not closed after %s", what, waitTimeout)
	}
}

// requireOpen fails the test if ch is closed right now.
func requireOpen(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	if ch == nil {
		t.Fatalf("%s: channel is nil", what)
	}
	select {
	case <-ch:
		t.Fatalf("%s: channel closed, want open", what)
	default:
	}
}

// runWithin runs fn in a goroutine and fails the test if it has not returned
// within waitTimeout (which would mean a deadlock).
func runWithin(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	requireClosed(t, done, what)
}

// testService is a service built the canonical way on BaseStartStop. Its run
// goroutine waits for its context to be done. It records what happened so
// tests can check it.
type testService struct {
	startstop.BaseStartStop

	// startErr, if set, makes Start fail after StartInit.
	startErr error
	// forgetStartFailed makes a failing Start call only stopped(), not
	// StartFailed, as a careless service author might.
	forgetStartFailed bool
	// gate, if non-nil, must be closed before the run goroutine calls
	// started().
	gate chan struct{}

	initCount  atomic.Int64 // StartInit calls that said shouldStart
	runCount   atomic.Int64 // run goroutines that have begun
	stopCalls  atomic.Int64 // calls to Stop (through the wrapper below)
	mu         sync.Mutex
	lastCtx    context.Context
	runExitErr atomic.Value // context.Cause seen by the last run goroutine
}

func (s *testService) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := s.StartInit(ctx)
	if !shouldStart {
		if started != nil || stopped != nil {
			panic("StartInit returned funcs with shouldStart false")
		}
		return nil
	}
	s.initCount.Add(1)
	s.mu.Lock()
	s.lastCtx = ctx
	s.mu.Unlock()

	if s.startErr != nil {
		if s.forgetStartFailed {
			stopped()
		} else {
			s.StartFailed(stopped)
		}
		return s.startErr
	}

	go func() {
		defer stopped()
		s.runCount.Add(1)
		if s.gate != nil {
			select {
			case <-s.gate:
			case <-ctx.Done():
				return
			}
		}
		started()
		<-ctx.Done()
		s.runExitErr.Store(context.Cause(ctx))
	}()
	return nil
}

func (s *testService) Stop() {
	s.stopCalls.Add(1)
	s.BaseStartStop.Stop()
}

func (s *testService) ctx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastCtx
}

var _ startstop.Service = (*testService)(nil)

func TestZeroValueStartStop(t *testing.T) {
	var s testService
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	requireClosed(t, s.Started(), "Started")
	stopped := s.Stopped()
	requireOpen(t, stopped, "Stopped while running")
	s.Stop()
	requireClosed(t, stopped, "Stopped after Stop")
}

func TestStartTwiceIsNoOp(t *testing.T) {
	s := &testService{}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("first Start: %v", err)
	}
	started := s.Started()
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if got := s.initCount.Load(); got != 1 {
		t.Fatalf("StartInit said shouldStart %d times, want 1", got)
	}
	if s.Started() != started {
		t.Fatal("second Start replaced the Started channel")
	}
	requireClosed(t, started, "Started")
	s.Stop()
	if got := s.runCount.Load(); got != 1 {
		t.Fatalf("%d run goroutines, want 1", got)
	}
}

func TestStopBeforeStart(t *testing.T) {
	s := &testService{}
	runWithin(t, "Stop before Start", s.Stop)
	runWithin(t, "second Stop before Start", s.Stop)

	// The service is still usable afterwards.
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	requireClosed(t, s.Started(), "Started")
	runWithin(t, "Stop", s.Stop)
}

func TestStopTwice(t *testing.T) {
	s := &testService{}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := s.Stopped()
	runWithin(t, "first Stop", s.Stop)
	requireClosed(t, stopped, "Stopped")
	runWithin(t, "second Stop", s.Stop)
}

func TestConcurrentStops(t *testing.T) {
	s := &testService{}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := s.Stopped()

	const n = 10
	var ready, wg sync.WaitGroup
	ready.Add(n)
	release := make(chan struct{})
	for range n {
		wg.Go(func() {
			ready.Done()
			<-release
			s.Stop()
			// Whichever Stop returns, the service must be stopped.
			select {
			case <-stopped:
			default:
				t.Error("a Stop returned before the service stopped")
			}
		})
	}
	ready.Wait()
	close(release)
	runWithin(t, "concurrent Stops", wg.Wait)
	if got := s.runCount.Load(); got != 1 {
		t.Fatalf("%d run goroutines, want 1", got)
	}
}

func TestRestartCyclesUseFreshChannels(t *testing.T) {
	s := &testService{}
	seenStarted := map[<-chan struct{}]bool{}
	seenStopped := map[<-chan struct{}]bool{}
	var ctxs []context.Context

	for cycle := range 5 {
		if err := s.Start(context.Background()); err != nil {
			t.Fatalf("cycle %d: Start: %v", cycle, err)
		}
		started, stopped := s.Started(), s.Stopped()
		if seenStarted[started] || seenStopped[stopped] {
			t.Fatalf("cycle %d: channel reused from an earlier cycle", cycle)
		}
		seenStarted[started], seenStopped[stopped] = true, true

		requireClosed(t, started, "Started")
		requireOpen(t, stopped, "Stopped while running")
		ctx := s.ctx()
		if ctx.Err() != nil {
			t.Fatalf("cycle %d: context already done while running", cycle)
		}
		ctxs = append(ctxs, ctx)

		s.Stop()
		requireClosed(t, stopped, "Stopped")

		// After Stop the service hands out channels for the next run.
		requireOpen(t, s.Started(), "Started after Stop")
		requireOpen(t, s.Stopped(), "Stopped after Stop")
	}
	if got := s.runCount.Load(); got != 5 {
		t.Fatalf("%d runs, want 5", got)
	}
	for i, ctx := range ctxs {
		if context.Cause(ctx) != startstop.ErrStop {
			t.Fatalf("cycle %d: cause %v, want ErrStop", i, context.Cause(ctx))
		}
	}
}

func TestChannelsTakenBeforeStartAreTheOnesThatClose(t *testing.T) {
	s := &testService{gate: make(chan struct{})}
	started := s.Started()
	stopped := s.Stopped()
	if s.Started() != started || s.Stopped() != stopped {
		t.Fatal("repeated calls before Start returned different channels")
	}
	if s.StoppedUnsafe() != stopped {
		t.Fatal("StoppedUnsafe does not return the pre-allocated Stopped channel")
	}

	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if s.Started() != started || s.Stopped() != stopped {
		t.Fatal("StartInit did not adopt the pre-allocated channels")
	}
	requireOpen(t, started, "Started before the run calls started()")
	close(s.gate)
	requireClosed(t, started, "Started")
	requireOpen(t, stopped, "Stopped while running")

	s.Stop()
	requireClosed(t, stopped, "Stopped")

	// The same holds for channels taken between runs.
	s.gate = nil
	started2, stopped2 := s.Started(), s.Stopped()
	if started2 == started || stopped2 == stopped {
		t.Fatal("channels from the finished run handed out for the next one")
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	requireClosed(t, started2, "Started of second run")
	s.Stop()
	requireClosed(t, stopped2, "Stopped of second run")
}

func TestStoppedUnsafeWithoutPreallocation(t *testing.T) {
	s := &testService{}
	if ch := s.StoppedUnsafe(); ch != nil {
		t.Fatal("StoppedUnsafe allocated a channel before Start")
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if s.StoppedUnsafe() != s.Stopped() {
		t.Fatal("StoppedUnsafe and Stopped disagree while running")
	}
	stopped := s.StoppedUnsafe()
	s.Stop()
	requireClosed(t, stopped, "StoppedUnsafe channel")
	if ch := s.StoppedUnsafe(); ch != nil {
		t.Fatal("StoppedUnsafe returned a channel after Stop reset the service")
	}
}

func TestStopWhileStartingReleasesStartedWaiters(t *testing.T) {
	// The run never reaches started(): Stop cancels it first.
	s := &testService{gate: make(chan struct{})}
	started := s.Started()
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	requireOpen(t, started, "Started before start-up finished")
	runWithin(t, "Stop during start-up", s.Stop)
	requireClosed(t, started, "Started after Stop during start-up")
}

func TestStartFailed(t *testing.T) {
	startErr := errors.New("start-up failed")
	s := &testService{startErr: startErr}
	started, stopped := s.Started(), s.Stopped()

	if err := s.Start(context.Background()); !errors.Is(err, startErr) {
		t.Fatalf("Start: got %v, want %v", err, startErr)
	}
	requireClosed(t, started, "Started after failed start")
	requireClosed(t, stopped, "Stopped after failed start")
	if cause := context.Cause(s.ctx()); cause != startstop.ErrStop {
		t.Fatalf("context cause after StartFailed: %v, want ErrStop", cause)
	}
	if s.StoppedUnsafe() != nil {
		t.Fatal("StartFailed did not reset the service")
	}
	runWithin(t, "Stop after failed start", s.Stop)

	// Restartable, with fresh channels.
	s.startErr = nil
	started2, stopped2 := s.Started(), s.Stopped()
	if started2 == started || stopped2 == stopped {
		t.Fatal("failed run's channels reused")
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start after failure: %v", err)
	}
	requireClosed(t, started2, "Started of second run")
	requireOpen(t, stopped2, "Stopped while running")
	s.Stop()
	requireClosed(t, stopped2, "Stopped of second run")
	if got := s.initCount.Load(); got != 2 {
		t.Fatalf("%d StartInits said start, want 2", got)
	}
}

func TestStartFailedWithNothingRunning(t *testing.T) {
	// Not a supported use, but it must not panic, and it must still call
	// stopped.
	var s startstop.BaseStartStop
	called := false
	s.StartFailed(func() { called = true })
	if !called {
		t.Fatal("StartFailed did not call stopped")
	}
	s.StartFailed(nil)
}

func TestStartFailedDuringStopDoesNotDeadlock(t *testing.T) {
	// A Stop that arrives while Start is still setting up cancels the
	// context; set-up then fails and calls StartFailed while Stop holds the
	// lifecycle lock and waits on the stopped channel.
	var s startstop.BaseStartStop
	setUpErr := errors.New("set-up cancelled")
	initDone := make(chan struct{})
	start := func() error {
		ctx, shouldStart, _, stopped := s.StartInit(context.Background())
		if !shouldStart {
			return nil
		}
		close(initDone)
		<-ctx.Done() // only Stop can cancel it
		s.StartFailed(stopped)
		return setUpErr
	}

	startErr := make(chan error, 1)
	go func() { startErr <- start() }()
	// Stop once StartInit has marked the service running.
	requireClosed(t, initDone, "StartInit")
	runWithin(t, "Stop during a failing Start", s.Stop)
	if err := <-startErr; !errors.Is(err, setUpErr) {
		t.Fatalf("start: got %v", err)
	}

	// And the service starts again.
	ctx, shouldStart, started, stopped := s.StartInit(context.Background())
	if !shouldStart {
		t.Fatal("service not restartable after StartFailed during Stop")
	}
	go func() {
		defer stopped()
		started()
		<-ctx.Done()
	}()
	requireClosed(t, s.Started(), "Started")
	s.Stop()
}

func TestStartFailedDuringCustomStopKeepsStoppedUnsafe(t *testing.T) {
	// StartFailed runs while a custom Stop holds the lock. The custom Stop
	// must still find the stopping run's (closed) channel through
	// StoppedUnsafe, even if someone asks for Stopped in between.
	var s startstop.BaseStartStop
	initDone, failedDone := make(chan struct{}), make(chan struct{})
	startErr := make(chan error, 1)
	go func() {
		ctx, shouldStart, _, stopped := s.StartInit(context.Background())
		if !shouldStart {
			startErr <- nil
			return
		}
		close(initDone)
		<-ctx.Done()
		s.StartFailed(stopped)
		close(failedDone)
		startErr <- errors.New("set-up cancelled")
	}()
	requireClosed(t, initDone, "StartInit")
	runStopped := s.StoppedUnsafe()

	runWithin(t, "custom Stop", func() {
		shouldStop, stopped, finalizeStop := s.StopInit()
		if !shouldStop {
			t.Error("StopInit said not to stop")
			return
		}
		<-failedDone
		if s.Stopped() != runStopped {
			t.Error("Stopped during the stop is not the stopping run's channel")
		}
		if ch := s.StoppedUnsafe(); ch != stopped || ch != runStopped {
			t.Error("StoppedUnsafe during the stop is not the stopping run's channel")
		}
		<-s.StoppedUnsafe()
		finalizeStop(true)
	})
	if err := <-startErr; err == nil {
		t.Fatal("start did not fail")
	}
	requireClosed(t, runStopped, "stopped channel")
	if s.StoppedUnsafe() != nil {
		t.Fatal("service not reset after the custom Stop")
	}
}

func TestStartFailureWithoutStartFailedSelfHeals(t *testing.T) {
	startErr := errors.New("start-up failed")
	s := &testService{startErr: startErr, forgetStartFailed: true}
	started, stopped := s.Started(), s.Stopped()

	if err := s.Start(context.Background()); !errors.Is(err, startErr) {
		t.Fatalf("Start: got %v, want %v", err, startErr)
	}
	requireClosed(t, started, "Started after failed start")
	requireClosed(t, stopped, "Stopped after failed start")
	failedCtx := s.ctx()
	if failedCtx.Err() != nil {
		t.Fatal("context cancelled although nobody cancelled it yet")
	}

	// The service is still marked running, but its run is over: the next
	// Start must notice, clean up and start afresh.
	s.startErr = nil
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start after self-healing: %v", err)
	}
	if got := s.initCount.Load(); got != 2 {
		t.Fatalf("%d StartInits said start, want 2 (no self-healing)", got)
	}
	if cause := context.Cause(failedCtx); cause != startstop.ErrStop {
		t.Fatalf("old run's context cause: %v, want ErrStop", cause)
	}
	newStarted, newStopped := s.Started(), s.Stopped()
	if newStarted == started || newStopped == stopped {
		t.Fatal("self-healed run reused the old channels")
	}
	requireClosed(t, newStarted, "Started of healed run")
	requireOpen(t, newStopped, "Stopped of healed run while running")
	s.Stop()
	requireClosed(t, newStopped, "Stopped of healed run")
}

func TestStopAfterFailureWithoutStartFailed(t *testing.T) {
	s := &testService{startErr: errors.New("boom"), forgetStartFailed: true}
	_ = s.Start(context.Background())
	// Marked running with an already-closed stopped channel: Stop must
	// clean up without waiting for anything.
	runWithin(t, "Stop of a half-failed service", s.Stop)
	if cause := context.Cause(s.ctx()); cause != startstop.ErrStop {
		t.Fatalf("cause: %v, want ErrStop", cause)
	}
	if s.StoppedUnsafe() != nil {
		t.Fatal("Stop did not reset the service")
	}
}

func TestRunGoroutineExitingOnItsOwnSelfHeals(t *testing.T) {
	// A run whose goroutine ends by itself (here: the parent context is
	// cancelled) leaves the service marked running with a closed stopped
	// channel; Start must start it again.
	s := &testService{}
	parent, cancelParent := context.WithCancelCause(context.Background())
	parentCause := errors.New("parent gone")
	stopped := s.Stopped()
	if err := s.Start(parent); err != nil {
		t.Fatalf("Start: %v", err)
	}
	cancelParent(parentCause)
	requireClosed(t, stopped, "Stopped after parent cancellation")
	if cause := context.Cause(s.ctx()); cause != parentCause {
		t.Fatalf("cause %v, want the parent's cause", cause)
	}

	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("restart: %v", err)
	}
	requireClosed(t, s.Started(), "Started after restart")
	if got := s.runCount.Load(); got != 2 {
		t.Fatalf("%d runs, want 2", got)
	}
	s.Stop()
}

func TestContextCauseIsErrStop(t *testing.T) {
	s := &testService{}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ctx := s.ctx()
	requireClosed(t, s.Started(), "Started")
	if ctx.Err() != nil {
		t.Fatal("context done before Stop")
	}
	s.Stop()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("ctx.Err() = %v, want context.Canceled", ctx.Err())
	}
	if cause := context.Cause(ctx); cause != startstop.ErrStop {
		t.Fatalf("context.Cause = %v, want ErrStop", cause)
	}
	if got, _ := s.runExitErr.Load().(error); got != startstop.ErrStop {
		t.Fatalf("run goroutine saw cause %v, want ErrStop", got)
	}
}

func TestStopInitWhenNotRunning(t *testing.T) {
	var s startstop.BaseStartStop
	shouldStop, stopped, finalizeStop := s.StopInit()
	if shouldStop || stopped != nil {
		t.Fatalf("StopInit on idle service: shouldStop=%v stopped=%v", shouldStop, stopped)
	}
	finalizeStop(true)
	finalizeStop(false)
	// The lock must not be held: a Stop and a Start still work.
	runWithin(t, "Stop after no-op StopInit", s.Stop)
	_, shouldStart, _, stopFn := s.StartInit(context.Background())
	if !shouldStart {
		t.Fatal("StartInit after no-op StopInit did not start")
	}
	stopFn()
	s.Stop()
}

// holdService's run goroutine ignores its context until release is closed,
// so a stop can be attempted and abandoned while it is still running.
type holdService struct {
	startstop.BaseStartStop
	release chan struct{}
	ctx     context.Context
	inits   atomic.Int64
}

func (s *holdService) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := s.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	s.ctx = ctx
	s.inits.Add(1)
	go func() {
		defer stopped()
		started()
		<-s.release
	}()
	return nil
}

func TestStopInitAbortedStopCanBeRetried(t *testing.T) {
	s := &holdService{release: make(chan struct{})}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := s.Stopped()

	shouldStop, stoppedCh, finalizeStop := s.StopInit()
	if !shouldStop {
		t.Fatal("StopInit on a running service said not to stop")
	}
	if stoppedCh != stopped {
		t.Fatal("StopInit returned a different stopped channel")
	}
	if context.Cause(s.ctx) != startstop.ErrStop {
		t.Fatal("StopInit did not cancel the context with ErrStop")
	}
	// While the lock is held the channel accessors still answer.
	runWithin(t, "Stopped during StopInit", func() {
		if s.Stopped() != stopped || s.StoppedUnsafe() != stopped {
			t.Error("accessors returned another channel during a stop")
		}
		_ = s.Started()
	})
	// Give up: the run has not stopped.
	requireOpen(t, stoppedCh, "stopped channel")
	finalizeStop(false)
	finalizeStop(true) // ignored: finalizeStop only counts once

	// Still running: Start is a no-op, and StopInit says to stop again.
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start after aborted stop: %v", err)
	}
	if s.Stopped() != stopped {
		t.Fatal("aborted stop reset the service")
	}
	shouldStop, stoppedCh, finalizeStop = s.StopInit()
	if !shouldStop || stoppedCh != stopped {
		t.Fatal("second StopInit after abort did not see the running service")
	}
	finalizeStop(false)

	// Now let the run finish and try a full Stop.
	close(s.release)
	runWithin(t, "Stop after aborted stop", s.Stop)
	requireClosed(t, stopped, "Stopped")
	if s.StoppedUnsafe() != nil {
		t.Fatal("service not reset after successful Stop")
	}
}

func TestStopInitBlocksStartAndStopUntilFinalized(t *testing.T) {
	s := &holdService{release: make(chan struct{})}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	shouldStop, stopped, finalizeStop := s.StopInit()
	if !shouldStop {
		t.Fatal("StopInit said not to stop")
	}

	otherStop := make(chan struct{})
	go func() {
		defer close(otherStop)
		s.Stop()
	}()
	otherStart := make(chan struct{})
	go func() {
		defer close(otherStart)
		if err := s.Start(context.Background()); err != nil {
			t.Errorf("Start: %v", err)
		}
	}()

	// Something that does NOT happen: neither the second Stop nor the
	// Start can finish while the first Stop holds the lock. A short wait
	// is the only way to show it.
	select {
	case <-otherStop:
		t.Fatal("second Stop returned while StopInit held the lock")
	case <-otherStart:
		t.Fatal("Start returned while StopInit held the lock")
	case <-time.After(20 * time.Millisecond):
	}

	close(s.release)
	<-stopped
	finalizeStop(true)
	requireClosed(t, otherStop, "second Stop")
	requireClosed(t, otherStart, "Start")
	// The waiting Start really started a new run (it did not mistake the
	// run being stopped for one still going), whichever of the two
	// waiters got the lock first.
	if got := s.inits.Load(); got != 2 {
		t.Fatalf("%d runs started, want 2", got)
	}
	s.Stop()
}

// customStopService has a Client-style Stop: it stops its workers first,
// then waits for its own run through StoppedUnsafe while StopInit holds the
// lock.
type customStopService struct {
	startstop.BaseStartStop
	workers []startstop.Service
	drained atomic.Bool
	// duringStop, if set, runs inside Stop while StopInit holds the lock.
	duringStop func()
}

func (s *customStopService) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := s.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	if err := startstop.StartAll(ctx, s.workers...); err != nil {
		s.StartFailed(stopped)
		return err
	}
	go func() {
		defer stopped()
		started()
		<-ctx.Done()
	}()
	return nil
}

func (s *customStopService) Stop() {
	shouldStop, _, finalizeStop := s.StopInit()
	if !shouldStop {
		return
	}
	if s.duringStop != nil {
		s.duringStop()
	}
	startstop.StopAllParallel(s.workers...)
	s.drained.Store(true)
	<-s.StoppedUnsafe()
	finalizeStop(true)
}

func TestCustomStopWithStoppedUnsafeDoesNotDeadlock(t *testing.T) {
	workers := []startstop.Service{&testService{}, &testService{}}
	s := &customStopService{workers: workers}

	for cycle := range 3 {
		if err := s.Start(context.Background()); err != nil {
			t.Fatalf("cycle %d: Start: %v", cycle, err)
		}
		startstop.WaitAllStarted(append([]startstop.Service{s}, workers...)...)

		// Other goroutines wait on the stopped channel while Stop runs.
		stopped := s.Stopped()
		var waiters sync.WaitGroup
		for range 3 {
			waiters.Go(func() { <-stopped })
		}
		// While the lock is held, another goroutine asks for the
		// channels; it must get the stopping run's channels at once.
		var duringOK atomic.Bool
		s.duringStop = func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				duringOK.Store(s.Stopped() == stopped && s.StoppedUnsafe() == stopped && s.Started() != nil)
			}()
			<-done
		}

		runWithin(t, "custom Stop", s.Stop)
		runWithin(t, "waiters on Stopped", waiters.Wait)
		if !duringOK.Load() {
			t.Fatal("accessors during custom Stop returned the wrong channels")
		}
		if !s.drained.Load() {
			t.Fatal("custom Stop did not run")
		}
		for i, w := range workers {
			if w.(*testService).StoppedUnsafe() != nil {
				t.Fatalf("worker %d not stopped", i)
			}
		}
		runWithin(t, "second custom Stop", s.Stop)
	}
}

func TestCustomStartRollsBackOnFailure(t *testing.T) {
	failing := &testService{startErr: errors.New("worker failed")}
	ok := &testService{}
	s := &customStopService{workers: []startstop.Service{ok, failing}}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded with a failing worker")
	}
	if ok.stopCalls.Load() != 1 || ok.StoppedUnsafe() != nil {
		t.Fatal("started worker was not rolled back")
	}
	failing.startErr = nil
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start after fixing the worker: %v", err)
	}
	startstop.WaitAllStarted(s, ok, failing)
	s.Stop()
}
