package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testlog"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// waitTimeout bounds every wait for something the notifier should do soon.
// It is generous so that a slow CI machine does not fail the suite; a
// passing run never waits anywhere near that long.
const waitTimeout = 10 * time.Second

var (
	errFactory = errors.New("test: listener factory fails")
	errConnect = errors.New("test: connect fails")
	errListen  = errors.New("test: listen fails")
	errPing    = errors.New("test: ping fails")
)

// control makes the listeners of one notifier (real pgxv5 listeners, each
// wrapped in a testListener) and lets a test make them fail and see what
// they did.
type control struct {
	drv    *pgxv5.Driver
	schema string

	failFactory  atomic.Bool
	failConnect  atomic.Bool
	failListen   atomic.Bool
	pingFailures atomic.Int32 // the next this many Pings fail

	// listenGate, when set, makes Listen wait until it is closed (or its
	// context ends).
	listenGate  atomic.Pointer[chan struct{}]
	gateReached chan struct{} // receives when a Listen starts waiting at the gate

	open     atomic.Int32 // listeners connected and not yet closed
	connects atomic.Int32 // successful Connects

	mu  sync.Mutex
	ops []string // "listen t", "unlisten t", in order
}

func (c *control) newListener() (driver.Listener, error) {
	if c.failFactory.Load() {
		return nil, errFactory
	}
	l, err := c.drv.GetListener(c.schema)
	if err != nil {
		return nil, err
	}
	return &testListener{Listener: l, c: c}, nil
}

func (c *control) record(op string) {
	c.mu.Lock()
	c.ops = append(c.ops, op)
	c.mu.Unlock()
}

func (c *control) recorded() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ops)
}

// testListener wraps a real listener. The notifier uses a listener from one
// goroutine at a time, so connected needs no lock.
type testListener struct {
	driver.Listener
	c         *control
	connected bool
}

func (l *testListener) Connect(ctx context.Context) error {
	if l.c.failConnect.Load() {
		return errConnect
	}
	if err := l.Listener.Connect(ctx); err != nil {
		return err
	}
	l.connected = true
	l.c.open.Add(1)
	l.c.connects.Add(1)
	return nil
}

func (l *testListener) Close(ctx context.Context) error {
	if l.connected {
		l.connected = false
		l.c.open.Add(-1)
	}
	return l.Listener.Close(ctx)
}

