package main

import (
	"fmt"
	"math"
	"os"
	"strings"
	"text/tabwriter"
)

// costMedian is the median per-job database cost of a contender's rounds
// (each figure's own median), or nil when no round measured it.
func (b *bench) costMedian(key, label string) *dbCost {
	var costs []*dbCost
	for _, r := range b.results[key][label] {
		if r.Cost != nil {
			costs = append(costs, r.Cost)
		}
	}
	return medianCost(costs)
}

// medianCost takes each figure's median over costs; nil for none.
func medianCost(costs []*dbCost) *dbCost {
	if len(costs) == 0 {
		return nil
	}
	m := func(f func(*dbCost) float64) float64 {
		xs := make([]float64, len(costs))
		for i, c := range costs {
			xs[i] = f(c)
		}
		return round(median(xs), 4)
	}
	return &dbCost{
		WALBytesPerJob:        m(func(c *dbCost) float64 { return c.WALBytesPerJob }),
		WALRecordsPerJob:      m(func(c *dbCost) float64 { return c.WALRecordsPerJob }),
		WALFPIPerJob:          m(func(c *dbCost) float64 { return c.WALFPIPerJob }),
		RoundTripsPerJob:      m(func(c *dbCost) float64 { return c.RoundTripsPerJob }),
		StatementsPerJob:      m(func(c *dbCost) float64 { return c.StatementsPerJob }),
		CommitsPerJob:         m(func(c *dbCost) float64 { return c.CommitsPerJob }),
		RollbacksPerJob:       m(func(c *dbCost) float64 { return c.RollbacksPerJob }),
		ClientCPUMicrosPerJob: m(func(c *dbCost) float64 { return c.ClientCPUMicrosPerJob }),
		ServerCPUMicrosPerJob: m(func(c *dbCost) float64 { return c.ServerCPUMicrosPerJob }),
	}
}

