package retry

import (
	"math"
	"testing"
	"time"
)

var now = time.Date(2026, time.November, 25, 13, 14, 15, 123456789, time.UTC)

// top is the largest jitter draw below 1.
var top = math.Nextafter(1, 0)

func TestDelayBounds(t *testing.T) {
	t.Parallel()

	tests := []struct {
		count  int
		lo, hi time.Duration // delay in [lo, hi)
	}{
		{count: 1, lo: 900 * time.Millisecond, hi: 1100 * time.Millisecond},
		{count: 2, lo: 14400 * time.Millisecond, hi: 17600 * time.Millisecond},
		{count: 3, lo: 72900 * time.Millisecond, hi: 89100 * time.Millisecond},
		{count: 4, lo: 230400 * time.Millisecond, hi: 281600 * time.Millisecond},
		{count: 5, lo: 562500 * time.Millisecond, hi: 687500 * time.Millisecond},
		{count: 10, lo: 9000 * time.Second, hi: 11000 * time.Second},
		{count: 25, lo: 351562500 * time.Millisecond, hi: 429687500 * time.Millisecond},
		{count: 100, lo: 90_000_000 * time.Second, hi: 110_000_000 * time.Second},
	}
	for _, tt := range tests {
		base := time.Duration(tt.count*tt.count*tt.count*tt.count) * time.Second
		if got := Delay(tt.count, 0); got != tt.lo {
			t.Errorf("count %d: Delay(u=0) = %v, want exactly %v", tt.count, got, tt.lo)
		}
		if got := Delay(tt.count, 0.5); got != base {
			t.Errorf("count %d: Delay(u=0.5) = %v, want exactly %v", tt.count, got, base)
		}
		got := Delay(tt.count, top)
		if got >= tt.hi || got < tt.hi-time.Microsecond {
			t.Errorf("count %d: Delay(u→1) = %v, want just under %v", tt.count, got, tt.hi)
		}
		for i := range 1000 {
			u := float64(i) / 1000
			if d := Delay(tt.count, u); d < tt.lo || d >= tt.hi {
				t.Fatalf("count %d, u %v: %v outside [%v, %v)", tt.count, u, d, tt.lo, tt.hi)
			}
		}
	}
}

func TestDelayJitterIsLinear(t *testing.T) {
	t.Parallel()

	// 0.9 + 0.2*u of 16 s.
	for _, tt := range []struct {
		u    float64
		want time.Duration
	}{
		{u: 0.25, want: 15200 * time.Millisecond},
		{u: 0.75, want: 16800 * time.Millisecond},
	} {
		if got := Delay(2, tt.u); got != tt.want {
			t.Errorf("Delay(2, %v) = %v, want %v", tt.u, got, tt.want)
		}
	}
}

func TestDelayClampsJitter(t *testing.T) {
	t.Parallel()

	for _, u := range []float64{-0.5, -1, math.Inf(-1), math.NaN()} {
		if got, want := Delay(3, u), Delay(3, 0); got != want {
			t.Errorf("Delay(3, %v) = %v, want %v", u, got, want)
		}
	}
	for _, u := range []float64{1, 1.5, math.Inf(1)} {
		if got, want := Delay(3, u), Delay(3, top); got != want {
			t.Errorf("Delay(3, %v) = %v, want %v", u, got, want)
		}
	}
}

func TestDelayCountBelowOneIsOne(t *testing.T) {
	t.Parallel()

	for _, count := range []int{0, -1, -1000, math.MinInt} {
		for _, u := range []float64{0, 0.5, top} {
			if got, want := Delay(count, u), Delay(1, u); got != want {
				t.Errorf("Delay(%d, %v) = %v, want %v", count, u, got, want)
			}
		}
		if got, want := NextRetry(count, now, func() float64 { return 0.5 }), now.Add(time.Second); !got.Equal(want) {
			t.Errorf("NextRetry(%d) = %v, want %v", count, got, want)
		}
	}
}

func TestDelayMonotonic(t *testing.T) {
	t.Parallel()

	for _, u := range []float64{0, 0.1, 0.5, 0.9, top} {
		prev := Delay(1, u)
		for count := 2; count <= 400; count++ {
			d := Delay(count, u)
			if d < prev || (d == prev && d != MaxDelay) {
				t.Fatalf("u %v: Delay(%d) = %v not above Delay(%d) = %v", u, count, d, count-1, prev)
			}
			prev = d
		}
	}
	// Without jitter overlap the ranges themselves are ordered: the
	// lowest delay after n+1 errors exceeds the highest after n while
	// ((n+1)/n)^4 >= 1.1/0.9.
	for count := 1; count < 19; count++ {
		if Delay(count+1, 0) <= Delay(count, top) {
			t.Fatalf("ranges of %d and %d errors overlap", count, count+1)
		}
	}
}

func TestDelayCap(t *testing.T) {
	t.Parallel()

	// 309^4 s fits in a Duration; jitter can push it over, where it is
	// capped.
	base309 := time.Duration(309*309*309*309) * time.Second
	if got, want := Delay(309, 0), base309-base309/10; got != want {
		t.Errorf("Delay(309, 0) = %v, want %v", got, want)
	}
	if got := Delay(309, 0.5); got != base309 {
		t.Errorf("Delay(309, 0.5) = %v, want %v", got, base309)
	}
	if got := Delay(309, top); got != MaxDelay {
		t.Errorf("Delay(309, top) = %v, want MaxDelay", got)
	}

	// From 310 on the base itself exceeds the maximum: capped, no jitter.
	for _, count := range []int{310, 311, 1000, 1 << 20, 1 << 40, math.MaxInt} {
		for _, u := range []float64{0, 0.5, top} {
			if got := Delay(count, u); got != MaxDelay {
				t.Errorf("Delay(%d, %v) = %v, want MaxDelay", count, u, got)
			}
		}
	}
	if got, want := DefaultNextRetry(1<<20, now), now.Add(MaxDelay); !got.Equal(want) {
		t.Errorf("DefaultNextRetry(1<<20) = %v, want %v", got, want)
	}
	if MaxDelay != time.Duration(1<<63-1) {
		t.Errorf("MaxDelay = %d", MaxDelay)
	}
}

func TestNextRetryUsesJitterFunc(t *testing.T) {
	t.Parallel()

	calls := 0
	jitter := func() float64 { calls++; return 0.25 }
	got := NextRetry(2, now, jitter)
	if want := now.Add(15200 * time.Millisecond); !got.Equal(want) || calls != 1 {
		t.Fatalf("NextRetry = %v (jitter called %d times), want %v once", got, calls, want)
	}

	zone := time.FixedZone("UTC-5", -5*60*60)
	if got := NextRetry(1, now.In(zone), jitter); got.Location() != zone {
		t.Fatalf("location %v, want the input's", got.Location())
	}
}

func TestDefaultNextRetryRandom(t *testing.T) {
	t.Parallel()

	const count = 3
	lo, hi := 72900*time.Millisecond, 89100*time.Millisecond
	base := 81 * time.Second
	var below, above int
	for range 2000 {
		d := DefaultNextRetry(count, now).Sub(now)
		if d < lo || d >= hi {
			t.Fatalf("delay %v outside [%v, %v)", d, lo, hi)
		}
		if d < base {
			below++
		} else {
			above++
		}
	}
	// Both halves of the range are drawn from (failing by chance is
	// a 2^-1999 event).
	if below == 0 || above == 0 {
		t.Fatalf("jitter not spread: %d below base, %d above", below, above)
	}
}
