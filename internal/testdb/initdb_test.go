package testdb

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// childEnv marks the test binary that TestInitdbPathInSubprocess starts.
const childEnv = "MILLRACE_TESTDB_INITDB_CHILD"

// childReport is the line the child prints for its parent to check.
var childReport = regexp.MustCompile(`(?m)^testdb-child: dir=(\S+) postmaster=(\d+)$`)

// TestInitdbPathInSubprocess runs this test binary again with
// MILLRACE_TESTDB=initdb so that the throwaway-cluster path is exercised by
// every plain `go test ./...`, whatever server the rest of the tests use, and
// checks that the child used a throwaway cluster, worked with it, and left
// nothing behind (directory removed, server stopped).
func TestInitdbPathInSubprocess(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("this is the child; it runs only TestInitdbChild")
	}
	if runtime.GOOS == "windows" {
		t.Skip("the throwaway-cluster path is tested on Unix only")
	}
	if _, err := findBinDir(); err != nil {
		// CI must exercise this path, so there a missing initdb is a failure.
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but the throwaway-cluster path cannot be tested: %v (install Debian's postgresql package)", err)
		}
		t.Skipf("cannot test the throwaway-cluster path: %v (install Debian's postgresql package to run it)", err)
	}
	t.Parallel()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestInitdbChild$", "-test.v", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(envWithout(envMode, envURL, childEnv), envMode+"="+kindInitdb, childEnv+"=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("child ran in %v; its output:\n%s", time.Since(start).Round(time.Millisecond), indent(out))
	if err != nil {
		t.Fatalf("child test binary failed: %v", err)
	}
	text := string(out)

	for _, want := range []string{"--- PASS: TestInitdbChild", "testdb: using a throwaway cluster", "MILLRACE_TESTDB=initdb"} {
		if !strings.Contains(text, want) {
			t.Errorf("child output lacks %q", want)
		}
	}
	m := childReport.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("child output lacks a line matching %s", childReport)
	}
	dir := m[1]
	pid, _ := strconv.Atoi(m[2])
	if !strings.Contains(text, "testdb: stopped throwaway cluster on 127.0.0.1:") || !strings.Contains(text, "and removed "+dir) {
		t.Errorf("child output does not say it stopped the cluster and removed %s", dir)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the child's cluster directory %s still exists (stat error: %v)", dir, err)
	}
	// pg_ctl stop -w waits for the server to remove its PID file, which is
	// just before it exits, so allow a moment.
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if processAlive(pid) {
		t.Errorf("the child's server (PID %d) still runs after the child exited", pid)
	}
}

// TestInitdbChild is the child half of TestInitdbPathInSubprocess.
func TestInitdbChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("runs only as the child of TestInitdbPathInSubprocess")
	}
	if !IsThrowaway() {
		t.Fatalf("MILLRACE_TESTDB=initdb but IsThrowaway() = false")
	}
	srv := serverFor(t)
	pid, ok := postmasterPID(srv.cluster.dataDir)
	if !ok {
		t.Fatalf("no postmaster.pid in %s", srv.cluster.dataDir)
	}
	fmt.Printf("testdb-child: dir=%s postmaster=%d\n", srv.cluster.dir, pid)

	ctx := ctxFor(t)
	_, pool := NewSchema(t)
	var settings string
	if err := pool.QueryRow(ctx, "SELECT current_setting('fsync') || ',' || current_setting('max_connections') || ',' || current_setting('listen_addresses')").Scan(&settings); err != nil {
		t.Fatal(err)
	}
	if settings != "off,200,127.0.0.1" {
		t.Errorf("fsync,max_connections,listen_addresses = %s, want off,200,127.0.0.1", settings)
	}
	conn := connect(t, NewDatabase(t))
	if _, err := conn.Exec(ctx, "CREATE TABLE public.widget (id int)"); err != nil {
		t.Fatal(err)
	}
	t.Run("restart", checkRestart)
}

// envWithout returns the environment without the named variables.
func envWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || name == n
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return env
}
