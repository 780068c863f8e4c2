package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/completer"
	"github.com/millrace/millrace/internal/elector"
	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/internal/liveness"
	"github.com/millrace/millrace/internal/notifier"
	"github.com/millrace/millrace/internal/producer"
	"github.com/millrace/millrace/maintenance"
	"github.com/millrace/millrace/millracetype"
	"github.com/millrace/millrace/startstop"
)

// Client inserts jobs and, when it has queues, works them. TTx is the
// driver's transaction type (pgx.Tx for driver/pgxv5, *sql.Tx for
// driver/databasesql).
//
// A Client is a startstop service made of services: a notifier (the LISTEN
// connection), a completer (batched outcome writes) and one producer per
// queue. Start starts them all or none; Stop drains work first.
type Client[TTx any] struct {
	startstop.BaseStartStop

	config      *Config
	driver      driver.Driver[TTx]
	notifyLimit *notifyLimiter
	events      eventHub
	periodic    *maintenance.PeriodicJobEnqueuer
	// exec runs the fetched jobs (internal/jobexec; wiring in execute.go).
	exec *jobexec.Executor
	// dueTimers pokes producers when replaced jobs are due (insert.go).
	dueTimers dueTimers

	// mu guards the services of the current run.
	mu         sync.Mutex
	completer  *completer.Completer
	liveness   *liveness.Service
	notifier   *notifier.Notifier
	elector    *elector.Elector
	maintainer *maintenance.Maintainer
	// sequencer moves sequences on (every started client runs one).
	sequencer *maintenance.Sequencer
	// domainElector and domainMaintainer run the periodic jobs under the
	// leadership of Config.Domain; nil in the default domain, whose
	// periodic jobs run under the database leader (maintainer).
	domainElector    *elector.Elector
	domainMaintainer *maintenance.Maintainer
	producers        map[string]*producer.Producer
	workCancel       context.CancelCauseFunc
	// startedAt is when the current run started (config clock): the
	// periodic enqueuer counts runs due since then as held up by a change
	// of leader, not missed while no client ran.
	startedAt atomic.Pointer[time.Time]

	// Runtime queue management (queue_bundle.go). queuesMu serializes
	// Queues().Add and Remove with each other, with Start's creation of
	// the producers and with shutdown's collection of them; it guards
	// config.Queues, prodRun and draining, and is taken before mu.
	queuesMu sync.Mutex
	prodRun  *producerRun         // nil while producers cannot be added
	draining []*producer.Producer // removed, maybe still finishing jobs
	workCtx  context.Context      // the run's WorkCtx (guarded by mu)

	// stopMu guards stopping, which is true while a Stop holds the
	// lifecycle lock (between its StopInit and its finalizeStop). See
	// stopInit.
	stopMu   sync.Mutex
	stopping bool
}

