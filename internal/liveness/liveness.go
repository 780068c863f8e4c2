// Package liveness keeps a client's heartbeat and rescues the jobs of
// clients that stopped heartbeating.
//
// Each working client holds a lease: its row in the millrace line's table
// millrace_client, registered at start-up and refreshed every Interval with
// the database's clock. A row whose heartbeat is older than its client's
// DeadAfter (stored with the row, so that clients configured differently
// judge each other right; compared with the database's clock: clients'
// clocks play no part) is dead for good: a heartbeat never revives it. Every client looks for dead rows in each
// heartbeat (the same statement), and when there are some, one client at
// a time (row locks, SKIP LOCKED) rescues their running jobs fetched before
// the death, as River's rescuer would (retryable with backoff, discarded
// when out of attempts, cancelled when a cancel was asked), each only while
// it still runs the attempt the rescue was decided for, skipping job rows
// another transaction holds (the next pass retries them). A dead row stays
// for TombstoneAfter after its death, so jobs that a fetch in flight at
// the death still committed under its ID are rescued too; then it is
// deleted. Jobs fetched after the death are not the dead client's: its
// process, alive after all, runs them and registers anew.
//
// The client side of the contract: a client whose heartbeat has not
// succeeded for DeadAfter less half an Interval (measured from when the
// last successful one was sent, which is no later than the database's
// heartbeat_at) must consider its lease lost, since its jobs are about to
// be rescued: OnLost is called, and the client cancels its running jobs. Whatever they still
// write is guarded by attempt in the database. When the database answers
// again and says the lease is dead, the service registers anew (a new
// incarnation) without touching the jobs of the old one, which the client
// is cancelling itself.
//
// Registration never takes a live row: at Start it waits for a live row of
// its ID to die (a restart with a stable ID within the timeout) and fails
// with ErrClientIDInUse when another process keeps it alive. Once
// registered, Start rescues the running jobs recorded under its ID before
// its lease: it has fetched nothing yet, so they belong to an earlier
// process with the same ID.
//
// A live client's jobs are never rescued for being old, so a job the
// database records as running under the client while the client does not
// know it (a fetch that committed but whose answer was lost with its
// connection) would stay running forever. Every OrphanInterval the
// service lists its client's running jobs fetched more than OrphanMinAge
// ago and rescues those Owns does not claim.
//
// Jobs whose client never registered (River's clients, older millrace)
// are not touched here: the leader's rescuer keeps River's rule for them.
package liveness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
	"github.com/millrace/millrace/startstop"
)

// Defaults for Config.
const (
	DefaultInterval       = time.Second
	DefaultDeadAfter      = 5 * time.Second
	DefaultTombstoneAfter = time.Minute
	DefaultOrphanInterval = 10 * time.Second
	DefaultOrphanMinAge   = time.Minute
	// rescuePage is how many running jobs a rescue reads per statement.
	rescuePage = 1000
	// maxDeadPerRescue bounds the dead rows one rescue transaction takes.
	maxDeadPerRescue = 100
	// stopTimeout bounds the deregistration at Stop.
	stopTimeout = 5 * time.Second
)

// ErrInvalidConfig is wrapped by New's errors.
var ErrInvalidConfig = errors.New("liveness: invalid config")

// ErrClientIDInUse is wrapped by Start's error when a live client holds the
// client's ID (its heartbeat row stayed alive): two processes must never
// share an ID.
var ErrClientIDInUse = errors.New("the client ID is in use by a live client (two processes must not share an ID)")

// ErrLeaseLost is the cause given to work cancelled because the client's
// lease was lost (OnLost's argument).
var ErrLeaseLost = errors.New("the client lost its liveness lease (no heartbeat within the dead-after time); its jobs are rescued by other clients")

