package millracetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/clientbridge"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

// ErrInvalidShutdownConfig is wrapped by the error ShutdownUnderLoad fails
// the test with when its configuration is unusable.
var ErrInvalidShutdownConfig = errors.New("millracetest: invalid ShutdownUnderLoad config")

// ShutdownMethod is a way of shutting a client down.
type ShutdownMethod int

// The shutdown methods ShutdownUnderLoad knows.
const (
	// StopWithDeadline calls Stop with a context whose deadline is
	// ShutdownConfig.StopDeadline.
	StopWithDeadline ShutdownMethod = iota + 1
	// StopAndCancel calls StopAndCancel with the same deadline.
	StopAndCancel
	// CancelStartContext cancels the context the client was started with.
	CancelStartContext
	// DoubleStop calls Stop twice at once, from two goroutines, each with
	// the deadline.
	DoubleStop
	// KillAndRestart runs the client in a child process (the test binary
	// run again for the calling test only), kills it with SIGKILL, then
	// starts another child process that rescues the jobs the first one
	// left running and stops gracefully.
	KillAndRestart
	// Kill runs the client in a child process and kills it with SIGKILL,
	// without a restart: the peers (ShutdownConfig.Peers, at least one)
	// must rescue the jobs it left running.
	Kill
)

// String names the method as the report does.
func (m ShutdownMethod) String() string {
	switch m {
	case StopWithDeadline:
		return "Stop(deadline)"
	case StopAndCancel:
		return "StopAndCancel"
	case CancelStartContext:
		return "cancel Start ctx"
	case DoubleStop:
		return "Stop twice at once"
	case KillAndRestart:
		return "SIGKILL+restart"
	case Kill:
		return "SIGKILL"
	default:
		return fmt.Sprintf("ShutdownMethod(%d)", int(m))
	}
}

// Shutdown is one round of a shutdown plan: a client is started, works
// under load for After, and is shut down by Method.
type Shutdown struct {
	Method ShutdownMethod
	// After is how long the client works before the shutdown. Zero picks
	// a random time between ShutdownConfig.MaxAfter/5 and MaxAfter, unless
	// AfterCompleted is set.
	After time.Duration
	// AfterCompleted, when set (with After zero), shuts the client down
	// once its Work calls have succeeded this many times (or StopWait has
	// passed, which is reported).
	AfterCompleted int
	// When, when set, delays the shutdown (after After or AfterCompleted)
	// until it returns true; it is called every few milliseconds, up to
	// StopWait (which is reported).
	When func() bool
}

// JobMix is one kind of job of the load.
type JobMix struct {
	// Args makes the args of one job. Required. Its Kind must have a
	// worker in ShutdownConfig.Workers.
	Args func(rng *mrand.Rand) client.JobArgs
	// Weight is the share of the jobs of this entry (relative to the
	// others). Default 1.
	Weight int
	// Opts are the insert options of its jobs. Default: none.
	Opts *client.InsertOpts
}

// DefaultShutdownPlan returns one round of each in-process method, each at
// a random point: Stop with a deadline, StopAndCancel, the Start context
// cancelled, and Stop twice at once.
func DefaultShutdownPlan() []Shutdown {
	return []Shutdown{{Method: StopWithDeadline}, {Method: StopAndCancel}, {Method: CancelStartContext}, {Method: DoubleStop}}
}

