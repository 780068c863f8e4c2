package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

// TestUsageExitCodes: every usage mistake exits 2 with one line naming
// it, including unknown subcommands of the groups (cobra alone prints help
// and exits 0) and wrong argument counts (cobra alone exits 1).
func TestUsageExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nosuch"}, `unknown command "nosuch" for "millrace"`},
		{[]string{"jobs", "nosuch"}, `unknown command "nosuch" for "millrace jobs"`},
		{[]string{"migrate", "sideways"}, `unknown command "sideways" for "millrace migrate"`},
		{[]string{"queues", "drain"}, `unknown command "drain" for "millrace queues"`},
		{[]string{"jobs", "get"}, "millrace jobs get: accepts 1 arg(s), received 0"},
		{[]string{"jobs", "get", "1", "2"}, "millrace jobs get: accepts 1 arg(s), received 2"},
		{[]string{"jobs", "cancel", "1", "2"}, "millrace jobs cancel: accepts at most 1 arg(s), received 2"},
		{[]string{"queues", "pause"}, "millrace queues pause: accepts 1 arg(s), received 0"},
		{[]string{"jobs", "list", "extra"}, `millrace jobs list takes no arguments, got "extra"`},
		{[]string{"migrate", "up", "now"}, `millrace migrate up takes no arguments, got "now"`},
		{[]string{"version", "x"}, `millrace version takes no arguments, got "x"`},
	} {
		code, out, errOut := exe(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line containing %q", tc.args, code, out, errOut, tc.want)
		}
	}
	// A group alone asks for its help: exit 0, help on stdout.
	for _, group := range []string{"jobs", "migrate", "queues"} {
		code, out, _ := exe(t, group)
		if code != 0 || !strings.Contains(out, "Available Commands") {
			t.Errorf("%s alone: exit %d, %q", group, code, out)
		}
	}
}

// TestNotMigratedCommands: every command that reads the tables says the
// schema is not migrated, names it and the missing versions, and says how
// to migrate.
func TestNotMigratedCommands(t *testing.T) {
	t.Parallel()
	url := testdb.AdminURL(t)
	empty, _ := testdb.NewSchema(t)
	old, pool := testdb.NewSchema(t)
	m, err := migrate.New[pgx.Tx](pgxv5.New(pool), &migrate.Config{Schema: old})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(context.Background(), migrate.DirectionUp, &migrate.MigrateOpts{TargetVersion: 5}); err != nil {
		t.Fatal(err)
	}
	cmds := [][]string{{"jobs", "list"}, {"jobs", "get", "1"}, {"jobs", "cancel", "1"}, {"jobs", "logs", "1"},
		{"jobs", "delete", "--many", "--state", "available"}, {"queues", "list"}, {"queues", "pause", "default"}, {"leader"}}
	for _, tc := range []struct {
		schema string
		want   string
	}{
		{empty, `schema "` + empty + `" has no millrace (River) tables`},
		{old, `schema "` + old + `" lacks versions 6, 7, 8 of migration line main`},
		{"no_such_schema", `schema "no_such_schema" does not exist; create it (CREATE SCHEMA no_such_schema)`},
	} {
		for _, args := range cmds {
			code, _, errOut := exe(t, append(args, "--database-url", url, "--schema", tc.schema)...)
			if code != 1 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "database is not migrated: "+tc.want) ||
				!strings.Contains(errOut, "millrace migrate up --database-url URL --schema "+tc.schema) {
				t.Errorf("%v on %s: exit %d, stderr %q", args, tc.schema, code, errOut)
			}
		}
	}
}

