package client

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestNotifyLimiterPace drives the limiter with a synthetic clock: a steady
// stream at its pace or below (with jitter) notifies for every insert; a
// faster one is held to the pace plus the burst, over leading and
// trailing notifications together; trailing ones wait for the next token.
func TestNotifyLimiterPace(t *testing.T) {
	const window = 2 * time.Millisecond
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	// run offers an insert at every multiple of interval (+-jitter, not
	// accumulating: a ticker's stream) for a second and
	// plays the trailing notifications at the times trailingDue gives.
	// It returns the inserts that went without a notification and the
	// notifications sent (leading and trailing).
	run := func(t *testing.T, interval, jitter time.Duration) (suppressed, sent int) {
		t.Helper()
		l := &notifyLimiter{window: window}
		rng := rand.New(rand.NewPCG(1, 2))
		var trailingAt time.Time // zero: none scheduled
		for i := 1; time.Duration(i)*interval < time.Second; i++ {
			next := start.Add(time.Duration(i) * interval)
			if jitter > 0 {
				next = next.Add(time.Duration(rng.Int64N(int64(2*jitter))) - jitter)
			}
			if !trailingAt.IsZero() && !trailingAt.After(next) {
				l.trailingSent("q", trailingAt)
				sent++
				trailingAt = time.Time{}
			}
			now := next
			if l.allow("q", now) {
				sent++
				continue
			}
			suppressed++
			if wait, ok := l.trailingDue("q", now); ok {
				if wait <= 0 || wait > window {
					t.Fatalf("trailing notification due in %v, want within (0, %v]", wait, window)
				}
				trailingAt = now.Add(wait)
			} else if trailingAt.IsZero() {
				t.Fatal("trailingDue scheduled nothing, and nothing was scheduled")
			}
		}
		return suppressed, sent
	}

	t.Run("a stream at the pace notifies for every insert", func(t *testing.T) {
		for _, jitter := range []time.Duration{0, 200 * time.Microsecond, 990 * time.Microsecond} {
			if sup, _ := run(t, window, jitter); sup != 0 {
				t.Errorf("jitter %v: %d inserts of 500 a second went without a notification", jitter, sup)
			}
		}
		if sup, _ := run(t, 3*window, window*3/2); sup != 0 {
			t.Errorf("%d inserts of a slower stream went without a notification", sup)
		}
	})
	t.Run("a stream below the pace gets back what a catch-up spent", func(t *testing.T) {
		// A stream at half the pace (FetchCooldown with the client's
		// window) whose inserts stall for 20 windows now and then, and
		// then catch up back to back.
		l := &notifyLimiter{window: window}
		now, suppressed := start, 0
		for i := 1; i <= 2000; i++ {
			if i%200 == 0 {
				now = now.Add(20 * window) // a slow insert
				for range 10 {             // the catch-up
					if !l.allow("q", now) {
						suppressed++
					}
					now = now.Add(window / 20)
				}
				continue
			}
			now = now.Add(2 * window)
			if !l.allow("q", now) {
				suppressed++
			}
		}
		// Each catch-up of 10 finds 4 tokens: 6 go without; the stream
		// between catch-ups never does.
		if want := 6 * 10; suppressed != want {
			t.Errorf("%d inserts went without a notification, want %d (those of the catch-ups beyond the burst)", suppressed, want)
		}
	})
	t.Run("a faster stream is held to the pace", func(t *testing.T) {
		sup, sent := run(t, window/4, 0) // 2,000 inserts a second
		if most := int(time.Second/window) + notifyBurst + 1; sent > most {
			t.Errorf("%d notifications in a second, want at most %d", sent, most)
		}
		if sent < int(time.Second/window)*9/10 {
			t.Errorf("only %d notifications in a second, want about %d", sent, time.Second/window)
		}
		if sup == 0 {
			t.Error("no insert went without a notification")
		}
	})
	t.Run("a burst is let through, then held", func(t *testing.T) {
		l := &notifyLimiter{window: window}
		for i := range notifyBurst {
			if !l.allow("q", start) {
				t.Fatalf("insert %d of a burst held back", i+1)
			}
		}
		if l.allow("q", start) {
			t.Fatal("an insert beyond the burst notified")
		}
		if !l.allow("other", start) {
			t.Fatal("another queue's insert held back")
		}
		wait, ok := l.trailingDue("q", start.Add(window/4))
		if !ok || wait != window*3/4 {
			t.Fatalf("trailing notification due in %v (%v), want %v", wait, ok, window*3/4)
		}
		if _, ok := l.trailingDue("q", start.Add(window/2)); ok {
			t.Fatal("a second trailing notification scheduled while one is")
		}
		l.trailingSent("q", start.Add(window))
		if l.allow("q", start.Add(window)) {
			t.Fatal("the trailing notification's token was given again")
		}
		if !l.allow("q", start.Add(2*window)) {
			t.Fatal("no token a window later")
		}
		if l.allow("q", start) {
			t.Fatal("a clock gone back refilled the bucket")
		}
	})
}
