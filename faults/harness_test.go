package faults

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
)

// Kinds of the jobs the suite inserts.
const (
	kindJob      = "fault_job"
	kindPeriodic = "fault_periodic"
	kindDaily    = "fault_daily"
	kindUnknown  = "fault_unknown"
)

// jobArgs are the args of the suite's jobs. N numbers the job within its
// scenario (0, 1, ...), so the accounting can tell a missing job; MS is how
// long Work takes; Mode selects a behaviour (see worker.Work).
type jobArgs struct {
	N    int    `json:"n"`
	MS   int    `json:"ms"`
	Mode string `json:"mode,omitempty"`
}

func (jobArgs) Kind() string { return kindJob }

// Job modes.
const (
	modeLong     = "long"     // runs for worker.long, honouring its context
	modeStubborn = "stubborn" // runs worker.stubborn (which may ignore its context)
	modeFail     = "fail"     // always returns an error
	modeSnooze   = "snooze"   // snoozes once (per process), then runs normally
)

type periodicArgs struct{}

func (periodicArgs) Kind() string { return kindPeriodic }

type dailyArgs struct{}

func (dailyArgs) Kind() string { return kindDaily }

// unknownArgs is a kind that only one client of the bad-rows scenario
// registers.
type unknownArgs struct {
	N int `json:"n"`
}

func (unknownArgs) Kind() string { return kindUnknown }

// Outcomes recorded in work_log, one row per Work call.
const (
	outcomeOK          = "ok"
	outcomeInterrupted = "interrupted" // the job's context ended first
	outcomeError       = "error"
	outcomeSnoozed     = "snoozed"
)

// workLog records every Work call in the scenario's work_log table. A
// record is retried until it is written (the database may be restarting or
// the connection killed), idempotently: each call has a random run ID.
type workLog struct {
	pool  *pgxpool.Pool
	table string
}

const workLogDDL = `CREATE TABLE %s (
	run_id    text PRIMARY KEY,
	job_id    bigint NOT NULL,
	attempt   integer NOT NULL,
	client_id text NOT NULL,
	outcome   text NOT NULL,
	at        timestamptz NOT NULL DEFAULT clock_timestamp()
)`

func newWorkLog(pool *pgxpool.Pool, schema string) *workLog {
	return &workLog{pool: pool, table: pgx.Identifier{schema, "work_log"}.Sanitize()}
}

// recordTimeout bounds how long a worker keeps trying to record a call.
const recordTimeout = 90 * time.Second

func (w *workLog) record(jobID int64, attempt int, clientID, outcome string) error {
	if w == nil {
		// A worker run by millracetest's harness, which records the
		// calls itself.
		return nil
	}
	runID := randomHex(8)
	deadline := time.Now().Add(recordTimeout)
	backoff := 20 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := w.pool.Exec(ctx, "INSERT INTO "+w.table+" (run_id, job_id, attempt, client_id, outcome) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id) DO NOTHING",
			runID, jobID, attempt, clientID, outcome)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("record work of job %d: %w", jobID, err)
		}
		time.Sleep(backoff) // a retry backoff while the database is unreachable
		backoff = min(2*backoff, time.Second)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// worker is the suite's worker; one per client.
type worker struct {
	clientID string
	log      *workLog
	// long is how long modeLong jobs run in this client; longFn, when
	// set, says it instead (it may change while the client runs).
	long   time.Duration
	longFn func() time.Duration
	// stubborn runs modeStubborn jobs; nil runs them as ordinary jobs.
	stubborn func(ctx context.Context, job *client.Job[jobArgs]) error
	// onLong, if set, is called when a modeLong job starts.
	onLong func(id int64)
	// onInterrupted, if set, is called when a job's context ends while
	// it runs.
	onInterrupted func(id int64)
	// snoozed holds the jobs that snoozed once in this process.
	snoozed sync.Map
}

