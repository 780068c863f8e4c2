// Package notifier holds a client's one LISTEN connection and fans the
// notifications it receives out to subscribers.
//
// A Notifier is a startstop service. Other parts of the client subscribe to a
// topic with Listen (a producer to its queue's insert topic, the elector to
// the leadership topic, and so on) and learn from OnStatus when the
// connection goes down, so that they can fall back to polling at once, and
// when it comes back.
//
// # Goroutines and interruption
//
// A running Notifier has two goroutines. The run goroutine owns the
// driver.Listener: it waits in WaitForNotification, runs LISTEN and UNLISTEN
// statements, pings an idle connection, and reconnects with backoff when the
// connection is lost. The dispatch goroutine calls subscribers, in the order
// notifications and status changes happened, so that a slow subscriber never
// delays the connection's housekeeping and a subscriber may itself call
// Listen or Unlisten without deadlocking.
//
// A Listener is not safe for concurrent use, so Listen and Unlisten never
// touch it. They change the wanted set of topics under the Notifier's lock
// and cancel the context of the WaitForNotification in progress. The run
// goroutine then sees the change, runs the LISTEN or UNLISTEN statements, and
// waits again. A notification that arrives meanwhile is queued by the
// connection and returned by the next wait, so none is lost.
package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/startstop"
)

const (
	// connectTimeout bounds one attempt to open the listener's connection
	// and LISTEN to the wanted topics.
	connectTimeout = 10 * time.Second

	// statementTimeout bounds one LISTEN, UNLISTEN or Ping.
	statementTimeout = 5 * time.Second

	// closeTimeout bounds closing the listener, which may happen after the
	// service context has been cancelled.
	closeTimeout = 2 * time.Second

	// minReconnectDelay is the shortest wait between reconnection attempts,
	// whatever ReconnectBackoff returns, so that a broken server or a
	// misconfigured backoff never turns into a busy loop.
	minReconnectDelay = 10 * time.Millisecond

	// defaultPingInterval is Config.PingInterval's default.
	defaultPingInterval = 30 * time.Second

	// backoffMin and backoffMax bound DefaultReconnectBackoff.
	backoffMin = 100 * time.Millisecond
	backoffMax = 10 * time.Second

	// stableConnection is how long a connection must have stayed up for
	// the reconnection backoff to start over at the first attempt. A
	// connection lost sooner (a server or proxy that cuts it as soon as it
	// is up) continues the backoff where the last reconnection left it, so
	// a flapping connection is retried less and less often instead of
	// every 100 ms. It is short: a connection that served for a second is
	// not flapping, and losses a few seconds apart (a failover, a
	// connection killer) must each be followed by a quick reconnection,
	// because notifications sent meanwhile are lost and subscribers only
	// catch up (producers fetch) once it is back. With a longer threshold,
	// losses 3 s apart made the wait grow to seconds by the fifth loss.
	// However often it is lost, a connection is re-made at most about once
	// per stableConnection plus the first attempt's delay.
	stableConnection = time.Second
)

// Config configures a Notifier. The zero value (or a nil *Config) gives the
// defaults described on each field.
type Config struct {
	// Schema is the schema whose channels the notifier listens to. It is
	// recorded for the caller's benefit (the newListener function given to
	// New is expected to pass it to the driver's GetListener); the notifier
	// itself only uses it in log lines. Default: "" (the connection's
	// current schema).
	Schema string

	// Logger receives the notifier's log lines. Default: a logger that
	// discards everything.
	Logger *slog.Logger

	// ReconnectBackoff returns how long to wait before reconnection attempt
	// number attempt (1 for the first attempt after a connection that had
	// stayed up for 1 s or more was lost; a connection lost sooner than
	// that continues the count of the reconnection that made it).
	// Values below 10 ms are raised to 10 ms. Default:
	// DefaultReconnectBackoff, exponential from 100 ms to 10 s with jitter.
	ReconnectBackoff func(attempt int) time.Duration

	// PingInterval is how long the connection may sit idle (no notification
	// received and no LISTEN or UNLISTEN run) before the notifier pings it
	// to find out whether it is still alive. A failed ping counts as a lost
	// connection. Default: 30 s.
	PingInterval time.Duration
}

// DefaultReconnectBackoff is the default Config.ReconnectBackoff: 100 ms
// before the first attempt, doubling with each further attempt up to 10 s,
// plus up to 25% random jitter (never exceeding 10 s).
func DefaultReconnectBackoff(attempt int) time.Duration {
	d := backoffMax
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 8 { // 100 ms << 7 = 12.8 s, already past the cap
		d = min(backoffMin<<(attempt-1), backoffMax)
	}
	d += rand.N(d/4 + 1)
	return min(d, backoffMax)
}

