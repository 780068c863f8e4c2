// Package retry implements the default retry policy shared with River: a
// job that has failed n times (this failure included) runs again after
// n^4 seconds, with uniform jitter of up to 10% either way, capped at the
// largest time.Duration.
//
// The policy is a behaviour, not a data format; it is reproduced so that a
// job retried by millrace and one retried by River follow the same
// schedule in a mixed deployment.
package retry

import (
	"math"
	"math/rand/v2"
	"time"
)

// MaxDelay is the cap on a retry delay: the largest time.Duration, about
// 292 years. It is reached from 310 errors on (310^4 s exceeds it) and
// carries no jitter.
const MaxDelay time.Duration = math.MaxInt64

// maxUncappedCount is the largest error count whose base delay, count^4
// seconds, still fits in a time.Duration (309^4 s ≈ 9.12e18 ns).
const maxUncappedCount = 309

// DefaultNextRetry returns when a job that has now failed errorCount times
// (including this failure) should run again: now + errorCount^4 seconds
// times a uniform jitter factor in [0.9, 1.1), the result capped at
// MaxDelay (no jitter once capped). An errorCount below 1 counts as 1.
// The jitter comes from math/rand/v2's global source.
func DefaultNextRetry(errorCount int, now time.Time) time.Time {
	return NextRetry(errorCount, now, rand.Float64)
}

// NextRetry is DefaultNextRetry with the jitter drawn from jitter, which
// must return a uniform value in [0, 1) (a value outside is clamped into
// it). It exists for deterministic tests.
func NextRetry(errorCount int, now time.Time, jitter func() float64) time.Time {
	return now.Add(Delay(errorCount, jitter()))
}

// Delay returns the retry delay after errorCount errors for a jitter draw
// u in [0, 1): errorCount^4 seconds scaled by 0.9 + 0.2*u, computed in
// integer nanoseconds so the result always lies in
// [0.9*base, 1.1*base) for base = errorCount^4 s; or MaxDelay when base
// (or the jittered delay) does not fit in a time.Duration. errorCount
// below 1 counts as 1; u outside [0, 1), or NaN, is clamped into it.
func Delay(errorCount int, u float64) time.Duration {
	if errorCount < 1 {
		errorCount = 1
	}
	if errorCount > maxUncappedCount {
		return MaxDelay
	}
	n := int64(errorCount)
	base := n * n * n * n * int64(time.Second) // <= 309^4 s, fits

	// base is a multiple of 10 ns, so these are exact: the delay ranges
	// over [lo, lo+span) = [0.9*base, 1.1*base).
	tenth := base / 10
	lo := base - tenth
	span := 2 * tenth

	switch {
	case !(u >= 0): // negative or NaN
		u = 0
	case u >= 1:
		u = math.Nextafter(1, 0)
	}
	j := int64(u * float64(span))
	if j >= span { // float rounding at the top of the range
		j = span - 1
	}
	if lo > math.MaxInt64-j {
		return MaxDelay
	}
	return time.Duration(lo + j)
}
