package testdb

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

const (
	// helperDirName is the directory, next to this file, of the container
	// starter: a module of its own (containerpg) so that testcontainers-go
	// and the Docker modules stay out of millrace's module graph.
	helperDirName = "containerpg"
	// helperBuildTimeout bounds building the container starter (the first
	// build downloads and compiles testcontainers-go).
	helperBuildTimeout = 10 * time.Minute
	// containerTimeout bounds pulling the image and starting the container,
	// until the starter prints the connection string.
	containerTimeout = 5 * time.Minute
	// helperStopTimeout bounds terminating the container once the starter's
	// standard input is closed; after it the starter is killed (and
	// testcontainers' reaper removes the container).
	helperStopTimeout = 2 * time.Minute
	// dockerDialTimeout bounds the check that a Docker engine answers.
	dockerDialTimeout = time.Second
)

// startContainer starts a PostgreSQL container and returns the process that
// keeps it, with its connection string. It first checks, within about a
// second, that a Docker engine answers, so that a machine without Docker
// never builds the starter or waits on testcontainers. Then it builds the
// containerpg module into a temporary directory and runs it (see
// containerpg's documentation for the protocol).
func startContainer() (*helperProc, string, error) {
	if err := dockerAnswers(); err != nil {
		return nil, "", err
	}
	bin, cleanup, err := buildContainerStarter()
	if err != nil {
		return nil, "", err
	}
	p, url, err := startHelper(exec.Command(bin), containerTimeout, cleanup)
	if err != nil {
		return nil, "", fmt.Errorf("start a PostgreSQL container with %s: %w", helperDirName, err)
	}
	return p, url, nil
}

// stopContainer terminates the container by closing its starter's standard
// input and waiting for the starter to exit.
func stopContainer(p *helperProc) error {
	if err := p.stop(helperStopTimeout); err != nil {
		return fmt.Errorf("terminate the PostgreSQL container: %w", err)
	}
	return nil
}

// buildContainerStarter builds the containerpg module, found next to this
// source file, into a new temporary directory and returns the binary and a
// function that removes the directory.
func buildContainerStarter() (bin string, cleanup func(), err error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", nil, errors.New("cannot locate the source of internal/testdb, which holds the container starter")
	}
	dir := filepath.Join(filepath.Dir(self), helperDirName)
	if !isFile(filepath.Join(dir, "go.mod")) {
		return "", nil, fmt.Errorf("the container starter's module is not at %s (the container path needs millrace's source tree)", dir)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", nil, fmt.Errorf("the container path builds %s with the go command: %w", dir, err)
	}
	tmp, err := os.MkdirTemp("", "millrace-containerpg-*")
	if err != nil {
		return "", nil, fmt.Errorf("create a directory for the container starter: %w", err)
	}
	cleanup = func() { _ = os.RemoveAll(tmp) }
	bin = filepath.Join(tmp, helperDirName)

	ctx, cancel := context.WithTimeout(context.Background(), helperBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build the container starter in %s (within %v): %w\n%s", dir, helperBuildTimeout, err, indent(out))
	}
	return bin, cleanup, nil
}

// helperProc is a running helper program that holds a resource (the
// container) for as long as its standard input stays open.
type helperProc struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stderr  *tailBuffer
	exited  chan struct{} // closed when cmd.Wait has returned
	waitErr error         // cmd.Wait's result, set before exited closes
	cleanup func()        // removes what the helper needed (its binary); may be nil
}

