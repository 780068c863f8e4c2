package testdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// pgbouncerDirPrefix starts the name of every PgBouncer's temporary
	// directory (configuration, log, PID file, owner file).
	pgbouncerDirPrefix = "millrace-pgbouncer-"
	// pgbouncerStartTimeout bounds the wait for a started PgBouncer to
	// accept connections.
	pgbouncerStartTimeout = 15 * time.Second
	// aptTimeout bounds one apt-get run.
	aptTimeout = 5 * time.Minute
)

// PgBouncer starts a PgBouncer in transaction pooling mode (pool_mode =
// transaction) in front of the test server, on a free port of 127.0.0.1,
// and returns a connection string that reaches the test server's
// maintenance database through it, as the same user as [AdminURL] (the
// pooler authenticates clients with trust; it logs in to the server with
// the admin URL's password, if any).
//
// The pgbouncer program is looked for on PATH and in /usr/sbin. When it is
// missing and the tests run as root, Debian's pgbouncer package is
// installed (apt-get install, after apt-get update if the first attempt
// fails). When the tests run as root PgBouncer, which refuses root, runs as
// the postgres OS user, like a throwaway cluster.
//
// When PgBouncer can be neither found nor installed, or does not start, the
// test is skipped with the reason, except when the CI environment variable
// is set: CI must exercise this path, so there the test fails instead.
//
// At cleanup the PgBouncer is stopped (by its PID) and its directory
// removed; one left behind by a test binary that died is stopped and
// removed by the next call in any binary.
func PgBouncer(tb testing.TB) string {
	tb.Helper()
	srv := serverFor(tb)
	unavailable := func(format string, args ...any) {
		tb.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			tb.Fatalf("testdb: CI is set, so the PgBouncer path must run, but: %s", msg)
		}
		tb.Skipf("testdb: cannot test behind PgBouncer: %s", msg)
	}
	bin, err := findOrInstallPgBouncer(tb)
	if err != nil {
		unavailable("%v", err)
	}
	b, err := startPgBouncer(bin, srv.url)
	if err != nil {
		unavailable("start %s: %v", bin, err)
	}
	tb.Cleanup(func() {
		if err := b.stop(); err != nil {
			tb.Errorf("testdb: %v", err)
		}
	})
	tb.Logf("testdb: PgBouncer (pool_mode = transaction, PID %d) on 127.0.0.1:%d in front of %s", b.cmd.Process.Pid, b.port, srv.display)
	return b.url
}

// findOrInstallPgBouncer returns the path of the pgbouncer program,
// installing Debian's package when it is missing and we are root.
func findOrInstallPgBouncer(tb testing.TB) (string, error) {
	tb.Helper()
	find := func() string {
		if p, err := exec.LookPath("pgbouncer"); err == nil {
			return p
		}
		if isFile("/usr/sbin/pgbouncer") {
			return "/usr/sbin/pgbouncer"
		}
		return ""
	}
	if p := find(); p != "" {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("pgbouncer is not installed (not on PATH nor in /usr/sbin) and the tests do not run as root, so it cannot be installed here; install Debian's pgbouncer package")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", errors.New("pgbouncer is not installed and there is no apt-get to install it with; install PgBouncer")
	}
	// Tests of several packages (and parallel tests of one) may get here
	// at once: one installs, the others wait and find it.
	unlock, err := lockFile(filepath.Join(os.TempDir(), "millrace-pgbouncer-install.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if p := find(); p != "" {
		return p, nil
	}
	tb.Logf("testdb: pgbouncer is missing; installing Debian's pgbouncer package")
	out, err := aptGet("install", "-y", "--no-install-recommends", "pgbouncer")
	if err != nil {
		// A fresh machine often has no package lists yet.
		tb.Logf("testdb: apt-get install pgbouncer failed (%v); running apt-get update and trying again", err)
		if uout, uerr := aptGet("update"); uerr != nil {
			return "", fmt.Errorf("apt-get update: %w\n%s", uerr, indent(uout))
		}
		out, err = aptGet("install", "-y", "--no-install-recommends", "pgbouncer")
	}
	if err != nil {
		return "", fmt.Errorf("apt-get install pgbouncer: %w\n%s", err, indent(out))
	}
	if p := find(); p != "" {
		return p, nil
	}
	return "", errors.New("apt-get installed pgbouncer, but no pgbouncer program is on PATH or in /usr/sbin")
}

// aptGet runs apt-get non-interactively, waiting for another apt's lock
// rather than failing on it.
func aptGet(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), aptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"-o", "DPkg::Lock::Timeout=240", "-q"}, args...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}

// pgbouncer is a PgBouncer this test binary started.
type pgbouncer struct {
	dir  string    // temporary directory: configuration, log, PID and owner files
	port int       // TCP port on 127.0.0.1
	url  string    // connection string through it
	cmd  *exec.Cmd // the running pgbouncer
	done chan struct{}
}

