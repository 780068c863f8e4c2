package main

import (
	"math"
	"slices"
	"time"
)

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the p-th percentile (0..100) of sorted durations by the
// nearest-rank method, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return ms(sorted[rank-1])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// round keeps digits significant figures, so results.json stays readable;
// a value that is not finite (a missing measurement) becomes 0, which JSON
// can hold.
func round(x float64, digits int) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	if x == 0 {
		return 0
	}
	e := float64(digits) - math.Ceil(math.Log10(math.Abs(x)))
	if e >= 0 {
		p := math.Pow(10, e)
		return math.Round(x*p) / p
	}
	p := math.Pow(10, -e)
	return math.Round(x/p) * p
}
