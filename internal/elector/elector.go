// Package elector decides which client of a database leads: the leader runs
// the maintenance services (scheduler, rescuer, cleaner, ...) for every
// client on the database, River's included.
//
// An elector with a Domain (Config.Domain) elects the leader of that domain
// instead: the clients of one service, which run what belongs to that
// service alone (its periodic jobs). See "Domains" below.
//
// # Protocol
//
// Leadership is a term recorded in the single row of river_leader, with the
// same rules River v0.51.2 follows, so millrace and River clients on one
// database agree on who leads:
//
//   - A follower tries to be elected at start and then every ElectInterval
//     plus a random jitter. An election deletes an expired row and inserts
//     its own unless a row remains (driver.Executor.LeaderAttemptElect).
//   - A leader extends its term every ReelectInterval. The extension is
//     guarded by the client ID and the term's elected_at, so a term that
//     expired or was taken over cannot be revived; when it fails that way
//     the leadership is lost and the elector goes back to following.
//   - A leader that resigns deletes its row and sends a "resigned"
//     notification on the leadership topic in the same statement. Followers
//     that hear it try to be elected within 50 ms instead of waiting for
//     their interval. A leader resigns when it stops and when it is sent a
//     "request_resign" notification.
//
// # Never lead without a confirmed term
//
// A leader that cannot extend its term (the database is unreachable, or
// answers too slowly) steps down locally once TTL − 1 s has passed since it
// sent the last election or extension that succeeded (the row lasts at
// least TTL from that moment): its subscribers are told it is no
// longer leader even though its row may still exist, so that it never runs
// maintenance at the same time as a leader elected after the row expired.
// It then tries once to resign the abandoned term (so that, if the database
// is back, another client need not wait for the row to expire) and follows.
//
// # Suspension
//
// Suspend keeps an elector out of leadership until Resume: a leader steps
// down at once (its subscribers are told, then it resigns its term) and a
// follower makes no election attempt. A client suspends its electors while
// its liveness lease is lost: the other clients are about to declare it
// dead and take its terms away (they resign a dead client's terms, so that
// leadership passes within the heartbeat timeout instead of the TTL), and
// it must not lead meanwhile.
//
// # Domains
//
// A domain's term is the domain's row of millrace_leader (migration line
// millrace), with the rules above; river_leader is not touched, so a client
// may lead its domain, the database, both or neither. Resignations are
// announced on millrace's own topic (driver.TopicDomainLeadership) with the
// domain in the payload, {"domain":"a","leader_id":"...","action":"resigned"},
// and a domain's leader resigns on {"domain":"a","action":"request_resign"}
// there; messages of other domains are ignored. River never hears either.
//
// # Subscribers
//
// Other services learn about leadership through Subscribe. Every change is
// delivered from the elector's goroutine, in order; a change to "not
// leader" is always delivered before the term is resigned. Delivery does
// not wait for a subscriber to act on it (the maintainer stops its
// services asynchronously), so a new leader's maintenance may briefly
// overlap the old one's last pass; that is safe because every maintenance
// write is guarded by the row states it expects.
package elector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/notifier"
	"github.com/millrace/millrace/millracetype"
	"github.com/millrace/millrace/startstop"
)

// Defaults of Config's durations, as River uses them.
const (
	// DefaultTTL is Config.TTL's default: how long a term lasts unless the
	// leader extends it.
	DefaultTTL = 15 * time.Second

	// DefaultElectInterval is Config.ElectInterval's default: how often a
	// follower tries to be elected (plus jitter of up to a fifth of it).
	DefaultElectInterval = 5 * time.Second

	// DefaultReelectInterval is Config.ReelectInterval's default: how often
	// a leader extends its term.
	DefaultReelectInterval = 5 * time.Second
)

const (
	// maxClientIDLength is one less than the bound of river_leader's
	// leader_id_length check (char_length(leader_id) < 128).
	maxClientIDLength = 127

	// resignedRetryMax bounds the random delay after which a follower that
	// heard another leader resign tries to be elected. The randomness
	// spreads the followers' attempts a little.
	resignedRetryMax = 50 * time.Millisecond

	// electTimeout bounds one election attempt.
	electTimeout = 5 * time.Second

	// resignTimeout bounds one resignation, which may run after the
	// service context has been cancelled (at Stop).
	resignTimeout = 3 * time.Second

	// unlistenTimeout bounds the UNLISTEN from the leadership topic at the
	// end of a run.
	unlistenTimeout = 3 * time.Second

	// stepDownMargin is how long before its term would expire a leader that
	// could not extend it gives it up locally.
	stepDownMargin = time.Second

	// MaxDomainLength is the longest Config.Domain (millrace_leader's
	// domain_format check allows no more).
	MaxDomainLength = 64
)

