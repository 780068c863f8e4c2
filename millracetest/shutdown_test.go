package millracetest_test

import (
	"context"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetest"
	"github.com/millrace/millrace/millracetype"
)

// workArgs are the jobs of the harness's tests: Work takes MS
// milliseconds, honouring its context, unless Mode says otherwise.
type workArgs struct {
	MS   int    `json:"ms"`
	Mode string `json:"mode,omitempty"`
}

func (workArgs) Kind() string { return "harness_work" }

// Worker modes, each a fault the harness must catch (but "").
const (
	modeStubborn = "stubborn" // ignores its context for a second
	modePanic    = "panic"
	modeOwnTx    = "own_tx" // completes the job in its own transaction, then fails
)

// testWorker works workArgs; db is needed by modeOwnTx.
type testWorker struct {
	client.WorkerDefaults[workArgs]
	db *testfixture.DB
}

func (w *testWorker) Work(ctx context.Context, job *client.Job[workArgs]) error {
	switch job.Args.Mode {
	case modeStubborn:
		time.Sleep(time.Second) // the fault: deaf to its context
		return nil
	case modePanic:
		panic("fault: the worker panics")
	case modeOwnTx:
		tx, err := w.db.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // committed below
		if _, err := client.JobCompleteTx[pgx.Tx](ctx, tx, job); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		return errors.New("fault: failed after committing the job's transaction")
	}
	t := time.NewTimer(time.Duration(job.Args.MS) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func workers(db *testfixture.DB) *client.Workers {
	ws := client.NewWorkers()
	client.AddWorker[workArgs](ws, &testWorker{db: db})
	return ws
}

// mix makes jobs of 0-20 ms, and one in weight of the long ones (300 ms)
// and of the given mode.
func mix(modeWeight int, mode string) []millracetest.JobMix {
	m := []millracetest.JobMix{
		{Args: func(rng *mrand.Rand) client.JobArgs { return workArgs{MS: rng.IntN(21)} }, Weight: 10},
		{Args: func(*mrand.Rand) client.JobArgs { return workArgs{MS: 300} }, Weight: 2},
	}
	if mode != "" {
		m = append(m, millracetest.JobMix{Args: func(*mrand.Rand) client.JobArgs { return workArgs{Mode: mode} }, Weight: modeWeight})
	}
	return m
}

// TestShutdownUnderLoad runs well-behaved workers through every shutdown
// method: the harness finds nothing wrong, and its figures add up.
func TestShutdownUnderLoad(t *testing.T) {
	// A pool on the server, no schema of the test's own: the kill round's
	// child process runs this test again and is killed, and would leave
	// such a schema behind.
	pool, err := pgxpool.New(context.Background(), testdb.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	plan := append(millracetest.DefaultShutdownPlan(), millracetest.Shutdown{Method: millracetest.KillAndRestart, After: 400 * time.Millisecond})
	rep := millracetest.ShutdownUnderLoad(t, &millracetest.ShutdownConfig{
		Pool: pool, Workers: workers(nil), Mix: mix(0, ""), Backlog: 150, Rate: 200, Plan: plan,
	})
	if rep == nil { // the child process of the kill round
		return
	}
	if !rep.OK() {
		t.Fatal("the harness reported problems (see above)")
	}
	if len(rep.Rounds) != len(plan) {
		t.Fatalf("%d rounds reported, want %d", len(rep.Rounds), len(plan))
	}
	// The jobs rescued after the kill wait for their retry.
	var stranded int
	for _, r := range rep.Rounds {
		stranded += len(r.Stranded)
	}
	if rep.Inserted < 5*150 || rep.Completed+rep.Pending != rep.Inserted || rep.Pending > stranded || rep.Calls < rep.Completed {
		t.Errorf("%d inserted, %d completed, %d pending (%d rescued), %d calls: want every job completed but the rescued, each in a call",
			rep.Inserted, rep.Completed, rep.Pending, stranded, rep.Calls)
	}
	var interrupted int
	for _, r := range rep.Rounds {
		if r.Method == millracetest.StopAndCancel {
			interrupted += len(r.Interrupted)
		}
		if r.Method == millracetest.KillAndRestart && (len(r.Stranded) == 0 || len(r.Rescued) != len(r.Stranded)) {
			t.Errorf("kill round: %d jobs stranded, %d rescued; want some, all rescued", len(r.Stranded), len(r.Rescued))
		}
	}
	if interrupted == 0 {
		t.Error("StopAndCancel interrupted no job (300 ms jobs were running)")
	}
	if rep.StopP50 <= 0 || rep.StopP99 < rep.StopP50 {
		t.Errorf("stop percentiles p50 %v, p99 %v", rep.StopP50, rep.StopP99)
	}
}

// TestShutdownUnderLoadPeers runs rounds with a peer working alongside:
// jobs a StopAndCancel gives back may be taken by the peer at once (still
// given back), and the peer rescues what a killed client left.
func TestShutdownUnderLoadPeers(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), testdb.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	plan := []millracetest.Shutdown{{Method: millracetest.StopAndCancel, After: 300 * time.Millisecond},
		{Method: millracetest.Kill, After: 400 * time.Millisecond}, {Method: millracetest.StopWithDeadline}}
	peerJobs := map[int]int{}
	var rep *millracetest.ShutdownReport
	// In a subtest, whose end runs the harness's clean-up: the scratch
	// schema must be gone after it.
	t.Run("run", func(t *testing.T) {
		rep = millracetest.ShutdownUnderLoad(t, &millracetest.ShutdownConfig{
			Pool: pool, Workers: workers(nil), Mix: mix(0, ""), Backlog: 150, Rate: 200, Plan: plan, Peers: 1,
			PeerClient: &client.Config{Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 5}}},
			AfterRound: func(schema string, r *millracetest.RoundReport) {
				var n int
				if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schema, "river_job"}.Sanitize()+
					" WHERE EXISTS (SELECT 1 FROM unnest(attempted_by) a WHERE a LIKE '%\\_peer1')").Scan(&n); err != nil {
					t.Error(err)
				}
				peerJobs[r.N] = n
			},
		})
	})
	if rep == nil { // the child process of the kill round
		return
	}
	var schemas int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname = $1", rep.Schema).Scan(&schemas); err != nil || schemas != 0 {
		t.Errorf("the scratch schema %s is still there after the run (%d, %v)", rep.Schema, schemas, err)
	}
	if !rep.OK() {
		t.Fatal("the harness reported problems (see above)")
	}
	if len(rep.Peers) != 1 || peerJobs[1] == 0 || peerJobs[3] <= peerJobs[1] {
		t.Errorf("peers %v; jobs the peer had run after each round %v: want one peer that worked throughout", rep.Peers, peerJobs)
	}
	cancelled, killed := rep.Rounds[0], rep.Rounds[1]
	if len(cancelled.Interrupted) == 0 || len(cancelled.NotGivenBack) != 0 {
		t.Errorf("StopAndCancel with a peer: %d interrupted, %d not given back; want some, none", len(cancelled.Interrupted), len(cancelled.NotGivenBack))
	}
	if killed.Restarted != "" || len(killed.Stranded) == 0 || len(killed.Rescued) != len(killed.Stranded) {
		t.Errorf("kill round: restarted %q, %d jobs stranded, %d rescued; want no restart, some stranded, all rescued by the peer",
			killed.Restarted, len(killed.Stranded), len(killed.Rescued))
	}
	if !strings.Contains(rep.Table(), "peers working alongside the rounds: 1") {
		t.Errorf("the table does not mention the peer:\n%s", rep.Table())
	}
}

