package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// The results.json format of issue 8.
type output struct {
	Machine  string `json:"machine"`
	Go       string `json:"go"`
	Postgres string `json:"postgres"`
	Jobs     int    `json:"jobs"`
	// PostgresSettings are the server settings the run saw, in the order
	// of reportedSettings.
	PostgresSettings []pgSetting   `json:"postgres_settings"`
	Scenarios        []scenarioOut `json:"scenarios"`
	Notes            []string      `json:"notes,omitempty"`
}

type scenarioOut struct {
	Name          string `json:"name"`
	Millrace      any    `json:"millrace"`
	River         any    `json:"river"`
	RiverDefaults any    `json:"river_defaults,omitempty"`
	// MillraceDatabaseSQL is millrace on driver/databasesql (burndown).
	MillraceDatabaseSQL any `json:"millrace_database_sql,omitempty"`
	// MillraceSQLite is millrace on driver/sqlite, on a file (burndown).
	MillraceSQLite any `json:"millrace_sqlite,omitempty"`
	Ceiling        any `json:"ceiling,omitempty"`
	// Floor is the SQL floor's latency (latency).
	Floor any `json:"floor,omitempty"`
	// Unlimited is millrace without the limit (limits).
	Unlimited any     `json:"unlimited,omitempty"`
	Ratio     float64 `json:"ratio"`
	// DBCost is each contender's database cost per job (medians of the
	// rounds), by contender label.
	DBCost map[string]*dbCost `json:"db_cost,omitempty"`
	// Points is the scale scenario's curve.
	Points []scalePointOut `json:"points,omitempty"`
	// Shape is a ceiling loop's "LOOPSxBATCH".
	Shape string `json:"shape,omitempty"`
}

// scalePointOut is one point of the scale curve.
type scalePointOut struct {
	Name      string        `json:"name"`
	Jobs      int           `json:"jobs"`
	Finalized int           `json:"finalized"`
	Millrace  *scaleFigures `json:"millrace"`
	River     *scaleFigures `json:"river,omitempty"`
}

type scaleFigures struct {
	JobsPerS float64 `json:"jobs_per_s"`
	// VsFirst is jobs/s over the first point's; VsSameQueued, for the
	// point with history, over the point of as many jobs without it.
	VsFirst      float64 `json:"vs_first"`
	VsSameQueued float64 `json:"vs_same_queued,omitempty"`
	DBCost       *dbCost `json:"db_cost,omitempty"`
}

type throughputOut struct {
	JobsPerS float64 `json:"jobs_per_s"`
}

type latencyOut struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

