package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// millrace runs the built command and returns its exit code and output.
func millrace(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return exe(t, args...)
}

// TestRunInProcess checks run's exit codes without a subprocess (the rest
// of the tests exec the built binary).
func TestRunInProcess(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "millrace ") {
		t.Fatalf("version in process: %d %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"nosuchcommand"}, &out, &errOut); code == 0 || !strings.HasPrefix(errOut.String(), "millrace: ") {
		t.Fatalf("unknown command in process: %d %q", code, errOut.String())
	}
}

func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	schema, _ := testdb.NewSchema(t)
	url := testdb.AdminURL(t)
	db := []string{"--database-url", url, "--schema", schema}

	code, out, errOut := millrace(t, append([]string{"migrate", "up", "--target-version", "3"}, db...)...)
	if code != 0 || !strings.Contains(out, "migrated up: version 003 river_job_tags_non_null") || errOut != "" {
		t.Fatalf("migrate up to 3: code %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = millrace(t, append([]string{"migrate", "list", "--json"}, db...)...)
	var rows []struct {
		Line    string `json:"line"`
		Version int    `json:"version"`
		Applied bool   `json:"applied"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 8+millraceLatest(t) {
		t.Fatalf("migrate list: code %d, %s", code, out)
	}
	for _, r := range rows {
		if r.Applied != (r.Line == "main" && r.Version <= 3) {
			t.Fatalf("version %d applied=%v after migrating to 3", r.Version, r.Applied)
		}
	}
	code, out, _ = millrace(t, append([]string{"migrate", "up", "--json"}, db...)...)
	var res struct {
		Versions []struct{ Version int } `json:"versions"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Versions) != 5+millraceLatest(t) { // main 4..8, millrace 1..
		t.Fatalf("migrate up: code %d, %s", code, out)
	}
	code, out, _ = millrace(t, append([]string{"migrate", "up"}, db...)...)
	if code != 0 || !strings.Contains(out, "nothing to migrate up") {
		t.Fatalf("second migrate up: code %d, %s", code, out)
	}
	code, out, _ = millrace(t, append([]string{"migrate", "down"}, db...)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("version %03d", millraceLatest(t))) || !strings.Contains(out, "(line millrace") {
		t.Fatalf("migrate down: code %d, %s", code, out)
	}
	code, out, _ = millrace(t, append([]string{"migrate", "down", "--all"}, db...)...)
	if code != 0 || !strings.Contains(out, "version 001") {
		t.Fatalf("migrate down --all: code %d, %s", code, out)
	}
}

func TestMigrateSQL(t *testing.T) {
	t.Parallel()
	code, out, _ := millrace(t, "migrate", "sql", "--schema", "jobs")
	if code != 0 || !strings.Contains(out, `CREATE TABLE "jobs".river_job (`) || !strings.Contains(out, "version 008") {
		t.Fatalf("migrate sql: code %d\n%s", code, out)
	}
	code, out, _ = millrace(t, "migrate", "sql", "--from", "8", "--to", "6")
	if code != 0 || !strings.Contains(out, "DROP TABLE river_notification;") {
		t.Fatalf("migrate sql down: code %d\n%s", code, out)
	}
}

func TestBadInputIsOneLine(t *testing.T) {
	t.Parallel()
	url := testdb.AdminURL(t)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no database", []string{"migrate", "up", "--database-url", ""}, 2, "no database given"},
		{"unreachable", []string{"migrate", "up", "--database-url", "postgres://postgres@127.0.0.1:1/x"}, 1, "server not reachable"},
		{"bad url", []string{"migrate", "list", "--database-url", "postgres://a:b@[oops"}, 2, "invalid database URL"},
		{"missing schema", []string{"migrate", "up", "--database-url", url, "--schema", "no_such_schema_here"}, 1, `schema "no_such_schema_here" does not exist`},
		{"invalid schema", []string{"migrate", "up", "--database-url", url, "--schema", "bad-name"}, 2, "invalid schema name"},
		{"unknown target", []string{"migrate", "sql", "--to", "42"}, 2, "unknown migration version"},
		{"unknown flag", []string{"migrate", "up", "--nope"}, 2, "unknown flag"},
		{"all and target", []string{"migrate", "down", "--all", "--target-version", "3", "--database-url", url}, 2, "contradict"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := millrace(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 || strings.Contains(errOut, "goroutine") {
				t.Errorf("stderr %q: want one line containing %q", errOut, tc.want)
			}
			if strings.Contains(errOut, ":b@") {
				t.Errorf("stderr shows the password: %q", errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := millrace(t, "version")
	if code != 0 || !strings.HasPrefix(out, "millrace ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

// The core's command has no SQLite driver: --driver sqlite says where the
// SQLite demo is, as a usage error.
func TestDemoDriverSQLite(t *testing.T) {
	t.Parallel()
	code, _, errOut := millrace(t, "demo", "--path", "x.db")
	if code != 2 || !strings.Contains(errOut, "--path is the SQLite file of --driver sqlite") {
		t.Fatalf("demo --path on Postgres: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = millrace(t, "demo", "--driver", "oracle")
	if code != 2 || !strings.Contains(errOut, `--driver "oracle"`) {
		t.Fatalf("demo --driver oracle: exit %d, stderr %q", code, errOut)
	}
}

// demoPeriodicRuns checks the demo's account of its periodic job's runs
// and returns their number: leaders runs when a client became leader (0
// for any of 1..2), and one on the hour for each hour that turned between
// started and ended, when the demo ran (none may be worked if the hour
// turned after the demo's last client stopped).
func demoPeriodicRuns(t *testing.T, out string, inserted int, started, ended time.Time, leaders int) int {
	t.Helper()
	m := regexp.MustCompile(`\ntotal (\d+) = (\d+) inserted \+ 1 scheduled ahead \+ 1 unique \+ (\d+) periodic \((\d+) when a client became leader, (\d+) on the hour\)\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("demo summary lacks the account of its jobs:\n%s", out)
	}
	n := make([]int, len(m))
	for i := 1; i < len(m); i++ {
		n[i], _ = strconv.Atoi(m[i])
	}
	total, ins, periodic, onStart, hourly := n[1], n[2], n[3], n[4], n[5]
	turned := int(ended.Truncate(time.Hour).Sub(started.Truncate(time.Hour)) / time.Hour)
	okLeaders := onStart == leaders || (leaders == 0 && (onStart == 1 || onStart == 2))
	if ins != inserted || periodic != onStart+hourly || total != inserted+2+periodic || !okLeaders || hourly > turned {
		want := strconv.Itoa(leaders)
		if leaders == 0 {
			want = "1 or 2"
		}
		t.Errorf("demo summary: %q; want %d inserted, %s periodic run(s) when a client became leader, at most %d on the hour (the demo ran %s-%s)",
			m[0], inserted, want, turned, started.Format(time.TimeOnly), ended.Format(time.TimeOnly))
	}
	return periodic
}

// burnDownReported reports whether the demo's output gives the burn-down's
// jobs (all of the total but the scheduled job, a periodic run on the hour
// perhaps not yet among them) with a rate and the worker calls.
func burnDownReported(out string, total int) bool {
	m := regexp.MustCompile(`\nburn-down: (\d+) jobs finished in \S+ of working time \(\d+ jobs/s; \d+ worker calls`).FindStringSubmatch(out)
	if m == nil {
		return false
	}
	n, _ := strconv.Atoi(m[1])
	return n >= 600 && n <= total-1
}

// lastIdleLine returns the demo's last progress line (done, total, rate)
// that ends a stretch of three or more unchanged unfinished lines (a line
// a second): seconds into a wait.
func lastIdleLine(out string) []string {
	var last []string
	progress := regexp.MustCompile(`(\d+)/(\d+) done\s+(\d+) jobs/s`).FindAllStringSubmatch(out, -1)
	for i, unchanged := 0, 0; i < len(progress); i++ {
		l := progress[i][1:]
		if i > 0 && l[0] != l[1] && l[0] == progress[i-1][1] && l[1] == progress[i-1][2] {
			unchanged++
		} else {
			unchanged = 0
		}
		if unchanged >= 2 {
			last = l
		}
	}
	return last
}

func TestLastIdleLine(t *testing.T) {
	line := func(done, total, rate int) string {
		return fmt.Sprintf("   [...] %d/%d done  %5d jobs/s  available 0\n", done, total, rate)
	}
	for _, c := range []struct {
		name string
		out  string
		want []string
	}{
		{"waiting for the scheduled job", line(500, 604, 900) + line(603, 604, 103) + line(603, 604, 0) + line(603, 604, 0) + line(604, 604, 1),
			[]string{"603", "604", "0"}},
		// The hour turns in the wait: its run is worked at once.
		{"a run on the hour in the wait", line(603, 604, 5) + line(603, 604, 0) + line(603, 604, 0) + line(603, 604, 0) +
			line(604, 605, 1) + line(604, 605, 1) + line(604, 605, 0) + line(605, 605, 1), []string{"604", "605", "0"}},
		{"a rate that decays", line(603, 604, 40) + line(603, 604, 30) + line(603, 604, 22) + line(604, 604, 20), []string{"603", "604", "22"}},
		{"no wait", line(300, 604, 900) + line(604, 604, 800), nil},
	} {
		if got := lastIdleLine(c.out); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestDemo runs the demo end to end on a small scale, in its own database
// schema kept with --keep, and checks what it reports.
func TestDemo(t *testing.T) {
	t.Parallel()
	url := testdb.AdminURL(t)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS demo_test_run CASCADE"); err != nil {
			t.Error(err)
		}
	})
	started := time.Now()
	code, out, errOut := millrace(t, "demo", "--database-url", url, "--schema", "demo_test_run", "--jobs", "600", "--workers", "20", "--keep")
	ended := time.Now()
	if code != 0 {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"1. migrated schema demo_test_run: River's line main and millrace's own line",
		"2. inserted 600 jobs with COPY",
		"duplicate=true",
		// The total grows with the periodic jobs: the demo says so.
		"so 602 jobs so far; each client that becomes leader adds one periodic job",
		"the total reaches 604 (605 if the hour turns meanwhile: the job also runs on the hour)",
		// Running rows outnumber workers: the demo says why.
		"it also counts jobs fetched but not started yet, and jobs whose worker",
		"4. graceful stop under load:",
		"now running: 0",
		"5. started a new client",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// 600 jobs, the unique one, the scheduled one, one periodic run per
	// leadership (two clients ran) and one if the hour turned: all
	// completed, nothing else left.
	want := 602 + demoPeriodicRuns(t, out, 600, started, ended, 2)
	m := regexp.MustCompile(`completed\s+(\d+)\n`).FindStringSubmatch(out)
	total := regexp.MustCompile(`total\s+(\d+)\n`).FindStringSubmatch(out)
	if m == nil || total == nil || m[1] != total[1] || m[1] != strconv.Itoa(want) {
		t.Errorf("demo summary: completed %v of total %v, want all of %d:\n%s", m, total, want, out)
	}
	// The burn-down's rate and the wait for the scheduled job are reported
	// apart: the 8 s wait does not dilute the rate.
	if strings.Contains(out, "including the wait") ||
		!burnDownReported(out, want) ||
		!regexp.MustCompile(`\nscheduled job \d+: due 8s after its insert, ran 8\.\d+s after it \(after the burn-down the demo only waited for it: \S+\); the demo took \S+ in all\n`).MatchString(out) {
		t.Errorf("demo summary: burn-down rate and scheduled wait not reported apart:\n%s", out)
	}
	// Seconds after only the scheduled job is left (and perhaps a run on
	// the hour), the rate shown is the current one (0), not an average
	// decaying since the start.
	lastIdle := lastIdleLine(out)
	if lastIdle == nil || lastIdle[2] != "0" {
		t.Errorf("rate after seconds with only the scheduled job waiting: %v, want 0 jobs/s:\n%s", lastIdle, out)
	}
	for _, l := range regexp.MustCompile(`in Work (\d+)/(\d+)`).FindAllStringSubmatch(out, -1) {
		if n, _ := strconv.Atoi(l[1]); l[2] != "20" || n > 20 {
			t.Errorf("in Work %s/%s with 20 workers", l[1], l[2])
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "kept schema demo_test_run: ") {
		t.Errorf("last line with --keep: %q, want it to name the kept schema", last)
	}
	// A second run refuses the kept schema instead of mixing its jobs in
	// (and dropping it at the end).
	code, _, errOut = millrace(t, "demo", "--database-url", url, "--schema", "demo_test_run", "--jobs", "600")
	if code != 1 || !strings.Contains(errOut, "schema demo_test_run already holds tables") {
		t.Errorf("demo on a kept schema: exit %d, %q", code, errOut)
	}
}
