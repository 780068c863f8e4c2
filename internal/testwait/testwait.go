// Package testwait is the one polling wait of millrace's tests: call a
// condition until it holds, and give up after a timeout. It is for tests
// only, and for conditions that nothing signals (a row in the database, a
// counter another goroutine bumps); a channel to receive from is better
// when there is one.
package testwait

import (
	"fmt"
	"testing"
	"time"
)

const (
	// firstInterval is the first pause between two calls of a condition;
	// it doubles after each call up to maxInterval, so a condition that
	// holds soon is seen soon and one that queries the database is not
	// called hundreds of times a second for long.
	firstInterval = time.Millisecond
	maxInterval   = 20 * time.Millisecond
)

// Poll calls cond until it returns true or timeout has passed, and reports
// whether it returned true. cond is always called at least once, and once
// more after the deadline before Poll gives up.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	interval := firstInterval
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(interval)
		interval = min(2*interval, maxInterval)
	}
}

// For waits until cond holds, failing tb with "timed out after <timeout>
// waiting for <what>" when it does not within timeout. what names the
// awaited thing ("the queue to leave the configuration").
func For(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !Poll(timeout, cond) {
		tb.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Until waits until cond holds, failing tb with "timed out after <timeout>
// waiting until <what>" when it does not within timeout; what is format
// and args as for fmt.Sprintf, and reads as a clause ("one of %d electors
// leads").
func Until(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	if !Poll(timeout, cond) {
		tb.Fatalf("timed out after %v waiting until %s", timeout, fmt.Sprintf(format, args...))
	}
}