// TestShutdownUnderLoadCatches feeds the harness broken workers and a
// broken client: each is reported.
func TestShutdownUnderLoadCatches(t *testing.T) {
	db := testfixture.New(t)
	base := func() *millracetest.ShutdownConfig {
		return &millracetest.ShutdownConfig{Pool: db.Pool, Workers: workers(db), Backlog: 100, DrainTimeout: 10 * time.Second}
	}
	for _, tc := range []struct {
		name   string
		mode   string
		plan   []millracetest.Shutdown
		tweak  func(cfg *millracetest.ShutdownConfig)
		wants  []string
		verify func(t *testing.T, rep *millracetest.ShutdownReport)
	}{
		{
			name: "ignores_context", mode: modeStubborn,
			plan:  []millracetest.Shutdown{{Method: millracetest.StopAndCancel, After: 200 * time.Millisecond}},
			tweak: func(cfg *millracetest.ShutdownConfig) { cfg.StopDeadline = 300 * time.Millisecond },
			wants: []string{"Work ignored its context on"},
			verify: func(t *testing.T, rep *millracetest.ShutdownReport) {
				if len(rep.IgnoredContext) == 0 || rep.Rounds[0].StopErr == "" {
					t.Errorf("ignored context %v, stop error %q", rep.IgnoredContext, rep.Rounds[0].StopErr)
				}
			},
		},
		{
			name: "panics", mode: modePanic,
			plan:  []millracetest.Shutdown{{Method: millracetest.StopWithDeadline, After: 200 * time.Millisecond}},
			wants: []string{"Work panicked on"},
			verify: func(t *testing.T, rep *millracetest.ShutdownReport) {
				if len(rep.Panics) == 0 {
					t.Error("no panic reported")
				}
			},
		},
		{
			name: "own_transaction", mode: modeOwnTx,
			plan:  []millracetest.Shutdown{{Method: millracetest.StopAndCancel, After: 200 * time.Millisecond}},
			wants: []string{"end in a state their Work calls do not explain", "is completed"},
			verify: func(t *testing.T, rep *millracetest.ShutdownReport) {
				if len(rep.Mismatched) == 0 {
					t.Error("no mismatch reported")
				}
			},
		},
		{
			name: "client_drops_an_outcome",
			plan: []millracetest.Shutdown{{Method: millracetest.StopWithDeadline, After: 200 * time.Millisecond}},
			tweak: func(cfg *millracetest.ShutdownConfig) {
				dropped := new(atomic.Bool) // one outcome dropped in the whole run
				millracetest.SetWrapDriver(cfg, func(d driver.Driver[pgx.Tx]) driver.Driver[pgx.Tx] {
					return &execDriver{Driver: d, wrap: func(e driver.Executor) driver.Executor { return &dropExec{Executor: e, dropped: dropped} }}
				})
			},
			wants: []string{"jobs left running after the client stopped", "jobs lost"},
			verify: func(t *testing.T, rep *millracetest.ShutdownReport) {
				if len(rep.Rounds[0].LeftRunning) != 1 || len(rep.Lost) != 1 || rep.Lost[0] != rep.Rounds[0].LeftRunning[0] {
					t.Errorf("left running after the round %v, lost %v; want the one job whose outcome was dropped",
						len(rep.Rounds[0].LeftRunning), len(rep.Lost))
				}
			},
		},
		{
			name: "client_runs_a_job_twice_at_once",
			plan: []millracetest.Shutdown{{Method: millracetest.StopWithDeadline, After: 300 * time.Millisecond}},
			tweak: func(cfg *millracetest.ShutdownConfig) {
				doubled := new(atomic.Bool) // one job handed out twice in the whole run
				millracetest.SetWrapDriver(cfg, func(d driver.Driver[pgx.Tx]) driver.Driver[pgx.Tx] {
					return &execDriver{Driver: d, wrap: func(e driver.Executor) driver.Executor { return &doubleExec{Executor: e, doubled: doubled} }}
				})
			},
			// (What else the client makes of a job it holds twice varies:
			// the overlap is what must be seen.)
			wants: []string{"1 jobs ran in two Work calls at the same time"},
			verify: func(t *testing.T, rep *millracetest.ShutdownReport) {
				if len(rep.Overlapped) != 1 {
					t.Errorf("run twice at once %v; want the one job fetched twice", rep.Overlapped)
				}
			},
		},
		{
			name: "client_leaks",
			plan: []millracetest.Shutdown{{Method: millracetest.StopWithDeadline, After: 100 * time.Millisecond}},
			tweak: func(cfg *millracetest.ShutdownConfig) {
				release := make(chan struct{})
				t.Cleanup(func() { close(release) })
				millracetest.SetWrapDriver(cfg, func(d driver.Driver[pgx.Tx]) driver.Driver[pgx.Tx] {
					return &leakDriver{Driver: d, release: release}
				})
			},
			wants: []string{"connections still acquired from the pool", "goroutines started by the run still run after it"},
			verify: func(t *testing.T, rep *millracetest.ShutdownReport) {
				// Each client (the round's and the drain's) leaked one
				// transaction: its connection (acquired, and its session
				// open) and its goroutine, plus the harness's goroutine
				// closing the pool, which waits for the connection.
				if rep.LeakedConns != 2 || rep.LeakedSessions != 2 || rep.LeakedGoroutines != 4 {
					t.Errorf("%d connections, %d sessions and %d goroutines leaked, want 2, 2 and 4", rep.LeakedConns, rep.LeakedSessions, rep.LeakedGoroutines)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			cfg.Mix, cfg.Plan = mix(10, tc.mode), tc.plan
			if tc.tweak != nil {
				tc.tweak(cfg)
			}
			var rep *millracetest.ShutdownReport
			o := run(t, func(tb testing.TB) { rep = millracetest.ShutdownUnderLoad(tb, cfg) })
			if o.stopped {
				t.Fatalf("the harness stopped the test: %s", strings.Join(o.msgs, "\n"))
			}
			all := strings.Join(o.msgs, "\n")
			if len(o.msgs) == 0 {
				t.Fatal("the harness reported nothing")
			}
			for _, w := range tc.wants {
				if !strings.Contains(all, w) {
					t.Errorf("the report lacks %q:\n%s", w, all)
				}
			}
			if rep.OK() {
				t.Error("report OK despite the fault")
			}
			tc.verify(t, rep)
		})
	}
}

// execDriver is a broken client's driver: its executors are wrapped.
type execDriver struct {
	driver.Driver[pgx.Tx]
	wrap func(driver.Executor) driver.Executor
}

func (d *execDriver) GetExecutor() driver.Executor { return d.wrap(d.Driver.GetExecutor()) }

// dropExec is a broken client's executor: its completer's first write of
// a completed outcome drops that outcome, yet reports it written.
type dropExec struct {
	driver.Executor
	dropped *atomic.Bool
}

func (e *dropExec) JobSetStateIfRunningMany(ctx context.Context, p *driver.JobSetStateIfRunningManyParams) ([]*millracetype.JobRow, error) {
	if len(p.Jobs) == 0 || p.Jobs[0].State != millracetype.JobStateCompleted || !e.dropped.CompareAndSwap(false, true) {
		return e.Executor.JobSetStateIfRunningMany(ctx, p)
	}
	q := *p
	q.Jobs = p.Jobs[1:]
	applied := 0
	if p.Applied != nil {
		q.Applied = &applied
	}
	var rows []*millracetype.JobRow
	if len(q.Jobs) > 0 {
		var err error
		if rows, err = e.Executor.JobSetStateIfRunningMany(ctx, &q); err != nil {
			e.dropped.Store(false)
			return nil, err
		}
	}
	if p.Applied != nil {
		*p.Applied = applied
		if applied >= 0 {
			*p.Applied = applied + 1
		}
	}
	return rows, nil
}

// doubleExec is a broken client's executor: its first fetch that takes a
// 300 ms job hands that job out twice, so that two of the client's workers
// run it at once.
type doubleExec struct {
	driver.Executor
	doubled *atomic.Bool
}

func (e *doubleExec) JobGetAvailable(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
	jobs, err := e.Executor.JobGetAvailable(ctx, p)
	for _, j := range jobs {
		var args workArgs
		if json.Unmarshal(j.Args, &args) == nil && args.MS == 300 && e.doubled.CompareAndSwap(false, true) {
			twin := *j
			jobs = append(jobs, &twin)
			break
		}
	}
	return jobs, err
}

// leakDriver is a leaky client's driver: when the client first takes its
// executor, it opens a transaction and starts a goroutine that ends it
// only when the test ends.
type leakDriver struct {
	driver.Driver[pgx.Tx]
	release chan struct{}
	once    sync.Once
}

func (d *leakDriver) GetExecutor() driver.Executor {
	exec := d.Driver.GetExecutor()
	d.once.Do(func() {
		tx, err := exec.Begin(context.Background())
		if err != nil {
			panic(err)
		}
		go func() {
			<-d.release
			_ = tx.Rollback(context.Background())
		}()
	})
	return exec
}

// TestShutdownUnderLoadCallbackStopsTheTest: a callback that stops the
// test (FailNow) mid-round leaves no client running: the round's and the
// peer's are stopped (their heartbeat rows, removed at the end of a stop,
// are gone).
func TestShutdownUnderLoadCallbackStopsTheTest(t *testing.T) {
	db := testfixture.New(t)
	var schema string
	o := run(t, func(tb testing.TB) {
		millracetest.ShutdownUnderLoad(tb, &millracetest.ShutdownConfig{Pool: db.Pool, Workers: workers(db), Mix: mix(0, ""), Backlog: 100,
			Peers: 1, OnSetup: func(s string) { schema = s },
			Plan: []millracetest.Shutdown{{Method: millracetest.StopWithDeadline, After: 300 * time.Millisecond,
				When: func() bool { tb.Fatalf("fault: the test gives up"); return false }}}})
	})
	if !o.stopped || len(o.msgs) != 1 || !strings.Contains(o.msgs[0], "fault: the test gives up") {
		t.Fatalf("stopped %v, messages %q; want the callback's failure alone", o.stopped, o.msgs)
	}
	if schema == "" {
		t.Fatal("OnSetup was not called")
	}
	var clients, running int
	if err := db.Pool.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM "+pgx.Identifier{schema, "millrace_client"}.Sanitize()+
		"), (SELECT count(*) FROM "+pgx.Identifier{schema, "river_job"}.Sanitize()+" WHERE state = 'running')").Scan(&clients, &running); err != nil {
		t.Fatal(err)
	}
	if clients != 0 || running != 0 {
		t.Errorf("after the test stopped: %d clients still registered, %d jobs running; want none", clients, running)
	}
}

