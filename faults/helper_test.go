package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testwait"
)

// The helper process: this test binary run again with MILLRACE_FAULTS_HELPER
// set (TestMain sends it here). It runs one client on the schema it is
// given, working the suite's jobs and recording them in work_log, and
// prints "helper-ready" once started. It reads commands from standard
// input: "stop-periodic" stops enqueuing its periodic job; "stop", or the
// end of input (the parent closed it, or died), stops the client gracefully
// and exits 0. SIGTERM does the same. The parent kills it with SIGKILL to
// simulate a crash.

// Variables the parent passes to a helper.
const (
	helperURL         = "MILLRACE_FAULTS_HELPER_URL"
	helperSchema      = "MILLRACE_FAULTS_HELPER_SCHEMA"
	helperID          = "MILLRACE_FAULTS_HELPER_ID"
	helperApp         = "MILLRACE_FAULTS_HELPER_APP"
	helperWorkers     = "MILLRACE_FAULTS_HELPER_WORKERS"
	helperJobTimeout  = "MILLRACE_FAULTS_HELPER_JOB_TIMEOUT"
	helperRescueAfter = "MILLRACE_FAULTS_HELPER_RESCUE_AFTER"
	helperPeriodic    = "MILLRACE_FAULTS_HELPER_PERIODIC"
	// helperLong is how long modeLong (and modeStubborn) jobs run;
	// helperStubborn makes modeStubborn jobs run that long ignoring their
	// context, then succeed.
	helperLong     = "MILLRACE_FAULTS_HELPER_LONG"
	helperStubborn = "MILLRACE_FAULTS_HELPER_STUBBORN"
	// helperDomain, when set, makes the helper a client of that domain
	// (domains_test.go): the domain's own workers and periodic job
	// instead of the suite's.
	helperDomain = "MILLRACE_FAULTS_HELPER_DOMAIN"
	helperDaily  = "MILLRACE_FAULTS_HELPER_DAILY"
	// helperLimit, when set, makes the helper a client of the limits
	// scenarios (limit_test.go): their worker, queue and limit.
	helperLimit = "MILLRACE_FAULTS_HELPER_LIMIT"
	// helperRate, when set ("N/interval"), makes the helper a client of
	// the rate limit test (rate_test.go).
	helperRate = "MILLRACE_FAULTS_HELPER_RATE"
	// helperSeq, when set (a failure percentage), makes the helper a
	// client of the sequences test (sequence_test.go).
	helperSeq = "MILLRACE_FAULTS_HELPER_SEQ"
)

