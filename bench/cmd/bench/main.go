// Command bench measures millrace against River v0.51.2 on one Postgres:
// every scenario of issue 8, the two systems alternately, a fresh schema
// for every round, medians of the rounds. It prints a table and writes
// out/results.json (relative to the working directory; make bench runs it
// from bench/). See bench/README.md.
//
// Environment: DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable), BENCH_JOBS (default
// 100000), BENCH_ROUNDS (3), BENCH_SCENARIOS (a comma-separated subset),
// BENCH_LATENCY_SECONDS (20), BENCH_MIXED_SECONDS (30),
// BENCH_MILLRACE_WORKERS (200), BENCH_POOL_CONNS (20), BENCH_CEILING
// ("LOOPSxBATCH" to skip the ceiling's tuning sweep), BENCH_INSERTER
// (separate or same: who inserts in latency and mixed; default separate),
// BENCH_MIXED_BULK (100000: the burndown next to mixed's stream),
// BENCH_SCALE_SIZES, BENCH_SCALE_FINALIZED, BENCH_SCALE_FINALIZED_JOBS and
// BENCH_SCALE_RIVER, BENCH_SCALE_ROUNDS (the scale scenario), BENCH_PROFILE (a directory for
// CPU and allocation profiles of every run), BENCH_OUT (out/results.json).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

const defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// defaultScenarios run when BENCH_SCENARIOS is unset; knownScenarios adds
// scale and soak, which run only when named (long: see README.md).
var (
	defaultScenarios = []string{"insert_many_fast", "insert_single", "burndown", "sql_ceiling", "ephemeral",
		"sql_ceiling_delete", "limits", "latency", "latency_same_client", "mixed", "memory"}
	knownScenarios = append(slices.Clone(defaultScenarios), "scale", "soak")
)

