package startstop_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/startstop"
)

func TestStartAllStartsEverything(t *testing.T) {
	services := []*testService{{}, {}, {}}
	all := make([]startstop.Service, len(services))
	for i, s := range services {
		all[i] = s
	}
	if err := startstop.StartAll(context.Background(), all...); err != nil {
		t.Fatalf("StartAll: %v", err)
	}
	startstop.WaitAllStarted(all...)
	for i, s := range services {
		if s.initCount.Load() != 1 {
			t.Fatalf("service %d not started", i)
		}
	}
	startstop.StopAllParallel(all...)
	for i, s := range services {
		if s.stopCalls.Load() != 1 || s.StoppedUnsafe() != nil {
			t.Fatalf("service %d not stopped", i)
		}
	}

	if err := startstop.StartAll(context.Background()); err != nil {
		t.Fatalf("StartAll with no services: %v", err)
	}
}

func TestStartAllRollsBackServicesStartedBeforeFailure(t *testing.T) {
	startErr := errors.New("third service failed")
	first, second := &testService{}, &testService{}
	failing := &testService{startErr: startErr}
	later := &testService{}

	// Stopped channels taken up front, so we can see the rollback happen.
	firstStopped, secondStopped := first.Stopped(), second.Stopped()
	laterStarted := later.Started()

	err := startstop.StartAll(context.Background(), first, second, failing, later)
	if err != startErr {
		t.Fatalf("StartAll returned %v, want the failing service's error unchanged", err)
	}

	for name, s := range map[string]*testService{"first": first, "second": second} {
		if s.initCount.Load() != 1 {
			t.Fatalf("%s service: started %d times, want 1", name, s.initCount.Load())
		}
		if s.stopCalls.Load() != 1 {
			t.Fatalf("%s service: stopped %d times, want 1", name, s.stopCalls.Load())
		}
	}
	requireClosed(t, firstStopped, "first service Stopped")
	requireClosed(t, secondStopped, "second service Stopped")

	if failing.initCount.Load() != 1 {
		t.Fatal("failing service was not started")
	}
	if failing.stopCalls.Load() != 0 {
		t.Fatal("StartAll stopped the failing service; it cleans up after itself")
	}
	if later.initCount.Load() != 0 || later.runCount.Load() != 0 {
		t.Fatal("StartAll started a service after the failing one")
	}
	if later.stopCalls.Load() != 0 {
		t.Fatal("StartAll stopped a service it never started")
	}
	requireOpen(t, laterStarted, "later service Started")

	// Everything can be started again once the cause is fixed.
	failing.startErr = nil
	all := []startstop.Service{first, second, failing, later}
	if err := startstop.StartAll(context.Background(), all...); err != nil {
		t.Fatalf("second StartAll: %v", err)
	}
	requireClosed(t, laterStarted, "later service Started on second StartAll")
	startstop.StopAllParallel(all...)
}

func TestStartAllFirstServiceFails(t *testing.T) {
	failing := &testService{startErr: errors.New("boom")}
	later := &testService{}
	if err := startstop.StartAll(context.Background(), failing, later); err == nil {
		t.Fatal("StartAll succeeded")
	}
	if later.initCount.Load() != 0 || later.stopCalls.Load() != 0 {
		t.Fatal("service after the failing one was touched")
	}
}

// stoppedService is a Service that also exposes its Stopped channel.
type stoppedService interface {
	startstop.Service
	Stopped() <-chan struct{}
}

// barrier is closed once n parties have arrived.
type barrier struct {
	mu      sync.Mutex
	n       int
	arrived int
	done    chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, done: make(chan struct{})} }

func (b *barrier) arriveAndWait() {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.done)
	}
	b.mu.Unlock()
	<-b.done
}

// barrierService cannot finish stopping until every service sharing its
// barrier is stopping too, so stopping a group one at a time would hang.
func barrierService(b *barrier) stoppedService {
	return startstop.StartStopFunc(func(ctx context.Context, shouldStart bool, started, stopped func()) error {
		if !shouldStart {
			return nil
		}
		go func() {
			defer stopped()
			started()
			<-ctx.Done()
			b.arriveAndWait()
		}()
		return nil
	})
}

func TestStopAllParallelStopsConcurrently(t *testing.T) {
	const n = 5
	b := newBarrier(n)
	services := make([]stoppedService, n)
	all := make([]startstop.Service, n)
	for i := range services {
		services[i] = barrierService(b)
		all[i] = services[i]
	}
	if err := startstop.StartAll(context.Background(), all...); err != nil {
		t.Fatalf("StartAll: %v", err)
	}
	startstop.WaitAllStarted(all...)
	stopped := make([]<-chan struct{}, n)
	for i, s := range services {
		stopped[i] = s.Stopped()
	}
	runWithin(t, "StopAllParallel", func() { startstop.StopAllParallel(all...) })
	for _, ch := range stopped {
		requireClosed(t, ch, "service Stopped")
	}
}

func TestStopAllParallelWaitsForAll(t *testing.T) {
	// One slow service: StopAllParallel must not return before it stops.
	release := make(chan struct{})
	slow := &holdService{release: release}
	fast := &testService{}
	if err := startstop.StartAll(context.Background(), slow, fast); err != nil {
		t.Fatalf("StartAll: %v", err)
	}
	startstop.WaitAllStarted(slow, fast)
	slowStopped, fastStopped := slow.Stopped(), fast.Stopped()

	done := make(chan struct{})
	go func() {
		defer close(done)
		startstop.StopAllParallel(slow, fast)
	}()
	// fast stops on its own; done must still be open because slow is held.
	requireClosed(t, fastStopped, "fast service stopped")
	requireOpen(t, done, "StopAllParallel while a service is still stopping")
	close(release)
	requireClosed(t, done, "StopAllParallel")
	requireClosed(t, slowStopped, "slow service Stopped")

	runWithin(t, "StopAllParallel with no services", func() { startstop.StopAllParallel() })
}

