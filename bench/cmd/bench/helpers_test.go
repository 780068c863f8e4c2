package main

import (
	"context"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("X", " 10000, 100_000 ,1000000")
	if err != nil || !slices.Equal(got, []int{10000, 100000, 1000000}) {
		t.Fatalf("parseSizes = %v, %v", got, err)
	}
	for _, bad := range []string{"", "10,,20", "0", "-5", "1e6", "ten"} {
		if _, err := parseSizes("BENCH_SCALE_SIZES", bad); err == nil || !strings.Contains(err.Error(), "BENCH_SCALE_SIZES") {
			t.Errorf("parseSizes(%q): err = %v, want one naming the variable", bad, err)
		}
	}
}

func TestParseScenarios(t *testing.T) {
	got, err := parseScenarios("burndown, scale,burndown,ephemeral")
	if err != nil || !slices.Equal(got, []string{"burndown", "scale", "ephemeral"}) {
		t.Fatalf("parseScenarios = %v, %v", got, err)
	}
	if _, err := parseScenarios("burndown,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown scenario: err = %v", err)
	}
	// The long scenario runs only when named.
	if slices.Contains(defaultScenarios, "scale") || !slices.Contains(knownScenarios, "scale") {
		t.Errorf("scale: want known but not default")
	}
	for _, name := range []string{"sql_ceiling_delete", "ephemeral"} {
		if !slices.Contains(defaultScenarios, name) {
			t.Errorf("%s should run by default", name)
		}
	}
}

func TestEnvBool(t *testing.T) {
	for v, want := range map[string]bool{"": true, "1": true, "yes": true, "TRUE": true, "0": false, "no": false, "false": false} {
		t.Setenv("BENCH_TEST_BOOL", v)
		if got, err := envBool("BENCH_TEST_BOOL", true); err != nil || got != want {
			t.Errorf("envBool(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	t.Setenv("BENCH_TEST_BOOL", "maybe")
	if _, err := envBool("BENCH_TEST_BOOL", false); err == nil {
		t.Error("envBool(maybe): no error")
	}
}

func TestReadSettingsScale(t *testing.T) {
	for _, kv := range [][2]string{{"BENCH_SCALE_SIZES", "2000,20000"}, {"BENCH_SCALE_FINALIZED", "0"},
		{"BENCH_SCALE_RIVER", "1"}, {"BENCH_SCENARIOS", "scale"}, {"BENCH_MIXED_BULK", "500"}, {"BENCH_ROUNDS", "5"}} {
		t.Setenv(kv[0], kv[1])
	}
	s, err := readSettings()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.scaleSizes, []int{2000, 20000}) || s.scaleFinalized != 0 || !s.scaleRiver || s.mixedBulk != 500 ||
		s.scaleFinalizedJobs != 100000 || !slices.Equal(s.scenarios, []string{"scale"}) || s.scaleRounds != 1 {
		t.Errorf("settings = %+v", s)
	}
	t.Setenv("BENCH_SCALE_ROUNDS", "3")
	if s, err := readSettings(); err != nil || s.scaleRounds != 3 || s.rounds != 5 {
		t.Errorf("BENCH_SCALE_ROUNDS=3: %+v, %v", s, err)
	}
	t.Setenv("BENCH_SCALE_FINALIZED", "-1")
	if _, err := readSettings(); err == nil {
		t.Error("BENCH_SCALE_FINALIZED=-1: no error")
	}
}

func TestSettingsReport(t *testing.T) {
	settings := []pgSetting{{"server_version", "15.20"}, {"autovacuum", "off"}, {"fsync", "on"},
		{"synchronous_commit", "off"}, {"shared_buffers", "128MB"}, {connectionSSLSetting, "on"}}
	if got := settingValue(settings, "shared_buffers"); got != "128MB" {
		t.Errorf("settingValue = %q", got)
	}
	if got := settingValue(settings, "jit"); got != "" {
		t.Errorf("settingValue(missing) = %q", got)
	}
	lines := formatSettings(settings, "  ", 40)
	joined := strings.Join(lines, "\n")
	for _, s := range settings {
		if !strings.Contains(joined, s.Name+"="+s.Value) {
			t.Errorf("formatted settings lack %s: %q", s.Name, joined)
		}
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "  ") || (len(l) > 40 && strings.Contains(l, ", ")) {
			t.Errorf("line %q: want the indent and at most 40 characters unless one pair is longer", l)
		}
	}
	w := strings.Join(settingsWarnings(settings), "\n")
	for _, want := range []string{"autovacuum is off", "synchronous_commit is off", "TLS"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q: %q", want, w)
		}
	}
	if strings.Contains(w, "fsync") {
		t.Errorf("warned about fsync, which is on: %q", w)
	}
	if got := settingsLine(settings); !strings.HasPrefix(got, "PostgreSQL 15.20 (autovacuum=off, fsync=on, synchronous_commit=off") {
		t.Errorf("settingsLine = %q", got)
	}
}