// New returns a client on a driver. It validates the whole config and
// returns an error wrapping ErrInvalidConfig for anything wrong.
func New[TTx any](drv driver.Driver[TTx], cfg *Config) (*Client[TTx], error) {
	if drv == nil {
		return nil, fmt.Errorf("%w: driver is nil", ErrInvalidConfig)
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(c.Queues) > 0 && !drv.PoolIsSet() {
		return nil, fmt.Errorf("%w: a client that works queues needs a driver with a pool", ErrInvalidConfig)
	}
	client := &Client[TTx]{
		config:      c,
		driver:      drv,
		notifyLimit: &notifyLimiter{window: c.FetchCooldown / notifyPerCooldown},
	}
	client.exec = newExecutor(client)
	periodic, err := maintenance.NewPeriodicJobEnqueuer(drv.GetExecutor(), &maintenance.PeriodicJobEnqueuerConfig{
		Schema: c.Schema, Logger: c.Logger, Now: c.clock, LiveSince: client.liveSince, LiveSinceDB: client.liveSinceDB})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	client.periodic = periodic
	for i, job := range c.PeriodicJobs {
		if _, err := client.PeriodicJobs().Add(job); err != nil {
			return nil, fmt.Errorf("%w: periodic job %d: %w", ErrInvalidConfig, i, err)
		}
	}
	return client, nil
}

// liveSinceDB is, on the database's clock, since when a client of this
// client's domain has been running without a break: the earliest start
// among the live heartbeat rows of the domain. Runs of durable periodic
// jobs due since then were held up by a change of leader (a rolling deploy
// whose new process wins the election at once, say), not missed.
func (c *Client[TTx]) liveSinceDB(ctx context.Context) (time.Time, bool) {
	since, ok, err := c.driver.GetExecutor().ClientLiveSince(ctx, &driver.ClientLiveSinceParams{Schema: c.config.Schema, Domain: c.config.Domain})
	if err != nil {
		c.config.Logger.WarnContext(ctx, "millrace: reading the live clients' start failed; periodic jobs count from this client's start", "error", err)
		return time.Time{}, false
	}
	return since, ok
}

// liveSince is when the client's current run started.
func (c *Client[TTx]) liveSince() time.Time {
	if t := c.startedAt.Load(); t != nil {
		return *t
	}
	return c.config.clock()
}

// ID returns the client's ID.
func (c *Client[TTx]) ID() string { return c.config.ID }

// Start starts working the configured queues. It returns once every queue
// is registered and fetching; on any failure it stops what it started and
// returns the error, and Start may be called again. The client stops when
// Stop is called or ctx ends. Start on a started client does nothing.
//
// A client with no queues (an insert-only client) does not start: Start
// returns ErrNoQueues and runs nothing (no producer, notifier or leader
// election). Give it queues with Queues().Add to make it a working client.
func (c *Client[TTx]) Start(ctx context.Context) error {
	if c.queueCount() == 0 {
		return ErrNoQueues
	}
	if err := c.checkMigratedOnStart(ctx); err != nil {
		return fmt.Errorf("start client %s: %w", c.config.ID, err)
	}
	runCtx, shouldStart, started, stopped := c.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	startedAt := c.config.clock()
	c.startedAt.Store(&startedAt)
	// Queues added or removed meanwhile wait until the producers are up.
	c.queuesMu.Lock()
	defer c.queuesMu.Unlock()
	background, producers, err := c.buildServices()
	if err != nil {
		c.StartFailed(stopped)
		return err
	}
	// The completer and notifier outlive the run context: they must keep
	// working while producers drain at shutdown, which stops them
	// explicitly. Producers stop fetching as soon as the run context ends.
	if err := startstop.StartAll(context.WithoutCancel(runCtx), background...); err != nil {
		c.startFailed(stopped, err)
		return fmt.Errorf("start client %s: %w", c.config.ID, err)
	}
	if err := startstop.StartAll(runCtx, producers...); err != nil {
		startstop.StopAllParallel(background...)
		c.startFailed(stopped, err)
		return fmt.Errorf("start client %s: %w", c.config.ID, err)
	}
	c.openProducers(runCtx)
	go func() {
		defer stopped()
		started()
		<-runCtx.Done()
		c.shutdown()
	}()
	return nil
}

func (c *Client[TTx]) startFailed(stopped func(), err error) {
	c.mu.Lock()
	c.workCancel(err)
	c.mu.Unlock()
	c.StartFailed(stopped)
}

// buildServices makes this run's services: the background ones (completer,
// notifier) and the producers, each in start order.
func (c *Client[TTx]) buildServices() (background, producers []startstop.Service, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	exec := c.driver.GetExecutor()
	workCtx, workCancel := context.WithCancelCause(context.Background())
	c.workCancel = workCancel
	c.workCtx = workCtx
	c.completer = completer.New(exec, &completer.Config{Schema: c.config.Schema, Logger: c.config.Logger, OnWritten: c.onWritten,
		WantRows: c.events.hasSubscribers, Promote: c.promoteSequences})
	lv, err := c.newLiveness(exec)
	if err != nil {
		workCancel(err)
		return nil, nil, err
	}
	c.liveness = lv
	// The lease is taken before anything is fetched, and given back last.
	background = []startstop.Service{c.liveness, c.completer}
	c.notifier = nil
	if !c.config.PollOnly && c.driver.SupportsListener() {
		schema := c.config.Schema
		c.notifier = notifier.New(func() (driver.Listener, error) { return c.driver.GetListener(schema) },
			&notifier.Config{Schema: schema, Logger: c.config.Logger})
		background = append(background, c.notifier)
	}
	if err := c.buildMaintenance(exec); err != nil {
		workCancel(err)
		return nil, nil, err
	}
	// Every started client moves sequences on behind the completers'
	// backs, not only the leader: River's client may hold the leadership.
	seqInterval := maintenance.DefaultSequencerInterval
	if c.config.maintenanceInterval > 0 {
		seqInterval = c.config.maintenanceInterval
	}
	sequencer, err := maintenance.NewSequencer(exec, &maintenance.SequencerConfig{Schema: c.config.Schema,
		Logger: c.config.Logger, Interval: seqInterval, Now: c.config.clock})
	if err != nil {
		workCancel(err)
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	c.sequencer = sequencer
	background = append(background, sequencer)
	// The maintainer subscribes to the elector before it can win. A
	// client that opted out of leadership never starts either.
	if !c.config.LeaderElectionDisabled {
		background = append(background, c.maintainer, c.elector)
		if c.domainElector != nil {
			background = append(background, c.domainMaintainer, c.domainElector)
		}
	}
	c.producers = map[string]*producer.Producer{}
	for _, name := range slices.Sorted(maps.Keys(c.config.Queues)) {
		p, err := c.newProducer(exec, name, c.config.Queues[name], workCtx)
		if err != nil {
			workCancel(err)
			return nil, nil, fmt.Errorf("start client %s: %w", c.config.ID, err)
		}
		c.producers[name] = p
		producers = append(producers, p)
	}
	return background, producers, nil
}

// shutdown stops fetching, waits for running jobs (cancelling them once
// SoftStopTimeout has passed), writes their outcomes, then stops the
// notifier. It runs once the run context ends, whatever ended it (Stop,
// StopAndCancel, the Start context), and the run's stopped function is
// called only after it returns.
func (c *Client[TTx]) shutdown() {
	producers := c.closeProducers()
	c.mu.Lock()
	comp, notif, lv, workCancel := c.completer, c.notifier, c.liveness, c.workCancel
	// Leadership goes at once (maintenance stops first, then the resign
	// lets another client take over), while producers drain.
	services := []startstop.Service{c.elector, c.maintainer, c.sequencer}
	if c.domainElector != nil {
		services = append(services, c.domainElector, c.domainMaintainer)
	}
	c.mu.Unlock()
	if d := c.config.SoftStopTimeout; d > 0 {
		soft := time.AfterFunc(d, func() { workCancel(errSoftStopTimeout) })
		defer soft.Stop()
	}
	services = append(services, producers...)
	startstop.StopAllParallel(services...)
	comp.Stop()
	if notif != nil {
		notif.Stop()
	}
	// The heartbeat goes last, once every outcome is written. Outcomes
	// given up on leave their jobs running: the row then stays, so that
	// other clients see it dead and rescue them within seconds.
	if comp.Abandoned() > 0 {
		lv.KeepOnStop()
	}
	lv.Stop()
	workCancel(startstop.ErrStop)
}

// Stop stops the client gracefully, in the style of net/http's
// Server.Shutdown: no new jobs are fetched, running jobs finish (or, once
// Config.SoftStopTimeout has passed, are cancelled as StopAndCancel would)
// and their outcomes are written, then the client's services stop and its
// connections are released.
//
// ctx bounds only how long Stop waits. If ctx ends first, Stop returns an
// error wrapping ctx's cause and the shutdown goes on in the background:
// call Stop again to wait for it, or StopAndCancel to interrupt the jobs.
// Stops may be called concurrently; each returns when the client has
// stopped or its own ctx ends, whichever is first. Stop on a client that is
// not running returns nil. A stopped client can be started again.
//
// The channel from Stopped, taken before Stop, closes when the shutdown is
// complete, however it was started.
func (c *Client[TTx]) Stop(ctx context.Context) error {
	if err := startstop.StopWithin(ctx, stopIniterFunc(c.stopInit)); err != nil {
		return fmt.Errorf("stop client %s: %w", c.config.ID, err)
	}
	return nil
}

// stopInit is the client's StopInit. The first Stop takes BaseStartStop's
// StopInit, which cancels the run context (shutdown starts) and holds the
// lifecycle lock until the run has stopped or that Stop gives up. A Stop
// that comes meanwhile must not queue for that lock, since the wait would
// ignore its own context: it waits on the same run's stopped channel, which
// StoppedUnsafe returns while the lock is held, and finalizes nothing.
func (c *Client[TTx]) stopInit() (bool, <-chan struct{}, func(bool)) {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.stopping {
		return true, c.StoppedUnsafe(), func(bool) {}
	}
	// Only a Stop (under stopMu, which it leaves with stopping set) holds
	// the lifecycle lock for long, so StopInit waits here at most for a
	// StartInit.
	shouldStop, stopped, finalize := c.StopInit()
	if !shouldStop {
		return false, nil, finalize
	}
	c.stopping = true
	return true, stopped, func(didStop bool) {
		c.stopMu.Lock()
		defer c.stopMu.Unlock()
		c.stopping = false
		finalize(didStop)
	}
}

// stopIniterFunc adapts a function to startstop.StopIniter.
type stopIniterFunc func() (bool, <-chan struct{}, func(bool))

func (f stopIniterFunc) StopInit() (bool, <-chan struct{}, func(bool)) { return f() }

// StopAndCancel cancels every running job's context (cause: the client is
// stopping), then stops as Stop does. Jobs that return an error because of
// it go back to available without using an attempt (and are reported with
// EventKindJobInterrupted); jobs that complete anyway are recorded
// completed. It may be called while a Stop is waiting, to cut that Stop
// short.
func (c *Client[TTx]) StopAndCancel(ctx context.Context) error {
	c.mu.Lock()
	if c.workCancel != nil {
		c.workCancel(errStopAndCancel)
	}
	c.mu.Unlock()
	return c.Stop(ctx)
}

// Started returns a channel that is closed once Start has brought every
// service up (or a failed Start has rolled back). It may be taken before
// Start.
func (c *Client[TTx]) Started() <-chan struct{} { return c.BaseStartStop.Started() }

// Stopped returns a channel that is closed once the client has completely
// stopped: producers drained, every outcome written, the notifier, elector
// and maintenance services stopped and leadership given up. It may be taken
// before Start, while running, or during a Stop; take it before calling
// Stop to observe that Stop (once a Stop has completed, a new call returns
// the channel of the next run).
func (c *Client[TTx]) Stopped() <-chan struct{} { return c.BaseStartStop.Stopped() }

// AsService returns the client as a startstop.Service, to compose it with
// other services: startstop.StartAll(ctx, server, c.AsService()) starts
// both or neither, and StopAllParallel and WaitAllStarted work on it. The
// service's Start is the client's Start; its Stop is a graceful Stop
// without a deadline (bound how long it waits for running jobs with
// Config.SoftStopTimeout).
func (c *Client[TTx]) AsService() startstop.Service { return clientService[TTx]{c} }

type clientService[TTx any] struct{ c *Client[TTx] }

func (s clientService[TTx]) Start(ctx context.Context) error { return s.c.Start(ctx) }
func (s clientService[TTx]) Started() <-chan struct{}        { return s.c.Started() }

// Stop cannot fail: its context never ends.
func (s clientService[TTx]) Stop() { _ = s.c.Stop(context.Background()) }

// producer returns the running producer of a queue, or nil.
func (c *Client[TTx]) producer(queue string) *producer.Producer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.producers[queue]
}

func (c *Client[TTx]) allProducers() []*producer.Producer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Values(c.producers))
}