// Config configures a Service.
type Config struct {
	// Schema holds the tables; empty means the connection's search_path.
	Schema string
	// ClientID is the lease's client ID (required).
	ClientID string
	// Metadata is a JSON object stored with the lease (nil: {}).
	Metadata []byte
	// Interval between heartbeats. Default 1 s.
	Interval time.Duration
	// DeadAfter is how old a heartbeat may be before its client is dead.
	// Default 5 s; at least twice Interval.
	DeadAfter time.Duration
	// TombstoneAfter is how long a dead row is kept. Default 1 min.
	TombstoneAfter time.Duration
	// Owns reports whether the client knows job id: it runs it, or its
	// outcome waits to be written. Nil: no orphan check.
	Owns func(id int64) bool
	// RescueOrphan gives an orphan's verdict (default: Rescue).
	RescueOrphan func(job *millracetype.JobRow) *driver.JobRescue
	// OrphanInterval is how often the orphan check runs. Default 10 s.
	OrphanInterval time.Duration
	// OrphanMinAge is how long ago (by the database's clock) a job must
	// have been fetched to be an orphan: longer than a fetch may take
	// (its jobs are the producer's only once its answer arrives). Default
	// 1 min.
	OrphanMinAge time.Duration
	// Rescue gives a rescued job's verdict; nil leaves the job running
	// (e.g. a kind this client cannot judge). Required.
	Rescue func(job *millracetype.JobRow) *driver.JobRescue
	// OnLost is called, from the service's goroutine, when the lease is
	// lost: no heartbeat succeeded for DeadAfter, or the database says the
	// lease is dead or replaced. It is called once per loss.
	OnLost func(cause error)
	// OnRegained is called, from the service's goroutine, when a lease
	// reported lost (OnLost) is held again: registered anew, or alive
	// after all (the database answered in time). Nil: nothing.
	OnRegained func()
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
}

// Service is the heartbeat and dead-client rescue of one client.
type Service struct {
	startstop.BaseStartStop
	exec driver.Executor
	cfg  Config
	log  *slog.Logger

	mu    sync.Mutex
	lease *driver.ClientLease
	// lost is set from the loss until the next registration.
	lost bool
	// keep, when set, makes Stop leave the row in place (see KeepOnStop).
	keep atomic.Bool
	// registerSent is when the last registration's statement was sent
	// (written by register, read by run, which Start starts after it).
	registerSent time.Time

	// beat, if set, is called after every heartbeat attempt (a test
	// signal, set before Start).
	beat func(res *driver.ClientHeartbeatResult, err error)
}

// New returns a service, or an error wrapping ErrInvalidConfig.
func New(exec driver.Executor, cfg *Config) (*Service, error) {
	if exec == nil || cfg == nil {
		return nil, fmt.Errorf("%w: nil executor or config", ErrInvalidConfig)
	}
	c := *cfg
	if c.ClientID == "" {
		return nil, fmt.Errorf("%w: empty client ID", ErrInvalidConfig)
	}
	if c.Rescue == nil {
		return nil, fmt.Errorf("%w: nil Rescue", ErrInvalidConfig)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"Interval", &c.Interval, DefaultInterval}, {"DeadAfter", &c.DeadAfter, DefaultDeadAfter},
		{"TombstoneAfter", &c.TombstoneAfter, DefaultTombstoneAfter}, {"OrphanInterval", &c.OrphanInterval, DefaultOrphanInterval},
		{"OrphanMinAge", &c.OrphanMinAge, DefaultOrphanMinAge}} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%w: negative %s %v", ErrInvalidConfig, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.DeadAfter < 2*c.Interval {
		return nil, fmt.Errorf("%w: DeadAfter %v must be at least twice Interval %v", ErrInvalidConfig, c.DeadAfter, c.Interval)
	}
	if c.OnLost == nil {
		c.OnLost = func(error) {}
	}
	if c.OnRegained == nil {
		c.OnRegained = func() {}
	}
	if c.RescueOrphan == nil {
		c.RescueOrphan = c.Rescue
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{exec: exec, cfg: c, log: log}, nil
}

// Lease returns the current lease (nil before Start).
func (s *Service) Lease() *driver.ClientLease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease
}

// KeepOnStop makes the next Stop leave the row: the client could not
// write every outcome, and its jobs left running must be rescued once the
// row is dead rather than wait for River's rule.
func (s *Service) KeepOnStop() { s.keep.Store(true) }

// Start registers the client (rescuing jobs an earlier process left under
// its ID) and starts the heartbeat. A failed registration is returned.
func (s *Service) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := s.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	s.keep.Store(false)
	if err := s.register(ctx, true); err != nil {
		s.StartFailed(stopped)
		return err
	}
	go func() {
		defer stopped()
		started()
		s.run(ctx)
		s.deregister()
	}()
	return nil
}