func TestProfileName(t *testing.T) {
	for _, tc := range []struct{ scenario, point, system, variant, round, want string }{
		{"burndown", "", "millrace", "defaults", "r1", "burndown_millrace-defaults_r1"},
		{"scale", "n100000_f5000000", "river", "tuned", "r3", "scale_n100000_f5000000_river-tuned_r3"},
		{"sql_ceiling", "", "sql", "update", "tune-2x2000", "sql_ceiling_sql-update_tune-2x2000"},
		{"x y/z", "", "a", "", "r1", "x_y_z_a_r1"},
	} {
		if got := profileName(tc.scenario, tc.point, tc.system, tc.variant, tc.round); got != tc.want {
			t.Errorf("profileName(%q...) = %q, want %q", tc.scenario, got, tc.want)
		}
	}
}

func TestQueryCounter(t *testing.T) {
	var q queryCounter
	ctx := context.Background()
	for range 3 {
		q.TraceQueryStart(ctx, nil, pgx.TraceQueryStartData{})
	}
	q.TraceBatchStart(ctx, nil, pgx.TraceBatchStartData{})
	for range 4 {
		q.TraceBatchQuery(ctx, nil, pgx.TraceBatchQueryData{})
	}
	q.TraceCopyFromStart(ctx, nil, pgx.TraceCopyFromStartData{})
	if got := q.snapshot(); got != (queryCounts{RoundTrips: 5, Statements: 8}) {
		t.Errorf("snapshot = %+v, want 5 round trips (3 queries, a batch, a COPY), 8 statements", got)
	}
}

func TestCostPerJob(t *testing.T) {
	before := serverCounters{walLSN: 1000, walRecords: 10, walFPI: 1, commits: 50, rollbacks: 2}
	after := serverCounters{walLSN: 21000, walRecords: 210, walFPI: 11, commits: 350, rollbacks: 4}
	c := costPerJob(before, after, queryCounts{1, 2}, queryCounts{101, 202}, 100, 100)
	want := dbCost{WALBytesPerJob: 200, WALRecordsPerJob: 2, WALFPIPerJob: 0.1, RoundTripsPerJob: 1, StatementsPerJob: 2,
		CommitsPerJob: 2, RollbacksPerJob: 0.02}
	if *c != want {
		t.Errorf("costPerJob = %+v, want %+v", *c, want)
	}
	// More monitoring statements than commits (a stale counter) is no
	// negative cost.
	if c := costPerJob(before, after, queryCounts{}, queryCounts{}, 1000, 10); c.CommitsPerJob != 0 {
		t.Errorf("commits per job = %v, want 0", c.CommitsPerJob)
	}
	if c := costPerJob(before, after, queryCounts{}, queryCounts{}, 0, 0); *c != (dbCost{}) {
		t.Errorf("no jobs: %+v", *c)
	}
}