// buildMaintenance makes the electors and the leader-only services: the
// database's maintenance (scheduler, rescuer, cleaners, reindexer) under
// the database leader, and the periodic jobs under the leader of
// Config.Domain (the database leader in the default domain). A maintenance
// constructor's error wraps both ErrInvalidConfig and
// maintenance.ErrInvalidConfig.
func (c *Client[TTx]) buildMaintenance(exec driver.Executor) error {
	cfg := c.config
	newElector := func(domain string) (*elector.Elector, error) {
		el, err := elector.New(exec, c.notifier, &elector.Config{Schema: cfg.Schema, Domain: domain, ClientID: cfg.ID, Logger: cfg.Logger,
			TTL: cfg.leaderTTL, ElectInterval: cfg.electInterval, ReelectInterval: cfg.electInterval})
		if err != nil {
			return nil, fmt.Errorf("start client %s: %w", cfg.ID, err)
		}
		return el, nil
	}
	el, err := newElector("")
	if err != nil {
		return err
	}
	interval := func(d time.Duration) time.Duration {
		if cfg.maintenanceInterval > 0 {
			return cfg.maintenanceInterval
		}
		return d
	}
	var errs []error
	build := func(svc startstop.Service, err error) startstop.Service {
		errs = append(errs, err)
		return svc
	}
	services := []startstop.Service{
		build(maintenance.NewScheduler(exec, &maintenance.SchedulerConfig{Schema: cfg.Schema, Logger: cfg.Logger,
			Interval: interval(maintenance.DefaultSchedulerInterval), Now: cfg.clock})),
		build(maintenance.NewRescuer(exec, &maintenance.RescuerConfig{Schema: cfg.Schema, Logger: cfg.Logger,
			Interval: interval(maintenance.DefaultRescuerInterval), RescueAfter: cfg.RescueStuckJobsAfter,
			WorkerTimeout: c.workerTimeout, NextRetry: c.safeNextRetry, Now: cfg.clock, SkipLiveClients: true})),
		build(maintenance.NewCleaner(exec, &maintenance.CleanerConfig{Schema: cfg.Schema, Logger: cfg.Logger,
			Interval: interval(maintenance.DefaultCleanerInterval), CompletedJobRetention: cfg.CompletedJobRetentionPeriod,
			CancelledJobRetention: cfg.CancelledJobRetentionPeriod, DiscardedJobRetention: cfg.DiscardedJobRetentionPeriod,
			Now: cfg.clock})),
		build(maintenance.NewQueueCleaner(exec, &maintenance.QueueCleanerConfig{Schema: cfg.Schema, Logger: cfg.Logger,
			Interval: interval(maintenance.DefaultQueueCleanerInterval), Now: cfg.clock})),
	}
	// The periodic jobs belong to the service: in a domain, they follow
	// the domain's leader, so another service's client holding the
	// database leadership never stops them.
	var domainEl *elector.Elector
	var domainMaintainer *maintenance.Maintainer
	if cfg.Domain == "" {
		services = append(services, c.periodic)
	} else {
		if domainEl, err = newElector(cfg.Domain); err != nil {
			return err
		}
		domainMaintainer, err = maintenance.NewMaintainer(domainEl, cfg.Logger.With("domain", cfg.Domain), c.periodic)
		errs = append(errs, err)
	}
	if cfg.ReindexerSchedule != nil {
		services = append(services, build(maintenance.NewReindexer(exec, &maintenance.ReindexerConfig{Schema: cfg.Schema,
			Logger: cfg.Logger, Next: cfg.ReindexerSchedule.Next, Now: cfg.clock})))
	}
	if pl, ok := exec.(driver.PendingListCleaner); ok && !cfg.SkipPendingListCleaner {
		minI, maxI := time.Duration(0), time.Duration(0)
		if cfg.maintenanceInterval > 0 {
			minI, maxI = cfg.maintenanceInterval, cfg.maintenanceInterval
		}
		services = append(services, build(maintenance.NewPendingListCleaner(pl, &maintenance.PendingListCleanerConfig{
			Schema: cfg.Schema, Logger: cfg.Logger, MinInterval: minI, MaxInterval: maxI, Now: cfg.clock})))
	}
	maintainer, err := maintenance.NewMaintainer(el, cfg.Logger, services...)
	if err := errors.Join(append(errs, err)...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	c.elector = el
	c.maintainer = maintainer
	c.domainElector = domainEl
	c.domainMaintainer = domainMaintainer
	return nil
}

// workerTimeout tells the rescuer a job's timeout as its worker sets it.
func (c *Client[TTx]) workerTimeout(job *millracetype.JobRow) (time.Duration, bool) {
	info := c.config.Workers.lookup(job.Kind)
	if info == nil {
		return 0, false
	}
	timeout := time.Duration(0)
	if unit, err := info.unit(job); err == nil {
		timeout = jobexec.SafeTimeout(unit)
	}
	if timeout == 0 {
		timeout = c.config.JobTimeout
	}
	return timeout, true
}

// IsLeader reports whether this client currently leads the database (and
// runs the maintenance services).
func (c *Client[TTx]) IsLeader() bool {
	c.mu.Lock()
	el := c.elector
	c.mu.Unlock()
	return el != nil && el.IsLeader()
}

// IsDomainLeader reports whether this client currently leads its domain
// (Config.Domain) and so enqueues its periodic jobs. In the default domain
// it is IsLeader.
func (c *Client[TTx]) IsDomainLeader() bool {
	c.mu.Lock()
	el := c.elector
	if c.domainElector != nil {
		el = c.domainElector
	}
	c.mu.Unlock()
	return el != nil && el.IsLeader()
}