// register takes a new lease. A live row of the client's ID belongs to
// another process (or to this one's previous run, not yet dead): at
// start-up (startup set) register waits for it to die, at most DeadAfter
// and two heartbeats, then fails with ErrClientIDInUse; later (a lease
// lost, the row replaced by another process) it fails at once, and the
// caller tries again at the next heartbeat rather than take the ID back.
//
// At start-up, once registered, it rescues the running jobs recorded under
// the ID before this lease (a previous process's): nothing is fetched until
// Start returns.
func (s *Service) register(ctx context.Context, startup bool) error {
	deadline := time.Now().Add(s.cfg.DeadAfter + 2*s.cfg.Interval)
	var res *driver.ClientRegisterResult
	for {
		var err error
		s.registerSent = time.Now()
		res, err = s.exec.ClientRegister(ctx, &driver.ClientRegisterParams{Schema: s.cfg.Schema, ClientID: s.cfg.ClientID,
			Metadata: s.cfg.Metadata, HeartbeatTimeout: s.cfg.DeadAfter})
		if err != nil {
			return fmt.Errorf("register client %s: %w", s.cfg.ClientID, err)
		}
		if res.Lease != nil {
			break
		}
		if !startup || time.Now().After(deadline) {
			return fmt.Errorf("register client %s: %w", s.cfg.ClientID, ErrClientIDInUse)
		}
		t := time.NewTimer(s.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("register client %s: %w", s.cfg.ClientID, context.Cause(ctx))
		case <-t.C:
		}
	}
	s.mu.Lock()
	s.lease, s.lost = res.Lease, false
	s.mu.Unlock()
	if !startup {
		return nil
	}
	rescued, err := s.rescueJobsOf(ctx, s.exec, []string{s.cfg.ClientID}, []time.Time{res.Lease.StartedAt})
	if err != nil {
		return fmt.Errorf("register client %s: rescue jobs an earlier process left under its ID: %w", s.cfg.ClientID, err)
	}
	if rescued > 0 {
		s.log.Info("liveness: rescued jobs an earlier process left running under this client's ID", "client_id", s.cfg.ClientID, "jobs", rescued)
	}
	return nil
}

func (s *Service) run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	// lastOK is when the last successful heartbeat (at first, the
	// registration) was sent, on the monotonic clock: the database's
	// heartbeat_at is no earlier, so the lease cannot be dead by the
	// database's reckoning before lastOK + DeadAfter.
	lastOK := s.registerSent
	failing := false
	// Rescues run beside the heartbeat, one at a time: a rescue waiting on
	// a row lock must not delay this client's own heartbeat.
	var rescues sync.WaitGroup
	defer rescues.Wait()
	var rescuing atomic.Bool
	lastOrphanCheck := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		res, err := s.heartbeat(ctx, lastOK.Add(s.cfg.DeadAfter-s.margin()))
		if s.beat != nil {
			s.beat(res, err)
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				s.log.Warn("liveness: heartbeat failed", "client_id", s.cfg.ClientID, "error", err)
				failing = true
			}
			if time.Since(lastOK) >= s.cfg.DeadAfter-s.margin() {
				s.loseLease(fmt.Errorf("%w: last successful heartbeat %v ago", ErrLeaseLost, time.Since(lastOK).Round(time.Millisecond)))
			}
			continue
		case !res.Alive:
			s.loseLease(fmt.Errorf("%w: the database has it dead or replaced", ErrLeaseLost))
			if err := s.register(ctx, false); err != nil {
				level := slog.LevelWarn
				if errors.Is(err, ErrClientIDInUse) {
					level = slog.LevelError
				}
				s.log.Log(ctx, level, "liveness: registering again failed; trying at the next heartbeat", "client_id", s.cfg.ClientID, "error", err)
				continue
			}
			s.log.Info("liveness: registered again with a new lease", "client_id", s.cfg.ClientID)
			s.cfg.OnRegained()
		default:
			// Alive: a loss given up locally was not one for the
			// database (the jobs were cancelled all the same).
			s.mu.Lock()
			wasLost := s.lost
			s.lost = false
			s.mu.Unlock()
			if wasLost {
				s.cfg.OnRegained()
			}
		}
		if failing {
			s.log.Info("liveness: heartbeat succeeds again", "client_id", s.cfg.ClientID)
			failing = false
		}
		lastOK = sent
		orphans := s.cfg.Owns != nil && time.Since(lastOrphanCheck) >= s.cfg.OrphanInterval
		if (res.DeadClients || orphans) && rescuing.CompareAndSwap(false, true) {
			if orphans {
				lastOrphanCheck = time.Now()
			}
			dead := res.DeadClients
			rescues.Go(func() {
				defer rescuing.Store(false)
				if dead {
					if err := s.rescueDead(ctx); err != nil && ctx.Err() == nil {
						s.log.Warn("liveness: rescuing the jobs of dead clients failed", "error", err)
					}
				}
				if orphans {
					if err := s.rescueOrphans(ctx); err != nil && ctx.Err() == nil {
						s.log.Warn("liveness: the orphan check failed", "error", err)
					}
				}
			})
		}
	}
}