// helperMain runs the helper process and returns its exit code.
func helperMain() int {
	if domain := os.Getenv(helperDomain); domain != "" {
		return domainHelperMain(domain)
	}
	if limit := os.Getenv(helperLimit); limit != "" {
		return limitHelperMain(limit)
	}
	if rate := os.Getenv(helperRate); rate != "" {
		return rateHelperMain(rate)
	}
	if seq := os.Getenv(helperSeq); seq != "" {
		return seqHelperMain(seq)
	}
	id := os.Getenv(helperID)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("client", id)
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", id, err)
		return 2
	}
	duration := func(name string) (time.Duration, error) {
		v := os.Getenv(name)
		if v == "" {
			return 0, nil
		}
		return time.ParseDuration(v)
	}
	workers, err := strconv.Atoi(os.Getenv(helperWorkers))
	if err != nil {
		return fail(fmt.Errorf("%s: %w", helperWorkers, err))
	}
	jobTimeout, err1 := duration(helperJobTimeout)
	rescueAfter, err2 := duration(helperRescueAfter)
	periodic, err3 := duration(helperPeriodic)
	long, err4 := duration(helperLong)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fail(err)
	}
	if long == 0 {
		long = time.Minute
	}
	schema := os.Getenv(helperSchema)
	newPool := func() (*pgxpool.Pool, error) {
		cfg, err := clientPoolConfig(os.Getenv(helperURL), schema, os.Getenv(helperApp), 6)
		if err != nil {
			return nil, err
		}
		return pgxpool.NewWithConfig(context.Background(), cfg)
	}
	pool, err := newPool()
	if err != nil {
		return fail(err)
	}
	defer pool.Close()
	logPool, err := newPool()
	if err != nil {
		return fail(err)
	}
	defer logPool.Close()

	w := &worker{clientID: id, log: newWorkLog(logPool, schema), long: long}
	if os.Getenv(helperStubborn) != "" {
		w.stubborn = func(_ context.Context, job *client.Job[jobArgs]) error {
			fmt.Println("helper-stubborn-started", job.ID)
			time.Sleep(long) // deaf to its context
			fmt.Println("helper-stubborn-done", job.ID)
			return w.log.record(job.ID, job.Attempt, w.clientID, outcomeOK)
		}
	}
	var stopPeriodic atomic.Bool
	cfg := &client.Config{
		ID: id, Schema: schema, Logger: logger,
		Queues:               map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: workers}},
		Workers:              w.workers(),
		JobTimeout:           jobTimeout,
		RescueStuckJobsAfter: rescueAfter,
	}
	if periodic > 0 {
		cfg.PeriodicJobs = []*client.PeriodicJob{client.NewPeriodicJob(client.PeriodicInterval(periodic),
			func() (client.JobArgs, *client.InsertOpts) {
				if stopPeriodic.Load() {
					return nil, nil
				}
				return periodicArgs{}, nil
			}, &client.PeriodicJobOpts{ID: "tick"})}
	}
	if expr := os.Getenv(helperDaily); expr != "" {
		schedule, err := client.ParseCron(expr)
		if err != nil {
			return fail(err)
		}
		cfg.PeriodicJobs = append(cfg.PeriodicJobs, client.NewPeriodicJob(schedule,
			func() (client.JobArgs, *client.InsertOpts) { return dailyArgs{}, nil }, &client.PeriodicJobOpts{ID: "daily"}))
	}
	c, err := client.New(pgxv5.New(pool), cfg)
	if err != nil {
		return fail(err)
	}
	if err := c.Start(context.Background()); err != nil {
		return fail(err)
	}
	fmt.Println("helper-ready", id)

	commands := make(chan string)
	go func() {
		defer close(commands)
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			commands <- strings.TrimSpace(scanner.Text())
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
loop:
	for {
		select {
		case cmd, ok := <-commands:
			switch {
			case !ok || cmd == "stop":
				break loop
			case cmd == "stop-periodic":
				stopPeriodic.Store(true)
				fmt.Println("helper-ack stop-periodic")
			}
		case <-sigs:
			break loop
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		return fail(fmt.Errorf("stop: %w", err))
	}
	fmt.Println("helper-stopped", id)
	return 0
}

// helperOpts configure a helper process.
type helperOpts struct {
	id          string
	jobTimeout  time.Duration
	rescueAfter time.Duration
	periodic    time.Duration
	// workers replaces the scenario's MaxWorkers when set.
	workers int
	// long is how long modeLong jobs run (default 1 min); with stubborn,
	// modeStubborn jobs run that long deaf to their context.
	long     time.Duration
	stubborn bool
	// url replaces the server's URL (a proxy in front of it).
	url string
	// domain, when set, runs a client of that domain (domainHelperMain).
	domain string
	daily  string // a cron expression for the periodic job "daily"
	// limit, when set, runs a client of the limits scenarios
	// (limitHelperMain).
	limit string
	// rate, when set, runs a client of the rate limit test
	// (rateHelperMain).
	rate string
	// seq, when set, runs a client of the sequences test
	// (seqHelperMain): the percentage of attempts that fail.
	seq string
}

// helper is a running helper process, seen from the test.
type helper struct {
	t  *testing.T
	e  *env
	id string
	// app names the helper's database sessions in pg_stat_activity: its
	// listener is app, its pools' connections app+"_pool". It is the
	// helper's own (not the scenario's env.appName), so that the sessions
	// of one process can be told from the others'.
	app   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *helperOutput
	done  chan struct{} // closed when the process has exited and been waited for
	err   error         // Wait's result, set before done is closed
}

// helperOutput collects a helper's standard output and error, and notices
// the lines the test waits for.
type helperOutput struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func (o *helperOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

func (o *helperOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitLine waits until the output holds a line starting with prefix, the
// process exits, or timeout passes; it reports whether the line came.
func (h *helper) waitLine(prefix string, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.out.mu.Lock()
		text, changed := h.out.buf.String(), h.out.changed
		h.out.mu.Unlock()
		if strings.HasPrefix(text, prefix) || strings.Contains(text, "\n"+prefix) {
			return true
		}
		select {
		case <-changed:
		case <-h.done:
			return strings.Contains(h.out.String(), prefix)
		case <-deadline.C:
			return false
		}
	}
}

// startHelper starts a helper process working this scenario's schema and
// waits until its client has started. At cleanup a helper still running is
// killed; a failed test shows the output of its helpers.
func (e *env) startHelper(o helperOpts) *helper {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// Short enough for application_name (63 bytes, longer is cut), unique
	// on a server shared with other test runs.
	app := "mrfh_" + randomHex(4) + "_" + o.id
	if len(app+"_pool") > 63 {
		e.t.Fatalf("helper ID %q is too long for an application_name", o.id)
	}
	url, workers := e.url, e.sz.workers
	if o.url != "" {
		url = o.url
	}
	if o.workers > 0 {
		workers = o.workers
	}
	stubborn := ""
	if o.stubborn {
		stubborn = "1"
	}
	cmd.Env = append(os.Environ(),
		envHelper+"=1",
		helperURL+"="+url,
		helperSchema+"="+e.schema,
		helperID+"="+o.id,
		helperApp+"="+app,
		helperWorkers+"="+strconv.Itoa(workers),
		helperJobTimeout+"="+durationEnv(o.jobTimeout),
		helperRescueAfter+"="+durationEnv(o.rescueAfter),
		helperPeriodic+"="+durationEnv(o.periodic),
		helperLong+"="+durationEnv(o.long),
		helperStubborn+"="+stubborn,
		helperDomain+"="+o.domain,
		helperDaily+"="+o.daily,
		helperLimit+"="+o.limit,
		helperRate+"="+o.rate,
		helperSeq+"="+o.seq,
	)
	h := &helper{t: e.t, e: e, id: o.id, app: app, cmd: cmd, out: &helperOutput{changed: make(chan struct{})}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = h.out, h.out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	h.stdin = stdin
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start helper %s: %v", o.id, err)
	}
	go func() {
		h.err = cmd.Wait()
		close(h.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-h.done:
		default:
			h.kill()
		}
		if e.t.Failed() {
			e.t.Logf("output of helper %s (PID %d):\n%s", o.id, cmd.Process.Pid, h.out.String())
		}
	})
	if !h.waitLine("helper-ready", 60*time.Second) {
		e.t.Fatalf("helper %s did not start: %v\n%s", o.id, h.exitState(), h.out.String())
	}
	// kill waits for the helper's sessions to end, which proves nothing
	// unless they can be seen: a started client holds some.
	if !testwait.Poll(30*time.Second, func() bool { return h.sessions() > 0 }) {
		e.t.Fatalf("helper %s started, but pg_stat_activity shows no session named %q", o.id, app)
	}
	return h
}

func durationEnv(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func (h *helper) exitState() string {
	select {
	case <-h.done:
		return fmt.Sprintf("exited: %v", h.err)
	default:
		return "still running"
	}
}

// sessions counts the helper's database sessions (pool connections and
// listener) that the server still runs.
func (h *helper) sessions() int {
	var n int
	h.e.scan("SELECT count(*) FROM pg_stat_activity WHERE application_name IN ($1, $1 || '_pool')", []any{h.app}, &n)
	return n
}

// kill sends SIGKILL to the helper's PID and waits until it is gone, and
// its database sessions too. A session can outlive its process: a backend
// that had received a statement before the kill (a completer batch, a
// fetch) runs it to the end and may commit it, though no one will read the
// result. Until every session has ended, the dead process may still move
// jobs, so what it left behind (its jobs still running) can be counted only
// after kill returns.
func (h *helper) kill() {
	h.t.Helper()
	pid := h.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		h.t.Errorf("kill helper %s (PID %d): %v", h.id, pid, err)
	}
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		h.t.Fatalf("helper %s (PID %d) still runs 30 s after SIGKILL", h.id, pid)
	}
	var exitErr *exec.ExitError
	if !errors.As(h.err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		h.t.Errorf("helper %s ended with %v, not by SIGKILL", h.id, h.err)
	}
	// The server notices a closed connection when the backend next reads
	// from it: at once when idle, after the statement it runs otherwise.
	if !testwait.Poll(30*time.Second, func() bool { return h.sessions() == 0 }) {
		h.t.Fatalf("helper %s (PID %d) was killed 30 s ago but %d of its database sessions still run", h.id, pid, h.sessions())
	}
}