func main() {
	if spec := os.Getenv(childEnv); spec != "" {
		if err := childMain(spec); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// settings are the knobs, read from the environment.
type settings struct {
	url             string
	jobs            int
	rounds          int
	poolConns       int32
	millraceWorkers int
	latencyDur      time.Duration
	mixedDur        time.Duration
	ceiling         string
	inserter        string
	out             string
	scenarios       []string
	mixedBulk       int
	profileDir      string
	// The scale scenario: burndowns of each of scaleSizes jobs, then one
	// of scaleFinalizedJobs jobs behind scaleFinalized completed rows (no
	// such point when scaleFinalized is 0); River tuned too with
	// scaleRiver.
	scaleSizes         []int
	scaleFinalized     int
	scaleFinalizedJobs int
	scaleRiver         bool
	scaleRounds        int
	// soak: how long, how many jobs a second, and whether River tuned
	// soaks too.
	soakDur   time.Duration
	soakRate  int
	soakRiver bool
}

func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}

// parseSizes reads a comma-separated list of positive job counts, such as
// "10000,100000,1000000" (underscores allowed as digit separators).
func parseSizes(name, v string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(v, ",") {
		f = strings.ReplaceAll(strings.TrimSpace(f), "_", "")
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s=%q: want a comma-separated list of positive integers", name, v)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// envBool reads 1/true/yes or 0/false/no (or nothing: def).
func envBool(name string, def bool) (bool, error) {
	switch v := strings.ToLower(os.Getenv(name)); v {
	case "":
		return def, nil
	case "1", "true", "yes":
		return true, nil
	case "0", "false", "no":
		return false, nil
	default:
		return false, fmt.Errorf("%s=%q: want 1 or 0", name, v)
	}
}

func readSettings() (*settings, error) {
	s := &settings{url: os.Getenv("DATABASE_URL"), ceiling: os.Getenv("BENCH_CEILING"), out: os.Getenv("BENCH_OUT"),
		inserter: os.Getenv("BENCH_INSERTER"), profileDir: os.Getenv("BENCH_PROFILE")}
	switch s.inserter {
	case "":
		s.inserter = "separate"
	case "same", "separate":
	default:
		return nil, fmt.Errorf("BENCH_INSERTER=%q: want same or separate", s.inserter)
	}
	if s.url == "" {
		s.url = defaultURL
	}
	if s.out == "" {
		s.out = filepath.Join("out", "results.json")
	}
	var err error
	ints := []struct {
		name string
		def  int
		dst  *int
	}{{"BENCH_JOBS", 100000, &s.jobs}, {"BENCH_ROUNDS", 3, &s.rounds}, {"BENCH_MILLRACE_WORKERS", defaultWorkers, &s.millraceWorkers},
		{"BENCH_MIXED_BULK", 100000, &s.mixedBulk}, {"BENCH_SCALE_FINALIZED_JOBS", 100000, &s.scaleFinalizedJobs}}

	for _, x := range ints {
		if *x.dst, err = envInt(x.name, x.def); err != nil {
			return nil, err
		}
	}
	conns, err := envInt("BENCH_POOL_CONNS", 20)
	if err != nil {
		return nil, err
	}
	s.poolConns = int32(conns)
	lat, err := envInt("BENCH_LATENCY_SECONDS", 20)
	if err != nil {
		return nil, err
	}
	mixed, err := envInt("BENCH_MIXED_SECONDS", 30)
	if err != nil {
		return nil, err
	}
	s.latencyDur, s.mixedDur = time.Duration(lat)*time.Second, time.Duration(mixed)*time.Second
	if v := os.Getenv("BENCH_SOAK_DURATION"); v != "" {
		if s.soakDur, err = time.ParseDuration(v); err != nil || s.soakDur < soakInterval {
			return nil, fmt.Errorf("BENCH_SOAK_DURATION=%q: want a duration of at least %s, e.g. 10m", v, soakInterval)
		}
	} else {
		s.soakDur = 10 * time.Minute
	}
	if s.soakRate, err = envInt("BENCH_SOAK_RATE", 2000); err != nil {
		return nil, err
	}
	if s.soakRiver, err = envBool("BENCH_SOAK_RIVER", false); err != nil {
		return nil, err
	}
	s.scaleSizes = []int{10000, 100000, 1000000}
	if v := os.Getenv("BENCH_SCALE_SIZES"); v != "" {
		if s.scaleSizes, err = parseSizes("BENCH_SCALE_SIZES", v); err != nil {
			return nil, err
		}
	}
	s.scaleFinalized = 5000000
	if v := os.Getenv("BENCH_SCALE_FINALIZED"); v != "" {
		// 0 leaves the point out.
		if s.scaleFinalized, err = strconv.Atoi(v); err != nil || s.scaleFinalized < 0 {
			return nil, fmt.Errorf("BENCH_SCALE_FINALIZED=%q: want a count of rows, or 0 for none", v)
		}
	}
	if s.scaleRiver, err = envBool("BENCH_SCALE_RIVER", false); err != nil {
		return nil, err
	}
	// One round per point unless told: a point of a million jobs alone
	// can take many minutes.
	if s.scaleRounds, err = envInt("BENCH_SCALE_ROUNDS", 1); err != nil {
		return nil, err
	}
	s.scenarios = defaultScenarios
	if v := os.Getenv("BENCH_SCENARIOS"); v != "" {
		if s.scenarios, err = parseScenarios(v); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// parseScenarios reads BENCH_SCENARIOS: known names, comma-separated, each
// once.
func parseScenarios(v string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(knownScenarios, name) {
			return nil, fmt.Errorf("BENCH_SCENARIOS: unknown scenario %q (known: %s)", name, strings.Join(knownScenarios, ", "))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// contender is one system in one configuration.
type contender struct {
	system, variant, label string
}

var (
	millraceDefaults  = contender{"millrace", variantDefaults, "millrace"}
	millraceEphemeral = contender{"millrace", variantEphemeral, "millrace (ephemeral)"}
	// millraceDatabaseSQL is millrace on driver/databasesql.
	millraceDatabaseSQL = contender{"millrace", variantDatabaseSQL, "millrace (database/sql)"}
	// millraceSQLite is millrace on driver/sqlite (a file; burndown only).
	millraceSQLite = contender{"millrace", variantSQLite, "millrace (SQLite)"}
	// millraceLimited is millrace with a global limit above its workers.
	millraceLimited = contender{"millrace", variantLimited, "millrace (global limit)"}
	riverTuned      = contender{"river", variantTuned, "river (tuned)"}
	riverDefaults   = contender{"river", variantDefaults, "river (defaults)"}
	sqlLoop         = contender{"sql", "update", "sql loop"}
	sqlDeleteLoop   = contender{"sql", "delete", "sql loop (delete)"}
	sqlFloor        = contender{"sql", variantFloor, "sql floor"}
)

type bench struct {
	s       *settings
	admin   *pgxpool.Pool
	exe     string
	started time.Time
	notes   []string
	// results by scenario (or "scale/<point>"), then by contender label:
	// one per round.
	results map[string]map[string][]*runResult
	pg      []pgSetting
	// scalePoints are the scale scenario's points, in order.
	scalePoints []scalePoint
	// ceilingShapes holds the loop shape each ceiling scenario ran with.
	ceilingShapes map[string]string
}

// note adds a line under the table, once.
func (b *bench) note(line string) {
	if !slices.Contains(b.notes, line) {
		b.notes = append(b.notes, line)
	}
}

func run(ctx context.Context) error {
	s, err := readSettings()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	admin, err := pgxpool.New(ctx, s.url)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", s.url, err)
	}
	defer admin.Close()
	if err := admin.Ping(ctx); err != nil {
		return fmt.Errorf("connect to %s: %w", s.url, err)
	}
	if slices.Contains(s.scenarios, "ephemeral") {
		// Refuse at once rather than after the other scenarios.
		if err := ephemeralSupported(); err != nil {
			return err
		}
	}
	pgs, err := readPGSettings(ctx, admin)
	if err != nil {
		return err
	}
	pg := settingsLine(pgs)
	b := &bench{s: s, admin: admin, exe: exe, started: time.Now(), results: map[string]map[string][]*runResult{}, pg: pgs,
		ceilingShapes: map[string]string{}}
	machine := machineInfo()
	fmt.Printf("millrace vs River v0.51.2: %d jobs, %d rounds each, alternating, fresh schema per round\n", s.jobs, s.rounds)
	fmt.Printf("machine:  %s\ngo:       %s\npostgres: %s\n", machine, runtime.Version(), pg)
	fmt.Println("server settings:")
	for _, line := range formatSettings(pgs, "          ", 110) {
		fmt.Println(line)
	}
	for _, w := range settingsWarnings(pgs) {
		fmt.Println("warning:  " + w)
		b.note(w)
	}
	if s.profileDir != "" {
		fmt.Printf("profiles: every run writes a CPU and an allocation profile into %s (profiling costs some throughput)\n", s.profileDir)
	}
	fmt.Printf("configs:  millrace at its defaults (queue MaxWorkers %d); River tuned (MaxWorkers %d, FetchCooldown %s, FetchPollInterval %s); River at defaults (MaxWorkers %d)\n",
		s.millraceWorkers, riverTunedWorkers, riverTunedCooldown, riverTunedPoll, defaultWorkers)
	fmt.Printf("          each client on its own pgx pool of at most %d connections, each run in a process of its own\n", s.poolConns)
	if slices.Contains(s.scenarios, "scale") {
		var pts []string
		for _, p := range scalePoints(s.scaleSizes, s.scaleFinalized, s.scaleFinalizedJobs) {
			pts = append(pts, p.String())
		}
		who := "millrace only (BENCH_SCALE_RIVER=1 adds River tuned)"
		if s.scaleRiver {
			who = "millrace and River tuned"
		}
		fmt.Printf("scale:    %s; %s; %d rounds per point\n", strings.Join(pts, "; "), who, s.scaleRounds)
	}
	fmt.Println()

	want := func(name string) bool { return slices.Contains(s.scenarios, name) }
	if want("insert_many_fast") {
		// Inserting gains nothing from River's tuned fetch settings (its
		// insert notifications would only come more often), so River
		// inserts at its defaults, as millrace does.
		if err := b.scenario(ctx, "insert_many_fast", []contender{millraceDefaults, riverDefaults}, prefill{},
			runSpec{Jobs: s.jobs, Batch: 5000}); err != nil {
			return err
		}
	}
	if want("insert_single") {
		if err := b.scenario(ctx, "insert_single", []contender{millraceDefaults, riverDefaults}, prefill{},
			runSpec{Jobs: 5000}); err != nil {
			return err
		}
	}
	if want("burndown") || want("memory") || want("sql_ceiling") {
		contenders := []contender{millraceDefaults, riverTuned}
		if want("burndown") {
			contenders = append(contenders, riverDefaults, millraceDatabaseSQL, millraceSQLite)
		}
		if err := b.scenario(ctx, "burndown", contenders, prefill{Available: s.jobs}, runSpec{Jobs: s.jobs}); err != nil {
			return err
		}
	}
	if want("sql_ceiling") {
		if err := b.ceiling(ctx, "sql_ceiling", sqlLoop); err != nil {
			return err
		}
	}
	if want("ephemeral") {
		// River (OSS) keeps every row, so its comparison is its normal
		// burndown, run again here in alternation with millrace's.
		if err := b.scenario(ctx, "ephemeral", []contender{millraceEphemeral, riverTuned}, prefill{Available: s.jobs},
			runSpec{Jobs: s.jobs}); err != nil {
			return err
		}
	}
	if want("sql_ceiling_delete") {
		if err := b.ceiling(ctx, "sql_ceiling_delete", sqlDeleteLoop); err != nil {
			return err
		}
	}
	if want("limits") {
		// The burndown of an unlimited queue next to one with a global
		// concurrency limit above its workers, taking turns.
		if err := b.scenario(ctx, "limits", []contender{millraceDefaults, millraceLimited}, prefill{Available: s.jobs},
			runSpec{Jobs: s.jobs}); err != nil {
			return err
		}
	}
	if want("latency") {
		// The floor, hand-written SQL, is the bar in the same run.
		if err := b.scenario(ctx, "latency", []contender{millraceDefaults, riverTuned, sqlFloor}, prefill{},
			runSpec{Rate: 500, Duration: s.latencyDur, Inserter: s.inserter}); err != nil {
			return err
		}
	}
	if want("latency_same_client") {
		// Not one of issue 8's scenarios: the latency scenario again, with
		// the working client inserting its own jobs, for half as long.
		if err := b.scenario(ctx, "latency_same_client", []contender{millraceDefaults, riverTuned}, prefill{},
			runSpec{Rate: 500, Duration: s.latencyDur / 2, Inserter: "same"}); err != nil {
			return err
		}
	}
	if want("mixed") {
		// The stream on queue, while a burndown of s.mixedBulk jobs on
		// bulkQueue (paused until the stream starts) saturates the same
		// client.
		if err := b.scenario(ctx, "mixed", []contender{millraceDefaults, riverTuned},
			prefill{Available: s.mixedBulk, Queue: bulkQueue, PauseQueue: true},
			runSpec{Rate: 1000, Duration: s.mixedDur, WorkFor: 10 * time.Millisecond, Inserter: s.inserter, BulkJobs: s.mixedBulk}); err != nil {
			return err
		}
	}
	if want("scale") {
		if err := b.scale(ctx); err != nil {
			return err
		}
	}
	if want("soak") {
		contenders := []contender{millraceDefaults}
		if s.soakRiver {
			contenders = append(contenders, riverTuned)
		}
		// One round: a soak is long, and what it shows is a trend within
		// the run.
		if err := b.scenarioRounds(ctx, "soak", contenders, prefill{}, runSpec{Rate: s.soakRate, Duration: s.soakDur}, 1); err != nil {
			return err
		}
	}
	if s.latencyDur != 20*time.Second || s.mixedDur != 30*time.Second {
		b.note(fmt.Sprintf("latency ran %s and mixed %s (issue 8: 20 s and 30 s)", s.latencyDur, s.mixedDur))
	}
	if want("mixed") && s.mixedBulk != 100000 {
		b.note(fmt.Sprintf("mixed's burndown on the other queue had %d jobs (the issue: 100,000)", s.mixedBulk))
	}
	out := b.report(machine, pg)
	out.PostgresSettings = pgs
	fmt.Printf("\ntotal time: %s\n", time.Since(b.started).Round(time.Second))
	if err := os.MkdirAll(filepath.Dir(s.out), 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.out, append(js, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", s.out)
	return nil
}

// scenario runs s.rounds rounds of one scenario; in each round every
// contender runs once, the order rotating from round to round so no system
// always goes first. pre is written into each fresh schema first.
func (b *bench) scenario(ctx context.Context, name string, contenders []contender, pre prefill, spec runSpec) error {
	return b.scenarioRounds(ctx, name, contenders, pre, spec, b.s.rounds)
}

// scenarioRounds is scenario with a number of rounds of its own.
func (b *bench) scenarioRounds(ctx context.Context, name string, contenders []contender, pre prefill, spec runSpec, rounds int) error {
	for round := range rounds {
		order := slices.Clone(contenders)
		for range round % len(order) {
			order = append(order[1:], order[0])
		}
		for _, c := range order {
			if _, err := b.runOne(ctx, name, c, round, rounds, pre, spec); err != nil {
				return err
			}
		}
	}
	return nil
}

// resultKey is where a run's result is kept: the scenario, or
// "scenario/point" for one point of the scale scenario.
func resultKey(scenario, point string) string {
	if point == "" {
		return scenario
	}
	return scenario + "/" + point
}

// runOne measures one contender once, on a fresh schema dropped afterwards.
// A negative round is a tuning run of the ceiling's sweep: printed, not
// kept.
func (b *bench) runOne(ctx context.Context, name string, c contender, round, rounds int, pre prefill, spec runSpec) (*runResult, error) {
	schema, err := freshSchema(ctx, b.admin, c.system)
	if err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := dropSchema(dctx, b.admin, schema); err != nil {
			fmt.Fprintf(os.Stderr, "bench: drop schema %s: %v\n", schema, err)
		}
	}()
	roundLabel := fmt.Sprintf("round %d/%d", round+1, rounds)
	roundTag := fmt.Sprintf("r%d", round+1)
	if round < 0 {
		roundLabel = fmt.Sprintf("tuning %dx%d", spec.Loops, spec.Batch)
		roundTag = fmt.Sprintf("tune-%dx%d", spec.Loops, spec.Batch)
	}
	scenarioLabel := name
	if spec.Point != "" {
		scenarioLabel += " " + spec.Point
	}
	spec.Label = fmt.Sprintf("%s %s %s", scenarioLabel, roundLabel, c.label)
	if c.variant == variantSQLite {
		pre = prefill{} // its jobs go into its own file, inserted by the child
	}
	if !pre.empty() {
		what, took, err := preInsert(ctx, b.admin, schema, pre, settingValue(b.pg, "autovacuum") == "on")
		if err != nil {
			return nil, err
		}
		if what != "" {
			fmt.Printf("[%6s] %s: %s (%s)\n", b.elapsed(), spec.Label, what, took)
			b.note(fmt.Sprintf("%s: before each run the bench %s", scenarioLabel, what))
		}
	}
	if err := checkpoint(ctx, b.admin); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	spec.Scenario = name
	spec.System, spec.Variant = c.system, c.variant
	spec.Schema, spec.URL, spec.PoolConns, spec.MillraceWorkers = schema, b.s.url, b.s.poolConns, b.s.millraceWorkers
	if b.s.profileDir != "" {
		spec.ProfileDir = b.s.profileDir
		spec.ProfileName = profileName(name, spec.Point, c.system, c.variant, roundTag)
	}
	fmt.Printf("[%6s] %s ...\n", b.elapsed(), spec.Label)
	res, err := b.child(ctx, &spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Label, err)
	}
	fmt.Printf("[%6s] %s: %s\n", b.elapsed(), spec.Label, describe(name, res))
	if round >= 0 {
		key := resultKey(name, spec.Point)
		if b.results[key] == nil {
			b.results[key] = map[string][]*runResult{}
		}
		b.results[key][c.label] = append(b.results[key][c.label], res)
	}
	return res, nil
}

func (b *bench) elapsed() string {
	d := time.Since(b.started).Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// child runs one measurement in a new process and returns its result.
func (b *bench) child(ctx context.Context, spec *runSpec) (*runResult, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, b.exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("child process: %w", err)
	}
	var res runResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("child result %q: %w", stdout.String(), err)
	}
	return &res, nil
}

func describe(name string, r *runResult) string {
	var d string
	switch name {
	case "soak":
		if m := r.SoakSummary; m != nil {
			return fmt.Sprintf("%s jobs/s worked for %.0f s; RSS %.1f MB in the first fifth, %.1f MB in the last (max %.1f); heap %.1f -> %.1f MB; goroutines %d -> %d",
				thousands(r.JobsPerS), r.Seconds, m.FirstRSSMB, m.LastRSSMB, m.MaxRSSMB, m.FirstHeap, m.LastHeap, m.FirstGor, m.LastGor)
		}
		return fmt.Sprintf("%s jobs/s worked for %.0f s", thousands(r.JobsPerS), r.Seconds)
	case "latency", "latency_same_client":
		return fmt.Sprintf("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.1f ms (%d jobs)", r.P50, r.P90, r.P99, r.Max, r.Count)
	case "mixed":
		d = fmt.Sprintf("%s jobs/s, p50 %.2f ms, p99 %.2f ms, max %.1f ms (%d jobs)", thousands(r.JobsPerS), r.P50, r.P99, r.Max, r.Count)
		if r.BulkJobsPerS > 0 {
			d += fmt.Sprintf("; during the other queue's burndown (%s jobs/s, %.1f s): p50 %.2f ms, p99 %.2f ms, max %.1f ms (%d jobs)",
				thousands(r.BulkJobsPerS), r.BulkSeconds, r.LoadP50, r.LoadP99, r.LoadMax, r.LoadCount)
		}
		return d
	case "burndown", "scale", "ephemeral", "limits":
		d = fmt.Sprintf("%s jobs/s (%.2f s; %.0f allocs, %.0f B per job; peak RSS %.0f MB)",
			thousands(r.JobsPerS), r.Seconds, r.AllocsPerJob, r.BytesPerJob, r.PeakRSSMB)
	default:
		d = fmt.Sprintf("%s jobs/s (%.2f s)", thousands(r.JobsPerS), r.Seconds)
	}
	if c := r.Cost; c != nil {
		d += fmt.Sprintf("; per job: %.0f B WAL, %.3f round trips, %.3f commits, CPU %.1f µs client + %s µs server",
			c.WALBytesPerJob, c.RoundTripsPerJob, c.CommitsPerJob, c.ClientCPUMicrosPerJob, serverCPU(c.ServerCPUMicrosPerJob))
	}
	return d
}

// ceiling finds the best loop count and batch size for the hand-written
// SQL loop c on a smaller job count (unless BENCH_CEILING fixes them), then
// measures that configuration like any other contender.
func (b *bench) ceiling(ctx context.Context, name string, c contender) error {
	loops, batch := 0, 0
	if b.s.ceiling != "" {
		if _, err := fmt.Sscanf(b.s.ceiling, "%dx%d", &loops, &batch); err != nil || loops < 1 || batch < 1 {
			return fmt.Errorf("BENCH_CEILING=%q: want LOOPSxBATCH, e.g. 2x2000", b.s.ceiling)
		}
	} else {
		n := min(b.s.jobs, 50000)
		best := 0.0
		for _, l := range []int{1, 2, 4} {
			for _, bt := range []int{1000, 2000, 4000} {
				res, err := b.runOne(ctx, name, c, -1, 0, prefill{Available: n}, runSpec{Jobs: n, Loops: l, Batch: bt})
				if err != nil {
					return err
				}
				if res.JobsPerS > best {
					best, loops, batch = res.JobsPerS, l, bt
				}
			}
		}
		fmt.Printf("[%6s] %s: best of the sweep on %d jobs: %d loops x %d jobs per round trip\n", b.elapsed(), name, n, loops, batch)
	}
	b.ceilingShapes[name] = fmt.Sprintf("%dx%d", loops, batch)
	b.note(fmt.Sprintf("%s: %d concurrent loops, %d jobs per round trip", name, loops, batch))
	for round := range b.s.rounds {
		if _, err := b.runOne(ctx, name, c, round, b.s.rounds, prefill{Available: b.s.jobs}, runSpec{Jobs: b.s.jobs, Loops: loops, Batch: batch}); err != nil {
			return err
		}
	}
	return nil
}

// machineInfo names the machine: OS, CPU model and count, memory.
func machineInfo() string {
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB"))); err == nil {
					mem = fmt.Sprintf(", %.0f GB RAM", float64(kb)/1024/1024)
				}
			}
		}
	}
	host, _ := os.Hostname()
	s := fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if cpu != "" {
		s += " (" + cpu + ")"
	}
	s += mem
	if host != "" {
		s += ", host " + host
	}
	return s
}

var errNoResults = errors.New("no results")

// medianOf takes one field's median over a contender's rounds.
func (b *bench) medianOf(key, label string, field func(*runResult) float64) (float64, error) {
	runs := b.results[key][label]
	if len(runs) == 0 {
		return 0, errNoResults
	}
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = field(r)
	}
	return median(xs), nil
}