// margin is how long before the database could have the lease dead that
// the client gives it up itself.
func (s *Service) margin() time.Duration { return s.cfg.Interval / 2 }

// heartbeat sends one heartbeat, given up at deadline (the last successful
// one's send time plus DeadAfter, less the margin: by then the lease is
// given up anyway) or, once the lease is lost, after DeadAfter.
func (s *Service) heartbeat(ctx context.Context, deadline time.Time) (*driver.ClientHeartbeatResult, error) {
	s.mu.Lock()
	lost := s.lost
	s.mu.Unlock()
	if lost || !deadline.After(time.Now()) {
		deadline = time.Now().Add(s.cfg.DeadAfter)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return s.exec.ClientHeartbeat(ctx, &driver.ClientHeartbeatParams{Schema: s.cfg.Schema, Lease: s.Lease()})
}

// loseLease reports a loss once per lease.
func (s *Service) loseLease(cause error) {
	s.mu.Lock()
	already := s.lost
	s.lost = true
	s.mu.Unlock()
	if already {
		return
	}
	s.log.Error("liveness: lease lost; cancelling this client's running jobs (other clients rescue them)",
		"client_id", s.cfg.ClientID, "cause", cause)
	s.cfg.OnLost(cause)
}

// rescueDead takes dead rows (those no other client is working on) and
// rescues their running jobs, in one transaction; rows dead for longer than
// TombstoneAfter are deleted.
func (s *Service) rescueDead(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*s.cfg.DeadAfter)
	defer cancel()
	tx, err := s.exec.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	dead, err := tx.ClientLockDead(ctx, &driver.ClientLockDeadParams{Schema: s.cfg.Schema, Max: maxDeadPerRescue})
	if err != nil || len(dead) == 0 {
		return err
	}
	ids := make([]string, len(dead))
	died := make([]time.Time, len(dead))
	for i, d := range dead {
		ids[i], died[i] = d.ClientID, d.DiedAt
	}
	// Only what each fetched before it died: a client declared dead that
	// does not know it yet fetches and runs jobs of its own until its
	// next heartbeat tells it (then it registers anew).
	rescued, err := s.rescueJobsOf(ctx, tx, ids, died)
	if err != nil {
		return err
	}
	resigned, err := resignDeadTerms(ctx, tx, s.cfg.Schema, dead)
	if err != nil {
		return err
	}
	var deleted []string
	for _, d := range dead {
		if d.DeadFor < s.cfg.TombstoneAfter {
			continue
		}
		if _, err := tx.ClientDelete(ctx, &driver.ClientDeleteParams{Schema: s.cfg.Schema, ClientID: d.ClientID, StartedAt: d.StartedAt}); err != nil {
			return err
		}
		deleted = append(deleted, d.ClientID)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	if rescued > 0 {
		s.log.Info("liveness: rescued the running jobs of dead clients", "clients", ids, "jobs", rescued)
	}
	for _, t := range resigned {
		s.log.Info("liveness: resigned the leadership term of a dead client", "leader_id", t.LeaderID, "domain", t.Domain,
			"elected_at", t.ElectedAt)
	}
	if len(deleted) > 0 {
		s.log.Debug("liveness: removed the rows of clients dead for long", "clients", deleted)
	}
	return nil
}

// resignDeadTerms resigns, in tx, the leadership terms (the database's and
// the domains') that dead clients won before they died, and returns them:
// the resignation is notified, so another client is elected at once
// rather than when the term expires. A dead client has stepped down
// itself by then (a client suspends its electors when its lease is lost,
// before the database has it dead); a term it won after its death (as a
// new incarnation) is not touched.
func resignDeadTerms(ctx context.Context, tx driver.ExecutorTx, schema string, dead []*driver.DeadClient) ([]*millracetype.Leader, error) {
	var terms []*millracetype.Leader
	switch l, err := tx.LeaderGetElected(ctx, schema); {
	case err == nil:
		terms = append(terms, l)
	case !errors.Is(err, millracetype.ErrNotFound):
		return nil, fmt.Errorf("read the leader: %w", err)
	}
	domains, err := tx.LeaderListDomains(ctx, schema)
	if err != nil {
		return nil, fmt.Errorf("read the domains' leaders: %w", err)
	}
	terms = append(terms, domains...)
	var resigned []*millracetype.Leader
	for _, t := range terms {
		for _, d := range dead {
			if t.LeaderID != d.ClientID || !t.ElectedAt.Before(d.DiedAt) {
				continue
			}
			ok, err := tx.LeaderResign(ctx, &driver.LeaderResignParams{Schema: schema, Domain: t.Domain, LeaderID: t.LeaderID, ElectedAt: t.ElectedAt})
			if err != nil {
				return nil, fmt.Errorf("resign the term of dead client %s: %w", t.LeaderID, err)
			}
			if ok {
				resigned = append(resigned, t)
			}
		}
	}
	return resigned, nil
}

// rescueOrphans rescues the jobs the database has running under this
// client, attempted more than DeadAfter ago, that the client does not
// know (Owns).
func (s *Service) rescueOrphans(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*s.cfg.DeadAfter)
	defer cancel()
	var after int64
	var rescued []int64
	for {
		jobs, err := s.exec.JobGetRunningBy(ctx, &driver.JobGetRunningByParams{Schema: s.cfg.Schema, ClientIDs: []string{s.cfg.ClientID},
			AfterID: after, Max: rescuePage, MinAge: s.cfg.OrphanMinAge})
		if err != nil {
			return err
		}
		var rescues []*driver.JobRescue
		for _, job := range jobs {
			if s.cfg.Owns(job.ID) {
				continue
			}
			if r := s.cfg.RescueOrphan(job); r != nil {
				r.Attempt = job.Attempt
				rescues = append(rescues, r)
				rescued = append(rescued, job.ID)
			}
		}
		if len(rescues) > 0 {
			if _, err := s.exec.JobRescueMany(ctx, &driver.JobRescueManyParams{Schema: s.cfg.Schema, Jobs: rescues}); err != nil {
				return err
			}
		}
		if len(jobs) < rescuePage {
			break
		}
		after = jobs[len(jobs)-1].ID
	}
	if len(rescued) > 0 {
		s.log.Warn("liveness: rescued jobs the database had running under this client, which does not run them (a fetch whose answer was lost)",
			"client_id", s.cfg.ClientID, "jobs", rescued[:min(len(rescued), 20)], "count", len(rescued))
	}
	return nil
}