// send writes a command line to the helper.
func (h *helper) send(cmd string) {
	h.t.Helper()
	if _, err := io.WriteString(h.stdin, cmd+"\n"); err != nil {
		h.t.Fatalf("send %q to helper %s: %v", cmd, h.id, err)
	}
}

// stop asks the helper to stop gracefully and checks that it did.
func (h *helper) stop() {
	h.t.Helper()
	_ = h.stdin.Close()
	select {
	case <-h.done:
	case <-time.After(60 * time.Second):
		h.t.Fatalf("helper %s did not stop within 60 s", h.id)
	}
	if h.err != nil || !strings.Contains(h.out.String(), "helper-stopped") {
		h.t.Errorf("helper %s did not stop cleanly: %v\n%s", h.id, h.err, h.out.String())
	}
}

// runRestartChild runs the database-restart scenario in a child test
// process on a throwaway cluster of its own (MILLRACE_TESTDB=initdb), for a
// suite whose server cannot be restarted, and returns the rows it reported.
func runRestartChild(t *testing.T) []tally {
	if os.Getenv(envChild) != "" {
		t.Fatal("this child test process was meant to run on a throwaway cluster, but testdb says it does not")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFaults$/^8_database_restart$", "-test.v",
		"-test.count=1", "-test.timeout=10m")
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name != "MILLRACE_TESTDB" && name != "TEST_DATABASE_URL" && name != envChild {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "MILLRACE_TESTDB=initdb", envChild+"=1")
	begin := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("child test process (MILLRACE_TESTDB=initdb) ran in %v; its output:\n%s", time.Since(begin).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("child test process failed: %v", err)
	}
	text := string(out)
	for _, want := range []string{"testdb: using a throwaway cluster", "testdb: restarted throwaway cluster", "--- PASS: TestFaults/8_database_restart"} {
		if !strings.Contains(text, want) {
			t.Errorf("child output lacks %q", want)
		}
	}
	var rows []tally
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, childRowPrefix); ok {
			var row tally
			if err := json.Unmarshal([]byte(rest), &row); err != nil {
				t.Fatalf("child row %q: %v", rest, err)
			}
			row.Notes = strings.TrimPrefix(row.Notes+"; in a child process on its own throwaway cluster", "; ")
			rows = append(rows, row)
			if row.Lost != 0 {
				t.Errorf("%s lost %d jobs", row.Scenario, row.Lost)
			}
		}
	}
	if len(rows) != 1 {
		t.Fatalf("child reported %d rows, want 1", len(rows))
	}
	return rows
}

