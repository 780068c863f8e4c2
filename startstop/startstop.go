package startstop

import (
	"context"
	"errors"
	"sync"
)

// ErrStop is the cause attached to a service's context when that context is
// cancelled because the service is being stopped (by Stop, StopInit or
// StartFailed). Code running inside a service can tell a controlled stop
// apart from any other cancellation with
//
//	context.Cause(ctx) == startstop.ErrStop
//
// A context cancelled because its parent was cancelled carries the parent's
// cause instead.
var ErrStop = errors.New("startstop: service stop requested")

// Service is anything with a start/stop lifecycle.
//
// Start is called synchronously; it does whatever set-up must happen before
// it returns (returning an error if that fails) and moves the long-running
// work to its own goroutines. Calling Start on a service that is already
// running does nothing and returns nil.
//
// Started returns a channel that is closed once start-up has finished, or
// once a failed start-up has finished cleaning up.
//
// Stop returns only once the service is fully stopped and all of its
// goroutines have exited. Calling Stop on a service that was never started,
// or calling it a second time, does nothing.
type Service interface {
	Start(ctx context.Context) error
	Started() <-chan struct{}
	Stop()
}

// runState is everything that belongs to one run of a service, from the
// StartInit that began it to the reset that ends it. Comparing *runState
// pointers tells whether the service is still in the run a caller saw.
type runState struct {
	cancel      context.CancelCauseFunc
	started     chan struct{}
	stopped     chan struct{}
	startedOnce sync.Once
	stoppedOnce sync.Once
}

// markStarted closes the run's started channel; calling it again is a no-op.
func (r *runState) markStarted() {
	r.startedOnce.Do(func() { close(r.started) })
}

// markStopped closes the run's started channel (if still open) and then its
// stopped channel; calling it again is a no-op.
func (r *runState) markStopped() {
	r.markStarted()
	r.stoppedOnce.Do(func() { close(r.stopped) })
}

// isStopped reports whether the run's stopped channel has been closed.
func (r *runState) isStopped() bool {
	select {
	case <-r.stopped:
		return true
	default:
		return false
	}
}

// BaseStartStop gives a service a safe lifecycle when embedded in it. It
// implements Started, Stopped and Stop; the embedding type writes Start
// around StartInit (see the package documentation for the pattern).
//
// The zero value is ready to use. A BaseStartStop must not be copied after
// first use.
type BaseStartStop struct {
	// lifeMu is the lifecycle lock. StartInit holds it while it runs, and
	// StopInit holds it from the moment it decides to stop until the
	// finalizeStop function it returned is called, so a Start or a second
	// Stop waits for a Stop in progress to finish.
	lifeMu sync.Mutex

	// mu guards the fields below. It is only ever held for a few
	// instructions, never while waiting on anything, so the channel
	// accessors stay usable while a Stop is in progress.
	mu sync.Mutex

	// run is non-nil while the service is marked running.
	run *runState

	// stopping is true from StopInit deciding to stop run until
	// finalizeStop. While it is set, run belongs to that Stop: only
	// finalizeStop may reset it.
	stopping bool

	// startedCh and stoppedCh hold channels handed out by Started and
	// Stopped while the service is not running; the next StartInit adopts
	// them so that whoever took them sees them close.
	startedCh chan struct{}
	stoppedCh chan struct{}
}

// StartInit must be the first call in a service's Start method.
//
// If the service is already running it returns the given context,
// shouldStart false and nil functions, and Start should return nil at once.
//
// Otherwise it marks the service running and returns a context derived from
// ctx that is cancelled with cause ErrStop when the service is stopped,
// shouldStart true, and two functions for this run:
//
//   - started closes the Started channel. It is idempotent. Call it once
//     start-up is complete.
//   - stopped closes the Started channel if it is still open, then closes
//     the Stopped channel. It is idempotent. The goroutine doing the
//     service's work must call it as it exits, normally with
//     defer stopped(), and nothing belonging to the run may still be
//     running once it has been called.
//
// If the service is marked running but its stopped function has already
// been called (a failed start-up that called stopped without StartFailed,
// or a run goroutine that exited on its own) and no Stop is in progress,
// StartInit cancels the old run's context, forgets that run and starts a new
// one. If a Stop is in progress, StartInit waits for it to finish.
func (s *BaseStartStop) StartInit(ctx context.Context) (runCtx context.Context, shouldStart bool, started, stopped func()) {
	ctx, r := s.startInit(ctx)
	if r == nil {
		return ctx, false, nil, nil
	}
	return ctx, true, r.markStarted, r.markStopped
}

// startInit is StartInit returning the new run itself (nil if the service
// was already running) rather than its started and stopped functions.
func (s *BaseStartStop) startInit(ctx context.Context) (context.Context, *runState) {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()

	if old := s.run; old != nil {
		if !old.isStopped() {
			return ctx, nil
		}
		// The previous run ended without StartFailed or Stop resetting
		// the service. Holding lifeMu means no Stop is in progress, so
		// it is safe to clean up after it here.
		old.cancel(ErrStop)
		s.run = nil
	}

	r := &runState{started: s.startedCh, stopped: s.stoppedCh}
	if r.started == nil {
		r.started = make(chan struct{})
	}
	if r.stopped == nil {
		r.stopped = make(chan struct{})
	}
	s.startedCh, s.stoppedCh = nil, nil

	ctx, r.cancel = context.WithCancelCause(ctx)
	s.run = r
	return ctx, r
}

