package main

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// soakSample is one reading of the working client's process during a soak.
type soakSample struct {
	Seconds    float64 `json:"seconds"`    // since the stream started
	RSSMB      float64 `json:"rss_mb"`     // VmRSS
	HeapMB     float64 `json:"heap_mb"`    // runtime HeapInuse
	Goroutines int     `json:"goroutines"` // runtime.NumGoroutine
	Worked     int64   `json:"worked"`     // jobs worked so far
	Behind     int64   `json:"behind"`     // jobs inserted but not yet worked
	StackMB    float64 `json:"stack_mb"`   // runtime StackInuse
	NumGC      uint32  `json:"num_gc"`     // completed GC cycles
	TotalAlloc float64 `json:"total_alloc_mb"`
}

// soakSummary compares the start of a soak with its end.
type soakSummary struct {
	// WarmupSamples are left out of the comparison: those of the first
	// minute (of the first fifth, in a run shorter than five minutes),
	// while pools fill and worker goroutines start.
	WarmupSamples int `json:"warmup_samples"`
	// FirstRSSMB and LastRSSMB are the mean VmRSS of the first and the
	// last fifth of the samples after the warm-up.
	FirstRSSMB float64 `json:"first_rss_mb"`
	LastRSSMB  float64 `json:"last_rss_mb"`
	MaxRSSMB   float64 `json:"max_rss_mb"`
	FirstHeap  float64 `json:"first_heap_mb"`
	LastHeap   float64 `json:"last_heap_mb"`
	FirstGor   int     `json:"first_goroutines"`
	LastGor    int     `json:"last_goroutines"`
}

// soakInterval is how often a soak samples its process.
const soakInterval = 10 * time.Second

// childSoak works a steady stream of spec.Rate jobs a second, inserted in
// batches by a second client of the same system, for spec.Duration, and
// samples the working client's memory every soakInterval (after a forced
// collection, so the heap figure is the live heap). The result's
// jobs/s is the rate worked; the samples show whether memory stays flat.
func childSoak(ctx context.Context, spec *runSpec, pool *pgxpool.Pool) (*runResult, error) {
	var worked, inserted atomic.Int64
	sys, err := newSystem(spec.System, spec.Variant, pool, spec.Schema, []string{queue}, spec.MillraceWorkers,
		func(context.Context, int64) error { worked.Add(1); return nil }, logger())
	if err != nil {
		return nil, err
	}
	inserter, closePool, err := newSeparateInserter(ctx, spec, pool)
	if err != nil {
		return nil, err
	}
	defer closePool()
	if err := sys.Start(ctx); err != nil {
		return nil, err
	}
	defer stopSystem(sys) //nolint:errcheck // best effort once measured

	// Batches of a tenth of the rate, ten times a second.
	batch := max(1, spec.Rate/10)
	args := make([]noopArgs, batch)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	sample := time.NewTicker(soakInterval)
	defer sample.Stop()
	start := time.Now()
	var samples []soakSample
	take := func() {
		// A collection first, so the heap figure is what is live rather
		// than wherever the GC cycle happened to be.
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		samples = append(samples, soakSample{Seconds: time.Since(start).Seconds(), RSSMB: currentRSSMB(),
			HeapMB: float64(ms.HeapAlloc) / (1 << 20), StackMB: float64(ms.StackInuse) / (1 << 20),
			Goroutines: runtime.NumGoroutine(), Worked: worked.Load(), Behind: inserted.Load() - worked.Load(),
			NumGC: ms.NumGC, TotalAlloc: float64(ms.TotalAlloc) / (1 << 20)})
		s := samples[len(samples)-1]
		progressf(spec, "%3.0f s: RSS %.1f MB, heap %.1f MB, stacks %.1f MB, %d goroutines, %d worked, %d behind",
			s.Seconds, s.RSSMB, s.HeapMB, s.StackMB, s.Goroutines, s.Worked, s.Behind)
	}
	take()
	for time.Since(start) < spec.Duration {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			if _, err := inserter.InsertMany(ctx, args); err != nil {
				return nil, fmt.Errorf("insert: %w", err)
			}
			inserted.Add(int64(batch))
		case <-sample.C:
			take()
		}
	}
	elapsed := time.Since(start)
	take()
	return &runResult{JobsPerS: float64(worked.Load()) / elapsed.Seconds(), Seconds: elapsed.Seconds(),
		Count: int(worked.Load()), PeakRSSMB: peakRSSMB(), Soak: samples, SoakSummary: summarizeSoak(samples)}, nil
}

// summarizeSoak compares the first fifth of the samples after the warm-up
// with the last fifth.
func summarizeSoak(samples []soakSample) *soakSummary {
	if len(samples) == 0 {
		return nil
	}
	warmup := time.Minute.Seconds()
	if end := samples[len(samples)-1].Seconds; end < 5*warmup {
		warmup = end / 5
	}
	skip := 0
	for skip < len(samples)-1 && samples[skip].Seconds < warmup {
		skip++
	}
	all := samples
	samples = samples[skip:]
	n := max(1, len(samples)/5)
	mean := func(xs []soakSample, f func(soakSample) float64) float64 {
		var sum float64
		for _, x := range xs {
			sum += f(x)
		}
		return sum / float64(len(xs))
	}
	first, last := samples[:n], samples[len(samples)-n:]
	rss := func(s soakSample) float64 { return s.RSSMB }
	heap := func(s soakSample) float64 { return s.HeapMB }
	out := &soakSummary{FirstRSSMB: mean(first, rss), LastRSSMB: mean(last, rss), FirstHeap: mean(first, heap),
		LastHeap: mean(last, heap), FirstGor: first[0].Goroutines, LastGor: last[len(last)-1].Goroutines, WarmupSamples: skip}
	for _, s := range all {
		out.MaxRSSMB = max(out.MaxRSSMB, s.RSSMB)
	}
	return out
}