// serveHelper runs the client of a helper process (MILLRACE_FAULTS_HELPER
// variants): it starts it, says "helper-ready <id>", and stops it
// gracefully on "stop" on standard input or SIGTERM, saying
// "helper-stopped <id>". fail reports an error and gives the exit code.
func serveHelper(id string, c *client.Client[pgx.Tx], fail func(error) int) int {
	if err := c.Start(context.Background()); err != nil {
		return fail(err)
	}
	fmt.Println("helper-ready", id)
	done := make(chan struct{})
	go func() {
		defer close(done)
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			if strings.TrimSpace(scanner.Text()) == "stop" {
				return
			}
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	select {
	case <-done:
	case <-sigs:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		return fail(fmt.Errorf("stop: %w", err))
	}
	fmt.Println("helper-stopped", id)
	return 0
}

// simpleHelper is what the helpers of the flow-control tests (limits,
// rates, sequences) start from: their ID, a logger at level, their
// workers and a pool on their schema. close releases the pool.
type simpleHelper struct {
	id, schema string
	logger     *slog.Logger
	workers    int
	pool       *pgxpool.Pool
}

// helperFail reports a helper's error on standard error and gives the
// exit code 2.
func helperFail(id string) func(error) int {
	return func(err error) int {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", id, err)
		return 2
	}
}

// openSimpleHelper reads the helper's variables and opens its pool.
func openSimpleHelper(level slog.Level) (*simpleHelper, error) {
	h := &simpleHelper{id: os.Getenv(helperID), schema: os.Getenv(helperSchema)}
	h.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("client", h.id)
	var err error
	if h.workers, err = strconv.Atoi(os.Getenv(helperWorkers)); err != nil {
		return nil, fmt.Errorf("%s: %w", helperWorkers, err)
	}
	cfg, err := clientPoolConfig(os.Getenv(helperURL), h.schema, os.Getenv(helperApp), 6)
	if err != nil {
		return nil, err
	}
	if h.pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		return nil, err
	}
	return h, nil
}