// StartFailed ends a start-up that failed after StartInit returned
// shouldStart true. It cancels the run's context with cause ErrStop, calls
// stopped (which releases everyone waiting on Started or Stopped), and
// resets the service so that Start can be called again.
//
// Call it from the Start method that called StartInit, passing the stopped
// function StartInit returned, before that function has been handed to any
// goroutine and before anything started by this run is still running.
// StartFailed does not wait on the lifecycle lock, so it is safe even if a
// Stop began while Start was still setting up: that Stop then returns once
// StartFailed has called stopped, and it is the Stop that resets the service.
func (s *BaseStartStop) StartFailed(stopped func()) {
	s.mu.Lock()
	r := s.run
	s.mu.Unlock()

	if r != nil {
		r.cancel(ErrStop)
	}
	if stopped != nil {
		stopped()
	}
	if r != nil {
		s.forgetRun(r)
	}
}

// failRun is StartFailed for a caller that knows exactly which run failed.
func (s *BaseStartStop) failRun(r *runState) {
	r.cancel(ErrStop)
	r.markStopped()
	s.forgetRun(r)
}

// forgetRun marks the service not running, provided r is still its current
// run (otherwise the service has moved on and there is nothing to reset) and
// no Stop is in progress (that Stop resets the service when it finalizes, and
// until then its custom code may still be looking at r's channels).
func (s *BaseStartStop) forgetRun(r *runState) {
	s.mu.Lock()
	if s.run == r && !s.stopping {
		s.run = nil
	}
	s.mu.Unlock()
}

// Started returns a channel that is closed once the current run has called
// its started function (or its stopped function).
//
// It may be called before Start: the channel is then allocated up front and
// the next StartInit uses it, so it is the one that closes when that run
// starts. Called while the service is running, it returns the current run's
// channel. It never blocks, even while a Stop is in progress.
func (s *BaseStartStop) Started() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.run != nil {
		return s.run.started
	}
	if s.startedCh == nil {
		s.startedCh = make(chan struct{})
	}
	return s.startedCh
}

// Stopped returns a channel that is closed once the current run has called
// its stopped function, that is once the service has fully stopped.
//
// It may be called before Start: the channel is then allocated up front and
// the next StartInit uses it. Called while the service is running, it
// returns the current run's channel. It never blocks, even while a Stop is
// in progress, but a caller who wants to observe a particular Stop should
// take the channel before calling Stop: once a Stop has completed the
// service is reset, and a later call returns a channel for the next run.
func (s *BaseStartStop) Stopped() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.run != nil {
		return s.run.stopped
	}
	if s.stoppedCh == nil {
		s.stoppedCh = make(chan struct{})
	}
	return s.stoppedCh
}

// StoppedUnsafe returns the service's current stopped channel without
// taking the lifecycle lock and without allocating one: while the service is
// running (including while a Stop of it is in progress) that is the run's
// stopped channel; otherwise it is a channel already handed out by Stopped,
// or nil if there is none.
//
// It exists for custom Stop methods built on StopInit, which holds the
// lifecycle lock until finalizeStop is called. StopInit also returns the
// same channel; StoppedUnsafe lets code deeper in such a Stop reach it.
func (s *BaseStartStop) StoppedUnsafe() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.run != nil {
		return s.run.stopped
	}
	return s.stoppedCh
}

// Stop stops the service and waits until it has fully stopped: it cancels
// the run's context with cause ErrStop, waits for the run's stopped function
// to be called, and resets the service so it can be started again. Stop on a
// service that is not running returns at once; concurrent Stops all return
// once the service has stopped.
//
// Stop must not be called from the service's own run goroutine (it would wait
// for itself).
func (s *BaseStartStop) Stop() {
	shouldStop, stopped, finalizeStop := s.StopInit()
	if !shouldStop {
		return
	}
	<-stopped
	finalizeStop(true)
}

// StopInit is the first half of Stop, for services that need their own Stop
// method.
//
// If the service is not running it returns shouldStop false, a nil channel
// and a finalizeStop that does nothing. Otherwise it cancels the run's
// context with cause ErrStop and returns shouldStop true and the run's
// stopped channel. From then on it holds the lifecycle lock, so Start and
// other Stops wait, until finalizeStop is called; the caller must call it
// exactly once:
//
//   - finalizeStop(true) once the stopped channel is closed: the service is
//     reset and can be started again.
//   - finalizeStop(false) to abandon the stop: the service stays marked
//     running (its context remains cancelled) and another Stop may be tried
//     later.
//
// Extra calls to finalizeStop are ignored. Started, Stopped and
// StoppedUnsafe stay callable while the lock is held.
func (s *BaseStartStop) StopInit() (shouldStop bool, stopped <-chan struct{}, finalizeStop func(didStop bool)) {
	s.lifeMu.Lock()

	s.mu.Lock()
	r := s.run
	if r != nil {
		s.stopping = true
	}
	s.mu.Unlock()

	if r == nil {
		s.lifeMu.Unlock()
		return false, nil, func(bool) {}
	}

	r.cancel(ErrStop)

	var once sync.Once
	finalizeStop = func(didStop bool) {
		once.Do(func() {
			s.mu.Lock()
			s.stopping = false
			if didStop && s.run == r {
				s.run = nil
			}
			s.mu.Unlock()
			s.lifeMu.Unlock()
		})
	}
	return true, r.stopped, finalizeStop
}

