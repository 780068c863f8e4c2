package liveness

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
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/maintenance"
	"github.com/millrace/millrace/millracetype"
)

func TestMain(m *testing.M) { testdb.Main(m) }

const (
	testInterval  = 100 * time.Millisecond
	testDeadAfter = time.Second
	waitTimeout   = 15 * time.Second
	rescueMessage = "rescued by the liveness test"
)

// verdict is River's rule, as the client gives it.
func verdict(job *millracetype.JobRow) *driver.JobRescue {
	return maintenance.RescueVerdict(job, time.Now().UTC(), rescueMessage, nil, true)
}

type lossLog struct {
	mu       sync.Mutex
	causes   []error
	regained int
}

func (l *lossLog) regain() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.regained++
}

func (l *lossLog) regains() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.regained
}

func (l *lossLog) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.causes = append(l.causes, err)
}

func (l *lossLog) get() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.causes...)
}

func newService(t *testing.T, exec driver.Executor, db *testfixture.DB, id string, losses *lossLog) *Service {
	t.Helper()
	cfg := &Config{Schema: db.Schema, ClientID: id, Interval: testInterval, DeadAfter: testDeadAfter,
		TombstoneAfter: time.Hour, Rescue: verdict}
	if losses != nil {
		cfg.OnLost, cfg.OnRegained = losses.add, losses.regain
	}
	s, err := New(exec, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func start(t *testing.T, s *Service) {
	t.Helper()
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start %s: %v", s.cfg.ClientID, err)
	}
	t.Cleanup(s.Stop)
}

// runningJobs inserts n jobs running attempt 1 under client id.
func runningJobs(t *testing.T, db *testfixture.DB, id string, n int, maxAttempts int) []int64 {
	t.Helper()
	at := time.Now().UTC()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = db.InsertJob(t, &driver.JobInsertFullParams{State: millracetype.JobStateRunning, Attempt: 1, AttemptedAt: &at,
			AttemptedBy: []string{id}, MaxAttempts: maxAttempts}).ID
	}
	return ids
}

func table(db *testfixture.DB) string { return pgx.Identifier{db.Schema, "millrace_client"}.Sanitize() }

