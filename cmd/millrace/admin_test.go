package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the millrace command once per test binary.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "millrace-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "millrace")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build millrace: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// exe runs the built binary.
func exe(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL=")
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

type cliArgs struct {
	N int `json:"n"`
}

func (cliArgs) Kind() string { return "cli_job" }

func TestAdminCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	url := testdb.AdminURL(t)
	c, err := client.New[pgx.Tx](db.Driver, &client.Config{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := range 3 {
		res, err := c.Insert(ctx, cliArgs{N: i}, &client.InsertOpts{Queue: "mail"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Job.ID)
	}
	running := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "cli_busy", State: millracetype.JobStateRunning, Attempt: 1})
	dbf := []string{"--database-url", url, "--schema", db.Schema}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return exe(t, append(args, dbf...)...)
	}

	code, out, errOut := run("jobs", "list", "--json", "--kind", "cli_job", "--limit", "2")
	var page struct {
		Jobs []struct {
			ID    int64           `json:"id"`
			Kind  string          `json:"kind"`
			State string          `json:"state"`
			Args  json.RawMessage `json:"args"`
		} `json:"jobs"`
		Next string `json:"next_cursor"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page.Jobs) != 2 || page.Next == "" || page.Jobs[0].ID != ids[2] {
		t.Fatalf("jobs list --json: %d %s %s", code, out, errOut)
	}
	code, out, _ = run("jobs", "list", "--json", "--kind", "cli_job", "--limit", "2", "--after", page.Next)
	if code != 0 || !strings.Contains(out, `"id": `+strconv.FormatInt(ids[0], 10)) {
		t.Fatalf("jobs list second page: %d %s", code, out)
	}
	code, out, _ = run("jobs", "list", "--state", "available", "--queue", "mail")
	if code != 0 || strings.Count(out, "cli_job") != 3 {
		t.Fatalf("jobs list table: %d\n%s", code, out)
	}
	code, out, _ = run("jobs", "get", strconv.FormatInt(ids[0], 10), "--json")
	var job struct {
		ID    int64  `json:"id"`
		Queue string `json:"queue"`
		Args  struct{ N int }
	}
	if code != 0 || json.Unmarshal([]byte(out), &job) != nil || job.ID != ids[0] || job.Queue != "mail" {
		t.Fatalf("jobs get: %d %s", code, out)
	}
	code, out, _ = run("jobs", "cancel", strconv.FormatInt(ids[0], 10))
	if code != 0 || !strings.Contains(out, "state cancelled") {
		t.Fatalf("jobs cancel: %d %s", code, out)
	}
	code, out, _ = run("jobs", "retry", strconv.FormatInt(ids[0], 10), "--json")
	if code != 0 || !strings.Contains(out, `"state": "available"`) {
		t.Fatalf("jobs retry: %d %s", code, out)
	}
	code, out, _ = run("jobs", "delete", strconv.FormatInt(ids[1], 10))
	if code != 0 || !strings.Contains(out, "job "+strconv.FormatInt(ids[1], 10)) {
		t.Fatalf("jobs delete: %d %s", code, out)
	}
	if _, err := db.Exec().JobGetByID(ctx, &driver.JobGetByIDParams{Schema: db.Schema, ID: ids[1]}); err == nil {
		t.Fatal("deleted job still there")
	}

	// Queues need a row: register one as a producer would.
	if _, err := db.Exec().QueueCreateOrSetUpdatedAt(ctx, &driver.QueueCreateParams{Schema: db.Schema, Name: "mail"}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run("queues", "pause", "mail")
	if code != 0 || !strings.Contains(out, "queue mail paused") {
		t.Fatalf("queues pause: %d %s", code, out)
	}
	code, out, _ = run("queues", "list", "--json")
	var queues []struct {
		Name   string `json:"name"`
		Paused bool   `json:"paused"`
		Counts struct {
			Available int64 `json:"available"`
			Running   int64 `json:"running"`
		} `json:"counts"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &queues) != nil || len(queues) != 1 || !queues[0].Paused {
		t.Fatalf("queues list: %d %s", code, out)
	}
	// The counts are the queue's jobs as the table has them.
	var available, nRunning int64
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'available'), count(*) FILTER (WHERE state = 'running')
		FROM `+db.Schema+`.river_job WHERE queue = 'mail'`).Scan(&available, &nRunning); err != nil {
		t.Fatal(err)
	}
	if available == 0 || queues[0].Counts.Available != available || queues[0].Counts.Running != nRunning {
		t.Fatalf("queues list counts %+v, table has available %d running %d", queues[0].Counts, available, nRunning)
	}
	code, out, _ = run("queues", "list")
	if code != 0 || !strings.Contains(out, "AVAILABLE") || !strings.Contains(out, fmt.Sprintf("mail  true    %d", available)) {
		t.Fatalf("queues list (table): %d %s", code, out)
	}
	code, out, _ = run("queues", "resume", "*", "--json")
	if code != 0 || !strings.Contains(out, `"paused": false`) {
		t.Fatalf("queues resume *: %d %s", code, out)
	}
	code, out, _ = run("leader", "--json")
	if code != 0 || !strings.Contains(out, `"leader_id": null`) {
		t.Fatalf("leader: %d %s", code, out)
	}

	// Bad input: one line on stderr, non-zero exit.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"jobs", "get", "999999"}, 1, "job 999999 not found"},
		{[]string{"jobs", "get", "abc"}, 2, `invalid job ID "abc"`},
		{[]string{"jobs", "list", "--state", "sleeping"}, 2, `invalid state "sleeping"`},
		{[]string{"jobs", "delete", strconv.FormatInt(running.ID, 10)}, 1, "is running: cancel it first"},
		{[]string{"queues", "pause", "nosuchqueue"}, 1, `queue "nosuchqueue" not found`},
		{[]string{"queues", "pause", "Bad Name"}, 2, "queue name"},
		{[]string{"jobs", "list", "--limit", "0"}, 2, "--limit 0 out of range"},
	} {
		code, _, errOut := run(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line containing %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	code, _, errOut = exe(t, "jobs", "list", "--database-url", url, "--schema", "no_tables_here")
	if code != 1 || !strings.Contains(errOut, "millrace migrate up") {
		t.Errorf("jobs list on a schema without tables: %d %q", code, errOut)
	}
	code, _, errOut = exe(t, "jobs", "list", "--database-url", "postgres://nobody:wrong@127.0.0.1:5432/postgres")
	if code != 1 || strings.Count(errOut, "\n") != 1 || strings.Contains(errOut, "wrong") {
		t.Errorf("wrong user: %d %q", code, errOut)
	}
}

func TestBenchCommand(t *testing.T) {
	t.Parallel()
	code, out, errOut := exe(t, "bench", "--database-url", testdb.AdminURL(t), "--jobs", "500", "--samples", "20", "--json")
	var res benchResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.BurndownJobsPerS <= 0 || res.InsertJobsPerS <= 0 || res.LatencyP50MS <= 0 {
		t.Fatalf("bench: %d %s %s", code, out, errOut)
	}
}

func TestVersionBinary(t *testing.T) {
	t.Parallel()
	code, out, _ := exe(t, "version", "--json")
	if code != 0 || !strings.Contains(out, `"version"`) {
		t.Fatalf("version: %d %s", code, out)
	}
}

// TestDemoInterrupt: Ctrl-C during the demo stops it gracefully and it
// still prints the summary, with nothing left running.
func TestDemoInterrupt(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary(t), "demo", "--database-url", testdb.AdminURL(t), "--schema", "demo_interrupt_test",
		"--jobs", "20000", "--workers", "5")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	signalled := false
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if !signalled && strings.HasPrefix(line, "3. started client") {
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	err = cmd.Wait()
	text := out.String()
	if err != nil || !signalled {
		t.Fatalf("demo after Ctrl-C: %v (signalled %v)\n%s\n%s", err, signalled, text, errOut.String())
	}
	for _, want := range []string{"interrupted: stopped gracefully", "summary:", "now running: 0", "\nworked: ", "dropped schema demo_interrupt_test"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// Interrupted, the demo did not wait for the scheduled job: its summary
	// says nothing about that wait.
	for _, unwanted := range []string{"scheduled job ", "wait for the scheduled job", "burn-down:"} {
		if strings.Contains(text[strings.Index(text, "summary:"):], unwanted) {
			t.Errorf("summary after Ctrl-C mentions %q:\n%s", unwanted, text)
		}
	}
	if !regexp.MustCompile(`running\s+0\n`).MatchString(text) {
		t.Errorf("jobs left running after an interrupted demo:\n%s", text)
	}
}

// TestLeaderCommandDomains: `millrace leader` shows the database's leader
// and each domain's live leader; a schema without line millrace shows the
// database's alone.
func TestLeaderCommandDomains(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.AdminURL(t)
	main := testfixture.New(t)
	code, out, _ := exe(t, "leader", "--json", "--database-url", url, "--schema", main.Schema)
	if code != 0 || !strings.Contains(out, `"leader_id": null`) || !strings.Contains(out, `"domains": []`) {
		t.Fatalf("leader on line main only: %d %s", code, out)
	}

	db := testfixture.New(t)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO `+db.Schema+`.river_leader (leader_id, elected_at, expires_at) VALUES ('c_db', now(), now() + interval '1 minute');
		INSERT INTO `+db.Schema+`.millrace_leader (domain, leader_id, elected_at, expires_at) VALUES
			('billing', 'c_bill', now(), now() + interval '1 minute'),
			('audit', 'c_audit', now(), now() + interval '1 minute'),
			('gone', 'c_gone', now() - interval '1 minute', now() - interval '1 second')`); err != nil {
		t.Fatal(err)
	}
	dbf := []string{"--database-url", url, "--schema", db.Schema}
	code, out, _ = exe(t, append([]string{"leader"}, dbf...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "leader c_db (") ||
		!strings.HasPrefix(lines[1], "domain audit: leader c_audit (") || !strings.HasPrefix(lines[2], "domain billing: leader c_bill (") {
		t.Fatalf("leader: %d\n%s", code, out)
	}
	code, out, _ = exe(t, append([]string{"leader", "--json"}, dbf...)...)
	var got struct {
		LeaderID string `json:"leader_id"`
		Domains  []struct {
			Domain   string `json:"domain"`
			LeaderID string `json:"leader_id"`
		} `json:"domains"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.LeaderID != "c_db" || len(got.Domains) != 2 ||
		got.Domains[0].Domain != "audit" || got.Domains[0].LeaderID != "c_audit" || got.Domains[1].Domain != "billing" {
		t.Fatalf("leader --json: %d %s", code, out)
	}
}