// Work runs a job per its mode and records the call in work_log.
func (w *worker) Work(ctx context.Context, job *client.Job[jobArgs]) error {
	d := time.Duration(job.Args.MS) * time.Millisecond
	switch job.Args.Mode {
	case modeLong:
		d = w.long
		if w.longFn != nil {
			d = w.longFn()
		}
		if w.onLong != nil {
			w.onLong(job.ID)
		}
	case modeStubborn:
		if w.stubborn != nil {
			return w.stubborn(ctx, job)
		}
	case modeFail:
		if err := w.log.record(job.ID, job.Attempt, w.clientID, outcomeError); err != nil {
			return err
		}
		return errors.New("fault: this job always fails")
	case modeSnooze:
		if _, again := w.snoozed.LoadOrStore(job.ID, true); !again {
			if err := w.log.record(job.ID, job.Attempt, w.clientID, outcomeSnoozed); err != nil {
				return err
			}
			return client.JobSnooze(10 * time.Millisecond)
		}
	}
	if d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			if w.onInterrupted != nil {
				w.onInterrupted(job.ID)
			}
			if err := w.log.record(job.ID, job.Attempt, w.clientID, outcomeInterrupted); err != nil {
				return err
			}
			return ctx.Err()
		}
	}
	return w.log.record(job.ID, job.Attempt, w.clientID, outcomeOK)
}

// workers returns the client's worker set: the fault job and the periodic
// job, both recorded.
func (w *worker) workers() *client.Workers {
	ws := client.NewWorkers()
	client.AddWorker[jobArgs](ws, w)
	client.AddWorker(ws, client.WorkFunc(func(ctx context.Context, job *client.Job[periodicArgs]) error {
		return w.log.record(job.ID, job.Attempt, w.clientID, outcomeOK)
	}))
	client.AddWorker(ws, client.WorkFunc(func(ctx context.Context, job *client.Job[dailyArgs]) error {
		return w.log.record(job.ID, job.Attempt, w.clientID, outcomeOK)
	}))
	return ws
}

// logSink keeps the clients' log lines of a scenario, shown when it fails
// (or at once with MILLRACE_FAULTS_LOG=1).
type logSink struct {
	mu    sync.Mutex
	lines []string
}

const logSinkMax = 400

func (s *logSink) Write(p []byte) (int, error) {
	if os.Getenv(envLog) != "" {
		_, _ = os.Stderr.Write(p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, strings.Split(strings.TrimRight(string(p), "\n"), "\n")...)
	if len(s.lines) > 2*logSinkMax {
		s.lines = append([]string(nil), s.lines[len(s.lines)-logSinkMax:]...)
	}
	return len(p), nil
}

func (s *logSink) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := s.lines
	if len(lines) > logSinkMax {
		lines = lines[len(lines)-logSinkMax:]
	}
	return strings.Join(lines, "\n")
}

func newLogger(w io.Writer, id string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("client", id)
}

// env is one scenario's world: a migrated schema, its work log, an
// insert-only admin client, and the clients and processes it starts.
type env struct {
	t       *testing.T
	sz      sizes
	db      *testfixture.DB
	schema  string
	url     string // the server's admin URL
	appName string // application_name of the clients' connections
	admin   *client.Client[pgx.Tx]
	wlog    *workLog
	logs    *logSink
	rng     *mrand.Rand

	mu    sync.Mutex
	nextN int     // fault jobs inserted so far (their N are 0..nextN-1)
	extra []int64 // IDs of other jobs the scenario inserted and must find again
}

func newEnv(t *testing.T, sz sizes) *env {
	t.Helper()
	db := testfixture.New(t)
	e := &env{t: t, sz: sz, db: db, schema: db.Schema, url: testdb.AdminURL(t), appName: "mrf_" + db.Schema,
		logs: &logSink{}, rng: mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7))}
	e.wlog = newWorkLog(db.Pool, db.Schema)
	e.exec(fmt.Sprintf(workLogDDL, e.wlog.table))
	admin, err := client.New(pgxv5.New(db.Pool), &client.Config{ID: "admin", Schema: db.Schema, Logger: newLogger(e.logs, "admin")})
	if err != nil {
		t.Fatal(err)
	}
	e.admin = admin
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client logs of %s (last lines):\n%s", t.Name(), e.logs.tail())
		}
	})
	return e
}

// newPool returns a pool for a client on the scenario's schema.
func (e *env) newPool(maxConns int32) *pgxpool.Pool {
	e.t.Helper()
	cfg, err := clientPoolConfig(e.url, e.schema, e.appName, maxConns)
	if err != nil {
		e.t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(pool.Close)
	return pool
}

// clientPoolConfig configures a client's pool. The client's LISTEN
// connection copies the pool's connection config, so it is named app in
// pg_stat_activity, while the pool's own connections are renamed
// app+"_pool" as they connect: the tests can tell the listener apart.
func clientPoolConfig(url, schema, app string, maxConns int32) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
		cc.RuntimeParams["application_name"] = app + "_pool"
		return nil
	}
	cfg.MaxConns = maxConns
	return cfg, nil
}