// ShutdownConfig configures ShutdownUnderLoad.
type ShutdownConfig struct {
	// Pool is a pool on the database to test against. Required. The
	// harness creates a scratch schema there (migrated with every
	// migration line) and drops it when the test ends; it makes pools of
	// its own from Pool's config and closes them.
	Pool *pgxpool.Pool
	// Workers are the workers under test. Required.
	Workers *client.Workers
	// Client is the base configuration of the clients the harness runs.
	// Optional. The harness sets ID, Schema and Workers, adds its
	// recording middleware first in WorkerMiddleware, and fills in
	// Queues (the default queue, 10 workers), Logger (discarded),
	// HeartbeatInterval (250 ms) and HeartbeatTimeout (1 s) when unset.
	// The queues must be those the mix's jobs are inserted in.
	Client *client.Config
	// Peers is how many clients, in this process, work alongside the
	// rounds' clients: they share the load, take part in leader election
	// and rescue what a killed client left running. They start once the
	// first round's client has started and become leader (unless its
	// LeaderElectionDisabled is set), so the first round shuts the leader
	// down and, usually, a peer leads in the later rounds (a later round's
	// client may win an election too); they stop gracefully (and are
	// checked like a round's client) after the last round, before the
	// drain. Default 0, at most 16. A plan with a Kill round needs one.
	Peers int
	// PeerClient, when set, is the peers' configuration instead of
	// Client (with the same defaults filled in): a peer may work other
	// queues, or rescue stuck jobs sooner (RescueStuckJobsAfter).
	PeerClient *client.Config
	// MaintenanceInterval, when set, is how often the leader among the
	// harness's clients runs its maintenance passes (the scheduler, the
	// stuck-job rescuer, the job and queue cleaners) instead of their
	// defaults (the rescuer's is 30 s), so that River's stuck-job rule
	// (RescueStuckJobsAfter) can act within a round. The cleaners pass as
	// often: with a CompletedJobRetentionPeriod shorter than the run,
	// completed jobs would be deleted and reported lost. Default 0: the
	// client's defaults; otherwise at least 10 ms.
	MaintenanceInterval time.Duration
	// Mix is the load: what jobs are inserted. Required.
	Mix []JobMix
	// Rate is how many jobs a second are inserted while a client works.
	// Backlog is how many jobs are inserted before each round. At least
	// one of them must be positive.
	Rate    float64
	Backlog int
	// Plan lists the shutdown rounds, run one after another on the same
	// schema (jobs left by a round are worked by the next). Required: see
	// DefaultShutdownPlan.
	Plan []Shutdown
	// MaxAfter bounds the random time before a shutdown (Shutdown.After
	// zero). Default 500 ms.
	MaxAfter time.Duration
	// StopDeadline is the deadline given to Stop and StopAndCancel.
	// Default 2 s.
	StopDeadline time.Duration
	// DeadlineTolerance is how long after its deadline Stop may return
	// and still count as honouring it. Default 250 ms.
	DeadlineTolerance time.Duration
	// IgnoredContextAfter: a Work call that returns this long after its
	// context ended counts as ignoring its context. Default 250 ms.
	IgnoredContextAfter time.Duration
	// StopWait bounds how long the harness waits for a stopping client
	// (or a killed one's jobs to be rescued) before it reports it stuck.
	// Default 30 s.
	StopWait time.Duration
	// DrainTimeout bounds the final drain: after the plan, a client works
	// until no job is available, none runs, and none is retryable or
	// scheduled for before the drain's deadline. Default 30 s.
	DrainTimeout time.Duration
	// OnSetup, when set, is called once the scratch schema is created and
	// migrated, before any client starts: a test can note the schema or
	// add rows of its own there.
	OnSetup func(schema string)
	// AfterRound, when set, is called after each round's checks, before
	// the next round's client starts, with the scratch schema: a test can
	// look at the jobs as the round left them (the peers, if any, work on
	// meanwhile).
	//
	// OnSetup, AfterRound and Shutdown.When run on the test's goroutine
	// and may fail the test, with FailNow too: the harness then stops its
	// clients and processes and checks nothing more. JobMix.Args runs on
	// another goroutine and must not call FailNow.
	AfterRound func(schema string, round *RoundReport)
	// Seed seeds the random choices (job mix, shutdown points). Default:
	// random; the report gives the seed used.
	Seed uint64

	// wrapDriver, set by the package's own tests only, wraps the driver
	// of the working clients (a deliberately broken client).
	wrapDriver func(driver.Driver[pgx.Tx]) driver.Driver[pgx.Tx]
}

// Bounds of ShutdownConfig fields.
const (
	maxPeers               = 16
	minMaintenanceInterval = 10 * time.Millisecond
)

// Defaults used for unset ShutdownConfig fields.
const (
	defaultMaxAfter          = 500 * time.Millisecond
	defaultStopDeadline      = 2 * time.Second
	defaultDeadlineTolerance = 250 * time.Millisecond
	defaultIgnoredContext    = 250 * time.Millisecond
	defaultStopWait          = 30 * time.Second
	defaultDrainTimeout      = 30 * time.Second
)

