package testdb

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeHelperEnv makes this test binary act as a stand-in for the container
// starter (see TestMain): it speaks containerpg's protocol without Docker.
// Its value says how: "ok" prints a connection string and waits for standard
// input to close, "fail" exits 1 without printing one. (A helper that hangs
// is a shell: see TestHelperFailures.)
const fakeHelperEnv = "MILLRACE_TESTDB_FAKE_HELPER"

// fakeHelperMarkEnv names a file the fake writes once it has seen its
// standard input close, so the parent can tell a clean stop from a kill.
const fakeHelperMarkEnv = "MILLRACE_TESTDB_FAKE_HELPER_MARK"

const fakeURL = "postgres://postgres@127.0.0.1:1/fake?sslmode=disable"

// fakeHelper is the stand-in's whole program; it returns the exit code.
func fakeHelper() int {
	switch os.Getenv(fakeHelperEnv) {
	case "ok":
		fmt.Println(fakeURL)
		_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
		if err := os.WriteFile(os.Getenv(fakeHelperMarkEnv), []byte("stdin closed\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "fake helper: released")
		return 0
	case "fail":
		fmt.Fprintln(os.Stderr, "fake helper: no Docker here")
		return 1
	}
	return 2
}

func fakeHelperCmd(t *testing.T, mode, mark string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fakeHelperEnv+"="+mode, fakeHelperMarkEnv+"="+mark)
	return cmd
}

// TestHelperProtocol checks testdb's side of the container starter's
// protocol with a stand-in (the starter itself needs a Docker engine): the
// connection string is the first line, closing standard input makes the
// helper release and exit, and the cleanup (removing the built starter) runs.
func TestHelperProtocol(t *testing.T) {
	t.Parallel()
	mark := filepath.Join(t.TempDir(), "mark")
	cleaned := false
	p, url, err := startHelper(fakeHelperCmd(t, "ok", mark), time.Minute, func() { cleaned = true })
	if err != nil {
		t.Fatalf("startHelper: %v", err)
	}
	if url != fakeURL {
		t.Errorf("startHelper returned %q, want %q", url, fakeURL)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatalf("the helper released before its standard input closed")
	}
	if cleaned {
		t.Fatalf("cleanup ran while the helper still holds the container")
	}
	if err := p.stop(time.Minute); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Errorf("the helper exited without seeing its standard input close: %v", err)
	}
	if !cleaned {
		t.Errorf("stop did not run the cleanup")
	}
}

// TestHelperFailures checks that a helper which fails or hangs before
// printing a connection string gives an error that says so, with the end of
// its standard error, is not left running, and has its cleanup run.
func TestHelperFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode    string
		timeout time.Duration
		want    []string
	}{
		{"fail", time.Minute, []string{"ended without printing a connection string", "exit status 1", "fake helper: no Docker here"}},
		// A shell, not the re-executed test binary: a race-enabled binary
		// can take longer than the timeout just to start on a loaded
		// machine, and then it has not printed its line yet.
		{"hang", 2 * time.Second, []string{"printed no connection string within 2s", "killed", "fake helper: thinking"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			cleaned := false
			var cmd *exec.Cmd
			if tt.mode == "hang" {
				cmd = exec.Command("/bin/sh", "-c", `echo "fake helper: thinking" >&2; exec sleep 3600`)
			} else {
				cmd = fakeHelperCmd(t, tt.mode, filepath.Join(t.TempDir(), "mark"))
			}
			p, url, err := startHelper(cmd, tt.timeout, func() { cleaned = true })
			if err == nil {
				p.stop(time.Minute)
				t.Fatalf("startHelper returned %q, want an error", url)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if cmd.ProcessState == nil {
				t.Errorf("the helper was not waited for")
			}
			if !cleaned {
				t.Errorf("cleanup did not run after the failure")
			}
		})
	}
}