// clientOpts describe an in-process client.
type clientOpts struct {
	id      string
	workers int
	w       *worker // nil: an ordinary worker
	// tweak changes the config before New.
	tweak func(cfg *client.Config)
	// register adds workers.
	register func(ws *client.Workers)
}

// newClient makes (but does not start) a client with a pool of its own.
// At cleanup it is stopped with StopAndCancel if still running.
func (e *env) newClient(o clientOpts) (*client.Client[pgx.Tx], *worker) {
	e.t.Helper()
	w := o.w
	if w == nil {
		w = &worker{}
	}
	w.clientID, w.log = o.id, e.wlog
	if w.long == 0 {
		w.long = time.Minute
	}
	ws := w.workers()
	if o.register != nil {
		o.register(ws)
	}
	workers := o.workers
	if workers == 0 {
		workers = e.sz.workers
	}
	cfg := &client.Config{
		ID:      o.id,
		Schema:  e.schema,
		Logger:  newLogger(e.logs, o.id),
		Queues:  map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: workers}},
		Workers: ws,
	}
	if o.tweak != nil {
		o.tweak(cfg)
	}
	pool := e.newPool(6)
	c, err := client.New(pgxv5.New(pool), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.StopAndCancel(ctx); err != nil {
			e.t.Errorf("stop client %s at cleanup: %v", o.id, err)
		}
	})
	return c, w
}

func (e *env) startClient(o clientOpts) (*client.Client[pgx.Tx], *worker) {
	e.t.Helper()
	c, w := e.newClient(o)
	if err := c.Start(context.Background()); err != nil {
		e.t.Fatalf("start client %s: %v", o.id, err)
	}
	return c, w
}

// insertJobs inserts n fault jobs with COPY, each taking 0..maxMS ms; mode,
// when not nil, chooses the mode of the i-th job of this call.
func (e *env) insertJobs(n int, mode func(i int) string) {
	e.t.Helper()
	e.mu.Lock()
	first := e.nextN
	e.nextN += n
	params := make([]client.InsertManyParams, n)
	for i := range params {
		args := jobArgs{N: first + i, MS: e.rng.IntN(e.sz.maxMS + 1)}
		if mode != nil {
			args.Mode = mode(i)
		}
		params[i] = client.InsertManyParams{Args: args}
	}
	e.mu.Unlock()
	for len(params) > 0 {
		chunk := params[:min(len(params), 5000)]
		params = params[len(chunk):]
		if _, err := e.admin.InsertManyFast(context.Background(), chunk); err != nil {
			e.t.Fatalf("insert jobs: %v", err)
		}
	}
}

// insertOne inserts one fault job (with opts) and returns its ID.
func (e *env) insertOne(args jobArgs, opts *client.InsertOpts) int64 {
	e.t.Helper()
	e.mu.Lock()
	args.N = e.nextN
	e.nextN++
	e.mu.Unlock()
	res, err := e.admin.Insert(context.Background(), args, opts)
	if err != nil {
		e.t.Fatalf("insert job: %v", err)
	}
	return res.Job.ID
}

// addExtra records a job inserted another way (raw SQL), which the
// accounting must find again.
func (e *env) addExtra(id int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.extra = append(e.extra, id)
}

// exec runs a statement on the test's pool, failing the test on error.
func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// queryTimeout bounds the retries of the suite's own queries (the database
// may be restarting).
const queryTimeout = 60 * time.Second

// scan runs a one-row query on the test's pool, retrying while the
// database is unreachable, and fails the test if it never succeeds.
func (e *env) scan(sql string, args []any, dest ...any) {
	e.t.Helper()
	deadline := time.Now().Add(queryTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := e.db.Pool.QueryRow(ctx, sql, args...).Scan(dest...)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %v", sql, err)
		}
		time.Sleep(50 * time.Millisecond) // retry backoff
	}
}

func (e *env) job() string { return pgx.Identifier{e.schema, "river_job"}.Sanitize() }

// okRuns counts Work calls that succeeded so far.
func (e *env) okRuns() int {
	var n int
	e.scan("SELECT count(*) FROM "+e.wlog.table+" WHERE outcome = 'ok'", nil, &n)
	return n
}