// validate checks cfg and returns a copy with the defaults filled in.
func (cfg *ShutdownConfig) validate() (*ShutdownConfig, error) {
	bad := func(format string, args ...any) (*ShutdownConfig, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrInvalidShutdownConfig}, args...)...)
	}
	if cfg == nil {
		return bad("config is nil")
	}
	c := *cfg
	switch {
	case c.Pool == nil:
		return bad("Pool is nil")
	case c.Workers == nil:
		return bad("Workers is nil: there are no workers to test")
	case len(c.Mix) == 0:
		return bad("Mix is empty: no job to insert")
	case c.Rate < 0 || c.Backlog < 0:
		return bad("Rate (%v) and Backlog (%d) must not be negative", c.Rate, c.Backlog)
	case c.Rate == 0 && c.Backlog == 0:
		return bad("Rate and Backlog are both 0: no load")
	case len(c.Plan) == 0:
		return bad("Plan has no shutdown (see DefaultShutdownPlan)")
	case c.Peers < 0 || c.Peers > maxPeers:
		return bad("Peers is %d, want 0 to %d", c.Peers, maxPeers)
	case c.MaintenanceInterval != 0 && c.MaintenanceInterval < minMaintenanceInterval:
		return bad("MaintenanceInterval is %v, want 0 (the client's defaults) or at least %v", c.MaintenanceInterval, minMaintenanceInterval)
	case c.PeerClient != nil && c.Peers == 0:
		return bad("PeerClient is set but Peers is 0")
	}
	for i, m := range c.Mix {
		if m.Args == nil {
			return bad("Mix[%d].Args is nil", i)
		}
		if m.Weight < 0 {
			return bad("Mix[%d].Weight is %d, want 0 (meaning 1) or more", i, m.Weight)
		}
	}
	for i, s := range c.Plan {
		if s.Method < StopWithDeadline || s.Method > Kill {
			return bad("Plan[%d].Method is %v, not a known method", i, s.Method)
		}
		if s.Method == Kill && c.Peers == 0 {
			return bad("Plan[%d] is a Kill, which needs a peer to rescue the killed client's jobs: set Peers, or use KillAndRestart", i)
		}
		if s.After < 0 || s.AfterCompleted < 0 {
			return bad("Plan[%d]: After (%v) and AfterCompleted (%d) must not be negative", i, s.After, s.AfterCompleted)
		}
		if s.After > 0 && s.AfterCompleted > 0 {
			return bad("Plan[%d] sets both After and AfterCompleted", i)
		}
	}
	for name, d := range map[string]*time.Duration{"MaxAfter": &c.MaxAfter, "StopDeadline": &c.StopDeadline,
		"DeadlineTolerance": &c.DeadlineTolerance, "IgnoredContextAfter": &c.IgnoredContextAfter,
		"StopWait": &c.StopWait, "DrainTimeout": &c.DrainTimeout, "MaintenanceInterval": &c.MaintenanceInterval} {
		if *d < 0 {
			return bad("%s is negative (%v)", name, *d)
		}
	}
	c.MaxAfter = orDefault(c.MaxAfter, defaultMaxAfter)
	c.StopDeadline = orDefault(c.StopDeadline, defaultStopDeadline)
	c.DeadlineTolerance = orDefault(c.DeadlineTolerance, defaultDeadlineTolerance)
	c.IgnoredContextAfter = orDefault(c.IgnoredContextAfter, defaultIgnoredContext)
	c.StopWait = orDefault(c.StopWait, defaultStopWait)
	c.DrainTimeout = orDefault(c.DrainTimeout, defaultDrainTimeout)
	if c.Seed == 0 {
		c.Seed = mrand.Uint64() | 1
	}
	// The client's own validation, on the configs the harness would use.
	cc, err := c.clientConfig("validate", "validate_schema", nil)
	if err == nil {
		_, err = client.New(pgxv5.New(c.Pool), cc)
	}
	killedTimeout := time.Duration(0) // the killed clients' HeartbeatTimeout
	if err == nil {
		killedTimeout = cc.HeartbeatTimeout
	}
	if err != nil {
		return bad("Client: %w", err)
	}
	if c.PeerClient != nil {
		pc, err := c.peerConfig("validate", "validate_schema", nil)
		if err == nil {
			_, err = client.New(pgxv5.New(c.Pool), pc)
		}
		if err != nil {
			return bad("PeerClient: %w", err)
		}
	}
	// A killed client's jobs are rescued once its heartbeat is older than
	// its HeartbeatTimeout: the harness waits StopWait for that.
	if hb := killedTimeout; slices.ContainsFunc(c.Plan, func(s Shutdown) bool { return s.Method >= KillAndRestart }) &&
		hb+time.Second > c.StopWait {
		return bad("a kill's jobs are rescued about HeartbeatTimeout (%v) after it; StopWait (%v), how long the harness waits for that, "+
			"must be longer by a second at least", hb, c.StopWait)
	}
	return &c, nil
}