func (l *testListener) Listen(ctx context.Context, topic string) error {
	if l.c.failListen.Load() {
		return errListen
	}
	if gate := l.c.listenGate.Load(); gate != nil {
		select {
		case l.c.gateReached <- struct{}{}:
		default:
		}
		select {
		case <-*gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := l.Listener.Listen(ctx, topic); err != nil {
		return err
	}
	l.c.record("listen " + topic)
	return nil
}

func (l *testListener) Unlisten(ctx context.Context, topic string) error {
	if err := l.Listener.Unlisten(ctx, topic); err != nil {
		return err
	}
	l.c.record("unlisten " + topic)
	return nil
}

func (l *testListener) Ping(ctx context.Context) error {
	if l.c.pingFailures.Load() > 0 {
		l.c.pingFailures.Add(-1)
		return errPing
	}
	return l.Listener.Ping(ctx)
}

// env is one test's notifier on its own schema.
type env struct {
	t      *testing.T
	schema string
	pool   *pgxpool.Pool
	c      *control
	n      *Notifier
	logs   *testlog.Buffer
}

// newEnv makes a notifier on a fresh schema with a fast reconnect backoff
// (unless cfg sets one), stopped at cleanup. It is not started.
func newEnv(t *testing.T, cfg *Config) *env {
	t.Helper()
	schema, pool := testdb.NewSchema(t)
	return newEnvOn(t, schema, pool, cfg)
}

func newEnvOn(t *testing.T, schema string, pool *pgxpool.Pool, cfg *Config) *env {
	t.Helper()
	e := &env{t: t, schema: schema, pool: pool, logs: &testlog.Buffer{}}
	e.c = &control{drv: pgxv5.New(pool), schema: schema, gateReached: make(chan struct{}, 1)}

	var config Config
	if cfg != nil {
		config = *cfg
	}
	config.Schema = schema
	config.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if config.ReconnectBackoff == nil {
		config.ReconnectBackoff = func(int) time.Duration { return 10 * time.Millisecond }
	}
	e.n = New(e.c.newListener, &config)
	t.Cleanup(func() {
		e.n.Stop()
		if open := e.c.open.Load(); open != 0 {
			t.Errorf("%d listener connections left open after Stop", open)
		}
	})
	return e
}

func (e *env) start() {
	e.t.Helper()
	if err := e.n.Start(ctxFor(e.t)); err != nil {
		e.t.Fatalf("Start: %v", err)
	}
}

// notify sends a notification on the env's schema, from the pool.
func (e *env) notify(topic, payload string) {
	e.t.Helper()
	notifyOn(e.t, e.pool, e.schema, topic, payload)
}

func notifyOn(t *testing.T, pool *pgxpool.Pool, schema, topic, payload string) {
	t.Helper()
	if _, err := pool.Exec(ctxFor(t), "SELECT pg_notify($1, $2)", schema+"."+topic, payload); err != nil {
		t.Fatalf("pg_notify %s.%s: %v", schema, topic, err)
	}
}

// listen subscribes a collector to topic.
func (e *env) listen(topic string) (*Subscription, *collector) {
	e.t.Helper()
	col := newCollector()
	sub, err := e.n.Listen(ctxFor(e.t), topic, col.fn)
	if err != nil {
		e.t.Fatalf("Listen %q: %v", topic, err)
	}
	return sub, col
}

// listenerPID returns the backend pid of the env's listener connection,
// found in pg_stat_activity by its last statement, a LISTEN or UNLISTEN of a
// channel of the env's schema. It retries until waitTimeout.
func (e *env) listenerPID() int32 {
	e.t.Helper()
	pattern := `%LISTEN "` + e.schema + `.%`
	deadline := time.Now().Add(waitTimeout)
	for {
		var pids []int32
		rows, err := e.pool.Query(ctxFor(e.t),
			`SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1`, pattern)
		if err == nil {
			for rows.Next() {
				var pid int32
				if err = rows.Scan(&pid); err != nil {
					break
				}
				pids = append(pids, pid)
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		if err != nil {
			e.t.Fatalf("find listener backend: %v", err)
		}
		if len(pids) == 1 {
			return pids[0]
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("find listener backend: %d candidates (want 1) after %v", len(pids), waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// terminate ends a backend from another connection.
func (e *env) terminate(pid int32) {
	e.t.Helper()
	var ok bool
	if err := e.pool.QueryRow(ctxFor(e.t), "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		e.t.Fatalf("pg_terminate_backend(%d): ok=%v err=%v", pid, ok, err)
	}
}

// collector is a subscriber that records payloads on a channel.
type collector struct {
	ch chan string
}

func newCollector() *collector { return &collector{ch: make(chan string, 10_000)} }

func (c *collector) fn(_, payload string) {
	select {
	case c.ch <- payload:
	default:
		panic("collector full")
	}
}

// next returns the next payload, failing the test after waitTimeout.
func (c *collector) next(t *testing.T) string {
	t.Helper()
	select {
	case p := <-c.ch:
		return p
	case <-time.After(waitTimeout):
		t.Fatalf("no notification within %v", waitTimeout)
		return ""
	}
}

// expect checks that the next payloads are want, in order.
func (c *collector) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := c.next(t); got != w {
			t.Fatalf("got payload %q, want %q", got, w)
		}
	}
}

// expectNone checks that nothing has been received so far. Callers make
// sure first that anything that could have been received has been (by
// waiting for a later notification that is dispatched after it).
func (c *collector) expectNone(t *testing.T) {
	t.Helper()
	select {
	case p := <-c.ch:
		t.Fatalf("unexpected payload %q", p)
	default:
	}
}

// statusRecorder records status changes.
type statusRecorder struct {
	ch chan bool
}

func (e *env) onStatus() *statusRecorder {
	r := &statusRecorder{ch: make(chan bool, 100)}
	unsubscribe := e.n.OnStatus(func(connected bool) { r.ch <- connected })
	e.t.Cleanup(unsubscribe)
	return r
}

func (r *statusRecorder) expect(t *testing.T, want ...bool) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-r.ch:
			if got != w {
				t.Fatalf("status %v, want %v", got, w)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("no status change (want %v) within %v", w, waitTimeout)
		}
	}
}

func (r *statusRecorder) expectNone(t *testing.T) {
	t.Helper()
	select {
	case got := <-r.ch:
		t.Fatalf("unexpected status %v", got)
	default:
	}
}

// ctxFor returns a context that ends when the test does or after a minute.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func payload(i int) string { return fmt.Sprintf("%d", i) }