// costMedians maps each contender that has results under key to its
// median cost.
func (b *bench) costMedians(key string, contenders ...contender) map[string]*dbCost {
	out := map[string]*dbCost{}
	for _, c := range contenders {
		if m := b.costMedian(key, c.label); m != nil {
			out[c.label] = m
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// mixedMedians takes the medians of mixed's figures for the stream's jobs
// inserted during the other queue's burndown, and of that burndown.
func (b *bench) mixedMedians(label string) mixedOut {
	m := func(f func(*runResult) float64) float64 {
		x, err := b.medianOf("mixed", label, f)
		if err != nil {
			return 0
		}
		return round(x, 4)
	}
	return mixedOut{
		LoadCount:    int(m(func(r *runResult) float64 { return float64(r.LoadCount) })),
		LoadP50:      m(func(r *runResult) float64 { return r.LoadP50 }),
		LoadP90:      m(func(r *runResult) float64 { return r.LoadP90 }),
		LoadP99:      m(func(r *runResult) float64 { return r.LoadP99 }),
		LoadMax:      m(func(r *runResult) float64 { return r.LoadMax }),
		BulkJobs:     b.s.mixedBulk,
		BulkJobsPerS: m(func(r *runResult) float64 { return r.BulkJobsPerS }),
	}
}

// scaleReport builds the scale scenario's results.json entry and its rows
// of the table.
func (b *bench) scaleReport() (scenarioOut, [][]string) {
	sc := scenarioOut{Name: "scale"}
	var rows [][]string
	jobsPerS := func(r *runResult) float64 { return r.JobsPerS }
	rates := func(c contender) ([]float64, bool) {
		xs := make([]float64, len(b.scalePoints))
		found := false
		for i, p := range b.scalePoints {
			x, err := b.medianOf(resultKey("scale", p.key()), c.label, jobsPerS)
			if err != nil {
				xs[i] = math.NaN()
				continue
			}
			xs[i], found = x, true
		}
		return xs, found
	}
	mRates, _ := rates(millraceDefaults)
	rRates, haveRiver := rates(riverTuned)
	mc, rc := curve(b.scalePoints, mRates), curve(b.scalePoints, rRates)
	figures := func(c scaleCurve, i int, label string) *scaleFigures {
		if math.IsNaN(c.JobsPerS[i]) {
			return nil
		}
		return &scaleFigures{JobsPerS: round(c.JobsPerS[i], 4), VsFirst: round(c.VsFirst[i], 3),
			VsSameQueued: round(c.VsSameQueued[i], 3), DBCost: b.costMedian(resultKey("scale", b.scalePoints[i].key()), label)}
	}
	first := b.scalePoints[0].String()
	for i, p := range b.scalePoints {
		po := scalePointOut{Name: p.key(), Jobs: p.Jobs, Finalized: p.Finalized, Millrace: figures(mc, i, millraceDefaults.label)}
		if haveRiver {
			po.River = figures(rc, i, riverTuned.label)
		}
		sc.Points = append(sc.Points, po)
		name := ""
		if i == 0 {
			name = "scale"
		}
		rCell, ratioCell := "", ""
		if haveRiver {
			rCell, ratioCell = thousands(rc.JobsPerS[i]), fmtRatio(mc.JobsPerS[i]/rc.JobsPerS[i])
		}
		rows = append(rows, []string{name, "jobs/s, " + p.String(), thousands(mc.JobsPerS[i]), rCell, ratioCell})
		if i > 0 {
			rVs := ""
			if haveRiver {
				rVs = fmtRatio(rc.VsFirst[i])
			}
			rows = append(rows, []string{"", "  share of " + first, fmtRatio(mc.VsFirst[i]), rVs, ""})
		}
		if j := mc.SameQueuedIdx[i]; j >= 0 {
			rVs := ""
			if haveRiver {
				rVs = fmtRatio(rc.VsSameQueued[i])
			}
			rows = append(rows, []string{"", "  share of " + b.scalePoints[j].String(), fmtRatio(mc.VsSameQueued[i]), rVs, ""})
		}
	}
	return sc, rows
}

// costRow is one line of the database cost table.
type costRow struct {
	run, system string
	jobsPerS    float64
	cost        *dbCost
}

// costTable prints the per-job database cost of every burndown-like run
// (medians of the rounds), one line per scenario and contender.
func (b *bench) costTable() {
	var rows []costRow
	add := func(run, key string, contenders ...contender) {
		for _, c := range contenders {
			cost := b.costMedian(key, c.label)
			if cost == nil {
				continue
			}
			x, _ := b.medianOf(key, c.label, func(r *runResult) float64 { return r.JobsPerS })
			rows = append(rows, costRow{run, c.label, x, cost})
		}
	}
	add("burndown", "burndown", millraceDefaults, riverTuned, riverDefaults, millraceDatabaseSQL)
	add("sql_ceiling", "sql_ceiling", sqlLoop)
	add("ephemeral", "ephemeral", millraceEphemeral, riverTuned)
	add("sql_ceiling_delete", "sql_ceiling_delete", sqlDeleteLoop)
	add("limits", "limits", millraceLimited, millraceDefaults)
	for _, p := range b.scalePoints {
		add("scale "+p.String(), resultKey("scale", p.key()), millraceDefaults, riverTuned)
	}
	if len(rows) == 0 {
		return
	}
	fmt.Println()
	fmt.Println("database cost per job (medians of the rounds; WAL and commits are server-wide counters, see README.md)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	// Names left-aligned, numbers right-aligned.
	line := func(cells ...string) {
		for i := 2; i < len(cells); i++ {
			cells[i] = fmt.Sprintf("%11s", cells[i])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	line("run", "system", "jobs/s", "WAL bytes", "WAL FPI", "round trips", "statements", "commits", "client µs", "server µs")
	for _, r := range rows {
		line(r.run, r.system, thousands(r.jobsPerS),
			fmt.Sprintf("%.0f", r.cost.WALBytesPerJob), fmt.Sprintf("%.3f", r.cost.WALFPIPerJob),
			fmt.Sprintf("%.4f", r.cost.RoundTripsPerJob), fmt.Sprintf("%.4f", r.cost.StatementsPerJob),
			fmt.Sprintf("%.4f", r.cost.CommitsPerJob), fmt.Sprintf("%.1f", r.cost.ClientCPUMicrosPerJob),
			serverCPU(r.cost.ServerCPUMicrosPerJob))
	}
	tw.Flush()
}

// serverCPU formats the server's CPU per job, "-" when it was not visible.
func serverCPU(us float64) string {
	if us < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", us)
}
