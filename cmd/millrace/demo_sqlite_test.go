package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The whole demo runs on a SQLite file, with no server (DATABASE_URL
// points at a port where no Postgres listens, and is not used), and keeps
// the file when asked.
func TestDemoSQLite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "demo.db")
	cmd := exec.Command(binary(t), "demo", "--driver", "sqlite", "--jobs", "50", "--workers", "5", "--path", path, "--keep")
	cmd.Env = append(os.Environ(), "DATABASE_URL=postgres://postgres@127.0.0.1:1/unreachable?connect_timeout=1")
	var outB, errB strings.Builder
	cmd.Stdout, cmd.Stderr = &outB, &errB
	code := 0
	started := time.Now()
	err := cmd.Run()
	ended := time.Now()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	out, errOut := outB.String(), errB.String()
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"1. migrated SQLite file " + path, "2. inserted 50 jobs with INSERTs in one transaction", "duplicate=true",
		"now running: 0", "kept " + path} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Every job completed: the 50, the scheduled one, the unique one, one
	// periodic job per client that became leader (one or two: the first
	// client works only half the jobs, and may stop before its leader's
	// services start) and one if the hour turned.
	want := 52 + demoPeriodicRuns(t, out, 50, started, ended, 0)
	m := regexp.MustCompile(`completed\s+(\d+)\n(?s:.*)\n\s+total\s+(\d+)\n`).FindStringSubmatch(out)
	if m == nil || m[1] != m[2] || m[1] != strconv.Itoa(want) {
		t.Errorf("summary: got %q, want all of %d jobs completed:\n%s", m, want, out)
	}
	// A kept file holds a demo: a second run refuses it.
	code, _, errOut = exe(t, "demo", "--driver", "sqlite", "--jobs", "50", "--path", path)
	if code != 1 || !strings.Contains(errOut, "already holds millrace's tables") {
		t.Fatalf("second demo on a kept file: exit %d, stderr %q", code, errOut)
	}
}

// Bad input: clear errors and exit code 2, nothing created.
func TestDemoSQLiteBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"missing directory": {[]string{"--path", filepath.Join(dir, "nope", "x.db")}, "invalid database path"},
		"not a database":    {[]string{"--path", file}, "is not a SQLite database"},
		"too few jobs":      {[]string{"--jobs", "1", "--path", filepath.Join(dir, "a.db")}, "--jobs 1 out of range"},
		"too few workers":   {[]string{"--workers", "0", "--path", filepath.Join(dir, "a.db")}, "--workers 0 out of range"},
		"a schema":          {[]string{"--schema", "x", "--path", filepath.Join(dir, "a.db")}, "not on a --schema"},
		"a database URL":    {[]string{"--database-url", "postgres://x", "--path", filepath.Join(dir, "a.db")}, "not on a --schema or --database-url"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := exe(t, append([]string{"demo", "--driver", "sqlite"}, c.args...)...)
			if code != 2 || !strings.Contains(errOut, c.want) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line containing %q", code, errOut, c.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "a.db")); !os.IsNotExist(err) {
		t.Errorf("a demo refused for its flags created its file: %v", err)
	}
}