// startHelper starts cmd and waits up to timeout for the first line of its
// standard output, which it returns. The helper's standard error is passed
// on to ours and its end is kept for error messages. When the helper fails,
// exits or times out before printing the line, it is killed, cleanup runs,
// and the error includes the end of its standard error.
func startHelper(cmd *exec.Cmd, timeout time.Duration, cleanup func()) (_ *helperProc, line string, err error) {
	p := &helperProc{cmd: cmd, stderr: &tailBuffer{max: 4 << 10}, exited: make(chan struct{}), cleanup: cleanup}
	defer func() {
		if err != nil && p.cleanup != nil {
			p.cleanup()
		}
	}()
	cmd.Stderr = io.MultiWriter(os.Stderr, p.stderr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", fmt.Errorf("pipe from %s: %w", cmd.Path, err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, "", fmt.Errorf("pipe to %s: %w", cmd.Path, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("run %s: %w", cmd.Path, err)
	}

	lines := make(chan string, 1)
	go func() {
		// Read the first line only; the helper writes nothing more. A
		// helper that exits closes the pipe, which ends the read.
		text, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(text)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	read := false
	select {
	case line = <-lines:
		read = true
	case <-timer.C:
	}
	if line == "" {
		_ = cmd.Process.Kill()
		err := cmd.Wait() // also ends the read above, which returns on EOF
		if read {
			return nil, "", fmt.Errorf("%s ended without printing a connection string (%v)%s", cmd.Path, err, p.stderr.tail())
		}
		<-lines
		return nil, "", fmt.Errorf("%s printed no connection string within %v, so it was killed (%v)%s", cmd.Path, timeout, err, p.stderr.tail())
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, line, nil
}

// stop closes the helper's standard input, which tells it to release what it
// holds and exit, and waits up to timeout for that; then it kills it. It
// reports an error when the helper did not exit 0 on its own.
func (p *helperProc) stop(timeout time.Duration) error {
	if p.cleanup != nil {
		defer p.cleanup()
	}
	closeErr := p.stdin.Close()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not exit within %v of its standard input closing, so it was killed%s", p.cmd.Path, timeout, p.stderr.tail())
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s: %w%s", p.cmd.Path, p.waitErr, p.stderr.tail())
	}
	if closeErr != nil && !errors.Is(closeErr, os.ErrClosed) {
		return fmt.Errorf("close the standard input of %s: %w", p.cmd.Path, closeErr)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it; it is safe for
// concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

// Write keeps the end of p and what came before it, up to max bytes.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if extra := b.buf.Len() - b.max; extra > 0 {
		b.buf.Next(extra)
	}
	return len(p), nil
}

// tail formats what was kept to follow an error message, or "" when empty.
func (b *tailBuffer) tail() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() == 0 {
		return ""
	}
	return "\nits standard error ended with:\n" + indent(b.buf.Bytes())
}

// dockerAnswers reports, quickly, whether a Docker (or Podman) engine accepts
// connections: at DOCKER_HOST when set, else at the usual socket paths.
func dockerAnswers() error {
	if host := os.Getenv("DOCKER_HOST"); host != "" {
		u, err := url.Parse(host)
		if err != nil {
			return fmt.Errorf("DOCKER_HOST=%q does not parse: %w", host, err)
		}
		switch u.Scheme {
		case "unix":
			return dial("unix", u.Path)
		case "tcp", "http", "https":
			return dial("tcp", u.Host)
		default:
			return nil // ssh:// and others: let testcontainers try
		}
	}
	candidates := []string{"/var/run/docker.sock", "/run/podman/podman.sock"}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "docker.sock"), filepath.Join(dir, "podman", "podman.sock"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates,
			filepath.Join(home, ".docker", "run", "docker.sock"),
			filepath.Join(home, ".docker", "desktop", "docker.sock"),
			filepath.Join(home, ".colima", "default", "docker.sock"),
		)
	}
	var errs []error
	for _, path := range candidates {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		err := dial("unix", path)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return fmt.Errorf("no Docker engine: DOCKER_HOST is not set and there is no socket at %s", strings.Join(candidates, ", "))
	}
	return fmt.Errorf("no Docker engine answers: %w", errors.Join(errs...))
}

// dial checks that something accepts connections at address.
func dial(network, address string) error {
	conn, err := net.DialTimeout(network, address, dockerDialTimeout)
	if err != nil {
		return fmt.Errorf("dial %s://%s: %w", network, address, err)
	}
	return conn.Close()
}