func clientRows(t *testing.T, db *testfixture.DB) []string {
	t.Helper()
	var ids []string
	if err := db.Pool.QueryRow(context.Background(), `SELECT coalesce(array_agg(client_id ORDER BY client_id), '{}') FROM `+
		table(db)).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestNewValidates(t *testing.T) {
	db := testfixture.New(t)
	for name, cfg := range map[string]*Config{
		"no client ID":              {Rescue: verdict},
		"no Rescue":                 {ClientID: "a"},
		"negative interval":         {ClientID: "a", Rescue: verdict, Interval: -1},
		"negative dead-after":       {ClientID: "a", Rescue: verdict, DeadAfter: -1},
		"negative tombstone":        {ClientID: "a", Rescue: verdict, TombstoneAfter: -1},
		"dead-after under 2 beats":  {ClientID: "a", Rescue: verdict, Interval: time.Second, DeadAfter: 1500 * time.Millisecond},
		"default dead-after, slow ": {ClientID: "a", Rescue: verdict, Interval: 3 * time.Second},
	} {
		if _, err := New(db.Exec(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New returned %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := New(nil, &Config{ClientID: "a", Rescue: verdict}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil executor: %v, want ErrInvalidConfig", err)
	}
	s, err := New(db.Exec(), &Config{ClientID: "a", Rescue: verdict})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Interval != DefaultInterval || s.cfg.DeadAfter != DefaultDeadAfter || s.cfg.TombstoneAfter != DefaultTombstoneAfter {
		t.Errorf("defaults: %v %v %v", s.cfg.Interval, s.cfg.DeadAfter, s.cfg.TombstoneAfter)
	}
}

// A client that dies (its row stays, no heartbeat) has its running jobs
// rescued by a live one shortly after DeadAfter, following River's rule;
// its tombstone goes after TombstoneAfter.
func TestRescuesTheJobsOfADeadClient(t *testing.T) {
	db := testfixture.New(t)
	dying := newService(t, db.Exec(), db, "dying", nil)
	start(t, dying)
	survivor := newService(t, db.Exec(), db, "survivor", nil)
	survivor.cfg.TombstoneAfter = 2 * time.Second
	start(t, survivor)

	retried := runningJobs(t, db, "dying", 3, 25)
	discarded := runningJobs(t, db, "dying", 1, 1)
	theirs := runningJobs(t, db, "survivor", 2, 25)
	// A job the dying client ran before, running elsewhere now.
	at := time.Now().UTC()
	moved := db.InsertJob(t, &driver.JobInsertFullParams{State: millracetype.JobStateRunning, Attempt: 2, AttemptedAt: &at,
		AttemptedBy: []string{"dying", "survivor"}}).ID

	// Death: the heartbeat stops, the row stays.
	dying.KeepOnStop()
	dying.Stop()
	died := time.Now()
	for _, id := range retried {
		testwait.For(t, waitTimeout, "the dead client's job rescued", func() bool { return db.Job(t, id).State != millracetype.JobStateRunning })
	}
	took := time.Since(died)
	if took < testDeadAfter-testInterval {
		t.Errorf("rescued %v after the last heartbeat, before the client could be dead (%v)", took, testDeadAfter)
	}
	t.Logf("rescued %v after the death (dead-after %v, interval %v)", took, testDeadAfter, testInterval)
	for _, id := range retried {
		j := db.Job(t, id)
		if j.State != millracetype.JobStateRetryable || len(j.Errors) != 1 || j.Errors[0].Error != rescueMessage || j.Attempt != 1 {
			t.Errorf("job %d: state %s, attempt %d, errors %+v; want retryable, attempt 1, the rescue error", id, j.State, j.Attempt, j.Errors)
		}
	}
	testwait.For(t, waitTimeout, "the job out of attempts discarded", func() bool {
		return db.Job(t, discarded[0]).State == millracetype.JobStateDiscarded
	})
	for _, id := range append(theirs, moved) {
		if j := db.Job(t, id); j.State != millracetype.JobStateRunning {
			t.Errorf("job %d of the live client: %s, want running", id, j.State)
		}
	}
	testwait.For(t, waitTimeout, "the tombstone removed", func() bool {
		rows := clientRows(t, db)
		return len(rows) == 1 && rows[0] == "survivor"
	})
}

// The leadership terms a client won before it died are resigned with its
// rescue, so that another client is elected at once; other clients' terms,
// and a term won by the same ID after the death, are left alone.
func TestResignsTheTermsOfADeadClient(t *testing.T) {
	db := testfixture.New(t)
	ctx := context.Background()
	leader := pgx.Identifier{db.Schema, "river_leader"}.Sanitize()
	domains := pgx.Identifier{db.Schema, "millrace_leader"}.Sanitize()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	dying := newService(t, db.Exec(), db, "dying", nil)
	start(t, dying)
	survivor := newService(t, db.Exec(), db, "survivor", nil)
	var deadBeats atomic.Int64 // the survivor's heartbeats that saw a dead row (each starts a rescue pass)
	survivor.beat = func(res *driver.ClientHeartbeatResult, _ error) {
		if res != nil && res.DeadClients {
			deadBeats.Add(1)
		}
	}
	start(t, survivor)
	exec(`INSERT INTO ` + leader + ` (elected_at, expires_at, leader_id) VALUES (now(), now() + interval '1 hour', 'dying')`)
	exec(`INSERT INTO ` + domains + ` (domain, leader_id, elected_at, expires_at) VALUES
		('d1', 'dying', now(), now() + interval '1 hour'), ('d2', 'river-or-other', now(), now() + interval '1 hour')`)
	count := func(sql string) int {
		t.Helper()
		var n int
		if err := db.Pool.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	dying.KeepOnStop()
	dying.Stop()
	died := time.Now()
	testwait.For(t, waitTimeout, "the dead client's terms resigned", func() bool {
		return count(`SELECT count(*) FROM `+leader) == 0 && count(`SELECT count(*) FROM `+domains+` WHERE domain = 'd1'`) == 0
	})
	if took := time.Since(died); took < testDeadAfter-testInterval {
		t.Errorf("terms resigned %v after the last heartbeat, before the client could be dead (%v)", took, testDeadAfter)
	}
	if n := count(`SELECT count(*) FROM ` + domains + ` WHERE domain = 'd2' AND leader_id = 'river-or-other'`); n != 1 {
		t.Errorf("another client's domain term was touched (%d rows left, want 1)", n)
	}
	// A term the ID wins after its death (a new incarnation) stays, while
	// the dead row is still there and rescue passes go on.
	exec(`INSERT INTO ` + leader + ` (elected_at, expires_at, leader_id) VALUES (now(), now() + interval '1 hour', 'dying')`)
	n0 := deadBeats.Load()
	testwait.For(t, waitTimeout, "more rescue passes", func() bool { return deadBeats.Load() >= n0+5 })
	if n := count(`SELECT count(*) FROM ` + leader + ` WHERE leader_id = 'dying'`); n != 1 {
		t.Errorf("a term won after the death was resigned")
	}
}

// A row found dead by the database (the client was partitioned, frozen)
// loses the lease: OnLost once, then a new registration.
func TestLeaseLostWhenTheDatabaseHasItDead(t *testing.T) {
	db := testfixture.New(t)
	var losses lossLog
	s := newService(t, db.Exec(), db, "frozen", &losses)
	var beats atomic.Int64
	s.beat = func(*driver.ClientHeartbeatResult, error) { beats.Add(1) }
	start(t, s)
	first := s.Lease()
	if _, err := db.Pool.Exec(context.Background(), `UPDATE `+table(db)+` SET heartbeat_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, waitTimeout, "a new lease", func() bool { return !s.Lease().StartedAt.Equal(first.StartedAt) })
	got := losses.get()
	if len(got) != 1 || !errors.Is(got[0], ErrLeaseLost) {
		t.Fatalf("OnLost calls: %v, want one with ErrLeaseLost", got)
	}
	if n := losses.regains(); n != 1 {
		t.Errorf("OnRegained called %d times after the new registration, want 1", n)
	}
	// The new lease lives on; no second loss.
	n := beats.Load()
	testwait.For(t, waitTimeout, "more heartbeats", func() bool { return beats.Load() >= n+3 })
	if got := losses.get(); len(got) != 1 {
		t.Fatalf("OnLost calls after the new registration: %v", got)
	}
}

// failingExec fails heartbeats while fail is set.
type failingExec struct {
	driver.Executor
	fail atomic.Bool
}

var errUnreachable = errors.New("test: database unreachable")

func (f *failingExec) ClientHeartbeat(ctx context.Context, p *driver.ClientHeartbeatParams) (*driver.ClientHeartbeatResult, error) {
	if f.fail.Load() {
		return nil, errUnreachable
	}
	return f.Executor.ClientHeartbeat(ctx, p)
}

// A client whose heartbeats fail for DeadAfter gives its lease up itself,
// before the database can have it dead, and only then.
func TestLeaseLostWhenHeartbeatsFail(t *testing.T) {
	db := testfixture.New(t)
	exec := &failingExec{Executor: db.Exec()}
	var losses lossLog
	s := newService(t, exec, db, "cut_off", &losses)
	var failed atomic.Int64
	s.beat = func(_ *driver.ClientHeartbeatResult, err error) {
		if err != nil {
			failed.Add(1)
		}
	}
	start(t, s)
	exec.fail.Store(true)
	cut := time.Now()
	testwait.For(t, waitTimeout, "the lease given up", func() bool { return len(losses.get()) > 0 })
	if d := time.Since(cut); d < testDeadAfter-testInterval {
		t.Errorf("lease given up %v after heartbeats began to fail, before DeadAfter %v", d, testDeadAfter)
	}
	if n := failed.Load(); n < 5 {
		t.Errorf("%d failed heartbeats before the loss, want about %d", n, int(testDeadAfter/testInterval))
	}
	// Once the database has the row dead too, the heartbeats come back:
	// a new lease, and no second OnLost for the same loss.
	testwait.For(t, waitTimeout, "the row dead by the database's clock", func() bool {
		var dead bool
		if err := db.Pool.QueryRow(context.Background(), `SELECT now() - heartbeat_at > $1::bigint * interval '1 microsecond' FROM `+
			table(db)+` WHERE client_id = 'cut_off'`, testDeadAfter.Microseconds()).Scan(&dead); err != nil {
			t.Fatal(err)
		}
		return dead
	})
	exec.fail.Store(false)
	first := s.Lease()
	testwait.For(t, waitTimeout, "a new lease", func() bool { return !s.Lease().StartedAt.Equal(first.StartedAt) })
	if got := losses.get(); len(got) != 1 || !strings.Contains(got[0].Error(), "last successful heartbeat") {
		t.Fatalf("OnLost calls: %v, want one, for the failing heartbeats", got)
	}
	if n := losses.regains(); n != 1 {
		t.Errorf("OnRegained called %d times after the new lease, want 1", n)
	}
}

// Start rescues what an earlier process with the same ID left running;
// Stop removes the row, unless KeepOnStop.
func TestOrphansAtStartAndDeregistration(t *testing.T) {
	db := testfixture.New(t)
	orphans := runningJobs(t, db, "stable_id", 2, 25)
	other := runningJobs(t, db, "someone_else", 1, 25)
	s := newService(t, db.Exec(), db, "stable_id", nil)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range orphans {
		if j := db.Job(t, id); j.State != millracetype.JobStateRetryable {
			t.Errorf("orphan %d after Start: %s, want retryable", id, j.State)
		}
	}
	if j := db.Job(t, other[0]); j.State != millracetype.JobStateRunning {
		t.Errorf("another client's job after Start: %s, want running", j.State)
	}
	if rows := clientRows(t, db); len(rows) != 1 || rows[0] != "stable_id" {
		t.Fatalf("rows after Start: %v", rows)
	}
	s.Stop()
	if rows := clientRows(t, db); len(rows) != 0 {
		t.Fatalf("rows after Stop: %v, want none", rows)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.KeepOnStop()
	s.Stop()
	if rows := clientRows(t, db); len(rows) != 1 {
		t.Fatalf("rows after Stop with KeepOnStop: %v, want the client's", rows)
	}
}

// Registration fails cleanly on a schema without the millrace line.
func TestStartWithoutTable(t *testing.T) {
	db := testfixture.New(t)
	if _, err := db.Pool.Exec(context.Background(), `DROP TABLE `+table(db)); err != nil {
		t.Fatal(err)
	}
	s := newService(t, db.Exec(), db, "a", nil)
	stopped := s.Stopped() // taken before Start: this run's channel
	err := s.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "millrace_client") {
		t.Fatalf("Start without the table: %v, want an error naming millrace_client", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("a failed Start left the service running")
	}
}

// BenchmarkHeartbeat measures one heartbeat statement (a client sends one
// per HeartbeatInterval) with 100 other live clients in the table.
func BenchmarkHeartbeat(b *testing.B) {
	db := testfixture.New(b)
	ctx := context.Background()
	exec := db.Exec()
	var lease *driver.ClientLease
	for i := range 101 {
		res, err := exec.ClientRegister(ctx, &driver.ClientRegisterParams{Schema: db.Schema, ClientID: fmt.Sprintf("c%03d", i), HeartbeatTimeout: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		lease = res.Lease
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := exec.ClientHeartbeat(ctx, &driver.ClientHeartbeatParams{Schema: db.Schema, Lease: lease})
		if err != nil || !res.Alive || res.DeadClients {
			b.Fatalf("heartbeat: %+v, %v", res, err)
		}
	}
}

// The orphan check rescues what the database has running under the client
// but the client does not know, once older than DeadAfter; jobs it knows,
// and young ones (a fetch whose answer is on its way), stay.
func TestOrphansOfALiveClient(t *testing.T) {
	db := testfixture.New(t)
	ctx := context.Background()
	old := time.Now().Add(-time.Minute)
	insert := func(at time.Time) int64 {
		return db.InsertJob(t, &driver.JobInsertFullParams{State: millracetype.JobStateRunning, Attempt: 1, AttemptedAt: &at,
			AttemptedBy: []string{"self"}, MaxAttempts: 25}).ID
	}
	s := newService(t, db.Exec(), db, "self", nil)
	s.cfg.OrphanInterval = 2 * testInterval
	s.cfg.OrphanMinAge = 30 * time.Second
	var known sync.Map
	s.cfg.Owns = func(id int64) bool { _, ok := known.Load(id); return ok }
	start(t, s) // before the jobs: Start itself rescues what is there
	lost, kept := insert(old), insert(old)
	known.Store(kept, true)
	// A young one: attempted now by the database's clock.
	var young int64
	if err := db.Pool.QueryRow(ctx, `UPDATE `+pgx.Identifier{db.Schema, "river_job"}.Sanitize()+` SET attempted_at = now() WHERE id = $1 RETURNING id`,
		insert(old)).Scan(&young); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, waitTimeout, "the orphan rescued", func() bool { return db.Job(t, lost).State == millracetype.JobStateRetryable })
	// Three more checks' time: the others stay.
	time.Sleep(3 * s.cfg.OrphanInterval) // the absence of a rescue can only be waited for
	for _, id := range []int64{kept, young} {
		if j := db.Job(t, id); j.State != millracetype.JobStateRunning {
			t.Errorf("job %d: %s, want running (known, or attempted less than DeadAfter ago)", id, j.State)
		}
	}
}

// Start waits for a live row of its ID to die (a previous run of this
// process) and takes the ID then; a row kept alive by another process
// makes Start fail with ErrClientIDInUse after DeadAfter and two beats.
func TestStartWithTheIDInUse(t *testing.T) {
	db := testfixture.New(t)
	ctx := context.Background()
	holder := newService(t, db.Exec(), db, "shared_id", nil)
	start(t, holder)
	s := newService(t, db.Exec(), db, "shared_id", nil)
	begin := time.Now()
	err := s.Start(ctx)
	if !errors.Is(err, ErrClientIDInUse) {
		t.Fatalf("Start with the ID held by a live client: %v, want ErrClientIDInUse", err)
	}
	if d := time.Since(begin); d < testDeadAfter {
		t.Errorf("Start gave up after %v, before the holder could have died (%v)", d, testDeadAfter)
	}
	if rows := clientRows(t, db); len(rows) != 1 {
		t.Fatalf("rows: %v", rows)
	}
	// The holder dies (its heartbeat stops, its row stays): Start waits
	// for the death and takes the ID.
	holder.KeepOnStop()
	holder.Stop()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start once the holder stopped heartbeating: %v", err)
	}
	t.Cleanup(s.Stop)
}