// orDefault returns d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// clientConfig is the config of a working client of the harness.
func (cfg *ShutdownConfig) clientConfig(id, schema string, mw client.WorkerMiddleware) (*client.Config, error) {
	return cfg.configFrom(cfg.Client, id, schema, mw)
}

// peerConfig is the config of a peer (PeerClient, else Client).
func (cfg *ShutdownConfig) peerConfig(id, schema string, mw client.WorkerMiddleware) (*client.Config, error) {
	if cfg.PeerClient != nil {
		return cfg.configFrom(cfg.PeerClient, id, schema, mw)
	}
	return cfg.clientConfig(id, schema, mw)
}

// configFrom is base with what the harness sets and its defaults.
func (cfg *ShutdownConfig) configFrom(base *client.Config, id, schema string, mw client.WorkerMiddleware) (*client.Config, error) {
	var c client.Config
	if base != nil {
		c = *base
	}
	c.ID, c.Schema, c.Workers = id, schema, cfg.Workers
	if mw != nil {
		c.WorkerMiddleware = append([]client.WorkerMiddleware{mw}, c.WorkerMiddleware...)
	}
	if len(c.Queues) == 0 {
		c.Queues = map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 10}}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HeartbeatInterval == 0 && c.HeartbeatTimeout == 0 {
		c.HeartbeatInterval, c.HeartbeatTimeout = 250*time.Millisecond, time.Second
	}
	if cfg.MaintenanceInterval > 0 {
		if err := clientbridge.SetMaintenanceInterval(&c, cfg.MaintenanceInterval); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// ShutdownUnderLoad runs the workers in real clients against a scratch
// schema under load, shuts each client down as cfg.Plan says, then works
// what is left, and checks what the shutdowns did (see ShutdownReport).
// Every problem found fails tb with Errorf; the report's table is logged
// and the report returned. Bad config fails tb with Fatalf (the error
// wraps ErrInvalidShutdownConfig).
//
// KillAndRestart and Kill run clients in child processes: the test binary run
// again, for the calling test only (-test.run with its full name), with
// an environment variable that makes this call run a client instead of
// the harness. The calling test must therefore reach this call in the
// child the same way, with the same Workers and Client config, and call
// ShutdownUnderLoad at most once; in the child, the test is skipped once
// the client has stopped. The child reaches the database through the
// connection string of Pool's config.
func ShutdownUnderLoad(tb testing.TB, cfg *ShutdownConfig) *ShutdownReport {
	requireTB(tb, "ShutdownUnderLoad")
	tb.Helper()
	c, err := cfg.validate()
	if err != nil {
		tb.Fatalf("millracetest: ShutdownUnderLoad: %v", err)
		return nil
	}
	if spec, ok := childSpecFromEnv(); ok {
		runChild(tb, c, spec)
		return nil
	}
	h := &harness{tb: tb, cfg: c, rng: mrand.New(mrand.NewPCG(c.Seed, 0x5eed)), rep: &ShutdownReport{Seed: c.Seed}}
	run := randomSuffix()
	pprof.Do(context.Background(), pprof.Labels(goroutineLabel, run), func(context.Context) { h.run() })
	h.checkGoroutines(run)
	table := h.rep.Table()
	tb.Logf("millracetest: ShutdownUnderLoad report:\n%s", table)
	for _, p := range h.rep.Problems {
		tb.Errorf("millracetest: ShutdownUnderLoad: %s", p)
	}
	return h.rep
}

// harness is one ShutdownUnderLoad run in the parent process.
type harness struct {
	tb     testing.TB
	cfg    *ShutdownConfig
	rng    *mrand.Rand
	rep    *ShutdownReport
	schema string
	app    string // application_name prefix of the harness's sessions
	admin  *pgxpool.Pool
	exec   driver.Executor
	ins    *client.Client[pgx.Tx]
	rec    *recorder
	peers  []*workingClient
	// drainDeadline is the drain's deadline: jobs due before it should
	// have been worked.
	drainDeadline time.Time

	mu       sync.Mutex
	inserted []int64
	// stranded are the jobs killed processes left running, which may be
	// worked twice.
	stranded map[int64]bool
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// run runs the whole harness, filling h.rep.
func (h *harness) run() {
	begin := time.Now()
	h.rep.Rounds = nil
	h.stranded = map[int64]bool{}
	h.rec = newRecorder()
	finished := false
	defer func() {
		if !finished {
			// A callback (AfterRound, When, OnSetup) stopped the test
			// (FailNow): stop what still runs, check nothing.
			h.stopPeersNow()
			h.closePools()
		}
	}()
	if err := h.setup(); err != nil {
		h.rep.problem("setup: %v", err)
		finished = true
		h.closePools()
		return
	}
	if h.cfg.OnSetup != nil {
		h.cfg.OnSetup(h.schema)
	}
	for i, s := range h.cfg.Plan {
		after := s.After
		if after == 0 && s.AfterCompleted == 0 {
			after = h.cfg.MaxAfter/5 + time.Duration(h.rng.Int64N(int64(h.cfg.MaxAfter-h.cfg.MaxAfter/5)+1))
		}
		r := &RoundReport{N: i + 1, Method: s.Method, After: after, afterCompleted: s.AfterCompleted, when: s.When}
		h.rep.Rounds = append(h.rep.Rounds, r)
		var err error
		if s.Method == KillAndRestart || s.Method == Kill {
			err = h.killRound(r)
		} else {
			err = h.inProcessRound(r)
		}
		if err != nil {
			h.rep.problem("round %d (%v): %v", r.N, s.Method, err)
			break
		}
		if h.cfg.AfterRound != nil {
			h.cfg.AfterRound(h.schema, r)
		}
	}
	h.stopPeers()
	h.drain()
	h.account()
	h.checkSessions()
	finished = true
	h.closePools()
	h.rep.Took = time.Since(begin)
}

// setup creates the scratch schema, the harness's pool and its
// insert-only client.
func (h *harness) setup() error {
	ctx := context.Background()
	h.schema = "millracetest_" + randomSuffix()
	h.app = "mrt_" + randomSuffix()
	h.rep.Schema = h.schema
	pcfg := h.cfg.Pool.Config()
	pcfg.ConnConfig.RuntimeParams["application_name"] = h.app + "_admin"
	pcfg.MaxConns = 4
	admin, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("open a pool: %w", err)
	}
	h.admin = admin
	ident := pgx.Identifier{h.schema}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+ident); err != nil {
		admin.Close()
		return fmt.Errorf("create schema %s: %w", h.schema, err)
	}
	h.tb.Cleanup(func() {
		// A pool of its own: the harness's pools are closed by then.
		p, err := pgxpool.NewWithConfig(context.Background(), h.cfg.Pool.Config())
		if err == nil {
			defer p.Close()
			_, err = p.Exec(context.Background(), "DROP SCHEMA "+ident+" CASCADE")
		}
		if err != nil {
			h.tb.Errorf("millracetest: ShutdownUnderLoad: drop schema %s: %v", h.schema, err)
		}
	})
	drv := pgxv5.New(admin)
	if _, err := migrate.MigrateAll(ctx, drv, &migrate.Config{Schema: h.schema}, migrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate schema %s: %w", h.schema, err)
	}
	h.exec = drv.GetExecutor()
	ins, err := client.New(drv, &client.Config{ID: h.app + "_insert", Schema: h.schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("insert-only client: %w", err)
	}
	h.ins = ins
	return nil
}

// insert inserts n jobs of the mix.
func (h *harness) insert(ctx context.Context, n int) error {
	total := 0
	for _, m := range h.cfg.Mix {
		total += max(m.Weight, 1)
	}
	h.mu.Lock()
	params := make([]client.InsertManyParams, n)
	for i := range params {
		pick := h.rng.IntN(total)
		for _, m := range h.cfg.Mix {
			if pick -= max(m.Weight, 1); pick < 0 {
				params[i] = client.InsertManyParams{Args: m.Args(h.rng), InsertOpts: m.Opts}
				break
			}
		}
	}
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, h.cfg.StopWait)
	defer cancel()
	res, err := h.ins.InsertMany(ctx, params)
	if err != nil {
		return fmt.Errorf("insert %d jobs: %w", n, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range res {
		if !r.UniqueSkippedAsDuplicate {
			h.inserted = append(h.inserted, r.Job.ID)
		}
	}
	return nil
}

// load inserts the backlog, then jobs at the configured rate until ctx
// ends; it returns the first insert error. An insert call is never cut
// short by ctx (its jobs may be committed, and working, before it
// returns their IDs): ctx ends the load between inserts.
func (h *harness) load(ctx context.Context) error {
	if h.cfg.Backlog > 0 {
		if err := h.insert(context.WithoutCancel(ctx), h.cfg.Backlog); err != nil {
			return err
		}
	}
	if h.cfg.Rate <= 0 {
		return nil
	}
	begin := time.Now()
	done := 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		due := int(h.cfg.Rate * time.Since(begin).Seconds())
		if due > done {
			if err := h.insert(context.WithoutCancel(ctx), due-done); err != nil {
				return err
			}
			done = due
		}
	}
}

// newPool opens a pool for a working client, its sessions named app; the
// client's LISTEN connection copies the config (so is named app), while
// the pool's connections are renamed app+"_pool" as they connect.
func newClientPool(base *pgxpool.Config, app string) (*pgxpool.Pool, error) {
	pcfg := base.Copy()
	pcfg.ConnConfig.RuntimeParams["application_name"] = app
	pcfg.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
		cc.RuntimeParams["application_name"] = app + "_pool"
		return nil
	}
	pcfg.MaxConns = max(pcfg.MaxConns, 4)
	return pgxpool.NewWithConfig(context.Background(), pcfg)
}