// domainRE is the rule of Config.Domain, the same as millrace_leader's
// domain_format check.
var domainRE = regexp.MustCompile(`^[a-z0-9]+(?:[_-][a-z0-9]+)*$`)

// ValidateDomain returns an error unless domain is a valid Config.Domain:
// empty (the database), or 1 to 64 lower-case letters and digits in words
// joined by '_' or '-'.
func ValidateDomain(domain string) error {
	if domain == "" {
		return nil
	}
	if len(domain) > MaxDomainLength {
		return fmt.Errorf("domain %q is longer than %d characters", domain, MaxDomainLength)
	}
	if !domainRE.MatchString(domain) {
		return fmt.Errorf("domain %q must be lower-case letters and digits, in words joined by '_' or '-' (%s)", domain, domainRE)
	}
	return nil
}

// Config configures an Elector. ClientID is required; every other field has
// a default, described on it.
type Config struct {
	// Schema is the schema holding river_leader, and whose leadership
	// channel the elector listens to. Default: "" (the connection's
	// search_path).
	Schema string

	// Domain, when not empty, makes the elector elect the leader of this
	// domain (millrace_leader) instead of the database's (river_leader).
	// It must be 1 to 64 characters: lower-case letters and digits, in
	// words joined by '_' or '-'. Default "": the database.
	Domain string

	// ClientID identifies this client in river_leader. It must be 1 to 127
	// characters long and should be unique among the clients sharing the
	// database. Required.
	ClientID string

	// Logger receives the elector's log lines. Default: a logger that
	// discards everything.
	Logger *slog.Logger

	// TTL is how long a term lasts unless the leader extends it. A leader
	// that has not managed to extend its term for TTL − 1 s (TTL/2 when TTL
	// is under 2 s) steps down. Negative is an error. Default: 15 s.
	TTL time.Duration

	// ElectInterval is how often a follower tries to be elected. Each wait
	// gets a random jitter of up to a fifth of the interval on top (5–6 s
	// with the default), so that clients started together spread out.
	// Negative is an error. Default: 5 s.
	ElectInterval time.Duration

	// ReelectInterval is how often a leader extends its term. It must be
	// shorter than the step-down time described under TTL. Negative is an
	// error. Default: 5 s.
	ReelectInterval time.Duration
}

// Elector takes part in leader election for one client. Make one with New;
// it is a startstop.Service. Stop comes from the embedded BaseStartStop: if
// the elector leads, subscribers are told false, then the term is resigned
// (within 3 s), and Stop returns once the elector's goroutine has exited.
// An election attempt in progress at Stop is allowed to finish (within 5 s)
// so that a term it wins is resigned rather than left to expire.
type Elector struct {
	startstop.BaseStartStop

	exec     driver.Executor
	notifier *notifier.Notifier
	cfg      Config

	// stepDownAfter is how long after the last confirmed start of its term
	// (or extension) a leader steps down if it could not extend it.
	stepDownAfter time.Duration

	isLeader atomic.Bool

	// suspended is set between Suspend and Resume; suspends counts the
	// Suspend calls (a term won before the latest one ends, even if Resume
	// has come since); wake is signalled by both, so that the run goroutine
	// looks again.
	suspended atomic.Bool
	suspends  atomic.Int64
	wake      chan struct{}

	// mu guards subs, which is never modified in place once stored (it is
	// replaced), so a copy of the slice header is a stable snapshot.
	mu   sync.Mutex
	subs []*subscriber
}

// subscriber is one Subscribe call.
type subscriber struct {
	fn      func(isLeader bool)
	removed atomic.Bool
}

// runState is what the notification handler of one run shares with that
// run's goroutine. A fresh one per run keeps a signal from a previous run
// from leaking into the next.
type runState struct {
	// resigned receives when another leader resigned.
	resigned chan struct{}
	// requestResign receives when someone asked the leader to resign.
	requestResign chan struct{}
}

