package millracetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/maintenance"
	"github.com/millrace/millrace/millracetype"
)

// The child process of a KillAndRestart or Kill round is the test binary run again
// for the calling test only, with envChild holding a childSpec. Its
// ShutdownUnderLoad call runs one client on the scratch schema and prints
// lines for the parent on standard output: each Work call (childCallPrefix
// and JSON), "ready" once started, "stopped" once stopped. The end of its
// standard input makes it stop gracefully; the parent kills the first
// child with SIGKILL.

const (
	envChild        = "MILLRACETEST_SHUTDOWN_CHILD"
	childCallPrefix = "millracetest-call "
	childReady      = "millracetest-ready"
	childStopped    = "millracetest-stopped"
)

// childSpec is what the parent tells a child.
type childSpec struct {
	Test     string `json:"test"`
	ConnStr  string `json:"conn"`
	Schema   string `json:"schema"`
	ClientID string `json:"client_id"`
	App      string `json:"app"`
}

func childSpecFromEnv() (childSpec, bool) {
	v := os.Getenv(envChild)
	if v == "" {
		return childSpec{}, false
	}
	var s childSpec
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		fmt.Fprintf(os.Stderr, "millracetest: bad %s: %v\n", envChild, err)
		os.Exit(2)
	}
	return s, true
}

// runChild runs the child's client until its standard input ends, then
// skips the test.
func runChild(tb testing.TB, cfg *ShutdownConfig, spec childSpec) {
	if tb.Name() != spec.Test {
		tb.Skipf("millracetest: a ShutdownUnderLoad child process for %s", spec.Test)
	}
	fail := func(format string, args ...any) {
		tb.Fatalf("millracetest: ShutdownUnderLoad child process: "+format, args...)
	}
	base := cfg.Pool.Config()
	if spec.ConnStr != "" {
		var err error
		if base, err = pgxpool.ParseConfig(spec.ConnStr); err != nil {
			fail("parse the connection string: %v", err)
		}
	}
	pool, err := newClientPool(base, spec.App)
	if err != nil {
		fail("open a pool: %v", err)
	}
	defer pool.Close()
	var outMu sync.Mutex
	rec := &recorder{sink: func(c call) {
		b, _ := json.Marshal(c)
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Printf("%s%s\n", childCallPrefix, b)
	}}
	cc, err := cfg.clientConfig(spec.ClientID, spec.Schema, rec.middleware(spec.ClientID))
	if err != nil {
		fail("client config: %v", err)
	}
	c, err := client.New(pgxv5.New(pool), cc)
	if err != nil {
		fail("new client: %v", err)
	}
	if err := c.Start(context.Background()); err != nil {
		fail("start client: %v", err)
	}
	outMu.Lock()
	fmt.Println(childReady)
	outMu.Unlock()
	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StopWait)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		fail("stop: %v", err)
	}
	outMu.Lock()
	fmt.Println(childStopped)
	outMu.Unlock()
	tb.Skipf("millracetest: a ShutdownUnderLoad child process for %s: its client stopped", spec.Test)
}

// child is a child process seen from the parent.
type child struct {
	id, app string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	mu      sync.Mutex
	out     bytes.Buffer // its output but the call lines
	ready   chan struct{}
	done    chan struct{}
	err     error
}

// runPattern anchors each element of a test name for -test.run.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// startChild starts a child process running client id and waits until it
// is ready. The calls it reports go to the harness's recorder.
func (h *harness) startChild(id string) (*child, error) {
	clientID := h.app + "_" + id
	app := h.app + "_" + id
	h.rep.apps = append(h.rep.apps, app, app+"_pool")
	spec, _ := json.Marshal(childSpec{Test: h.tb.Name(), ConnStr: h.cfg.Pool.Config().ConnString(), Schema: h.schema,
		ClientID: clientID, App: app})
	cmd := exec.Command(os.Args[0], "-test.run="+runPattern(h.tb.Name()), "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envChild+"="+string(spec))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	ch := &child{id: clientID, app: app, cmd: cmd, stdin: stdin, ready: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &ch.mu, w: &ch.out}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a child process: %w", err)
	}
	go func() {
		scanner := bufio.NewScanner(stdout)
		scanner.Buffer(make([]byte, 64<<10), 1<<20)
		readyOnce := sync.OnceFunc(func() { close(ch.ready) })
		for scanner.Scan() {
			line := scanner.Text()
			if rest, ok := strings.CutPrefix(line, childCallPrefix); ok {
				var c call
				if err := json.Unmarshal([]byte(rest), &c); err == nil {
					h.rec.add(c)
					continue
				}
			}
			if line == childReady {
				readyOnce()
			}
			ch.mu.Lock()
			ch.out.WriteString(line + "\n")
			ch.mu.Unlock()
		}
		ch.err = cmd.Wait()
		close(ch.done)
	}()
	h.tb.Cleanup(func() {
		select {
		case <-ch.done:
		default:
			_ = cmd.Process.Kill()
			<-ch.done
		}
	})
	select {
	case <-ch.ready:
		return ch, nil
	case <-ch.done:
		return nil, fmt.Errorf("child process for client %s exited before its client started (%v); its output:\n%s", clientID, ch.err, ch.output())
	case <-time.After(h.cfg.StopWait):
		_ = cmd.Process.Kill()
		<-ch.done
		return nil, fmt.Errorf("child process for client %s not ready after %v; its output:\n%s", clientID, h.cfg.StopWait, ch.output())
	}
}