// TestShutdownUnderLoadBadConfig checks the errors for unusable configs.
func TestShutdownUnderLoadBadConfig(t *testing.T) {
	db := testfixture.New(t)
	good := func() *millracetest.ShutdownConfig {
		return &millracetest.ShutdownConfig{Pool: db.Pool, Workers: workers(db), Mix: mix(0, ""), Backlog: 10,
			Plan: millracetest.DefaultShutdownPlan()}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*millracetest.ShutdownConfig) *millracetest.ShutdownConfig
		wants string
	}{
		{"nil_config", func(*millracetest.ShutdownConfig) *millracetest.ShutdownConfig { return nil }, "config is nil"},
		{"no_pool", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig { c.Pool = nil; return c }, "Pool is nil"},
		{"no_workers", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig { c.Workers = nil; return c }, "Workers is nil"},
		{"empty_mix", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig { c.Mix = nil; return c }, "Mix is empty"},
		{"nil_args", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig {
			c.Mix = []millracetest.JobMix{{}}
			return c
		}, "Mix[0].Args is nil"},
		{"rate_zero", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig { c.Backlog, c.Rate = 0, 0; return c }, "no load"},
		{"negative_rate", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig { c.Rate = -1; return c }, "must not be negative"},
		{"no_shutdown", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig { c.Plan = nil; return c }, "Plan has no shutdown"},
		{"unknown_method", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig {
			c.Plan = []millracetest.Shutdown{{}}
			return c
		}, "Plan[0].Method is ShutdownMethod(0)"},
		{"bad_client_config", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig {
			c.Client = &client.Config{SoftStopTimeout: -time.Second}
			return c
		}, "Client: "},
		{"negative_deadline", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig {
			c.StopDeadline = -time.Second
			return c
		}, "StopDeadline is negative"},
		{"kill_without_peers", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig {
			c.Plan = []millracetest.Shutdown{{Method: millracetest.StopAndCancel}, {Method: millracetest.Kill}}
			return c
		}, "Plan[1] is a Kill, which needs a peer"},
		{"negative_peers", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig { c.Peers = -1; return c }, "Peers is -1"},
		{"peer_config_without_peers", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig {
			c.PeerClient = &client.Config{}
			return c
		}, "PeerClient is set but Peers is 0"},
		{"bad_peer_config", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig {
			c.Peers, c.PeerClient = 1, &client.Config{JobTimeout: -2 * time.Second}
			return c
		}, "PeerClient: "},
		{"negative_maintenance_interval", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig {
			c.MaintenanceInterval = -time.Second
			return c
		}, "MaintenanceInterval is -1s"},
		{"tiny_maintenance_interval", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig {
			c.MaintenanceInterval = time.Nanosecond
			return c
		}, "MaintenanceInterval is 1ns, want 0 (the client's defaults) or at least 10ms"},
		{"too_many_peers", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig { c.Peers = 17; return c }, "Peers is 17, want 0 to 16"},
		{"kill_never_rescued_in_time", func(c *millracetest.ShutdownConfig) *millracetest.ShutdownConfig {
			c.Plan, c.Peers, c.StopWait = []millracetest.Shutdown{{Method: millracetest.Kill}}, 1, 5*time.Second
			c.Client = &client.Config{HeartbeatTimeout: 5 * time.Second}
			return c
		}, "StopWait (5s), how long the harness waits for that, must be longer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.edit(good())
			mustFail(t, func(tb testing.TB) { millracetest.ShutdownUnderLoad(tb, cfg) },
				"ShutdownUnderLoad", "invalid ShutdownUnderLoad config", tc.wants)
		})
	}
}
