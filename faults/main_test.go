package faults

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/testdb"
)

// Environment variables of the suite (see the package documentation).
const (
	envMode   = "MILLRACE_FAULTS"
	envSoak   = "MILLRACE_FAULTS_SOAK"
	envLog    = "MILLRACE_FAULTS_LOG"
	envHelper = "MILLRACE_FAULTS_HELPER"
	// envChild marks the child test process that runs the restart scenario
	// on a throwaway cluster of its own.
	envChild = "MILLRACE_FAULTS_CHILD"
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) != "" {
		// A worker process started by a crash scenario: no tests, no
		// testdb provisioning; it runs a client until told to stop or
		// killed.
		os.Exit(helperMain())
	}
	testdb.Main(m)
}

// sizes are the scale of the load.
type sizes struct {
	name    string
	jobs    int // jobs per scenario
	workers int // MaxWorkers of each client's queue
	maxMS   int // jobs take 0..maxMS milliseconds
}

func loadSizes(t testing.TB) sizes {
	switch mode := os.Getenv(envMode); mode {
	case "", "reduced":
		return sizes{name: "reduced", jobs: 2000, workers: 100, maxMS: 50}
	case "full":
		return sizes{name: "full", jobs: 20000, workers: 500, maxMS: 50}
	default:
		t.Fatalf("%s=%q: want full or reduced", envMode, mode)
		return sizes{}
	}
}

// tally is one row of the summary table: the accounting of one scenario.
type tally struct {
	Scenario string `json:"scenario"`
	Inserted int    `json:"inserted"`
	// Completed, CancelledDiscarded and Pending are counts by state at the
	// end; Lost and Duplicated as the package documentation defines them.
	Completed          int     `json:"completed"`
	CancelledDiscarded int     `json:"cancelled_discarded"`
	Pending            int     `json:"pending"`
	Lost               int     `json:"lost"`
	Duplicated         int     `json:"duplicated"`
	Seconds            float64 `json:"seconds"`
	Notes              string  `json:"notes"`
}

// report collects the rows of the summary table.
type report struct {
	mu   sync.Mutex
	rows []tally
}

func (r *report) add(row tally) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, row)
	if os.Getenv(envChild) != "" {
		// The parent process reads the child's rows from its output.
		b, _ := json.Marshal(row)
		fmt.Printf("%s%s\n", childRowPrefix, b)
	}
	if os.Getenv(envSoak) != "" {
		// A soak runs for long: show each row as it comes.
		fmt.Print(formatRow(row))
	}
}

const (
	tableHeader = "%-26s %9s %9s %10s %8s %5s %10s %8s  %s\n"
	tableRow    = "%-26s %9d %9d %10d %8d %5d %10d %7.1fs  %s\n"
)

func formatRow(row tally) string {
	return fmt.Sprintf(tableRow, row.Scenario, row.Inserted, row.Completed, row.CancelledDiscarded, row.Pending,
		row.Lost, row.Duplicated, row.Seconds, row.Notes)
}

// childRowPrefix starts the lines in which a child test process reports its
// rows to its parent.
const childRowPrefix = "faults-row: "

// table renders the summary table.
func (r *report) table(title string) string {
	r.mu.Lock()
	rows := append([]tally(nil), r.rows...)
	r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n", title)
	fmt.Fprintf(&b, tableHeader, "scenario", "inserted", "completed", "canc/disc", "pending", "lost", "duplicated", "time", "notes")
	var lost int
	for _, row := range rows {
		b.WriteString(formatRow(row))
		lost += row.Lost
	}
	fmt.Fprintf(&b, "%d scenario runs, %d jobs lost in all\n", len(rows), lost)
	return b.String()
}

// lostAnywhere reports whether any row lost jobs.
func (r *report) lostAnywhere() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, row := range r.rows {
		if row.Lost != 0 {
			return true
		}
	}
	return false
}

// scenario is one fault scenario: it runs in its own schema and returns its
// accounting.
type scenario struct {
	name string
	run  func(t *testing.T, sz sizes) tally
}

