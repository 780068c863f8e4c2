package testdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// clusterDirPrefix starts the name of every throwaway cluster's
	// directory, so that a later binary can find the ones left behind.
	clusterDirPrefix = "millrace-testdb-"
	// ownerFile, in a cluster's directory, holds the PID of the test binary
	// that made it. When that process is gone the cluster is stale.
	ownerFile = "owner.pid"
	// pgctlTimeout bounds each initdb and pg_ctl run.
	pgctlTimeout = 2 * time.Minute
	// startAttempts is how many free ports are tried, in case another
	// process takes the port between our check and the server's bind.
	startAttempts = 5
)

// cluster is a throwaway PostgreSQL cluster this test binary made with initdb
// and runs with pg_ctl.
type cluster struct {
	binDir  string  // directory holding initdb and pg_ctl
	dir     string  // temporary directory: data, log, sockets, owner file
	dataDir string  // the cluster's data directory, inside dir
	logFile string  // the server's log, inside dir
	port    int     // TCP port on 127.0.0.1
	owner   *osUser // OS user the server runs as; nil means the current user
}

// url returns the superuser connection string of the cluster.
func (c *cluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// startCluster makes a cluster in a new temporary directory with initdb and
// starts it. On failure nothing is left behind.
func startCluster() (_ *cluster, err error) {
	binDir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	owner, err := serverOSUser()
	if err != nil {
		return nil, err
	}
	base := tempBase(owner)
	sweepStale(base, binDir, owner)

	dir, err := os.MkdirTemp(base, clusterDirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create temporary directory for the cluster: %w", err)
	}
	c := &cluster{
		binDir:  binDir,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logFile: filepath.Join(dir, "postgres.log"),
		owner:   owner,
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, c.logTail())
			_ = c.stopQuietly()
		}
	}()

	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", ownerFile, err)
	}
	if err := owner.chown(dir); err != nil {
		return nil, fmt.Errorf("give %s to OS user %s: %w", dir, owner.name, err)
	}

	if _, err := c.run("initdb", "-D", c.dataDir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		return nil, err
	}
	settings := fmt.Sprintf(`
# Added by millrace's internal/testdb: a throwaway cluster for tests only.
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
`, strings.ReplaceAll(dir, "'", "''"))
	if err := appendFile(filepath.Join(c.dataDir, "postgresql.conf"), settings); err != nil {
		return nil, err
	}

	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		// A later line wins, so each attempt just appends its port.
		if err := appendFile(filepath.Join(c.dataDir, "postgresql.conf"), fmt.Sprintf("port = %d\n", port)); err != nil {
			return nil, err
		}
		c.port = port
		_, err = c.run("pg_ctl", "start", "-D", c.dataDir, "-l", c.logFile, "-w", "-t", "60")
		if err == nil {
			return c, nil
		}
		log, _ := os.ReadFile(c.logFile)
		if attempt < startAttempts && strings.Contains(string(log), "could not bind") {
			continue
		}
		return nil, err
	}
}

// restart restarts the server on the same port and waits until it is ready.
func (c *cluster) restart() error {
	_, err := c.run("pg_ctl", "restart", "-D", c.dataDir, "-l", c.logFile, "-m", "fast", "-w", "-t", "60")
	if err != nil {
		return fmt.Errorf("%w%s", err, c.logTail())
	}
	return nil
}

// stop stops the server and removes its directory, and says so on standard
// error.
func (c *cluster) stop() error {
	if err := c.stopQuietly(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "testdb: stopped throwaway cluster on 127.0.0.1:%d and removed %s\n", c.port, c.dir)
	return nil
}