// Notifier holds one LISTEN connection and delivers its notifications to the
// subscribers of each topic. Make one with New; it is a startstop.Service.
type Notifier struct {
	startstop.BaseStartStop

	newListener  func() (driver.Listener, error)
	schema       string
	logger       *slog.Logger
	backoff      func(attempt int) time.Duration
	pingInterval time.Duration

	// mu guards everything below. It is held only briefly, never across a
	// database round trip or a subscriber call.
	mu sync.Mutex

	// topics maps each topic that has subscribers to them, in subscription
	// order. A slice in it is never modified in place once stored (it is
	// replaced), so a copy of the slice header is a stable snapshot.
	topics map[string][]*Subscription

	// statusSubs are the OnStatus subscribers, in subscription order, with
	// the same copy-on-write rule as topics.
	statusSubs []*statusSub

	// gen counts changes to the set of topics in topics; appliedGen is the
	// gen that the listener's LISTENs matched when they were last brought up
	// to date. dirty is set when the set changed since the run goroutine
	// last looked at it.
	gen        uint64
	appliedGen uint64
	dirty      bool

	// running is true from a successful start-up until the run goroutine
	// exits; connected is true while the listener is connected and has
	// LISTENed to the wanted topics (at least once).
	running   bool
	connected bool

	// interrupt cancels the WaitForNotification in progress, if any.
	interrupt context.CancelFunc

	// changed is closed (and replaced) whenever appliedGen, connected or
	// running changes, to wake Listen and Unlisten calls that wait for
	// their statement to be applied.
	changed chan struct{}
}

// New returns a Notifier that opens its connection with a fresh listener
// from newListener (called once per connection attempt, typically
// func() (driver.Listener, error) { return drv.GetListener(schema) }).
// cfg may be nil.
func New(newListener func() (driver.Listener, error), cfg *Config) *Notifier {
	if cfg == nil {
		cfg = &Config{}
	}
	n := &Notifier{
		newListener:  newListener,
		schema:       cfg.Schema,
		logger:       cfg.Logger,
		backoff:      cfg.ReconnectBackoff,
		pingInterval: cfg.PingInterval,
		topics:       make(map[string][]*Subscription),
		changed:      make(chan struct{}),
	}
	if n.logger == nil {
		n.logger = slog.New(slog.DiscardHandler)
	}
	if n.backoff == nil {
		n.backoff = DefaultReconnectBackoff
	}
	if n.pingInterval <= 0 {
		n.pingInterval = defaultPingInterval
	}
	return n
}

// Start connects the listener and LISTENs to every topic that has
// subscribers, then leaves the waiting, dispatching and reconnecting to
// goroutines of its own and returns. If the connection or a LISTEN fails,
// Start returns the error, leaves nothing running, and may be called again.
// Start on a running Notifier does nothing and returns nil.
//
// Stopping is done with Stop (from startstop.BaseStartStop): it interrupts
// whatever the notifier is doing (a wait, a reconnection backoff), closes the
// connection, tells status subscribers false if they had been told true, and
// returns once both goroutines have exited.
func (n *Notifier) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := n.StartInit(ctx)
	if !shouldStart {
		return nil
	}

	listener, listened, err := n.connect(ctx)
	if err != nil {
		n.StartFailed(stopped)
		return fmt.Errorf("notifier: start: %w", err)
	}

	d := newDispatcher(n)
	n.setState(true, true, d)

	go d.run()
	go n.run(ctx, listener, listened, d, stopped)
	started()
	return nil
}

// Connected reports whether the listener is connected and listening. It is
// false before Start, after Stop, and from the moment a lost connection is
// noticed until it has been re-established.
func (n *Notifier) Connected() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.connected
}

// run is the run goroutine: it serves the connection until it is lost,
// reconnects, and so on until the service context ends.
func (n *Notifier) run(ctx context.Context, listener driver.Listener, listened map[string]bool, d *dispatcher, stopped func()) {
	defer stopped()
	// Deferred after stopped, so it runs first: every queued notification
	// and status change is delivered before Stop returns.
	defer d.closeAndWait()

	attempts := 0 // reconnection attempts since the connection was last stable
	for {
		upSince := time.Now()
		err := n.serve(ctx, listener, listened, d)
		if ctx.Err() == nil {
			n.logger.Warn("notifier: listener connection lost; reconnecting", "schema", n.schema, "error", err)
		}
		n.setState(ctx.Err() == nil, false, d)
		n.closeListener(ctx, listener)
		if ctx.Err() != nil {
			return
		}

		if time.Since(upSince) >= stableConnection {
			attempts = 0
		}
		listener, listened, attempts = n.reconnect(ctx, attempts)
		if listener == nil { // the service is stopping
			n.setState(false, false, d)
			return
		}
		n.setState(true, true, d)
	}
}