// leadOutcome is why a term ended.
type leadOutcome int

const (
	// leadStopped: the service context ended (Stop); the term is still
	// ours as far as we know.
	leadStopped leadOutcome = iota
	// leadLost: an extension found the term gone (expired, deleted or
	// replaced); there is nothing to resign.
	leadLost
	// leadResignRequested: a request_resign notification arrived.
	leadResignRequested
	// leadUnconfirmed: no extension succeeded in time.
	leadUnconfirmed
	// leadSuspended: the elector was suspended (Suspend).
	leadSuspended
)

// New returns an Elector for the client cfg.ClientID that runs its queries
// on exec. n, when not nil, is the client's notifier: the elector listens
// to the leadership topic through it (between Start and Stop) so that it
// hears resignations and resign requests at once. With a nil n the elector
// relies on its intervals alone (poll-only mode) and does not react to
// request_resign. New returns an error if cfg is nil or invalid.
func New(exec driver.Executor, n *notifier.Notifier, cfg *Config) (*Elector, error) {
	if exec == nil {
		return nil, errors.New("elector: nil executor")
	}
	if cfg == nil {
		return nil, errors.New("elector: nil config (ClientID is required)")
	}
	c := *cfg
	if err := ValidateDomain(c.Domain); err != nil {
		return nil, fmt.Errorf("elector: %w", err)
	}
	switch l := utf8.RuneCountInString(c.ClientID); {
	case l == 0:
		return nil, errors.New("elector: ClientID is required")
	case l > maxClientIDLength:
		return nil, fmt.Errorf("elector: ClientID is %d characters long; at most %d are allowed", l, maxClientIDLength)
	}
	for name, d := range map[string]*time.Duration{
		"TTL":             &c.TTL,
		"ElectInterval":   &c.ElectInterval,
		"ReelectInterval": &c.ReelectInterval,
	} {
		if *d < 0 {
			return nil, fmt.Errorf("elector: %s must not be negative, got %v", name, *d)
		}
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.ElectInterval == 0 {
		c.ElectInterval = DefaultElectInterval
	}
	if c.ReelectInterval == 0 {
		c.ReelectInterval = DefaultReelectInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Domain != "" {
		c.Logger = c.Logger.With("domain", c.Domain)
	}
	stepDownAfter := stepDownTime(c.TTL)
	if c.ReelectInterval >= stepDownAfter {
		return nil, fmt.Errorf("elector: ReelectInterval (%v) must be shorter than the step-down time of TTL %v (%v)",
			c.ReelectInterval, c.TTL, stepDownAfter)
	}
	return &Elector{exec: exec, notifier: n, cfg: c, stepDownAfter: stepDownAfter, wake: make(chan struct{}, 1)}, nil
}

// Suspend keeps the elector out of leadership until Resume or the next
// Start (see "Suspension" in the package documentation): a leader steps
// down and resigns, a follower stops trying. It returns at once; the
// step-down happens on the elector's goroutine, subscribers first. Calling
// it while suspended does nothing more.
func (e *Elector) Suspend() {
	e.suspended.Store(true)
	e.suspends.Add(1)
	signal(e.wake)
}

// Resume ends a suspension: a follower tries to be elected at once. A term
// won before the suspension is given up all the same: Suspend followed at
// once by Resume still makes a leader step down.
func (e *Elector) Resume() {
	e.suspended.Store(false)
	signal(e.wake)
}

// stepDownTime is how long a leader keeps leading without a successful
// extension of its term: TTL − 1 s, or half the TTL when that is shorter
// than 1 s, so that a short TTL still leaves room for extensions.
func stepDownTime(ttl time.Duration) time.Duration {
	if ttl >= 2*stepDownMargin {
		return ttl - stepDownMargin
	}
	return ttl / 2
}

// Start subscribes to the leadership topic (when the elector has a
// notifier) and starts the elector's goroutine, which tries to be elected at
// once and then as described in the package documentation. Start on a
// running Elector does nothing and returns nil. If ctx has already ended or
// the subscription fails, Start returns an error, leaves nothing running,
// and may be called again.
func (e *Elector) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := e.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	if err := ctx.Err(); err != nil {
		e.StartFailed(stopped)
		return fmt.Errorf("elector: start: %w", err)
	}
	// A run begins unsuspended (a suspension belongs to the run it was
	// made in).
	e.suspended.Store(false)
	drain(e.wake)

	r := &runState{
		resigned:      make(chan struct{}, 1),
		requestResign: make(chan struct{}, 1),
	}
	var sub *notifier.Subscription
	if e.notifier != nil {
		topic := driver.TopicLeadership
		if e.cfg.Domain != "" {
			topic = driver.TopicDomainLeadership
		}
		var err error
		sub, err = e.notifier.Listen(ctx, topic, func(_, payload string) { e.onLeadership(r, payload) })
		if err != nil {
			e.StartFailed(stopped)
			return fmt.Errorf("elector: start: %w", err)
		}
	}

	go func() {
		defer stopped()
		if sub != nil {
			defer func() {
				unlistenCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlistenTimeout)
				defer cancel()
				sub.Unlisten(unlistenCtx)
			}()
		}
		started()
		e.run(ctx, r)
	}()
	return nil
}

