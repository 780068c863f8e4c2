package elector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/notifier"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// waitTimeout bounds every wait for something that should happen soon. It
// is generous for slow machines; a passing run never gets near it.
const waitTimeout = 10 * time.Second

// Short durations keep the suite fast. With TTL 2 s a leader steps down
// after 1 s without a successful extension.
const (
	testTTL             = 2 * time.Second
	testElectInterval   = 100 * time.Millisecond
	testReelectInterval = 100 * time.Millisecond
)

var errUnreachable = errors.New("test: database unreachable")

// testConfig returns a fast configuration for a client of db.
func testConfig(db *testfixture.DB, clientID string) *Config {
	return &Config{
		Schema:          db.Schema,
		ClientID:        clientID,
		TTL:             testTTL,
		ElectInterval:   testElectInterval,
		ReelectInterval: testReelectInterval,
	}
}

// startNotifier starts a notifier on db's schema, as a client would have
// one, and stops it at cleanup (after electors registered later).
func startNotifier(t *testing.T, db *testfixture.DB) *notifier.Notifier {
	t.Helper()
	n := notifier.New(func() (driver.Listener, error) { return db.Driver.GetListener(db.Schema) },
		&notifier.Config{Schema: db.Schema})
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start notifier: %v", err)
	}
	t.Cleanup(n.Stop)
	return n
}

// newElector makes an elector and stops it at cleanup.
func newElector(t *testing.T, exec driver.Executor, n *notifier.Notifier, cfg *Config) *Elector {
	t.Helper()
	e, err := New(exec, n, cfg)
	if err != nil {
		t.Fatalf("new elector: %v", err)
	}
	t.Cleanup(e.Stop)
	return e
}

func start(t *testing.T, e *Elector) {
	t.Helper()
	if err := e.Start(context.Background()); err != nil {
		t.Fatalf("start elector %s: %v", e.cfg.ClientID, err)
	}
}

// leaderRow reads river_leader directly, expired or not; nil when empty.
func leaderRow(t *testing.T, db *testfixture.DB) *millracetype.Leader {
	t.Helper()
	var l millracetype.Leader
	err := db.Pool.QueryRow(context.Background(),
		"SELECT leader_id, elected_at, expires_at FROM "+table(db)).Scan(&l.LeaderID, &l.ElectedAt, &l.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		t.Fatalf("read river_leader: %v", err)
	}
	return &l
}

func leaderID(t *testing.T, db *testfixture.DB) string {
	t.Helper()
	if l := leaderRow(t, db); l != nil {
		return l.LeaderID
	}
	return ""
}

func table(db *testfixture.DB) string {
	return pgx.Identifier{db.Schema, "river_leader"}.Sanitize()
}

// execSQL runs a statement on db's pool.
func execSQL(t *testing.T, db *testfixture.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// notifyLeadership sends a payload on the schema's leadership channel, as
// River or an operator would.
func notifyLeadership(t *testing.T, db *testfixture.DB, payload string) {
	t.Helper()
	execSQL(t, db, "SELECT pg_notify($1, $2)", db.Schema+"."+driver.TopicLeadership, payload)
}

// insertLeader writes a leader row by hand whose term expires after
// expiresIn (negative: already expired).
func insertLeader(t *testing.T, db *testfixture.DB, id string, expiresIn time.Duration) {
	t.Helper()
	execSQL(t, db, "INSERT INTO "+table(db)+` (leader_id, elected_at, expires_at)
		VALUES ($1, now() - interval '1 hour', now() + $2::float8 * interval '1 second')`, id, expiresIn.Seconds())
}

// recorder records what one subscriber hears.
type recorder struct {
	ch chan bool
}

func record(e *Elector) *recorder {
	r := &recorder{ch: make(chan bool, 100)}
	e.Subscribe(func(isLeader bool) { r.ch <- isLeader })
	return r
}

// next returns the next change, failing after timeout.
func (r *recorder) next(t *testing.T, timeout time.Duration) bool {
	t.Helper()
	select {
	case v := <-r.ch:
		return v
	default:
	}
	select {
	case v := <-r.ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("no leadership change within %v", timeout)
		return false
	}
}

// expect fails unless the next change is want, within timeout.
func (r *recorder) expect(t *testing.T, want bool, timeout time.Duration) {
	t.Helper()
	if got := r.next(t, timeout); got != want {
		t.Fatalf("leadership change: got %v, want %v", got, want)
	}
}

// expectNone fails if a change arrives within d.
func (r *recorder) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case v := <-r.ch:
		t.Fatalf("unexpected leadership change to %v", v)
	default:
	}
	select {
	case v := <-r.ch:
		t.Fatalf("unexpected leadership change to %v", v)
	case <-time.After(d):
	}
}

// leaderCounter counts, across electors, how many are leaders according to
// what their subscribers heard, and remembers the highest count. A leader's
// subscribers hear false before it resigns and a new leader's hear true
// after it was elected, so the count must never exceed one.
type leaderCounter struct {
	n, max atomic.Int32
}

func (c *leaderCounter) watch(e *Elector) {
	e.Subscribe(func(isLeader bool) {
		if !isLeader {
			c.n.Add(-1)
			return
		}
		v := c.n.Add(1)
		for {
			m := c.max.Load()
			if v <= m || c.max.CompareAndSwap(m, v) {
				return
			}
		}
	})
}

// leaders returns the IDs of the electors that say they lead.
func leaders(es []*Elector) []string {
	var ids []string
	for _, e := range es {
		if e.IsLeader() {
			ids = append(ids, e.cfg.ClientID)
		}
	}
	return ids
}

// flakyExec wraps a real executor, counts leader calls and can make them
// fail or hang, to stand for an unreachable database.
type flakyExec struct {
	driver.Executor

	elects, reelects, resigns atomic.Int32
	electsDone                atomic.Int32 // election attempts that have returned
	failElect                 atomic.Bool
	failReelect               atomic.Bool
	hangReelect               atomic.Bool // block until the call's context ends

	mu        sync.Mutex
	electedAt []time.Time // every time an elect call was made
}

func (f *flakyExec) LeaderAttemptElect(ctx context.Context, p *driver.LeaderElectParams) (*millracetype.Leader, error) {
	f.elects.Add(1)
	f.mu.Lock()
	f.electedAt = append(f.electedAt, time.Now())
	f.mu.Unlock()
	defer f.electsDone.Add(1)
	if f.failElect.Load() {
		return nil, errUnreachable
	}
	return f.Executor.LeaderAttemptElect(ctx, p)
}

func (f *flakyExec) LeaderAttemptReelect(ctx context.Context, p *driver.LeaderReelectParams) (*millracetype.Leader, error) {
	f.reelects.Add(1)
	if f.hangReelect.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.failReelect.Load() {
		return nil, errUnreachable
	}
	return f.Executor.LeaderAttemptReelect(ctx, p)
}

func (f *flakyExec) LeaderResign(ctx context.Context, p *driver.LeaderResignParams) (bool, error) {
	f.resigns.Add(1)
	return f.Executor.LeaderResign(ctx, p)
}

func (f *flakyExec) electTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.electedAt...)
}

// logBuffer is a concurrency-safe sink for a test logger.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func clientID(prefix string, i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