// serve waits for notifications on a connected listener and keeps its
// LISTENs in step with the subscribed topics. It returns when the service
// context ends (with that context's error) or when the connection fails.
func (n *Notifier) serve(ctx context.Context, listener driver.Listener, listened map[string]bool, d *dispatcher) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}

		n.mu.Lock()
		dirty := n.dirty
		n.mu.Unlock()
		if dirty {
			if err := n.syncTopics(ctx, listener, listened); err != nil {
				return err
			}
		}

		// Arm the interruption under the lock that Listen and Unlisten
		// take, so that a change made after the check above either is seen
		// here or cancels the wait below.
		n.mu.Lock()
		if n.dirty {
			n.mu.Unlock()
			continue
		}
		waitCtx, cancel := context.WithTimeout(ctx, n.pingInterval)
		n.interrupt = cancel
		n.mu.Unlock()

		notification, err := listener.WaitForNotification(waitCtx)

		n.mu.Lock()
		n.interrupt = nil
		n.mu.Unlock()
		waitErr := waitCtx.Err()
		cancel()

		switch {
		case err == nil:
			if notification != nil {
				d.notify(notification.Topic, notification.Payload)
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(waitErr, context.DeadlineExceeded):
			// Idle for a whole PingInterval: make sure the connection is
			// still there.
			pingCtx, cancel := context.WithTimeout(ctx, statementTimeout)
			err := listener.Ping(pingCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		case waitErr != nil:
			// Interrupted by Listen or Unlisten: loop round to apply it.
		default:
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}

// syncTopics runs the LISTEN and UNLISTEN statements that bring the
// listener's topics (listened) in line with the subscribed ones. Any error is
// a connection failure as far as the caller is concerned.
func (n *Notifier) syncTopics(ctx context.Context, listener driver.Listener, listened map[string]bool) error {
	n.mu.Lock()
	gen := n.gen
	n.dirty = false
	want := make(map[string]bool, len(n.topics))
	for topic := range n.topics {
		want[topic] = true
	}
	n.mu.Unlock()

	for _, topic := range sortedKeys(want) {
		if listened[topic] {
			continue
		}
		if err := n.statement(ctx, listener.Listen, topic); err != nil {
			return fmt.Errorf("listen to topic %q: %w", topic, err)
		}
		listened[topic] = true
	}
	for _, topic := range sortedKeys(listened) {
		if want[topic] {
			continue
		}
		if err := n.statement(ctx, listener.Unlisten, topic); err != nil {
			return fmt.Errorf("unlisten from topic %q: %w", topic, err)
		}
		delete(listened, topic)
	}

	n.mu.Lock()
	n.appliedGen = gen
	n.broadcastLocked()
	n.mu.Unlock()
	return nil
}

// statement runs one LISTEN or UNLISTEN with a timeout.
func (n *Notifier) statement(ctx context.Context, fn func(context.Context, string) error, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, statementTimeout)
	defer cancel()
	return fn(ctx, topic)
}

// connect makes a listener, connects it and LISTENs to every subscribed
// topic. On error nothing is left open.
func (n *Notifier) connect(ctx context.Context) (driver.Listener, map[string]bool, error) {
	listener, err := n.newListener()
	if err != nil {
		return nil, nil, fmt.Errorf("make listener: %w", err)
	}
	if listener == nil {
		return nil, nil, errors.New("make listener: got a nil listener")
	}

	connectCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = listener.Connect(connectCtx)
	cancel()
	if err != nil {
		n.closeListener(ctx, listener)
		return nil, nil, fmt.Errorf("connect listener: %w", err)
	}

	listened := make(map[string]bool)
	if err := n.syncTopics(ctx, listener, listened); err != nil {
		n.closeListener(ctx, listener)
		return nil, nil, err
	}
	return listener, listened, nil
}

// reconnect tries to connect until it succeeds or the service context ends
// (then it returns nil), waiting ReconnectBackoff before each attempt. The
// attempts are numbered after the previous ones (see stableConnection); it
// returns the number of the attempt that succeeded.
func (n *Notifier) reconnect(ctx context.Context, previous int) (driver.Listener, map[string]bool, int) {
	for attempt := previous + 1; ; attempt++ {
		delay := max(n.backoff(attempt), minReconnectDelay)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, nil, attempt
		case <-timer.C:
		}

		listener, listened, err := n.connect(ctx)
		if err == nil {
			n.logger.Info("notifier: listener reconnected", "schema", n.schema, "attempt", attempt)
			return listener, listened, attempt
		}
		if ctx.Err() != nil {
			return nil, nil, attempt
		}
		n.logger.Warn("notifier: listener reconnection failed", "schema", n.schema, "attempt", attempt, "error", err)
	}
}

// closeListener closes listener within closeTimeout, even when ctx has
// already been cancelled, and logs a failure.
func (n *Notifier) closeListener(ctx context.Context, listener driver.Listener) {
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	if err := listener.Close(closeCtx); err != nil {
		n.logger.Debug("notifier: close listener", "schema", n.schema, "error", err)
	}
}

// setState records whether the notifier is running and connected, wakes
// waiting Listen and Unlisten calls, and queues a status change for status
// subscribers when connected changed.
func (n *Notifier) setState(running, connected bool, d *dispatcher) {
	n.mu.Lock()
	changed := n.connected != connected
	n.running, n.connected = running, connected
	n.broadcastLocked()
	n.mu.Unlock()
	if changed {
		d.status(connected)
	}
}

// broadcastLocked wakes everyone waiting on n.changed. n.mu must be held.
func (n *Notifier) broadcastLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// sortedKeys returns the keys of m in order, so that statements run in a
// predictable order.
func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
