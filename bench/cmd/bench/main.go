// Command bench measures millrace against River v0.51.2 on one Postgres:
// every scenario of issue 8, the two systems alternately, a fresh schema
// for every round, medians of the rounds. It prints a table and writes
// out/results.json (relative to the working directory; make bench runs it
// from bench/). See bench/README.md.
//
// Environment: DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres), BENCH_JOBS (default
// 100000), BENCH_ROUNDS (3), BENCH_SCENARIOS (a comma-separated subset),
// BENCH_LATENCY_SECONDS (20), BENCH_MIXED_SECONDS (30),
// BENCH_MILLRACE_WORKERS (200), BENCH_POOL_CONNS (20), BENCH_CEILING
// ("LOOPSxBATCH" to skip the ceiling's tuning sweep), BENCH_INSERTER
// (separate or same: who inserts in latency and mixed; default separate),
// BENCH_OUT (out/results.json).
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

const defaultURL = "postgres://postgres@127.0.0.1:5432/postgres"

var allScenarios = []string{"insert_many_fast", "insert_single", "burndown", "sql_ceiling", "latency", "latency_same_client", "mixed", "memory"}

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

func readSettings() (*settings, error) {
	s := &settings{url: os.Getenv("DATABASE_URL"), ceiling: os.Getenv("BENCH_CEILING"), out: os.Getenv("BENCH_OUT"),
		inserter: os.Getenv("BENCH_INSERTER")}
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
	}{{"BENCH_JOBS", 100000, &s.jobs}, {"BENCH_ROUNDS", 3, &s.rounds}, {"BENCH_MILLRACE_WORKERS", defaultWorkers, &s.millraceWorkers}}
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
	s.scenarios = allScenarios
	if v := os.Getenv("BENCH_SCENARIOS"); v != "" {
		s.scenarios = nil
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains(allScenarios, name) {
				return nil, fmt.Errorf("BENCH_SCENARIOS: unknown scenario %q (known: %s)", name, strings.Join(allScenarios, ", "))
			}
			s.scenarios = append(s.scenarios, name)
		}
	}
	return s, nil
}

// contender is one system in one configuration.
type contender struct {
	system, variant, label string
}

var (
	millraceDefaults = contender{"millrace", variantDefaults, "millrace"}
	riverTuned       = contender{"river", variantTuned, "river (tuned)"}
	riverDefaults    = contender{"river", variantDefaults, "river (defaults)"}
	sqlLoop          = contender{"sql", "", "sql loop"}
)