type mixedOut struct {
	JobsPerS float64 `json:"jobs_per_s"`
	P50      float64 `json:"p50_ms"`
	P90      float64 `json:"p90_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	// The stream's jobs inserted while the other queue's burndown ran.
	LoadCount int     `json:"load_count"`
	LoadP50   float64 `json:"load_p50_ms"`
	LoadP90   float64 `json:"load_p90_ms"`
	LoadP99   float64 `json:"load_p99_ms"`
	LoadMax   float64 `json:"load_max_ms"`
	// The other queue's burndown.
	BulkJobs     int     `json:"bulk_jobs"`
	BulkJobsPerS float64 `json:"bulk_jobs_per_s"`
}

type memoryOut struct {
	AllocsPerJob float64 `json:"allocs_per_job"`
	BytesPerJob  float64 `json:"bytes_per_job"`
	PeakRSSMB    float64 `json:"peak_rss_mb"`
}

// ratio is a/b for results.json, 0 when it has no finite value.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round(a/b, 3)
}

// report takes the medians, prints the table and returns results.json's
// content. Every ratio is "times better for millrace": above 1 millrace
// is ahead.
func (b *bench) report(machine, pg string) *output {
	out := &output{Machine: machine, Go: runtime.Version(), Postgres: pg, Jobs: b.s.jobs}
	med := func(scenario, label string, f func(*runResult) float64) float64 {
		x, err := b.medianOf(scenario, label, f)
		if err != nil {
			return math.NaN()
		}
		return x
	}
	jobsPerS := func(r *runResult) float64 { return r.JobsPerS }
	have := func(scenario, label string) bool { return len(b.results[scenario][label]) > 0 }

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Println()
	fmt.Printf("medians of %d rounds; ratio > 1 means millrace is ahead\n", b.s.rounds)
	if len(b.scalePoints) > 0 && b.s.scaleRounds != b.s.rounds {
		fmt.Printf("(scale: medians of %d rounds per point)\n", b.s.scaleRounds)
	}
	// Names left-aligned, numbers right-aligned.
	row := func(cells ...string) {
		for i := 2; i < len(cells); i++ {
			cells[i] = fmt.Sprintf("%11s", cells[i])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	row("scenario", "measure", "millrace", "River", "ratio")

	burndownM := math.NaN()
	if have("burndown", millraceDefaults.label) {
		m, r := med("burndown", millraceDefaults.label, jobsPerS), med("burndown", riverTuned.label, jobsPerS)
		burndownM = m
		if slices.Contains(b.s.scenarios, "burndown") {
			sc := scenarioOut{Name: "burndown", Millrace: throughputOut{round(m, 4)}, River: throughputOut{round(r, 4)}, Ratio: ratio(m, r),
				DBCost: b.costMedians("burndown", millraceDefaults, riverTuned, riverDefaults, millraceDatabaseSQL)}
			row("burndown", "jobs/s vs River tuned", thousands(m), thousands(r), fmtRatio(m/r))
			if have("burndown", riverDefaults.label) {
				d := med("burndown", riverDefaults.label, jobsPerS)
				sc.RiverDefaults = throughputOut{round(d, 4)}
				row("", "jobs/s vs River defaults", "", thousands(d), fmtRatio(m/d))
			}
			if have("burndown", millraceDatabaseSQL.label) {
				// millrace on driver/databasesql against the same River.
				q := med("burndown", millraceDatabaseSQL.label, jobsPerS)
				sc.MillraceDatabaseSQL = throughputOut{round(q, 4)}
				row("", "database/sql driver: jobs/s vs River tuned", thousands(q), thousands(r), fmtRatio(q/r))
			}
			if have("burndown", millraceSQLite.label) {
				// millrace on driver/sqlite (a file, no server) against
				// the same River on Postgres.
				l := med("burndown", millraceSQLite.label, jobsPerS)
				sc.MillraceSQLite = throughputOut{round(l, 4)}
				row("", "SQLite driver (a file): jobs/s vs River tuned", thousands(l), thousands(r), fmtRatio(l/r))
				if have("burndown", millraceDatabaseSQL.label) {
					q := med("burndown", millraceDatabaseSQL.label, jobsPerS)
					row("", "drivers: pgx / database/sql / SQLite jobs/s", thousands(m)+" / "+thousands(q)+" / "+thousands(l), "", "")
				}
			}
			out.Scenarios = append(out.Scenarios, sc)
		}
	}
	for _, name := range []string{"insert_many_fast", "insert_single"} {
		if !have(name, millraceDefaults.label) {
			continue
		}
		m, r := med(name, millraceDefaults.label, jobsPerS), med(name, riverDefaults.label, jobsPerS)
		out.Scenarios = append(out.Scenarios, scenarioOut{Name: name, Millrace: throughputOut{round(m, 4)},
			River: throughputOut{round(r, 4)}, Ratio: ratio(m, r)})
		row(name, "jobs/s", thousands(m), thousands(r), fmtRatio(m/r))
	}
	if have("latency", millraceDefaults.label) {
		lm, lr := b.latencyMedians("latency", millraceDefaults.label), b.latencyMedians("latency", riverTuned.label)
		sc := scenarioOut{Name: "latency", Millrace: lm, River: lr, Ratio: ratio(lr.P50, lm.P50)}
		row("latency", "p50 ms (500/s)", fmtMS(lm.P50), fmtMS(lr.P50), fmtRatio(lr.P50/lm.P50))
		row("", "p90 ms", fmtMS(lm.P90), fmtMS(lr.P90), fmtRatio(lr.P90/lm.P90))
		row("", "p99 ms", fmtMS(lm.P99), fmtMS(lr.P99), fmtRatio(lr.P99/lm.P99))
		row("", "max ms", fmtMS(lm.Max), fmtMS(lr.Max), fmtRatio(lr.Max/lm.Max))
		if have("latency", sqlFloor.label) {
			// The floor's ratios are the floor's over millrace's (the
			// share of the floor millrace reaches, as sql_ceiling's):
			// 1 is millrace at the floor.
			lf := b.latencyMedians("latency", sqlFloor.label)
			sc.Floor = lf
			row("", "p50 ms vs SQL floor", fmtMS(lm.P50), fmtMS(lf.P50), fmtRatio(lf.P50/lm.P50))
			row("", "p99 ms vs SQL floor", fmtMS(lm.P99), fmtMS(lf.P99), fmtRatio(lf.P99/lm.P99))
		}
		out.Scenarios = append(out.Scenarios, sc)
	}
	if have("mixed", millraceDefaults.label) {
		lm, lr := b.latencyMedians("mixed", millraceDefaults.label), b.latencyMedians("mixed", riverTuned.label)
		tm, tr := med("mixed", millraceDefaults.label, jobsPerS), med("mixed", riverTuned.label, jobsPerS)
		xm, xr := b.mixedMedians(millraceDefaults.label), b.mixedMedians(riverTuned.label)
		xm.JobsPerS, xm.P50, xm.P90, xm.P99, xm.Max = round(tm, 4), lm.P50, lm.P90, lm.P99, lm.Max
		xr.JobsPerS, xr.P50, xr.P90, xr.P99, xr.Max = round(tr, 4), lr.P50, lr.P90, lr.P99, lr.Max
		out.Scenarios = append(out.Scenarios, scenarioOut{Name: "mixed", Millrace: xm, River: xr, Ratio: ratio(lr.P50, lm.P50)})
		row("mixed", "p50 ms (1000/s x 10 ms)", fmtMS(lm.P50), fmtMS(lr.P50), fmtRatio(lr.P50/lm.P50))
		row("", "p90 ms", fmtMS(lm.P90), fmtMS(lr.P90), fmtRatio(lr.P90/lm.P90))
		row("", "p99 ms", fmtMS(lm.P99), fmtMS(lr.P99), fmtRatio(lr.P99/lm.P99))
		row("", "max ms", fmtMS(lm.Max), fmtMS(lr.Max), fmtRatio(lr.Max/lm.Max))
		row("", "jobs/s", thousands(tm), thousands(tr), fmtRatio(tm/tr))
		if xm.BulkJobs > 0 {
			bulk := thousands(float64(xm.BulkJobs))
			row("", "p50 ms during "+bulk+"-job burndown", fmtMS(xm.LoadP50), fmtMS(xr.LoadP50), fmtRatio(xr.LoadP50/xm.LoadP50))
			row("", "p99 ms during burndown", fmtMS(xm.LoadP99), fmtMS(xr.LoadP99), fmtRatio(xr.LoadP99/xm.LoadP99))
			row("", "max ms during burndown", fmtMS(xm.LoadMax), fmtMS(xr.LoadMax), fmtRatio(xr.LoadMax/xm.LoadMax))
			row("", "jobs inserted during burndown", thousands(float64(xm.LoadCount)), thousands(float64(xr.LoadCount)), "")
			row("", "burndown jobs/s (other queue)", thousands(xm.BulkJobsPerS), thousands(xr.BulkJobsPerS), fmtRatio(xm.BulkJobsPerS/xr.BulkJobsPerS))
		}
	}
	if have("sql_ceiling", sqlLoop.label) && !math.IsNaN(burndownM) {
		c := med("sql_ceiling", sqlLoop.label, jobsPerS)
		out.Scenarios = append(out.Scenarios, scenarioOut{Name: "sql_ceiling", Millrace: throughputOut{round(burndownM, 4)},
			River: nil, Ceiling: throughputOut{round(c, 4)}, Ratio: ratio(burndownM, c),
			DBCost: b.costMedians("sql_ceiling", sqlLoop), Shape: b.ceilingShapes["sql_ceiling"]})
		row("sql_ceiling", "burndown jobs/s vs SQL loop", thousands(burndownM), thousands(c), fmtRatio(burndownM/c))
	}
	ephemeralM := math.NaN()
	if have("ephemeral", millraceEphemeral.label) {
		m, r := med("ephemeral", millraceEphemeral.label, jobsPerS), med("ephemeral", riverTuned.label, jobsPerS)
		ephemeralM = m
		out.Scenarios = append(out.Scenarios, scenarioOut{Name: "ephemeral", Millrace: throughputOut{round(m, 4)},
			River: throughputOut{round(r, 4)}, Ratio: ratio(m, r), DBCost: b.costMedians("ephemeral", millraceEphemeral, riverTuned)})
		row("ephemeral", "jobs/s vs River tuned (keeps rows)", thousands(m), thousands(r), fmtRatio(m/r))
	}
	if have("sql_ceiling_delete", sqlDeleteLoop.label) {
		c := med("sql_ceiling_delete", sqlDeleteLoop.label, jobsPerS)
		sc := scenarioOut{Name: "sql_ceiling_delete", Ceiling: throughputOut{round(c, 4)},
			DBCost: b.costMedians("sql_ceiling_delete", sqlDeleteLoop), Shape: b.ceilingShapes["sql_ceiling_delete"]}
		if !math.IsNaN(ephemeralM) {
			sc.Millrace, sc.Ratio = throughputOut{round(ephemeralM, 4)}, ratio(ephemeralM, c)
		}
		out.Scenarios = append(out.Scenarios, sc)
		row("sql_ceiling_delete", "ephemeral jobs/s vs SQL delete loop", thousands(ephemeralM), thousands(c), fmtRatio(ephemeralM/c))
	}
	if have("limits", millraceLimited.label) {
		// Both columns are millrace here: limited, then unlimited.
		l, u := med("limits", millraceLimited.label, jobsPerS), med("limits", millraceDefaults.label, jobsPerS)
		out.Scenarios = append(out.Scenarios, scenarioOut{Name: "limits", Millrace: throughputOut{round(l, 4)},
			Unlimited: throughputOut{round(u, 4)}, Ratio: ratio(l, u),
			DBCost: b.costMedians("limits", millraceLimited, millraceDefaults)})
		row("limits", fmt.Sprintf("global limit %d: jobs/s vs millrace unlimited (in the River column)", limitedGlobal),
			thousands(l), thousands(u), fmtRatio(l/u))
	}
	if len(b.scalePoints) > 0 {
		sc, rows := b.scaleReport()
		out.Scenarios = append(out.Scenarios, sc)
		for _, r := range rows {
			row(r...)
		}
	}
	for _, c := range []contender{millraceDefaults, riverTuned} {
		rs := b.results["soak"][c.label]
		if len(rs) == 0 || rs[0].SoakSummary == nil {
			continue
		}
		r, m := rs[0], rs[0].SoakSummary
		sc := scenarioOut{Name: "soak " + c.label, Ratio: round(m.LastRSSMB/m.FirstRSSMB, 3)}
		figures := map[string]any{"jobs_per_s": round(r.JobsPerS, 4), "seconds": round(r.Seconds, 4), "summary": m, "samples": r.Soak}
		if c.system == "millrace" {
			sc.Millrace = figures
		} else {
			sc.River = figures
		}
		out.Scenarios = append(out.Scenarios, sc)
		// The figure goes in its system's column; the ratio is the end's
		// over the start's (1.00x: flat).
		cell := func(v float64) []string {
			if c.system == "millrace" {
				return []string{fmt.Sprintf("%.1f", v), ""}
			}
			return []string{"", fmt.Sprintf("%.1f", v)}
		}
		rss, heap := cell(m.LastRSSMB), cell(m.LastHeap)
		row("soak "+c.system, fmt.Sprintf("RSS MB, last fifth (first: %.1f; %.0f s, %s jobs/s)", m.FirstRSSMB, r.Seconds, thousands(r.JobsPerS)),
			rss[0], rss[1], fmtRatio(m.LastRSSMB/m.FirstRSSMB))
		row("", fmt.Sprintf("heap MB, last fifth (first: %.1f)", m.FirstHeap), heap[0], heap[1], fmtRatio(m.LastHeap/m.FirstHeap))
	}
	if slices.Contains(b.s.scenarios, "memory") && have("burndown", millraceDefaults.label) {
		mm, mr := b.memoryMedians(millraceDefaults.label), b.memoryMedians(riverTuned.label)
		out.Scenarios = append(out.Scenarios, scenarioOut{Name: "memory", Millrace: mm, River: mr, Ratio: ratio(mr.AllocsPerJob, mm.AllocsPerJob)})
		row("memory", "allocs/job (burndown)", fmt.Sprintf("%.1f", mm.AllocsPerJob), fmt.Sprintf("%.1f", mr.AllocsPerJob), fmtRatio(mr.AllocsPerJob/mm.AllocsPerJob))
		row("", "bytes/job", thousands(mm.BytesPerJob), thousands(mr.BytesPerJob), fmtRatio(mr.BytesPerJob/mm.BytesPerJob))
		row("", "peak RSS MB", fmt.Sprintf("%.0f", mm.PeakRSSMB), fmt.Sprintf("%.0f", mr.PeakRSSMB), fmtRatio(mr.PeakRSSMB/mm.PeakRSSMB))
		if have("burndown", riverDefaults.label) {
			md := b.memoryMedians(riverDefaults.label)
			row("", "River defaults: allocs/job", "", fmt.Sprintf("%.1f", md.AllocsPerJob), fmtRatio(md.AllocsPerJob/mm.AllocsPerJob))
			row("", "bytes/job", "", thousands(md.BytesPerJob), fmtRatio(md.BytesPerJob/mm.BytesPerJob))
			row("", "peak RSS MB", "", fmt.Sprintf("%.0f", md.PeakRSSMB), fmtRatio(md.PeakRSSMB/mm.PeakRSSMB))
		}
	}
	if have("latency_same_client", millraceDefaults.label) {
		lm, lr := b.latencyMedians("latency_same_client", millraceDefaults.label), b.latencyMedians("latency_same_client", riverTuned.label)
		out.Scenarios = append(out.Scenarios, scenarioOut{Name: "latency_same_client", Millrace: lm, River: lr, Ratio: ratio(lr.P50, lm.P50)})
		row("latency_same_client", "p50 ms (500/s)", fmtMS(lm.P50), fmtMS(lr.P50), fmtRatio(lr.P50/lm.P50))
		row("", "p90 ms", fmtMS(lm.P90), fmtMS(lr.P90), fmtRatio(lr.P90/lm.P90))
		row("", "p99 ms", fmtMS(lm.P99), fmtMS(lr.P99), fmtRatio(lr.P99/lm.P99))
		row("", "max ms", fmtMS(lm.Max), fmtMS(lr.Max), fmtRatio(lr.Max/lm.Max))
	}
	tw.Flush()
	b.costTable()
	fmt.Println()
	fmt.Println("River is tuned (MaxWorkers 2000, FetchCooldown 2 ms, FetchPollInterval 20 ms) for burndown, latency,")
	fmt.Println("mixed and memory, and at its defaults for the insert scenarios (its tuning only adds insert notifications).")
	fmt.Printf("latency and mixed: a %s client inserts; latency_same_client: the working client inserts its own jobs.\n",
		map[string]string{"separate": "separate (not started)", "same": "the working"}[b.s.inserter])
	fmt.Println("latency/mixed ratios are River's p50 over millrace's; memory's is River's allocs/job over millrace's;")
	fmt.Println("sql_ceiling's is millrace's burndown over the hand-written SQL loop (sql_ceiling_delete's: millrace's")
	fmt.Println("ephemeral burndown over the loop that deletes); scale's are each system's own rate at a point over the first point's.")
	if slices.Contains(b.s.scenarios, "mixed") {
		fmt.Println("mixed: the stream runs on one queue while the other queue of the same client burns down a backlog (paused until")
		fmt.Println("the stream starts); \"during burndown\" counts the stream's jobs inserted before that backlog was worked off.")
	}
	for _, n := range b.notes {
		fmt.Println("note: " + n)
	}
	out.Notes = b.notes
	return out
}

func (b *bench) latencyMedians(scenario, label string) latencyOut {
	m := func(f func(*runResult) float64) float64 {
		x, err := b.medianOf(scenario, label, f)
		if err != nil {
			return 0
		}
		return round(x, 4)
	}
	return latencyOut{
		P50: m(func(r *runResult) float64 { return r.P50 }),
		P90: m(func(r *runResult) float64 { return r.P90 }),
		P99: m(func(r *runResult) float64 { return r.P99 }),
		Max: m(func(r *runResult) float64 { return r.Max }),
	}
}

func (b *bench) memoryMedians(label string) memoryOut {
	m := func(f func(*runResult) float64) float64 {
		x, err := b.medianOf("burndown", label, f)
		if err != nil {
			return 0
		}
		return round(x, 4)
	}
	return memoryOut{
		AllocsPerJob: m(func(r *runResult) float64 { return r.AllocsPerJob }),
		BytesPerJob:  m(func(r *runResult) float64 { return r.BytesPerJob }),
		PeakRSSMB:    m(func(r *runResult) float64 { return r.PeakRSSMB }),
	}
}

// thousands formats a rate with thousands separators.
func thousands(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func fmtMS(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	if x >= 100 {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func fmtRatio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", x)
}