// IsLeader reports whether this client currently leads. It becomes true
// just before subscribers are told true, and false just before they are
// told false.
func (e *Elector) IsLeader() bool { return e.isLeader.Load() }

// Subscribe registers fn to hear about leadership changes and returns a
// function that ends the subscription (calling it again does nothing).
//
// fn(true) is called when this client becomes leader and fn(false) when it
// stops being leader for any reason: the term was lost or could not be
// extended, it resigned on request, or the elector is stopping (then before
// the term is resigned, and before Stop returns). Calls come from the
// elector's goroutine, one at a time, in the order of the changes, and
// alternate between true and false. fn must return quickly: the elector
// neither extends its term nor stops while fn runs. fn may call the
// unsubscribe function but not Stop. A panic in fn is recovered and logged.
//
// fn is not called with the state at the time of subscribing; subscribe
// before Start, or call IsLeader after Subscribe. Once unsubscribe has
// returned, fn is not called again (a call already in progress may still be
// finishing).
func (e *Elector) Subscribe(fn func(isLeader bool)) (unsubscribe func()) {
	sub := &subscriber{fn: fn}
	e.mu.Lock()
	e.subs = append(slices.Clip(e.subs), sub)
	e.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			sub.removed.Store(true)
			e.mu.Lock()
			if i := slices.Index(e.subs, sub); i >= 0 {
				e.subs = slices.Delete(slices.Clone(e.subs), i, i+1)
			}
			e.mu.Unlock()
		})
	}
}

// leadershipMessage is a notification on the leadership topic. River sends
// {"leader_id" : "<id>", "action" : "resigned"} and
// {"action":"request_resign","leader_id":""}. On the domain leadership topic
// the messages also carry "domain".
type leadershipMessage struct {
	Action   string `json:"action"`
	LeaderID string `json:"leader_id"`
	Domain   string `json:"domain"`
}

// onLeadership handles a notification on the leadership topic. It runs on
// the notifier's dispatch goroutine, so it only signals the run goroutine.
func (e *Elector) onLeadership(r *runState, payload string) {
	var msg leadershipMessage
	if err := json.Unmarshal([]byte(payload), &msg); err != nil {
		e.cfg.Logger.Warn("elector: ignoring malformed leadership notification",
			"schema", e.cfg.Schema, "client_id", e.cfg.ClientID, "payload", payload, "error", err)
		return
	}
	if msg.Domain != e.cfg.Domain {
		return // another domain's (or, on River's topic, a malformed one)
	}
	switch msg.Action {
	case "resigned":
		if msg.LeaderID == e.cfg.ClientID {
			return // our own resignation
		}
		signal(r.resigned)
	case "request_resign":
		signal(r.requestResign)
	default:
		e.cfg.Logger.Debug("elector: ignoring leadership notification with unknown action",
			"schema", e.cfg.Schema, "client_id", e.cfg.ClientID, "payload", payload)
	}
}