// waitOK waits until n Work calls succeeded, failing the test after timeout.
func (e *env) waitOK(n int, timeout time.Duration) {
	e.t.Helper()
	if !testwait.Poll(timeout, func() bool { return e.okRuns() >= n }) {
		e.t.Fatalf("only %d of %d jobs worked within %v; states %v", e.okRuns(), n, timeout, e.states())
	}
}

// unfinished counts jobs not in a final state.
func (e *env) unfinished() int {
	var n int
	e.scan("SELECT count(*) FROM "+e.job()+" WHERE finalized_at IS NULL", nil, &n)
	return n
}

// waitFinished waits until every job is in a final state; it reports
// whether that happened within timeout (the accounting tells what did not).
func (e *env) waitFinished(timeout time.Duration) bool {
	return testwait.Poll(timeout, func() bool { return e.unfinished() == 0 })
}

// states counts jobs by state.
func (e *env) states() map[string]int {
	e.t.Helper()
	var states []string
	var counts []int
	e.scan("SELECT coalesce(array_agg(state::text ORDER BY state), '{}'), coalesce(array_agg(n ORDER BY state), '{}') FROM (SELECT state, count(*) AS n FROM "+
		e.job()+" GROUP BY state) s", nil, &states, &counts)
	m := map[string]int{}
	for i, s := range states {
		m[s] = counts[i]
	}
	return m
}

// leader returns the current leader's ID, or "".
func (e *env) leader() string {
	var id string
	e.scan("SELECT coalesce((SELECT leader_id FROM "+pgx.Identifier{e.schema, "river_leader"}.Sanitize()+" WHERE expires_at > now()), '')", nil, &id)
	return id
}

// accounting is the end-of-scenario query over all jobs.
type accounting struct {
	states       map[string]int
	total        int
	missingJobs  int // fault jobs inserted but not found
	extraJobs    int // fault jobs found more than once (an insert duplicated)
	missingExtra int // other jobs inserted but not found
	periodic     int // periodic jobs the leaders inserted
	okRuns       int
	duplicated   int // jobs whose Work succeeded more than once
	reruns       int // jobs whose Work was called more than once
	phantom      int // completed jobs whose Work never succeeded
	unrecorded   int // jobs whose Work succeeded but that are not completed
}

func (e *env) account() accounting {
	e.t.Helper()
	e.mu.Lock()
	n, extra := e.nextN, append([]int64{}, e.extra...)
	e.mu.Unlock()
	a := accounting{states: e.states()}
	for _, c := range a.states {
		a.total += c
	}
	job, wl := e.job(), e.wlog.table
	e.scan(`SELECT $1::int - count(DISTINCT (args->>'n')::int), count(*) - count(DISTINCT (args->>'n')::int)
		FROM `+job+` WHERE kind = $2 AND args->>'n' ~ '^[0-9]{1,9}$' AND (args->>'n')::int < $1`,
		[]any{n, kindJob}, &a.missingJobs, &a.extraJobs)
	e.scan(`SELECT cardinality($1::bigint[]) - (SELECT count(*) FROM `+job+` WHERE id = ANY($1::bigint[]))`,
		[]any{extra}, &a.missingExtra)
	e.scan(`SELECT count(*) FROM `+job+` WHERE kind = $1`, []any{kindPeriodic}, &a.periodic)
	e.scan(`SELECT count(*) FILTER (WHERE outcome = 'ok') FROM `+wl, nil, &a.okRuns)
	e.scan(`SELECT count(*) FROM (SELECT job_id FROM `+wl+` WHERE outcome = 'ok' GROUP BY job_id HAVING count(*) > 1) d`, nil, &a.duplicated)
	e.scan(`SELECT count(*) FROM (SELECT job_id FROM `+wl+` GROUP BY job_id HAVING count(*) > 1) d`, nil, &a.reruns)
	e.scan(`SELECT count(*) FROM `+job+` j WHERE state = 'completed'
		AND NOT EXISTS (SELECT 1 FROM `+wl+` w WHERE w.job_id = j.id AND w.outcome = 'ok')`, nil, &a.phantom)
	e.scan(`SELECT count(*) FROM `+job+` j WHERE state <> 'completed'
		AND EXISTS (SELECT 1 FROM `+wl+` w WHERE w.job_id = j.id AND w.outcome = 'ok')`, nil, &a.unrecorded)
	return a
}

