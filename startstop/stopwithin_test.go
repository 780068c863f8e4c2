package startstop_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/millrace/millrace/startstop"
)

// slowService's run goroutine keeps running after its context ends until
// release is closed, like a service draining work at shutdown.
type slowService struct {
	startstop.BaseStartStop
	release chan struct{}
}

func (s *slowService) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := s.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	go func() {
		defer stopped()
		started()
		<-ctx.Done()
		<-s.release
	}()
	return nil
}

func TestStopWithinNotRunning(t *testing.T) {
	s := &slowService{release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Not running: nil at once, even with an ended context.
	if err := startstop.StopWithin(ctx, s); err != nil {
		t.Fatalf("StopWithin of a service never started: %v", err)
	}
}

func TestStopWithinStops(t *testing.T) {
	s := &slowService{release: make(chan struct{})}
	close(s.release)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopped := s.Stopped()
	if err := startstop.StopWithin(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	requireClosed(t, stopped, "Stopped after StopWithin")
	// Reset: the service can start again.
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	requireOpen(t, s.Stopped(), "Stopped of the second run")
	runWithin(t, "Stop of the second run", s.Stop)
}

// TestStopWithinDeadline: ctx ends before the service stops. StopWithin
// returns ctx's cause promptly, the service stays running (its context
// cancelled with ErrStop) and a later Stop waits for the shutdown that goes
// on in the background.
func TestStopWithinDeadline(t *testing.T) {
	s := &slowService{release: make(chan struct{})}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopped := s.Stopped()
	cause := errors.New("deadline for the test")
	ctx, cancel := context.WithTimeoutCause(context.Background(), 50*time.Millisecond, cause)
	defer cancel()
	if err := startstop.StopWithin(ctx, s); !errors.Is(err, cause) {
		t.Fatalf("StopWithin past its deadline returned %v, want %v", err, cause)
	}
	requireOpen(t, stopped, "Stopped after an abandoned StopWithin")
	// Start is a no-op while the old run is still shutting down.
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	requireOpen(t, stopped, "Stopped after Start during an abandoned stop")
	close(s.release)
	if err := startstop.StopWithin(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	requireClosed(t, stopped, "Stopped after the second StopWithin")
}