// TestConnectMessages: connect_timeout in the URL is honoured, and a
// server that does not speak Postgres's protocol is named as such.
func TestConnectMessages(t *testing.T) {
	t.Parallel()
	// A server that accepts and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// A server that answers like a web server.
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	serve := func(l net.Listener, answer []byte) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 512)
				_, _ = c.Read(buf)
				if answer == nil {
					_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
					_, _ = c.Read(buf) // hold the connection, say nothing
					return
				}
				_, _ = c.Write(answer)
			}()
		}
	}
	go serve(silent, nil)
	go serve(web, []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))

	begin := time.Now()
	code, _, errOut := exe(t, "jobs", "list", "--database-url",
		"postgres://postgres@"+silent.Addr().String()+"/postgres?sslmode=disable&connect_timeout=1")
	took := time.Since(begin)
	if code != 1 || !strings.Contains(errOut, "server did not answer in time") || took > 5*time.Second {
		t.Errorf("silent server with connect_timeout=1: exit %d after %s, %q", code, took.Round(time.Millisecond), errOut)
	}
	code, _, errOut = exe(t, "jobs", "list", "--database-url",
		"postgres://postgres@"+web.Addr().String()+"/postgres?sslmode=disable")
	if code != 1 || !strings.Contains(errOut, "does not speak PostgreSQL's protocol") || strings.Contains(errOut, "expected at most") {
		t.Errorf("web server: exit %d, %q", code, errOut)
	}
}

// TestJobCommandsSayWhatHappened: jobs get shows tags and attempts; cancel
// on a finished job says nothing changed, on a running job with no live
// client that the cancel is requested; a bad queue name is "invalid queue
// name".
func TestJobCommandsSayWhatHappened(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	url := testdb.AdminURL(t)
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return exe(t, append(args, "--database-url", url, "--schema", db.Schema)...)
	}
	now := time.Now().UTC()
	running := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "cli_busy", State: millracetype.JobStateRunning, Attempt: 1,
		AttemptedAt: &now, AttemptedBy: []string{"worker-host-7"}, Tags: []string{"billing", "eu"}})
	done := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "cli_done", State: millracetype.JobStateCompleted, Attempt: 1,
		AttemptedAt: &now, FinalizedAt: &now})

	code, out, _ := run("jobs", "get", strconv.FormatInt(running.ID, 10))
	for _, want := range []string{"tags      billing, eu", "attempted " + now.Format("2006-01-02T15:04"), "attempted by worker-host-7"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("jobs get: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	code, out, _ = run("jobs", "cancel", strconv.FormatInt(done.ID, 10))
	if code != 0 || !strings.HasPrefix(out, "job "+strconv.FormatInt(done.ID, 10)+" was already completed: nothing changed\n") {
		t.Errorf("cancel a completed job: exit %d:\n%s", code, out)
	}
	code, out, _ = run("jobs", "cancel", strconv.FormatInt(running.ID, 10))
	if code != 0 || !strings.Contains(out, "is running: cancel requested, but no client is running now") {
		t.Errorf("cancel a running job, no client: exit %d:\n%s", code, out)
	}
	code, out, _ = run("jobs", "retry", strconv.FormatInt(running.ID, 10))
	if code != 0 || !strings.Contains(out, "is running: nothing changed") {
		t.Errorf("retry a running job: exit %d:\n%s", code, out)
	}
	code, _, errOut := run("queues", "pause", "Bad Queue!")
	if code != 2 || !strings.HasPrefix(errOut, "millrace: invalid queue name: ") || strings.Contains(errOut, "invalid job") {
		t.Errorf("pause a bad queue name: exit %d, %q", code, errOut)
	}
}

// TestMakeDemoUnreachable: `make demo` with a DATABASE_URL that does not
// answer stops after ensure-postgres's one error; the demo does not run to
// fail a second time.
func TestMakeDemoUnreachable(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"make", "bash", "psql", "pg_isready", "pg_dump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	cmd := exec.Command("make", "--no-print-directory", "-C", filepath.Join("..", ".."), "demo")
	cmd.Env = append(os.Environ(), "DATABASE_URL=postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=2")
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err == nil {
		t.Fatalf("make demo with an unreachable database succeeded:\n%s\n%s", out.String(), errOut.String())
	}
	all := out.String() + errOut.String()
	if strings.Count(strings.ToLower(all), "error") != 2 || !strings.Contains(errOut.String(), "ensure-postgres: error: DATABASE_URL=") ||
		strings.Contains(all, "millrace:") || strings.Contains(all, "go run") {
		t.Fatalf("make demo with an unreachable database: want ensure-postgres's error and make's, nothing from the demo:\n%s", all)
	}
}