// finish stops nothing: call it once every client is stopped. It runs the
// accounting, checks what holds in every scenario (nothing lost, pending,
// completed without being worked, or worked without being completed,
// no job inserted twice) and returns the table row.
func (e *env) finish(notes ...string) (tally, accounting) {
	e.t.Helper()
	a := e.account()
	e.mu.Lock()
	inserted := e.nextN + len(e.extra) + a.periodic
	e.mu.Unlock()
	row := tally{
		Inserted:           inserted,
		Completed:          a.states["completed"],
		CancelledDiscarded: a.states["cancelled"] + a.states["discarded"],
		Pending:            a.states["available"] + a.states["scheduled"] + a.states["retryable"] + a.states["pending"],
		Lost:               a.missingJobs + a.missingExtra + a.states["running"],
		Duplicated:         a.duplicated,
		Notes:              strings.Join(notes, "; "),
	}
	if a.reruns > a.duplicated {
		row.Notes = strings.TrimPrefix(row.Notes+fmt.Sprintf("; %d jobs re-run after an interrupted or failed call", a.reruns-a.duplicated), "; ")
	}
	if row.Lost != 0 {
		e.t.Errorf("lost %d jobs: %d fault jobs missing, %d other jobs missing, %d left running with every client stopped (states %v)",
			row.Lost, a.missingJobs, a.missingExtra, a.states["running"], a.states)
	}
	if row.Pending != 0 {
		e.t.Errorf("%d jobs never finished (states %v)", row.Pending, a.states)
	}
	if a.total != inserted+a.extraJobs || a.extraJobs != 0 {
		e.t.Errorf("%d jobs in the table, %d inserted (%d fault jobs found twice)", a.total, inserted, a.extraJobs)
	}
	if a.phantom != 0 {
		e.t.Errorf("%d jobs completed although their Work never succeeded", a.phantom)
	}
	if a.unrecorded != 0 {
		e.t.Errorf("%d jobs whose Work succeeded are not completed", a.unrecorded)
	}
	return row, a
}

// noDuplicates fails the test when a job's Work succeeded twice in a
// scenario where nothing crashed.
func (e *env) noDuplicates(row tally) {
	e.t.Helper()
	if row.Duplicated != 0 {
		var ids []int64
		e.scan(`SELECT coalesce(array_agg(job_id), '{}') FROM (SELECT job_id FROM `+e.wlog.table+
			` WHERE outcome = 'ok' GROUP BY job_id HAVING count(*) > 1 LIMIT 20) d`, nil, &ids)
		var runs []string
		e.scan(`SELECT coalesce(array_agg(format('job %s attempt %s by %s: %s at %s', job_id, attempt, client_id, outcome, at) ORDER BY job_id, at), '{}')
			FROM `+e.wlog.table+` WHERE job_id = ANY($1)`, []any{ids}, &runs)
		e.t.Errorf("%d jobs worked twice without a crash, e.g. %v; their runs:\n%s", row.Duplicated, ids, strings.Join(runs, "\n"))
	}
}

// stopClient stops a client gracefully and fails the test on error.
func stopClient(t *testing.T, c *client.Client[pgx.Tx], timeout time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	begin := time.Now()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("stop client %s: %v", c.ID(), err)
	}
	return time.Since(begin)
}

// terminate ends every connection of this scenario's clients (pools and
// listeners) and returns their PIDs.
func (e *env) terminate() []int32 {
	e.t.Helper()
	pids, err := e.tryTerminate(false)
	if err != nil {
		e.t.Fatalf("terminate connections: %v", err)
	}
	return pids
}

// tryTerminate ends the connections of this scenario's clients (only the
// listeners when listenersOnly) and returns their PIDs. It may be called
// from any goroutine.
func (e *env) tryTerminate(listenersOnly bool) ([]int32, error) {
	where := "application_name IN ($1, $1 || '_pool')"
	if listenersOnly {
		where = "application_name = $1"
	}
	// The victims are chosen first (a materialized CTE), then terminated:
	// in one WHERE clause the planner could call pg_terminate_backend
	// before the other conditions.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pids []int32
	err := e.db.Pool.QueryRow(ctx, "WITH victims AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE "+where+
		" AND pid <> pg_backend_pid()) SELECT coalesce(array_agg(pid), '{}') FROM victims WHERE pg_terminate_backend(pid)",
		e.appName).Scan(&pids)
	return pids, err
}

// listeners counts the LISTEN connections of this scenario's clients.
func (e *env) listeners() int {
	var n int
	e.scan("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", []any{e.appName}, &n)
	return n
}