// StopIniter is what StopWithin needs of a service: BaseStartStop's
// StopInit, or a custom one with the same contract.
type StopIniter interface {
	StopInit() (shouldStop bool, stopped <-chan struct{}, finalizeStop func(didStop bool))
}

// StopWithin is Stop bounded by ctx, in the style of net/http's
// Server.Shutdown: it calls s.StopInit (which cancels the run's context
// with cause ErrStop) and waits until the run has stopped or ctx ends,
// whichever comes first.
//
// It returns nil once the service has stopped (or if it was not running).
// If ctx ends first it returns context.Cause(ctx) and abandons the stop
// with finalizeStop(false): the service stays marked running with its
// context cancelled, so its shutdown goes on in the background, and a
// later Stop or StopWithin waits for it to finish.
func StopWithin(ctx context.Context, s StopIniter) error {
	shouldStop, stopped, finalizeStop := s.StopInit()
	if !shouldStop {
		return nil
	}
	select {
	case <-stopped:
		finalizeStop(true)
		return nil
	case <-ctx.Done():
		select {
		case <-stopped: // both ready: the stop finished, report that
			finalizeStop(true)
			return nil
		default:
		}
		finalizeStop(false)
		return context.Cause(ctx)
	}
}

// startStopFunc is the Service returned by StartStopFunc.
type startStopFunc struct {
	BaseStartStop

	fn func(ctx context.Context, shouldStart bool, started, stopped func()) error
}

// StartStopFunc returns a Service whose Start calls StartInit and hands its
// results to fn, for small services that do not need a type of their own.
//
// fn receives the run's context, shouldStart, and the started and stopped
// functions (both nil when shouldStart is false, in which case fn should
// return nil without doing anything). When shouldStart is true, fn behaves
// like the body of a Start method: it starts a goroutine that calls
// started, does the work until ctx is done, and calls stopped as it exits.
//
// If fn returns an error while shouldStart is true, the start is treated as
// failed, as with StartFailed: the run's context is cancelled with ErrStop,
// stopped is called, and the service can be started again. fn must
// therefore not leave anything running when it returns an error.
//
// The returned value also has BaseStartStop's other methods, such as
// Stopped.
func StartStopFunc(fn func(ctx context.Context, shouldStart bool, started, stopped func()) error) *startStopFunc {
	return &startStopFunc{fn: fn}
}

// Start runs the function given to StartStopFunc as described there.
func (s *startStopFunc) Start(ctx context.Context) error {
	ctx, r := s.startInit(ctx)
	if r == nil {
		return s.fn(ctx, false, nil, nil)
	}
	if err := s.fn(ctx, true, r.markStarted, r.markStopped); err != nil {
		s.failRun(r)
		return err
	}
	return nil
}

// StartAll starts services one after another, in the order given. If one
// returns an error, StartAll does not start the rest; it stops the services
// it already started (concurrently, waiting until all have stopped) and
// returns that error unchanged. The failing service itself is expected to
// have cleaned up after its own failed start and is not stopped.
func StartAll(ctx context.Context, services ...Service) error {
	for i, service := range services {
		if err := service.Start(ctx); err != nil {
			StopAllParallel(services[:i]...)
			return err
		}
	}
	return nil
}

// StopAllParallel calls Stop on every service at the same time and returns
// once all of them have returned.
func StopAllParallel(services ...Service) {
	var wg sync.WaitGroup
	for _, service := range services {
		wg.Go(service.Stop)
	}
	wg.Wait()
}

// WaitAllStarted blocks until the Started channel of every service is
// closed. The channels are all taken before it begins waiting.
func WaitAllStarted(services ...Service) {
	for _, started := range startedChans(services) {
		<-started
	}
}

// WaitAllStartedC returns a channel that is closed once the Started channel
// of every service is closed, for use in a select (for example alongside a
// timeout). The Started channels are taken before WaitAllStartedC returns.
// Until the channel closes a goroutine is waiting on the services, so only
// use it with services that will start (or fail to start).
func WaitAllStartedC(services ...Service) <-chan struct{} {
	chans := startedChans(services)
	done := make(chan struct{})
	if len(chans) == 0 {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		for _, started := range chans {
			<-started
		}
	}()
	return done
}

// startedChans takes the Started channel of each service, in order.
func startedChans(services []Service) []<-chan struct{} {
	chans := make([]<-chan struct{}, len(services))
	for i, service := range services {
		chans[i] = service.Started()
	}
	return chans
}