// sessions counts the server sessions whose application_name is one of
// names.
func (h *harness) sessions(names ...string) (int, error) {
	var n int
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY($1)", names).Scan(&n)
	return n, err
}

// runningBy lists the running jobs last attempted by the client id.
func (h *harness) runningBy(ctx context.Context, id string) ([]*millracetype.JobRow, error) {
	rows, err := h.exec.JobList(ctx, &driver.JobListParams{Schema: h.schema, States: []millracetype.JobState{millracetype.JobStateRunning},
		OrderBy: driver.JobListOrderByID, Limit: 10000})
	if err != nil {
		return nil, err
	}
	var out []*millracetype.JobRow
	for _, r := range rows {
		if len(r.AttemptedBy) > 0 && r.AttemptedBy[len(r.AttemptedBy)-1] == id {
			out = append(out, r)
		}
	}
	return out, nil
}

// jobs reads the jobs with the given IDs, by ID.
func (h *harness) jobs(ctx context.Context, ids []int64) (map[int64]*millracetype.JobRow, error) {
	out := make(map[int64]*millracetype.JobRow, len(ids))
	for chunk := range slices.Chunk(ids, 5000) {
		rows, err := h.exec.JobGetByIDMany(ctx, &driver.JobGetByIDManyParams{Schema: h.schema, IDs: chunk})
		if err != nil {
			return nil, fmt.Errorf("read jobs: %w", err)
		}
		for _, r := range rows {
			out[r.ID] = r
		}
	}
	return out, nil
}

// closePools closes the harness's own pool (once).
func (h *harness) closePools() {
	if h.admin != nil {
		h.admin.Close()
		h.admin = nil
	}
}