// scenarios lists the suite in the order the parallel runs are started:
// the ones that wait for the leader's rescuer or for a new leader first, so
// that their waits overlap with the others.
func scenarios() []scenario {
	return []scenario{
		{"4_worker_crash", scenarioWorkerCrash},
		{"5_leader_crash", scenarioLeaderCrash},
		{"8_database_restart", scenarioDatabaseRestart},
		{"3_stop_deadline", scenarioStopDeadline},
		{"7_notifier_loss", scenarioNotifierLoss},
		{"9_bad_rows", scenarioBadRows},
		{"6_lost_connections", scenarioLostConnections},
		{"1_graceful_stop", scenarioGracefulStop},
		{"2_stop_and_cancel", scenarioStopAndCancel},
		{"10_kill_restart", scenarioKillRestart},
	}
}

// TestFaults runs every scenario (in soak mode, scenarios 1, 4 and 6 in a
// loop) and prints the summary table at the end. It fails when a scenario
// fails, and in any case when some scenario lost a job.
func TestFaults(t *testing.T) {
	sz := loadSizes(t)
	rep := &report{}
	started := time.Now()
	t.Cleanup(func() {
		title := fmt.Sprintf("millrace fault suite (%s sizes: %d jobs, %d workers, jobs of 0-%d ms) in %v",
			sz.name, sz.jobs, sz.workers, sz.maxMS, time.Since(started).Round(time.Second))
		table := rep.table(title)
		fmt.Print(table)
		t.Log(table)
		if rep.lostAnywhere() {
			t.Error("jobs were lost (see the table)")
		}
	})

	run := func(t *testing.T, s scenario) {
		begin := time.Now()
		finished := false
		defer func() {
			if !finished && !t.Skipped() {
				// The scenario stopped (t.Fatal) before its accounting. (A
				// skipped one is a child process of the harness: see
				// scenarioKillRestart.)
				rep.add(tally{Scenario: strings.TrimPrefix(t.Name(), "TestFaults/"), Seconds: time.Since(begin).Seconds(),
					Notes: "FAILED before its accounting (see the test log)"})
			}
		}()
		row := s.run(t, sz)
		finished = true
		row.Scenario = strings.TrimPrefix(t.Name(), "TestFaults/")
		row.Seconds = time.Since(begin).Seconds()
		rep.add(row)
		if row.Lost != 0 {
			t.Errorf("%s lost %d jobs", s.name, row.Lost)
		}
	}

	if d := os.Getenv(envSoak); d != "" {
		soak(t, d, run)
		return
	}
	for _, s := range scenarios() {
		if s.name == "8_database_restart" && testdb.IsThrowaway() {
			// In-process restart of this binary's cluster: it cuts every
			// connection, so it runs alone, before the parallel ones.
			t.Run(s.name, func(t *testing.T) { run(t, s) })
			continue
		}
		if s.name == "8_database_restart" {
			// In a child process on its own cluster: may overlap.
			t.Run(s.name, func(t *testing.T) {
				t.Parallel()
				begin := time.Now()
				for _, row := range runRestartChild(t) {
					row.Seconds = time.Since(begin).Seconds()
					rep.add(row)
				}
			})
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			run(t, s)
		})
	}
}

// soak runs scenarios 1, 4 and 6 one after another until the duration has
// passed.
func soak(t *testing.T, duration string, run func(*testing.T, scenario)) {
	d, err := time.ParseDuration(duration)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 10m", envSoak, duration)
	}
	byName := map[string]scenario{}
	for _, s := range scenarios() {
		byName[s.name] = s
	}
	loop := []scenario{byName["1_graceful_stop"], byName["4_worker_crash"], byName["6_lost_connections"]}
	end := time.Now().Add(d)
	for round := 1; time.Now().Before(end); round++ {
		for _, s := range loop {
			ok := t.Run(fmt.Sprintf("round%03d/%s", round, s.name), func(t *testing.T) { run(t, s) })
			if !ok {
				return
			}
		}
	}
}