// startPgBouncer writes a configuration in a new temporary directory that
// points PgBouncer at the server of adminURL and starts it in the
// foreground as a child process. On failure nothing is left behind.
func startPgBouncer(bin, adminURL string) (_ *pgbouncer, err error) {
	target, err := pgconn.ParseConfig(adminURL)
	if err != nil {
		return nil, fmt.Errorf("parse the test server's connection string: %w", err)
	}
	owner, err := serverOSUser()
	if err != nil {
		return nil, err
	}
	base := tempBase(owner)
	sweepStalePgBouncers(base)
	dir, err := os.MkdirTemp(base, pgbouncerDirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create temporary directory for PgBouncer: %w", err)
	}
	b := &pgbouncer{dir: dir}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, b.logTail())
			_ = b.stop()
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", ownerFile, err)
	}
	// PgBouncer's own trust mode still wants the user in the auth file.
	if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(pgbouncerQuote(target.User)+` ""`+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write userlist.txt: %w", err)
	}
	if err := owner.chown(dir); err != nil {
		return nil, fmt.Errorf("give %s to OS user %s: %w", dir, owner.name, err)
	}

	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		b.port = port
		if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(pgbouncerConfig(dir, port, target)), 0o644); err != nil {
			return nil, fmt.Errorf("write pgbouncer.ini: %w", err)
		}
		err = b.start(bin, owner)
		if err == nil {
			break
		}
		log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
		if attempt < startAttempts && strings.Contains(string(log), "in use") {
			continue
		}
		return nil, err
	}
	u := url.URL{Scheme: "postgres", User: url.User(target.User), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)),
		Path: "/" + target.Database, RawQuery: "sslmode=disable"}
	b.url = u.String()
	return b, nil
}

// pgbouncerConfig returns the configuration of a PgBouncer on port in dir
// that sends every database to the server of target.
func pgbouncerConfig(dir string, port int, target *pgconn.Config) string {
	conn := fmt.Sprintf("host=%s port=%d user=%s", connValue(target.Host), target.Port, connValue(target.User))
	if target.Password != "" {
		conn += " password=" + connValue(target.Password)
	}
	return fmt.Sprintf(`; Written by millrace's internal/testdb: a throwaway PgBouncer for tests only.
[databases]
* = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile = %s
`, conn, port, filepath.Join(dir, "userlist.txt"), filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
}

// connValue quotes a value for a connection string of PgBouncer's
// [databases] section: in single quotes, a single quote doubled.
func connValue(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// pgbouncerQuote quotes a value for PgBouncer's auth file: in double
// quotes, a double quote doubled.
func pgbouncerQuote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// start runs pgbouncer in the foreground and waits until its port accepts
// connections or it exits.
func (b *pgbouncer) start(bin string, owner *osUser) error {
	cmd := exec.Command(bin, filepath.Join(b.dir, "pgbouncer.ini"))
	cmd.Dir = b.dir
	owner.apply(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s%s: %w", bin, owner.suffix(), err)
	}
	b.cmd = cmd
	b.done = make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(b.done)
	}()
	deadline := time.Now().Add(pgbouncerStartTimeout)
	for {
		select {
		case <-b.done:
			b.cmd = nil
			return fmt.Errorf("%s%s exited at start: %v", bin, owner.suffix(), waitErr)
		default:
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s%s did not accept connections on 127.0.0.1:%d within %v", bin, owner.suffix(), b.port, pgbouncerStartTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends PgBouncer (SIGTERM, its immediate shutdown; SIGKILL if it does
// not exit within 10 s) and removes its directory.
func (b *pgbouncer) stop() error {
	if b.cmd != nil {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			_ = b.cmd.Process.Kill()
			<-b.done
		}
		b.cmd = nil
	}
	if err := os.RemoveAll(b.dir); err != nil {
		return fmt.Errorf("remove PgBouncer directory: %w", err)
	}
	return nil
}

// logTail returns the end of PgBouncer's log, formatted to follow an error
// message, or "" when there is none.
func (b *pgbouncer) logTail() string {
	data, err := os.ReadFile(filepath.Join(b.dir, "pgbouncer.log"))
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\nend of PgBouncer log:\n" + indent([]byte(strings.Join(lines, "\n")))
}

// sweepStalePgBouncers stops and removes the PgBouncers that test binaries
// which no longer run left in base.
func sweepStalePgBouncers(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, pgbouncerDirPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // still being created
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || processAlive(owner) {
			continue
		}
		if data, err := os.ReadFile(filepath.Join(dir, "pgbouncer.pid")); err == nil {
			// Only a pgbouncer: the PID may have been reused since.
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			if err == nil && processAlive(pid) && strings.TrimSpace(string(comm)) == "pgbouncer" {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
		if err := os.RemoveAll(dir); err == nil {
			fmt.Fprintf(os.Stderr, "testdb: removed stale PgBouncer %s left by test binary PID %d, which is gone\n", dir, owner)
		}
	}
}