// rescueJobsOf rescues the running jobs of clients attempted before the
// given times (one per client), a page at a time.
func (s *Service) rescueJobsOf(ctx context.Context, exec driver.Executor, ids []string, before []time.Time) (int, error) {
	total := 0
	var after int64
	for {
		jobs, err := exec.JobGetRunningBy(ctx, &driver.JobGetRunningByParams{Schema: s.cfg.Schema, ClientIDs: ids, Before: before, AfterID: after, Max: rescuePage})
		if err != nil {
			return total, fmt.Errorf("list the running jobs of %v: %w", ids, err)
		}
		var rescues []*driver.JobRescue
		for _, job := range jobs {
			if r := s.cfg.Rescue(job); r != nil {
				r.Attempt = job.Attempt
				rescues = append(rescues, r)
			}
		}
		if len(rescues) > 0 {
			n, err := exec.JobRescueMany(ctx, &driver.JobRescueManyParams{Schema: s.cfg.Schema, Jobs: rescues})
			if err != nil {
				return total, fmt.Errorf("rescue %d jobs of %v: %w", len(rescues), ids, err)
			}
			total += n
		}
		if len(jobs) < rescuePage {
			return total, nil
		}
		after = jobs[len(jobs)-1].ID
	}
}

// deregister removes the lease's row unless KeepOnStop was called.
func (s *Service) deregister() {
	lease := s.Lease()
	if lease == nil || s.keep.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if _, err := s.exec.ClientDelete(ctx, &driver.ClientDeleteParams{Schema: s.cfg.Schema, ClientID: lease.ClientID, StartedAt: lease.StartedAt}); err != nil {
		s.log.Warn("liveness: removing this client's row at stop failed; it will be seen dead and removed by another client",
			"client_id", lease.ClientID, "error", err)
	}
}