// signal makes a non-blocking send on a channel buffered for one: a signal
// already pending covers this one.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// run is the elector's goroutine: it alternates between following and
// leading until ctx ends, and resigns a term in progress at the end.
func (e *Elector) run(ctx context.Context, r *runState) {
	wait := time.Duration(0) // the first attempt is immediate
	for {
		term, termStart, gen := e.follow(ctx, r, wait)
		if term == nil {
			return
		}
		if ctx.Err() != nil {
			// Elected while stopping: nobody was told, so just give the
			// term back.
			e.resign(ctx, term)
			return
		}

		e.cfg.Logger.Info("elector: elected leader", "schema", e.cfg.Schema, "client_id", e.cfg.ClientID)
		e.setLeader(true)
		outcome := e.lead(ctx, r, term, termStart, gen)
		// Whatever ended the term, subscribers hear it first, so that
		// maintenance is told to stop before another client can be
		// elected.
		e.setLeader(false)

		switch outcome {
		case leadStopped:
			e.cfg.Logger.Info("elector: resigning leadership (stopping)", "schema", e.cfg.Schema, "client_id", e.cfg.ClientID)
			e.resign(ctx, term)
			return
		case leadLost:
			e.cfg.Logger.Warn("elector: leadership lost (term expired or taken over)", "schema", e.cfg.Schema, "client_id", e.cfg.ClientID)
		case leadResignRequested:
			e.cfg.Logger.Info("elector: resigning leadership (requested)", "schema", e.cfg.Schema, "client_id", e.cfg.ClientID)
			e.resign(ctx, term)
		case leadUnconfirmed:
			e.cfg.Logger.Warn("elector: stepping down: could not extend the leadership term in time",
				"schema", e.cfg.Schema, "client_id", e.cfg.ClientID, "step_down_after", e.stepDownAfter)
			// Best effort: if the database is reachable again, free the
			// row so that nobody waits for it to expire.
			e.resign(ctx, term)
		case leadSuspended:
			e.cfg.Logger.Warn("elector: stepping down: suspended (the client lost its liveness lease)",
				"schema", e.cfg.Schema, "client_id", e.cfg.ClientID)
			e.resign(ctx, term)
		}
		if ctx.Err() != nil {
			return
		}
		// Give the others a chance before trying again.
		wait = e.electWait()
	}
}

// follow tries to be elected, first after wait and then every
// ElectInterval (plus jitter), or shortly after another leader resigned. It
// returns the new term, when the winning attempt was sent and the count of
// Suspend calls before it (see lead), or nil once ctx has ended. A term is
// returned even if ctx ended during the winning attempt, so that the
// caller can resign it.
func (e *Elector) follow(ctx context.Context, r *runState, wait time.Duration) (*millracetype.Leader, time.Time, int64) {
	// Signals from the previous term are stale.
	drain(r.resigned)
	drain(r.requestResign)

	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, time.Time{}, 0
		case <-r.requestResign:
			continue // meant for the leader, which we are not
		case <-r.resigned:
			timer.Reset(rand.N(resignedRetryMax))
			continue
		case <-e.wake:
			if !e.suspended.Load() {
				timer.Reset(0) // resumed: try now
			}
			continue
		case <-timer.C:
		}
		if e.suspended.Load() {
			continue // no attempt until resumed (wake)
		}

		sent := time.Now()
		gen := e.suspends.Load()
		// Not cancelled by Stop: an election that succeeds in the database
		// must be seen here, or its row would be left behind.
		electCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), electTimeout)
		term, err := e.exec.LeaderAttemptElect(electCtx, &driver.LeaderElectParams{
			Schema: e.cfg.Schema, Domain: e.cfg.Domain, LeaderID: e.cfg.ClientID, TTL: e.cfg.TTL,
		})
		cancel()
		switch {
		case err != nil:
			e.cfg.Logger.Warn("elector: election attempt failed; retrying at the next interval",
				"schema", e.cfg.Schema, "client_id", e.cfg.ClientID, "error", err)
		case term != nil && term.LeaderID != e.cfg.ClientID:
			// Not possible with a correct driver; never act on it.
			e.cfg.Logger.Error("elector: election returned another client's term; ignoring it",
				"schema", e.cfg.Schema, "client_id", e.cfg.ClientID, "leader_id", term.LeaderID)
		case term != nil:
			// A request_resign heard before the term began was meant for
			// the previous leader: it goes to every client, and a follower
			// hears it just before that leader's resignation lets it win.
			// Anything heard from now on (before subscribers are even told)
			// is for us.
			drain(r.requestResign)
			drain(r.resigned)
			return term, sent, gen
		}
		if ctx.Err() != nil {
			return nil, time.Time{}, 0
		}
		timer.Reset(e.electWait())
	}
}