func (ch *child) output() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.out.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// kill kills the child with SIGKILL and waits until it and its database
// sessions are gone (a backend may run a statement the process sent before
// it died to its end).
func (h *harness) kill(ch *child) error {
	if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill child process: %w", err)
	}
	select {
	case <-ch.done:
	case <-time.After(h.cfg.StopWait):
		return fmt.Errorf("child process still runs %v after SIGKILL", h.cfg.StopWait)
	}
	var exitErr *exec.ExitError
	if !errors.As(ch.err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return fmt.Errorf("child process ended with %v, not by SIGKILL; its output:\n%s", ch.err, ch.output())
	}
	var n int
	var err error
	if !testwait.Poll(h.cfg.StopWait, func() bool {
		n, err = h.sessions(ch.app, ch.app+"_pool")
		return err == nil && n == 0
	}) {
		return fmt.Errorf("%d sessions of the killed child process still open after %v (%v)", n, h.cfg.StopWait, err)
	}
	return nil
}

// stopChild closes the child's standard input, which makes it stop
// gracefully, and waits for it to exit.
func (h *harness) stopChild(ch *child) error {
	_ = ch.stdin.Close()
	select {
	case <-ch.done:
	case <-time.After(h.cfg.StopWait + 10*time.Second):
		return fmt.Errorf("child process did not exit %v after it was told to stop", h.cfg.StopWait+10*time.Second)
	}
	if ch.err != nil || !strings.Contains(ch.output(), childStopped) {
		return fmt.Errorf("child process did not stop cleanly (%v); its output:\n%s", ch.err, ch.output())
	}
	return nil
}

// killRound runs a KillAndRestart or Kill round: a child process works
// under load and is killed; another child process (KillAndRestart) or the
// peers (Kill) rescue what it left.
func (h *harness) killRound(r *RoundReport) error {
	ctx := context.Background()
	a, err := h.startChild(fmt.Sprintf("r%da", r.N))
	if err != nil {
		return err
	}
	r.Client = a.id
	finishLoad := h.startLoad()
	defer finishLoad()
	h.waitForPoint(r, a.id)
	if err := finishLoad(); err != nil {
		r.problem("load: %v", err)
	}
	running, err := h.runningBy(ctx, a.id)
	if err != nil {
		return err
	}
	r.Running = len(running)
	killAt := time.Now()
	r.KilledAt = killAt
	if err := h.kill(a); err != nil {
		return err
	}
	r.Returned = time.Since(killAt)
	r.Stopped = r.Returned
	if r.Stranded, err = h.strandedBy(ctx, a.id); err != nil {
		return err
	}
	h.mu.Lock()
	for _, id := range r.Stranded {
		h.stranded[id] = true
	}
	h.mu.Unlock()

	var b *child
	if r.Method == KillAndRestart {
		if b, err = h.startChild(fmt.Sprintf("r%db", r.N)); err != nil {
			return err
		}
		r.Restarted = b.id
	}
	// The restarted client, or a peer, sees the dead one's heartbeat
	// expire and rescues its jobs.
	h.waitRescued(r, killAt)
	if b == nil {
		return nil
	}
	stopAt := time.Now()
	if err := h.stopChild(b); err != nil {
		return err
	}
	return h.afterStop(r, b.id, stopAt)
}

// strandedBy returns the jobs the killed client id left running: those
// still running under it, and those a peer has rescued from it already
// (a peer may find it dead before the kill's sessions are all gone), read
// in that order so that a job rescued in between is seen.
func (h *harness) strandedBy(ctx context.Context, id string) ([]int64, error) {
	running, err := h.runningBy(ctx, id)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(running))
	for _, j := range running {
		ids = append(ids, j.ID)
	}
	var rescued []int64
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h.admin.QueryRow(ctx, `SELECT coalesce(array_agg(j.id), '{}') FROM `+pgx.Identifier{h.schema, "river_job"}.Sanitize()+
		` j WHERE EXISTS (SELECT 1 FROM unnest(j.errors) e WHERE starts_with(e->>'error', $1))`,
		client.HeartbeatRescueMessage+" (client "+id+",").Scan(&rescued); err != nil {
		return nil, fmt.Errorf("read the jobs rescued from %s: %w", id, err)
	}
	ids = append(ids, rescued...)
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// waitRescued waits until every job in r.Stranded is rescued, up to
// StopWait, and notes which were and when.
func (h *harness) waitRescued(r *RoundReport, killAt time.Time) {
	ctx := context.Background()
	var rescued []int64
	testwait.Poll(h.cfg.StopWait, func() bool {
		rows, err := h.jobs(ctx, r.Stranded)
		if err != nil {
			return false
		}
		rescued = rescued[:0]
		for _, id := range r.Stranded {
			if j := rows[id]; j != nil && rescuedError(j.Errors) {
				rescued = append(rescued, id)
			}
		}
		return len(rescued) == len(r.Stranded)
	})
	r.RescuedIn = time.Since(killAt)
	r.Rescued = rescued
	if len(rescued) != len(r.Stranded) {
		r.problem("the killed client left %d jobs running; only %d were rescued within %v", len(r.Stranded), len(rescued), h.cfg.StopWait)
	}
}

// rescuedError reports whether a job's errors record a rescue.
func rescuedError(errs []millracetype.AttemptError) bool {
	for _, e := range errs {
		if strings.HasPrefix(e.Error, client.HeartbeatRescueMessage) || e.Error == client.OrphanRescueMessage || e.Error == maintenance.RescueErrorMessage {
			return true
		}
	}
	return false
}
