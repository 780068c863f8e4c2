package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The whole demo runs on a SQLite file, with no server, and keeps the file
// when asked.
func TestDemo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.db")
	var out, errOut strings.Builder
	if code := run([]string{"demo", "--jobs", "50", "--workers", "5", "--path", path, "--keep"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"1. migrated SQLite file " + path, "2. inserted 50 jobs with INSERTs in one transaction", "duplicate=true",
		"now running: 0", "kept " + path} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// Every job completed: the 50, the scheduled one, the unique one and
	// one periodic job per client that became leader (one or two: the
	// first client works only half the jobs, and may stop before its
	// leader's services start).
	m := regexp.MustCompile(`completed\s+(\d+)\n(?s:.*)\n\s+total\s+(\d+)\ntotal \d+ = 50 inserted \+ 1 scheduled ahead \+ 1 unique \+ (\d) periodic`).FindStringSubmatch(out.String())
	if m == nil || m[1] != m[2] || (m[3] != "1" && m[3] != "2") || m[1] != strconv.Itoa(52+int(m[3][0]-'0')) {
		t.Errorf("summary: got %q, want every job completed, with 1 or 2 periodic ones:\n%s", m, out.String())
	}
	// A kept file holds a demo: a second run refuses it.
	out.Reset()
	errOut.Reset()
	if code := run([]string{"demo", "--jobs", "50", "--path", path}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "already holds millrace's tables") {
		t.Fatalf("second demo on a kept file: exit %d, stderr %q", code, errOut.String())
	}
}

// Bad input: clear errors and exit code 2, nothing created.
func TestDemoBadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"no subcommand":     {nil, "usage: millrace-sqlite demo"},
		"other subcommand":  {[]string{"migrate"}, "usage: millrace-sqlite demo"},
		"missing directory": {[]string{"demo", "--path", filepath.Join(dir, "nope", "x.db")}, "invalid database path"},
		"not a database":    {[]string{"demo", "--path", file}, "is not a SQLite database"},
		"too few jobs":      {[]string{"demo", "--jobs", "1", "--path", filepath.Join(dir, "a.db")}, "jobs 1 out of range"},
		"too many workers":  {[]string{"demo", "--workers", "0", "--path", filepath.Join(dir, "a.db")}, "workers 0 out of range"},
		"bad flag":          {[]string{"demo", "--nope"}, "flag provided but not defined"},
		"extra argument":    {[]string{"demo", "extra"}, "unexpected arguments"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut strings.Builder
			if code := run(c.args, &out, &errOut); code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", code, errOut.String())
			}
			if !strings.Contains(errOut.String(), c.want) {
				t.Errorf("stderr %q lacks %q", errOut.String(), c.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "a.db")); !os.IsNotExist(err) {
		t.Errorf("a demo refused for its flags created its file: %v", err)
	}
}
