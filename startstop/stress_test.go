package startstop_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/millrace/millrace/startstop"
)

// runTracker checks the central invariant of the lifecycle: a service never
// has two runs alive at once, and every run that begins also ends.
type runTracker struct {
	live    atomic.Int64
	begun   atomic.Int64
	overlap atomic.Bool
}

func (tr *runTracker) enter() {
	tr.begun.Add(1)
	if tr.live.Add(1) > 1 {
		tr.overlap.Store(true)
	}
}

func (tr *runTracker) exit() { tr.live.Add(-1) }

var errInjected = errors.New("injected start failure")

// stressService fails some of its starts: every failEvery-th start calls
// StartFailed, and every healEvery-th start only calls stopped (leaving the
// next StartInit to self-heal). Its Stop is either BaseStartStop's or a
// custom one on StopInit + StoppedUnsafe that sometimes abandons the stop.
type stressService struct {
	startstop.BaseStartStop
	tracker    *runTracker
	customStop bool

	starts atomic.Int64
	stops  atomic.Int64
}

func (s *stressService) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := s.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	switch n := s.starts.Add(1); {
	case n%7 == 0:
		s.StartFailed(stopped)
		return errInjected
	case n%11 == 0:
		stopped()
		return errInjected
	}
	go func() {
		defer stopped()
		s.tracker.enter()
		defer s.tracker.exit()
		started()
		<-ctx.Done()
	}()
	return nil
}

func (s *stressService) Stop() {
	if !s.customStop {
		s.BaseStartStop.Stop()
		return
	}
	shouldStop, stopped, finalizeStop := s.StopInit()
	if !shouldStop {
		return
	}
	if s.stops.Add(1)%5 == 0 {
		// Give up on this stop; the context is cancelled, so the run ends
		// by itself and a later Start or Stop cleans up.
		finalizeStop(false)
		return
	}
	if s.StoppedUnsafe() != stopped {
		panic("StoppedUnsafe disagrees with StopInit during a stop")
	}
	<-s.StoppedUnsafe()
	finalizeStop(true)
}

// stressFuncService builds the same kind of service with StartStopFunc.
func stressFuncService(tracker *runTracker) stoppedService {
	var starts atomic.Int64
	return startstop.StartStopFunc(func(ctx context.Context, shouldStart bool, started, stopped func()) error {
		if !shouldStart {
			return nil
		}
		if starts.Add(1)%7 == 0 {
			return errInjected
		}
		go func() {
			defer stopped()
			tracker.enter()
			defer tracker.exit()
			started()
			<-ctx.Done()
		}()
		return nil
	})
}

func TestStressConcurrentLifecycle(t *testing.T) {
	const (
		goroutines = 20
		cycles     = 200
	)
	if testing.Short() {
		t.Skip("stress test skipped in -short mode")
	}

	cases := []struct {
		name string
		make func(*runTracker) stoppedService
	}{
		{"embedded", func(tr *runTracker) stoppedService {
			return &stressService{tracker: tr}
		}},
		{"custom stop", func(tr *runTracker) stoppedService {
			return &stressService{tracker: tr, customStop: true}
		}},
		{"StartStopFunc", stressFuncService},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tracker := &runTracker{}
			s := tc.make(tracker)

			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 42))
					for range cycles {
						switch rng.IntN(6) {
						case 0, 1:
							if err := s.Start(context.Background()); err != nil && !errors.Is(err, errInjected) {
								t.Errorf("Start: %v", err)
								return
							}
						case 2, 3:
							s.Stop()
						case 4:
							select {
							case <-s.Started():
							default:
							}
						case 5:
							select {
							case <-s.Stopped():
							default:
							}
						}
					}
				})
			}
			runWithin(t, "stress goroutines", wg.Wait)

			// A custom Stop may have abandoned the final stop; keep
			// stopping until the service reports it is no longer running.
			for range 10 {
				s.Stop()
			}
			if tracker.overlap.Load() {
				t.Fatal("two runs of one service were alive at the same time")
			}
			if live := tracker.live.Load(); live != 0 {
				t.Fatalf("%d runs still alive after Stop", live)
			}

			// The service is not wedged: one more clean cycle works.
			for {
				err := s.Start(context.Background())
				if err == nil {
					break
				}
				if !errors.Is(err, errInjected) {
					t.Fatalf("final Start: %v", err)
				}
			}
			stopped := s.Stopped()
			requireClosed(t, s.Started(), "final Started")
			s.Stop()
			s.Stop()
			requireClosed(t, stopped, "final Stopped")
			t.Logf("%d runs began", tracker.begun.Load())
			if tracker.begun.Load() == 0 {
				t.Fatal("no run ever began; the stress test exercised nothing")
			}
		})
	}
}
