package testwait

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTB records what For and Until report instead of failing the test.
type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) { f.fatal = fmt.Sprintf(format, args...) }

func TestPollSeesConditionHold(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	start := time.Now()
	if !Poll(10*time.Second, func() bool { return calls.Add(1) == 5 }) {
		t.Fatal("Poll gave up on a condition that holds at the fifth call")
	}
	if calls.Load() != 5 {
		t.Errorf("cond called %d times, want 5 (Poll stops at the first true)", calls.Load())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Poll took %v for five calls", d)
	}
}

func TestPollGivesUp(t *testing.T) {
	t.Parallel()
	start := time.Now()
	if Poll(50*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported a condition that never holds as held")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("Poll gave up after %v, before its 50ms timeout", d)
	}
}

func TestForAndUntilMessages(t *testing.T) {
	t.Parallel()
	never := func() bool { return false }
	tb := &fakeTB{}
	For(tb, 10*time.Millisecond, "the queue to drain", never)
	if want := "timed out after 10ms waiting for the queue to drain"; tb.fatal != want {
		t.Errorf("For reported %q, want %q", tb.fatal, want)
	}
	tb = &fakeTB{}
	Until(tb, 10*time.Millisecond, never, "one of %d electors leads", 3)
	if want := "timed out after 10ms waiting until one of 3 electors leads"; tb.fatal != want {
		t.Errorf("Until reported %q, want %q", tb.fatal, want)
	}
	tb = &fakeTB{}
	For(tb, 10*time.Millisecond, "x", func() bool { return true })
	Until(tb, 10*time.Millisecond, func() bool { return true }, "x")
	if tb.fatal != "" {
		t.Errorf("a condition that holds failed the test: %q", tb.fatal)
	}
}