// lead keeps the term alive until it ends, and says why it ended. termStart
// is when the election that began the term was sent: the term lasts at
// least until termStart + TTL. gen is the count of Suspend calls before
// that election: a later one ends the term.
func (e *Elector) lead(ctx context.Context, r *runState, term *millracetype.Leader, termStart time.Time, gen int64) leadOutcome {
	deadline := termStart.Add(e.stepDownAfter)
	timer := time.NewTimer(min(e.cfg.ReelectInterval, time.Until(deadline)))
	defer timer.Stop()
	for {
		// Suspended during the winning election, or since.
		if e.suspends.Load() != gen {
			return leadSuspended
		}
		select {
		case <-ctx.Done():
			return leadStopped
		case <-e.wake:
			continue // the loop's top looks at suspended
		case <-r.requestResign:
			return leadResignRequested
		case <-r.resigned:
			// Another leader resigned, so ours may be gone: the next
			// extension will tell.
			continue
		case <-timer.C:
		}

		sent := time.Now()
		if !sent.Before(deadline) {
			return leadUnconfirmed
		}
		// The call may take no longer than the term is known to last.
		reelectCtx, cancel := context.WithDeadline(ctx, deadline)
		extended, err := e.exec.LeaderAttemptReelect(reelectCtx, &driver.LeaderReelectParams{
			Schema: e.cfg.Schema, Domain: e.cfg.Domain, LeaderID: e.cfg.ClientID, ElectedAt: term.ElectedAt, TTL: e.cfg.TTL,
		})
		cancel()
		switch {
		case ctx.Err() != nil:
			return leadStopped
		case err != nil:
			e.cfg.Logger.Warn("elector: extending the leadership term failed; retrying",
				"schema", e.cfg.Schema, "client_id", e.cfg.ClientID, "error", err,
				"step_down_in", time.Until(deadline).Round(time.Millisecond))
			if !time.Now().Before(deadline) {
				return leadUnconfirmed
			}
		case extended == nil:
			return leadLost
		default:
			deadline = sent.Add(e.stepDownAfter)
		}
		timer.Reset(max(0, min(e.cfg.ReelectInterval, time.Until(deadline))))
	}
}

// resign ends the term in the database (deleting its row and notifying the
// other clients), within resignTimeout even when ctx has ended. A failure
// is logged: the row then expires on its own.
func (e *Elector) resign(ctx context.Context, term *millracetype.Leader) {
	resignCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resignTimeout)
	defer cancel()
	deleted, err := e.exec.LeaderResign(resignCtx, &driver.LeaderResignParams{
		Schema: e.cfg.Schema, Domain: e.cfg.Domain, LeaderID: e.cfg.ClientID, ElectedAt: term.ElectedAt,
	})
	if err != nil {
		e.cfg.Logger.Warn("elector: resigning failed; the leader row will expire on its own",
			"schema", e.cfg.Schema, "client_id", e.cfg.ClientID, "expires_at", term.ExpiresAt, "error", err)
		return
	}
	e.cfg.Logger.Debug("elector: resigned", "schema", e.cfg.Schema, "client_id", e.cfg.ClientID, "row_deleted", deleted)
}

// electWait is a follower's wait between attempts: ElectInterval plus a
// random jitter of up to a fifth of it.
func (e *Elector) electWait() time.Duration {
	d := e.cfg.ElectInterval
	if j := d / 5; j > 0 {
		d += rand.N(j + 1)
	}
	return d
}

// setLeader records the state and tells the subscribers, in subscription
// order.
func (e *Elector) setLeader(isLeader bool) {
	e.isLeader.Store(isLeader)
	e.mu.Lock()
	subs := e.subs
	e.mu.Unlock()
	for _, sub := range subs {
		if !sub.removed.Load() {
			e.call(sub, isLeader)
		}
	}
}

// call runs one subscriber, recovering and logging a panic.
func (e *Elector) call(sub *subscriber, isLeader bool) {
	defer func() {
		if p := recover(); p != nil {
			e.cfg.Logger.Error("elector: leadership subscriber panicked",
				"schema", e.cfg.Schema, "client_id", e.cfg.ClientID, "is_leader", isLeader,
				"panic", p, "stack", string(debug.Stack()))
		}
	}()
	sub.fn(isLeader)
}

// drain empties a signal channel.
func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