type bench struct {
	s       *settings
	admin   *pgxpool.Pool
	exe     string
	started time.Time
	notes   []string
	// results by scenario, then by contender label: one per round.
	results map[string]map[string][]*runResult
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
	pg, err := serverInfo(ctx, admin)
	if err != nil {
		return err
	}
	b := &bench{s: s, admin: admin, exe: exe, started: time.Now(), results: map[string]map[string][]*runResult{}}
	machine := machineInfo()
	fmt.Printf("millrace vs River v0.51.2: %d jobs, %d rounds each, alternating, fresh schema per round\n", s.jobs, s.rounds)
	fmt.Printf("machine:  %s\ngo:       %s\npostgres: %s\n", machine, runtime.Version(), pg)
	fmt.Printf("configs:  millrace at its defaults (queue MaxWorkers %d); River tuned (MaxWorkers %d, FetchCooldown %s, FetchPollInterval %s); River at defaults (MaxWorkers %d)\n",
		s.millraceWorkers, riverTunedWorkers, riverTunedCooldown, riverTunedPoll, defaultWorkers)
	fmt.Printf("          each client on its own pgx pool of at most %d connections, each run in a process of its own\n\n", s.poolConns)

	want := func(name string) bool { return slices.Contains(s.scenarios, name) }
	if want("insert_many_fast") {
		// Inserting gains nothing from River's tuned fetch settings (its
		// insert notifications would only come more often), so River
		// inserts at its defaults, as millrace does.
		if err := b.scenario(ctx, "insert_many_fast", []contender{millraceDefaults, riverDefaults}, 0,
			runSpec{Jobs: s.jobs, Batch: 5000}); err != nil {
			return err
		}
	}
	if want("insert_single") {
		if err := b.scenario(ctx, "insert_single", []contender{millraceDefaults, riverDefaults}, 0,
			runSpec{Jobs: 5000}); err != nil {
			return err
		}
	}
	if want("burndown") || want("memory") || want("sql_ceiling") {
		contenders := []contender{millraceDefaults, riverTuned}
		if want("burndown") {
			contenders = append(contenders, riverDefaults)
		}
		if err := b.scenario(ctx, "burndown", contenders, s.jobs, runSpec{Jobs: s.jobs}); err != nil {
			return err
		}
	}
	if want("sql_ceiling") {
		if err := b.ceiling(ctx); err != nil {
			return err
		}
	}
	if want("latency") {
		if err := b.scenario(ctx, "latency", []contender{millraceDefaults, riverTuned}, 0,
			runSpec{Rate: 500, Duration: s.latencyDur, Inserter: s.inserter}); err != nil {
			return err
		}
	}
	if want("latency_same_client") {
		// Not one of issue 8's scenarios: the latency scenario again, with
		// the working client inserting its own jobs, for half as long.
		if err := b.scenario(ctx, "latency_same_client", []contender{millraceDefaults, riverTuned}, 0,
			runSpec{Rate: 500, Duration: s.latencyDur / 2, Inserter: "same"}); err != nil {
			return err
		}
	}
	if want("mixed") {
		if err := b.scenario(ctx, "mixed", []contender{millraceDefaults, riverTuned}, 0,
			runSpec{Rate: 1000, Duration: s.mixedDur, WorkFor: 10 * time.Millisecond, Inserter: s.inserter}); err != nil {
			return err
		}
	}
	if s.latencyDur != 20*time.Second || s.mixedDur != 30*time.Second {
		b.notes = append(b.notes, fmt.Sprintf("latency ran %s and mixed %s (issue 8: 20 s and 30 s)", s.latencyDur, s.mixedDur))
	}
	out := b.report(machine, pg)
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
// always goes first. prefill > 0 fills each fresh schema with that many
// available jobs first.
func (b *bench) scenario(ctx context.Context, name string, contenders []contender, prefill int, spec runSpec) error {
	for round := range b.s.rounds {
		order := slices.Clone(contenders)
		for range round % len(order) {
			order = append(order[1:], order[0])
		}
		for _, c := range order {
			if _, err := b.runOne(ctx, name, c, round, prefill, spec); err != nil {
				return err
			}
		}
	}
	return nil
}

// runOne measures one contender once, on a fresh schema dropped afterwards.
func (b *bench) runOne(ctx context.Context, name string, c contender, round, prefill int, spec runSpec) (*runResult, error) {
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
	if prefill > 0 {
		if err := preInsert(ctx, b.admin, schema, prefill); err != nil {
			return nil, err
		}
	}
	if err := checkpoint(ctx, b.admin); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	roundLabel := fmt.Sprintf("round %d/%d", round+1, b.s.rounds)
	if round < 0 {
		roundLabel = fmt.Sprintf("tuning %dx%d", spec.Loops, spec.Batch)
	}
	spec.Scenario = name
	spec.System, spec.Variant = c.system, c.variant
	spec.Schema, spec.URL, spec.PoolConns, spec.MillraceWorkers = schema, b.s.url, b.s.poolConns, b.s.millraceWorkers
	spec.Label = fmt.Sprintf("%s %s %s", name, roundLabel, c.label)
	fmt.Printf("[%6s] %s ...\n", b.elapsed(), spec.Label)
	res, err := b.child(ctx, &spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Label, err)
	}
	fmt.Printf("[%6s] %s: %s\n", b.elapsed(), spec.Label, describe(name, res))
	if round >= 0 {
		if b.results[name] == nil {
			b.results[name] = map[string][]*runResult{}
		}
		b.results[name][c.label] = append(b.results[name][c.label], res)
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
	switch name {
	case "latency", "latency_same_client":
		return fmt.Sprintf("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.1f ms (%d jobs)", r.P50, r.P90, r.P99, r.Max, r.Count)
	case "mixed":
		return fmt.Sprintf("%s jobs/s, p50 %.2f ms, p99 %.2f ms, max %.1f ms (%d jobs)", thousands(r.JobsPerS), r.P50, r.P99, r.Max, r.Count)
	case "burndown":
		return fmt.Sprintf("%s jobs/s (%.2f s; %.0f allocs, %.0f B per job; peak RSS %.0f MB)",
			thousands(r.JobsPerS), r.Seconds, r.AllocsPerJob, r.BytesPerJob, r.PeakRSSMB)
	}
	return fmt.Sprintf("%s jobs/s (%.2f s)", thousands(r.JobsPerS), r.Seconds)
}

// ceiling finds the best loop count and batch size for the hand-written
// SQL loop on a smaller job count (unless BENCH_CEILING fixes them), then
// measures that configuration like any other contender.
func (b *bench) ceiling(ctx context.Context) error {
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
				res, err := b.runOne(ctx, "sql_ceiling", sqlLoop, -1, n, runSpec{Jobs: n, Loops: l, Batch: bt})
				if err != nil {
					return err
				}
				if res.JobsPerS > best {
					best, loops, batch = res.JobsPerS, l, bt
				}
			}
		}
		fmt.Printf("[%6s] sql_ceiling: best of the sweep on %d jobs: %d loops x %d jobs per round trip\n", b.elapsed(), n, loops, batch)
	}
	b.notes = append(b.notes, fmt.Sprintf("sql_ceiling: %d concurrent loops, %d jobs per round trip", loops, batch))
	for round := range b.s.rounds {
		if _, err := b.runOne(ctx, "sql_ceiling", sqlLoop, round, b.s.jobs, runSpec{Jobs: b.s.jobs, Loops: loops, Batch: batch}); err != nil {
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
func (b *bench) medianOf(scenario, label string, field func(*runResult) float64) (float64, error) {
	runs := b.results[scenario][label]
	if len(runs) == 0 {
		return 0, errNoResults
	}
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = field(r)
	}
	return median(xs), nil
}
