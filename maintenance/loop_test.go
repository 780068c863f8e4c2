package maintenance

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// loopService is a bare service on the shared loop, counting its passes.
func loopService(t *testing.T) (*serviceBase, chan struct{}, *atomic.Int64, func(context.Context) error) {
	t.Helper()
	b := &serviceBase{}
	b.initBase("test", "", nil, nil)
	passes := make(chan struct{}, 1)
	b.passes = passes
	var n atomic.Int64
	return b, passes, &n, func(context.Context) error { n.Add(1); return nil }
}

func waitPass(t *testing.T, passes chan struct{}, what string) {
	t.Helper()
	select {
	case <-passes:
	case <-time.After(10 * time.Second):
		t.Fatalf("no pass within 10s: %s", what)
	}
}

// An interval service runs a pass at start, then only at its interval or
// when woken.
func TestLoopEvery(t *testing.T) {
	t.Parallel()
	b, passes, n, pass := loopService(t)
	if err := b.startEvery(context.Background(), time.Hour, pass); err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	waitPass(t, passes, "the pass at start")
	b.wakeUp()
	waitPass(t, passes, "woken")
	if got := n.Load(); got != 2 {
		t.Fatalf("%d passes, want 2", got)
	}
}

// A scheduled service runs its first pass at the first scheduled time,
// not at start, and at once when woken.
func TestLoopOnSchedule(t *testing.T) {
	t.Parallel()
	const delay = 200 * time.Millisecond
	b, passes, n, pass := loopService(t)
	start := time.Now()
	var calls atomic.Int64
	next := func(now time.Time) time.Time {
		if calls.Add(1) == 1 {
			return now.Add(delay)
		}
		return now.Add(time.Hour)
	}
	if err := b.startOnSchedule(context.Background(), next, pass); err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	waitPass(t, passes, "the first scheduled time")
	if elapsed := time.Since(start); elapsed < delay {
		t.Fatalf("first pass after %s, before its scheduled time (%s)", elapsed, delay)
	}
	b.wakeUp()
	waitPass(t, passes, "woken")
	if got := n.Load(); got != 2 {
		t.Fatalf("%d passes, want 2", got)
	}
}

// A schedule that panics or does not advance stops scheduling passes
// (logged) instead of crashing the process or running passes back to
// back; wakeUp still runs one.
func TestLoopOnBrokenSchedule(t *testing.T) {
	t.Parallel()
	for name, next := range map[string]func(time.Time) time.Time{
		"panics":        func(time.Time) time.Time { panic("bad schedule") },
		"in the past":   func(now time.Time) time.Time { return now.Add(-time.Minute) },
		"does not move": func(now time.Time) time.Time { return now },
		"zero":          func(time.Time) time.Time { return time.Time{} },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, passes, n, pass := loopService(t)
			if err := b.startOnSchedule(context.Background(), next, pass); err != nil {
				t.Fatal(err)
			}
			defer b.Stop()
			select {
			case <-passes:
				t.Fatalf("a pass ran on a broken schedule (%d passes)", n.Load())
			case <-time.After(200 * time.Millisecond):
			}
			b.wakeUp()
			waitPass(t, passes, "woken")
			select {
			case <-passes:
				t.Fatalf("passes ran back to back after the wake-up (%d passes)", n.Load())
			case <-time.After(200 * time.Millisecond):
			}
		})
	}
}
