package main

import (
	"context"
	"fmt"
	"math"
)

// scalePoint is one point of the scale scenario's curve: a burndown of Jobs
// jobs, behind Finalized completed rows.
type scalePoint struct {
	Jobs      int
	Finalized int
}

// key names the point in results and profile file names.
func (p scalePoint) key() string {
	if p.Finalized > 0 {
		return fmt.Sprintf("n%d_f%d", p.Jobs, p.Finalized)
	}
	return fmt.Sprintf("n%d", p.Jobs)
}

// String describes the point for people.
func (p scalePoint) String() string {
	s := thousands(float64(p.Jobs)) + " queued"
	if p.Finalized > 0 {
		s += " + " + thousands(float64(p.Finalized)) + " finalized"
	}
	return s
}

// scalePoints lists the curve's points: one per size, then the history
// point when finalized > 0.
func scalePoints(sizes []int, finalized, finalizedJobs int) []scalePoint {
	var pts []scalePoint
	for _, n := range sizes {
		pts = append(pts, scalePoint{Jobs: n})
	}
	if finalized > 0 {
		pts = append(pts, scalePoint{Jobs: finalizedJobs, Finalized: finalized})
	}
	return pts
}

// scale runs the burndown at every point of the curve, millrace (and River
// tuned with BENCH_SCALE_RIVER), BENCH_SCALE_ROUNDS rounds per point.
func (b *bench) scale(ctx context.Context) error {
	contenders := []contender{millraceDefaults}
	if b.s.scaleRiver {
		contenders = append(contenders, riverTuned)
	}
	b.scalePoints = scalePoints(b.s.scaleSizes, b.s.scaleFinalized, b.s.scaleFinalizedJobs)
	for _, p := range b.scalePoints {
		pre := prefill{Available: p.Jobs, Finalized: p.Finalized}
		if err := b.scenarioRounds(ctx, "scale", contenders, pre, runSpec{Jobs: p.Jobs, Finalized: p.Finalized, Point: p.key()}, b.s.scaleRounds); err != nil {
			return err
		}
	}
	return nil
}

// scaleCurve is the scale scenario's figures for one contender: jobs/s per
// point (NaN where it did not run), each point's rate relative to the
// first point's, and, for the history point, relative to the point of as
// many jobs without history (NaN when there is none).
type scaleCurve struct {
	JobsPerS      []float64
	VsFirst       []float64
	VsSameQueued  []float64
	SameQueuedIdx []int
}

// curve computes a scaleCurve from per-point rates.
func curve(points []scalePoint, rates []float64) scaleCurve {
	c := scaleCurve{JobsPerS: rates}
	for i, p := range points {
		c.VsFirst = append(c.VsFirst, rates[i]/rates[0])
		same, idx := math.NaN(), -1
		if p.Finalized > 0 {
			for j, q := range points {
				if q.Finalized == 0 && q.Jobs == p.Jobs {
					same, idx = rates[i]/rates[j], j
					break
				}
			}
		}
		c.VsSameQueued = append(c.VsSameQueued, same)
		c.SameQueuedIdx = append(c.SameQueuedIdx, idx)
	}
	return c
}