func TestWaitAllStartedC(t *testing.T) {
	services := []*testService{
		{gate: make(chan struct{})},
		{gate: make(chan struct{})},
		{gate: make(chan struct{})},
	}
	all := make([]startstop.Service, len(services))
	for i, s := range services {
		all[i] = s
	}

	// Taken before Start: must still see the services start.
	allStarted := startstop.WaitAllStartedC(all...)
	if err := startstop.StartAll(context.Background(), all...); err != nil {
		t.Fatalf("StartAll: %v", err)
	}
	for _, s := range services {
		requireOpen(t, allStarted, "WaitAllStartedC before every service started")
		close(s.gate)
		requireClosed(t, s.Started(), "service Started")
	}
	requireClosed(t, allStarted, "WaitAllStartedC")
	startstop.StopAllParallel(all...)

	requireClosed(t, startstop.WaitAllStartedC(), "WaitAllStartedC with no services")
}

func TestWaitAllStarted(t *testing.T) {
	a := &testService{gate: make(chan struct{})}
	b := &testService{gate: make(chan struct{})}
	if err := startstop.StartAll(context.Background(), a, b); err != nil {
		t.Fatalf("StartAll: %v", err)
	}

	returned := make(chan struct{})
	go func() {
		defer close(returned)
		startstop.WaitAllStarted(a, b)
	}()
	close(b.gate)
	requireClosed(t, b.Started(), "b Started")
	requireOpen(t, returned, "WaitAllStarted while a has not started")
	close(a.gate)
	requireClosed(t, returned, "WaitAllStarted")
	startstop.StopAllParallel(a, b)

	runWithin(t, "WaitAllStarted with no services", func() { startstop.WaitAllStarted() })
}

func TestWaitAllStartedReleasedByFailedStart(t *testing.T) {
	ok := &testService{}
	failing := &testService{startErr: errors.New("boom")}
	allStarted := startstop.WaitAllStartedC(ok, failing)
	if err := startstop.StartAll(context.Background(), ok, failing); err == nil {
		t.Fatal("StartAll succeeded")
	}
	// A failed start closes Started too, so nobody waits forever.
	requireClosed(t, allStarted, "WaitAllStartedC after failed start")
}

func TestStartStopFunc(t *testing.T) {
	var (
		mu     sync.Mutex
		calls  []bool
		runCtx context.Context
	)
	s := startstop.StartStopFunc(func(ctx context.Context, shouldStart bool, started, stopped func()) error {
		mu.Lock()
		calls = append(calls, shouldStart)
		mu.Unlock()
		if !shouldStart {
			if started != nil || stopped != nil {
				t.Error("funcs passed with shouldStart false")
			}
			return nil
		}
		runCtx = ctx
		go func() {
			defer stopped()
			started()
			<-ctx.Done()
		}()
		return nil
	})
	var _ startstop.Service = s

	startedCh := s.Started()
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	requireClosed(t, startedCh, "Started")
	stopped := s.Stopped()
	s.Stop()
	requireClosed(t, stopped, "Stopped")
	if cause := context.Cause(runCtx); cause != startstop.ErrStop {
		t.Fatalf("cause %v, want ErrStop", cause)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || !calls[0] || calls[1] {
		t.Fatalf("fn called with shouldStart %v, want [true false]", calls)
	}
}

func TestStartStopFuncError(t *testing.T) {
	startErr := errors.New("cannot start")
	var (
		fail    = true
		failCtx context.Context
	)
	s := startstop.StartStopFunc(func(ctx context.Context, shouldStart bool, started, stopped func()) error {
		if !shouldStart {
			return nil
		}
		if fail {
			// Returns an error without calling stopped: StartStopFunc
			// cleans up the failed run.
			failCtx = ctx
			return startErr
		}
		go func() {
			defer stopped()
			started()
			<-ctx.Done()
		}()
		return nil
	})

	started, stopped := s.Started(), s.Stopped()
	if err := s.Start(context.Background()); err != startErr {
		t.Fatalf("Start: %v, want %v", err, startErr)
	}
	requireClosed(t, started, "Started after failed start")
	requireClosed(t, stopped, "Stopped after failed start")
	if cause := context.Cause(failCtx); cause != startstop.ErrStop {
		t.Fatalf("cause %v, want ErrStop", cause)
	}
	runWithin(t, "Stop after failed start", s.Stop)

	fail = false
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start after failure: %v", err)
	}
	requireClosed(t, s.Started(), "Started")
	s.Stop()
}

func TestStartAllWithCancelledContext(t *testing.T) {
	// A parent context that is already cancelled does not break the
	// lifecycle: services start, see the cancellation and stop themselves,
	// and Stop still returns.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a, b := &testService{}, &testService{}
	if err := startstop.StartAll(ctx, a, b); err != nil {
		t.Fatalf("StartAll: %v", err)
	}
	requireClosed(t, a.Stopped(), "a stopped by parent context")
	requireClosed(t, b.Stopped(), "b stopped by parent context")
	done := make(chan struct{})
	go func() {
		defer close(done)
		startstop.StopAllParallel(a, b)
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("StopAllParallel hung")
	}
}