func TestMedianCost(t *testing.T) {
	if medianCost(nil) != nil {
		t.Error("median of no costs is not nil")
	}
	m := medianCost([]*dbCost{{WALBytesPerJob: 300, RoundTripsPerJob: 0.5}, {WALBytesPerJob: 100, RoundTripsPerJob: 0.1},
		{WALBytesPerJob: 200, RoundTripsPerJob: 0.9}})
	if m.WALBytesPerJob != 200 || m.RoundTripsPerJob != 0.5 {
		t.Errorf("median cost = %+v", *m)
	}
}

func TestScaleCurve(t *testing.T) {
	pts := scalePoints([]int{10000, 100000, 1000000}, 5000000, 100000)
	keys := make([]string, len(pts))
	for i, p := range pts {
		keys[i] = p.key()
	}
	if !slices.Equal(keys, []string{"n10000", "n100000", "n1000000", "n100000_f5000000"}) {
		t.Fatalf("keys = %v", keys)
	}
	if got := pts[3].String(); got != "100,000 queued + 5,000,000 finalized" {
		t.Errorf("String = %q", got)
	}
	c := curve(pts, []float64{20000, 19000, 16000, 15200})
	for i, want := range []float64{1, 0.95, 0.8, 0.76} {
		if math.Abs(c.VsFirst[i]-want) > 1e-9 {
			t.Errorf("VsFirst[%d] = %v, want %v", i, c.VsFirst[i], want)
		}
	}
	if c.SameQueuedIdx[3] != 1 || math.Abs(c.VsSameQueued[3]-0.8) > 1e-9 {
		t.Errorf("history point vs 100,000 queued: idx %d, %v", c.SameQueuedIdx[3], c.VsSameQueued[3])
	}
	for i := range 3 {
		if c.SameQueuedIdx[i] != -1 || !math.IsNaN(c.VsSameQueued[i]) {
			t.Errorf("point %d has a same-queued comparison", i)
		}
	}
	// No point without history of the same size: no comparison.
	c = curve(scalePoints([]int{10000}, 50, 200), []float64{100, 50})
	if c.SameQueuedIdx[1] != -1 {
		t.Errorf("compared with a point of another size")
	}
	// A missing first point gives NaN, which the table shows as "-".
	c = curve(pts[:2], []float64{math.NaN(), 10})
	if fmtRatio(c.VsFirst[1]) != "-" {
		t.Errorf("ratio to a missing point = %s", fmtRatio(c.VsFirst[1]))
	}
}

func TestReadCPU(t *testing.T) {
	// Burn CPU in this process until readCPU has seen 30 ms more of it; on
	// a busy machine that takes longer than 30 ms of wall time, so the
	// bound is generous. A reading that did not follow the process's CPU
	// would never get there.
	before := readCPU()
	x := uint64(1)
	deadline := time.Now().Add(10 * time.Second)
	var after cpuReading
	for {
		for range 100000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		after = readCPU()
		if after.client-before.client >= 30*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client CPU grew by %s in 10 s of spinning, want at least 30 ms", after.client-before.client)
		}
	}
	if x == 0 {
		t.Log("unreachable; keeps the loop")
	}
}

// TestHighWater: the server's readings never go back, whatever /proc says
// (a backend exiting between two files), and follow it up.
func TestHighWater(t *testing.T) {
	var h highWater
	for i, c := range []struct{ in, want time.Duration }{{10, 10}, {30, 30}, {25, 30}, {30, 30}, {40, 40}, {0, 40}} {
		if got := h.at(c.in); got != c.want {
			t.Errorf("reading %d: at(%v) = %v, want %v", i, c.in, got, c.want)
		}
	}
}