// stopQuietly stops the server, if it runs, and removes its directory. It
// keeps the directory when the server may still be running, since deleting a
// running server's files helps nobody.
func (c *cluster) stopQuietly() error {
	if pid, ok := postmasterPID(c.dataDir); ok && processAlive(pid) {
		if _, err := c.run("pg_ctl", "stop", "-D", c.dataDir, "-m", "immediate", "-w", "-t", "60"); err != nil {
			if pid, ok := postmasterPID(c.dataDir); ok && processAlive(pid) {
				return fmt.Errorf("stop throwaway cluster in %s (server PID %d), so its directory is kept: %w", c.dir, pid, err)
			}
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("remove throwaway cluster directory: %w", err)
	}
	return nil
}

// run runs one of the cluster's programs (initdb, pg_ctl) as the server's OS
// user, in the cluster's directory, and returns its output. The error
// includes the command line and its output.
func (c *cluster) run(program string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pgctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, program), args...)
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	c.owner.apply(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s%s: %w\n%s", program, strings.Join(args, " "), c.owner.suffix(), err, indent(out))
	}
	return out, nil
}

// logTail returns the end of the server log, formatted to follow an error
// message, or "" when there is no log.
func (c *cluster) logTail() string {
	data, err := os.ReadFile(c.logFile)
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\nend of server log " + c.logFile + ":\n" + indent([]byte(strings.Join(lines, "\n")))
}

// findBinDir returns the directory of the newest initdb and pg_ctl: Debian's
// /usr/lib/postgresql/<version>/bin first, then PATH, then pg_config.
func findBinDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestVersion := "", []int(nil)
	for _, m := range matches {
		dir := filepath.Dir(m)
		version := parseVersion(filepath.Base(filepath.Dir(dir)))
		if isFile(filepath.Join(dir, "pg_ctl")) && (best == "" || versionLess(bestVersion, version)) {
			best, bestVersion = dir, version
		}
	}
	if best != "" {
		return best, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil && isFile(filepath.Join(filepath.Dir(p), "pg_ctl")) {
		return filepath.Dir(p), nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if isFile(filepath.Join(dir, "initdb")) && isFile(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	return "", errors.New("no initdb and pg_ctl found under /usr/lib/postgresql/*/bin, on PATH, or in pg_config --bindir")
}

// parseVersion turns "15" or "9.6" into comparable numbers.
func parseVersion(s string) []int {
	var v []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil
		}
		v = append(v, n)
	}
	return v
}

// versionLess reports whether version a is older than b.
func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// tempBase returns where cluster directories go: the usual temporary
// directory, or /tmp when the server runs as another OS user who could not
// reach the usual one (a TMPDIR under /root, say).
func tempBase(owner *osUser) string {
	base := os.TempDir()
	if owner == nil {
		return base
	}
	for dir := base; ; dir = filepath.Dir(dir) {
		info, err := os.Stat(dir)
		if err != nil || info.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if dir == filepath.Dir(dir) {
			return base
		}
	}
}

// sweepStale stops and removes the clusters that test binaries which no
// longer run left in base (a binary that panicked, timed out, or was killed
// never reaches Main's teardown).
func sweepStale(base, binDir string, owner *osUser) {
	dirs, _ := filepath.Glob(filepath.Join(base, clusterDirPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being created
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || processAlive(pid) {
			continue
		}
		stale := &cluster{binDir: binDir, dir: dir, dataDir: filepath.Join(dir, "data"), owner: owner}
		if err := stale.stopQuietly(); err != nil {
			fmt.Fprintf(os.Stderr, "testdb: could not remove stale throwaway cluster %s left by test binary PID %d: %v\n", dir, pid, err)
			continue
		}
		fmt.Fprintf(os.Stderr, "testdb: removed stale throwaway cluster %s left by test binary PID %d, which is gone\n", dir, pid)
	}
}

// postmasterPID returns the server PID recorded in a data directory.
func postmasterPID(dataDir string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	return pid, err == nil && pid > 0
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverEnv is the environment for initdb and pg_ctl: ours without the PG*
// variables, which could point them at another data directory or port.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// appendFile appends text to the file at path.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// isFile reports whether path exists and is not a directory.
func isFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir()
}

// indent indents each line of out for display under an error message.
func indent(out []byte) string {
	s := strings.TrimRight(string(out), "\n")
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
