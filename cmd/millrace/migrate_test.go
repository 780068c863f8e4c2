package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/millrace/millrace/internal/testdb"
)

// TestMigrateLines drives --line: one line at a time, the dependency of
// line millrace on line main, and every line in order.
func TestMigrateLines(t *testing.T) {
	t.Parallel()
	schema, _ := testdb.NewSchema(t)
	url := testdb.AdminURL(t)
	db := []string{"--database-url", url, "--schema", schema}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return millrace(t, append(args, db...)...)
	}

	code, _, errOut := run("migrate", "up", "--line", "millrace")
	if code != 1 || !strings.Contains(errOut, "line millrace needs line main at version 5 or later") {
		t.Fatalf("millrace up before main: code %d, %s", code, errOut)
	}
	code, out, errOut := run("migrate", "up", "--line", "main")
	if code != 0 || !strings.Contains(out, "version 008 job_id_autoincrement (line main") || strings.Contains(out, "line millrace") {
		t.Fatalf("main up: code %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = run("migrate", "list", "--line", "millrace", "--json")
	var rows []struct {
		Line    string `json:"line"`
		Version int    `json:"version"`
		Applied bool   `json:"applied"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 2 || rows[0].Line != "millrace" || rows[0].Applied || rows[1].Applied {
		t.Fatalf("millrace list: code %d, %s", code, out)
	}
	code, out, _ = run("migrate", "up")
	if code != 0 || !strings.Contains(out, "version 001 millrace_client (line millrace") || strings.Contains(out, "line main") {
		t.Fatalf("up on main at 8: code %d\n%s", code, out)
	}
	code, out, _ = run("migrate", "list")
	if code != 0 || !strings.HasPrefix(out, "LINE") || !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool {
		return slices.Equal(strings.Fields(l)[:min(4, len(strings.Fields(l)))], []string{"millrace", "001", "millrace_client", "applied"})
	}) {
		t.Fatalf("list: code %d\n%s", code, out)
	}

	code, _, errOut = run("migrate", "down", "--line", "main", "--all")
	if code != 1 || !strings.Contains(errOut, "line main cannot go below version 5 while line millrace has versions applied (up to 2); migrate line millrace down first") {
		t.Fatalf("main down --all under millrace: code %d, %s", code, errOut)
	}
	code, out, errOut = run("migrate", "down", "--all")
	if code != 0 {
		t.Fatalf("down --all: code %d\n%s\n%s", code, out, errOut)
	}
	millAt, mainAt := strings.Index(out, "version 001 millrace_client (line millrace"), strings.Index(out, "version 008 job_id_autoincrement (line main")
	if millAt < 0 || mainAt < 0 || millAt > mainAt || !strings.Contains(out, "version 001 create_river_migration (line main") {
		t.Fatalf("down --all did not revert millrace, then main 8..1:\n%s", out)
	}
}

func TestMigrateLineFlags(t *testing.T) {
	t.Parallel()
	code, out, _ := millrace(t, "migrate", "sql")
	mainAt, millAt := strings.Index(out, "line main version 008"), strings.Index(out, "line millrace version 001")
	if code != 0 || mainAt < 0 || millAt < mainAt || !strings.Contains(out, "CREATE TABLE millrace_client (") {
		t.Fatalf("migrate sql: code %d\n%s", code, out)
	}
	code, out, _ = millrace(t, "migrate", "sql", "--line", "millrace", "--schema", "jobs")
	if code != 0 || !strings.Contains(out, `CREATE TABLE "jobs".millrace_client (`) || strings.Contains(out, "line main version") {
		t.Fatalf("migrate sql --line millrace: code %d\n%s", code, out)
	}
	code, out, _ = millrace(t, "migrate", "sql", "--line", "millrace", "--from", "1", "--to", "0")
	if code != 0 || !strings.Contains(out, "DROP TABLE millrace_client;") {
		t.Fatalf("migrate sql millrace down: code %d\n%s", code, out)
	}
	url := testdb.AdminURL(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "up", "--line", "all", "--target-version", "3", "--database-url", url}, "--target-version is a version of one line"},
		{[]string{"migrate", "sql", "--line", "all", "--to", "3"}, "--to is a version of one line"},
		{[]string{"migrate", "list", "--line", "nope", "--database-url", url}, `unknown --line "nope"`},
		{[]string{"migrate", "sql", "--line", "millrace", "--to", "99"}, "unknown migration version"},
	} {
		code, _, errOut := millrace(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: code %d, %q; want 2 and %q on one line", c.args, code, errOut, c.want)
		}
	}
}