func TestCPUPerJob(t *testing.T) {
	before := cpuReading{client: time.Second, server: 2 * time.Second, serverSeen: true}
	after := cpuReading{client: 3 * time.Second, server: 7 * time.Second, serverSeen: true}
	if c, s := cpuPerJob(before, after, 1000); c != 2000 || s != 5000 {
		t.Errorf("cpuPerJob = %v, %v µs; want 2000, 5000", c, s)
	}
	after.serverSeen = false
	if _, s := cpuPerJob(before, after, 1000); s != -1 {
		t.Errorf("server not seen: %v, want -1", s)
	}
	if serverCPU(-1) != "-" || serverCPU(12.34) != "12.3" {
		t.Errorf("serverCPU formats %q and %q", serverCPU(-1), serverCPU(12.34))
	}
}

func TestSummarizeSoak(t *testing.T) {
	if summarizeSoak(nil) != nil {
		t.Error("summary of no samples is not nil")
	}
	// 10 minutes sampled every 10 s: the first minute is warm-up (RSS
	// climbing), then flat at 20 MB but for the last fifth at 22 MB.
	var samples []soakSample
	for i := 0; i <= 60; i++ {
		s := soakSample{Seconds: float64(10 * i), RSSMB: 20, HeapMB: 4, Goroutines: 200}
		switch {
		case i < 6:
			s.RSSMB, s.Goroutines = float64(10+i), 15
		case i > 60-11:
			s.RSSMB = 22
		}
		samples = append(samples, s)
	}
	m := summarizeSoak(samples)
	if m.WarmupSamples != 6 {
		t.Errorf("warm-up samples %d, want 6 (before 60 s)", m.WarmupSamples)
	}
	if m.FirstRSSMB != 20 || m.LastRSSMB != 22 || m.MaxRSSMB != 22 {
		t.Errorf("RSS first %.1f last %.1f max %.1f, want 20, 22, 22", m.FirstRSSMB, m.LastRSSMB, m.MaxRSSMB)
	}
	if m.FirstGor != 200 || m.LastGor != 200 {
		t.Errorf("goroutines %d -> %d, want 200 -> 200", m.FirstGor, m.LastGor)
	}
	// A short run keeps its first fifth as warm-up.
	short := summarizeSoak(samples[:7]) // 0-60 s
	if short.WarmupSamples != 2 {
		t.Errorf("short run: warm-up samples %d, want 2 (before 12 s)", short.WarmupSamples)
	}
}

func TestProcStatusMB(t *testing.T) {
	rss, peak := currentRSSMB(), peakRSSMB()
	if rss <= 0 || peak < rss {
		t.Errorf("VmRSS %.1f MB, VmHWM %.1f MB: want 0 < RSS <= peak", rss, peak)
	}
	if procStatusMB("NoSuchField") != 0 {
		t.Error("a missing field is not 0")
	}
}

// TestReportDriversRow: with burndown results of the three drivers the
// report prints the drivers row and results.json holds SQLite's rate; the
// table is read from standard output.
func TestReportDriversRow(t *testing.T) {
	b := &bench{s: &settings{rounds: 1, scenarios: []string{"burndown"}}, results: map[string]map[string][]*runResult{"burndown": {
		millraceDefaults.label:    {{JobsPerS: 30000}},
		riverTuned.label:          {{JobsPerS: 20000}},
		millraceDatabaseSQL.label: {{JobsPerS: 28000}},
		millraceSQLite.label:      {{JobsPerS: 15000}},
	}}}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	out := b.report("test", "test")
	os.Stdout = stdout
	_ = w.Close()
	printed, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(printed), "drivers: pgx / database/sql / SQLite jobs/s") || !strings.Contains(string(printed), "30,000 / 28,000 / 15,000") {
		t.Errorf("no drivers row in:\n%s", printed)
	}
	if len(out.Scenarios) == 0 || out.Scenarios[0].Name != "burndown" || out.Scenarios[0].MillraceSQLite != (throughputOut{15000}) {
		t.Errorf("results.json's burndown: %+v", out.Scenarios)
	}
}
