package elector

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/notifier"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
)

func TestNewValidatesAndDefaults(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	exec := db.Exec()

	e, err := New(exec, nil, &Config{ClientID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if e.cfg.TTL != DefaultTTL || e.cfg.ElectInterval != DefaultElectInterval || e.cfg.ReelectInterval != DefaultReelectInterval {
		t.Errorf("defaults: got TTL %v, ElectInterval %v, ReelectInterval %v", e.cfg.TTL, e.cfg.ElectInterval, e.cfg.ReelectInterval)
	}
	if e.stepDownAfter != 14*time.Second {
		t.Errorf("step-down time with the default TTL: got %v, want 14s", e.stepDownAfter)
	}
	if e.cfg.Logger == nil {
		t.Error("no default logger")
	}
	for i := range 100 {
		if w := e.electWait(); w < 5*time.Second || w > 6*time.Second {
			t.Fatalf("wait %d between election attempts is %v, want 5-6 s", i, w)
		}
	}

	for _, tc := range []struct {
		name string
		cfg  *Config
		nilX bool
		want string
	}{
		{"nil executor", &Config{ClientID: "c"}, true, "nil executor"},
		{"nil config", nil, false, "nil config"},
		{"no client ID", &Config{}, false, "ClientID is required"},
		{"client ID too long", &Config{ClientID: strings.Repeat("é", 128)}, false, "at most 127"},
		{"negative TTL", &Config{ClientID: "c", TTL: -1}, false, "TTL must not be negative"},
		{"negative elect interval", &Config{ClientID: "c", ElectInterval: -1}, false, "ElectInterval must not be negative"},
		{"negative reelect interval", &Config{ClientID: "c", ReelectInterval: -1}, false, "ReelectInterval must not be negative"},
		{"reelect not shorter than step-down", &Config{ClientID: "c", TTL: 6 * time.Second}, false, "must be shorter"},
		{"short TTL", &Config{ClientID: "c", TTL: time.Second, ReelectInterval: 500 * time.Millisecond}, false, "must be shorter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := exec
			if tc.nilX {
				x = nil
			}
			_, err := New(x, nil, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}

	if _, err := New(exec, nil, &Config{ClientID: strings.Repeat("é", 127)}); err != nil {
		t.Errorf("127-character client ID: %v", err)
	}
	short, err := New(exec, nil, &Config{ClientID: "c", TTL: time.Second, ReelectInterval: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if short.stepDownAfter != 500*time.Millisecond {
		t.Errorf("step-down time with TTL 1s: got %v, want 500ms", short.stepDownAfter)
	}
}

func TestSingleElectorLeadsAndResignsAtStop(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	n := startNotifier(t, db)
	e := newElector(t, db.Exec(), n, testConfig(db, "solo"))
	rec := record(e)

	if e.IsLeader() {
		t.Fatal("leader before Start")
	}
	start(t, e)
	rec.expect(t, true, waitTimeout)
	if !e.IsLeader() {
		t.Fatal("subscribers told true but IsLeader is false")
	}
	row := leaderRow(t, db)
	if row == nil || row.LeaderID != "solo" {
		t.Fatalf("river_leader row: got %+v, want leader_id solo", row)
	}
	if ttl := row.ExpiresAt.Sub(row.ElectedAt); ttl != testTTL {
		t.Errorf("term length: got %v, want %v", ttl, testTTL)
	}

	e.Stop()
	rec.expect(t, false, 0) // delivered before Stop returned
	if e.IsLeader() {
		t.Error("IsLeader after Stop")
	}
	if row := leaderRow(t, db); row != nil {
		t.Errorf("river_leader row left after Stop: %+v", row)
	}
	rec.expectNone(t, 0)
}

func TestReelectExtendsTerm(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	e := newElector(t, db.Exec(), nil, testConfig(db, "keeper"))
	rec := record(e)
	start(t, e)
	rec.expect(t, true, waitTimeout)

	first := leaderRow(t, db)
	// Each extension moves expires_at on, keeping the term (elected_at).
	for range 2 {
		prev := leaderRow(t, db)
		testwait.Until(t, waitTimeout, func() bool {
			r := leaderRow(t, db)
			return r != nil && r.ExpiresAt.After(prev.ExpiresAt)
		}, "expires_at moves past %v", prev.ExpiresAt)
	}
	last := leaderRow(t, db)
	if last.LeaderID != "keeper" || !last.ElectedAt.Equal(first.ElectedAt) {
		t.Errorf("term changed while being extended: first %+v, last %+v", first, last)
	}
	if !e.IsLeader() {
		t.Error("no longer leader")
	}
	rec.expectNone(t, 0)
}

func TestOneLeaderAmongMany(t *testing.T) {
	t.Parallel()
	for _, count := range []int{2, 3} {
		t.Run(clientID("electors", count), func(t *testing.T) {
			t.Parallel()
			db := testfixture.New(t)
			var counter leaderCounter
			electors := make([]*Elector, count)
			for i := range electors {
				cfg := testConfig(db, clientID("node", i))
				// Followers retry by interval only every 5-6 s: a failover
				// faster than that comes from the resigned notification.
				cfg.ElectInterval = DefaultElectInterval
				electors[i] = newElector(t, db.Exec(), startNotifier(t, db), cfg)
				counter.watch(electors[i])
			}
			for _, e := range electors {
				start(t, e)
			}

			running := slices.Clone(electors)
			for len(running) > 0 {
				testwait.Until(t, waitTimeout, func() bool { return len(leaders(running)) == 1 }, "one of %d electors leads", len(running))
				leader := leaders(running)[0]

				// Over several extensions: the same one leader, and it is
				// the one in the database.
				for range 10 {
					if got := leaders(running); len(got) != 1 || got[0] != leader {
						t.Fatalf("leaders: got %v, want [%s]", got, leader)
					}
					if id := leaderID(t, db); id != leader {
						t.Fatalf("river_leader has %q, the electors say %q", id, leader)
					}
					time.Sleep(10 * time.Millisecond)
				}

				i := slices.IndexFunc(running, func(e *Elector) bool { return e.cfg.ClientID == leader })
				stopping := running[i]
				running = slices.Delete(running, i, i+1)
				stoppedAt := time.Now()
				stopping.Stop()
				if stopping.IsLeader() {
					t.Fatalf("%s still leader after Stop", leader)
				}
				if len(running) == 0 {
					break
				}
				testwait.Until(t, waitTimeout, func() bool { return len(leaders(running)) == 1 }, "a new leader after %s stopped", leader)
				failover := time.Since(stoppedAt)
				t.Logf("failover from %s to %s took %v", leader, leaders(running)[0], failover)
				if failover > time.Second {
					t.Errorf("failover took %v; the resigned notification should make it well under the 5 s interval", failover)
				}
			}

			if m := counter.max.Load(); m != 1 {
				t.Errorf("at most %d electors led at once; want exactly 1", m)
			}
			if c := counter.n.Load(); c != 0 {
				t.Errorf("%d electors still told leader after all stopped", c)
			}
			if row := leaderRow(t, db); row != nil {
				t.Errorf("river_leader row left after all stopped: %+v", row)
			}
		})
	}
}

func TestChurnNeverTwoLeaders(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	var counter leaderCounter
	electors := make([]*Elector, 3)
	for i := range electors {
		electors[i] = newElector(t, db.Exec(), startNotifier(t, db), testConfig(db, clientID("churn", i)))
		counter.watch(electors[i])
		start(t, electors[i])
	}
	for round := range 8 {
		testwait.Until(t, waitTimeout, func() bool { return len(leaders(electors)) == 1 }, "one leader in round %d", round)
		leader := leaders(electors)[0]
		for _, e := range electors {
			if e.cfg.ClientID == leader {
				e.Stop()
				start(t, e)
			}
		}
	}
	if m := counter.max.Load(); m != 1 {
		t.Errorf("at most %d electors led at once; want exactly 1", m)
	}
}

func TestLeadershipLostWhenRowDeleted(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	e := newElector(t, db.Exec(), startNotifier(t, db), testConfig(db, "victim"))
	rec := record(e)
	start(t, e)
	rec.expect(t, true, waitTimeout)
	first := leaderRow(t, db)

	execSQL(t, db, "DELETE FROM "+table(db))
	rec.expect(t, false, waitTimeout)
	if e.IsLeader() {
		t.Error("IsLeader after losing the term")
	}
	// Nobody else wants it: a later election gives it a new term.
	rec.expect(t, true, waitTimeout)
	second := leaderRow(t, db)
	if second == nil || second.LeaderID != "victim" || second.ElectedAt.Equal(first.ElectedAt) {
		t.Errorf("after re-election: got %+v, want a new term of victim (the old began %v)", second, first.ElectedAt)
	}
}

func TestLeadershipLostWhenRowReplaced(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	fx := &flakyExec{Executor: db.Exec()}
	e := newElector(t, fx, startNotifier(t, db), testConfig(db, "usurped"))
	rec := record(e)
	start(t, e)
	rec.expect(t, true, waitTimeout)

	execSQL(t, db, "UPDATE "+table(db)+" SET leader_id = 'intruder', elected_at = now(), expires_at = now() + interval '1 hour'")
	rec.expect(t, false, waitTimeout)
	if e.IsLeader() {
		t.Error("IsLeader after the term was taken over")
	}

	// It follows: it keeps trying, and keeps losing, to the intruder.
	elects := fx.elects.Load()
	testwait.Until(t, waitTimeout, func() bool { return fx.elects.Load() >= elects+3 }, "three more election attempts")
	rec.expectNone(t, 0)
	if id := leaderID(t, db); id != "intruder" {
		t.Errorf("river_leader has %q, want intruder", id)
	}

	// Stopping a follower resigns nothing: the intruder's row stays.
	resigns := fx.resigns.Load()
	e.Stop()
	if got := fx.resigns.Load(); got != resigns {
		t.Errorf("a follower resigned at Stop (%d resign calls)", got-resigns)
	}
	if id := leaderID(t, db); id != "intruder" {
		t.Errorf("after Stop river_leader has %q, want intruder", id)
	}
	rec.expectNone(t, 0)
}

func TestRequestResign(t *testing.T) {
	t.Parallel()

	t.Run("another client takes over", func(t *testing.T) {
		t.Parallel()
		db := testfixture.New(t)
		cfgA, cfgB := testConfig(db, "first"), testConfig(db, "second")
		// Long follower intervals: B's take-over within a second comes from
		// the resigned notification, and A does not try again meanwhile.
		cfgA.ElectInterval, cfgB.ElectInterval = DefaultElectInterval, DefaultElectInterval
		a := newElector(t, db.Exec(), startNotifier(t, db), cfgA)
		b := newElector(t, db.Exec(), startNotifier(t, db), cfgB)
		recA, recB := record(a), record(b)
		start(t, a)
		recA.expect(t, true, waitTimeout)
		start(t, b)

		sent := time.Now()
		notifyLeadership(t, db, `{"action":"request_resign","leader_id":""}`)
		recA.expect(t, false, waitTimeout)
		recB.expect(t, true, waitTimeout)
		took := time.Since(sent)
		t.Logf("request_resign to new leader: %v", took)
		if took > time.Second {
			t.Errorf("take-over took %v, want well under the 5 s interval", took)
		}
		if id := leaderID(t, db); id != "second" {
			t.Errorf("river_leader has %q, want second", id)
		}
		if a.IsLeader() || !b.IsLeader() {
			t.Errorf("IsLeader: first %v, second %v", a.IsLeader(), b.IsLeader())
		}
	})

	t.Run("alone, it resigns and is elected again later", func(t *testing.T) {
		t.Parallel()
		db := testfixture.New(t)
		cfg := testConfig(db, "lonely")
		cfg.ElectInterval = 300 * time.Millisecond
		fx := &flakyExec{Executor: db.Exec()}
		e := newElector(t, fx, startNotifier(t, db), cfg)
		rec := record(e)
		start(t, e)
		rec.expect(t, true, waitTimeout)
		first := leaderRow(t, db)

		notifyLeadership(t, db, `{"action":"request_resign","leader_id":""}`)
		rec.expect(t, false, waitTimeout)
		// Subscribers hear false first, then the term is resigned.
		testwait.Until(t, waitTimeout, func() bool { return fx.resigns.Load() == 1 }, "a resignation")
		rec.expect(t, true, waitTimeout)
		if second := leaderRow(t, db); second == nil || second.ElectedAt.Equal(first.ElectedAt) {
			t.Errorf("after re-election: got %+v, want a new term", second)
		}
	})

	t.Run("a follower ignores it", func(t *testing.T) {
		t.Parallel()
		db := testfixture.New(t)
		insertLeader(t, db, "elsewhere", time.Hour)
		fx := &flakyExec{Executor: db.Exec()}
		cfg := testConfig(db, "bystander")
		cfg.ElectInterval = time.Minute
		e := newElector(t, fx, startNotifier(t, db), cfg)
		rec := record(e)
		start(t, e)
		testwait.Until(t, waitTimeout, func() bool { return fx.electsDone.Load() == 1 }, "the first election attempt")

		notifyLeadership(t, db, `{"action":"request_resign","leader_id":""}`)
		// A follower that took the request as its own would resign, or try
		// to elect: neither may happen.
		rec.expectNone(t, 200*time.Millisecond)
		if fx.resigns.Load() != 0 || fx.elects.Load() != 1 {
			t.Errorf("follower reacted to request_resign: %d resigns, %d elects", fx.resigns.Load(), fx.elects.Load())
		}
		if id := leaderID(t, db); id != "elsewhere" {
			t.Errorf("river_leader has %q, want elsewhere", id)
		}
	})
}

func TestStepDownWhenDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cut  func(fx *flakyExec)
	}{
		{"re-election fails", func(fx *flakyExec) { fx.failReelect.Store(true) }},
		{"re-election hangs", func(fx *flakyExec) { fx.hangReelect.Store(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := testfixture.New(t)
			fx := &flakyExec{Executor: db.Exec()}
			cfg := testConfig(db, "cut-off")
			cfg.ElectInterval = time.Minute // no new term after stepping down
			var logs logBuffer
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			e := newElector(t, fx, nil, cfg)
			rec := record(e)
			start(t, e)
			rec.expect(t, true, waitTimeout)
			// Let a few extensions succeed first.
			testwait.Until(t, waitTimeout, func() bool { return fx.reelects.Load() >= 3 }, "three extensions")

			before := fx.reelects.Load()
			tc.cut(fx)
			broken := time.Now()
			rec.expect(t, false, waitTimeout)
			took := time.Since(broken)
			t.Logf("stepped down %v after the database became unreachable", took)
			if took >= testTTL {
				t.Errorf("stepped down after %v, want within the TTL (%v)", took, testTTL)
			}
			// The last confirmed extension was at most one interval (plus
			// a round trip) before the break; the term is good for TTL - 1 s
			// after it, and the elector must use it rather than give up at
			// the first error.
			if earliest := stepDownTime(testTTL) - 3*testReelectInterval; took < earliest {
				t.Errorf("stepped down after %v, before its term could have ended (%v)", took, earliest)
			}
			if e.IsLeader() {
				t.Error("IsLeader after stepping down")
			}
			if calls := fx.reelects.Load() - before; calls < 1 || calls > 20 {
				t.Errorf("%d re-election attempts while unreachable; want a few, at the interval", calls)
			}
			// It tried to give the abandoned term back (the double lets
			// resignations through), so the row is gone.
			testwait.Until(t, waitTimeout, func() bool { return fx.resigns.Load() == 1 }, "a resignation of the abandoned term")
			testwait.Until(t, waitTimeout, func() bool { return leaderRow(t, db) == nil }, "the abandoned row is deleted")
			if !strings.Contains(logs.String(), "stepping down") {
				t.Errorf("step-down not logged:\n%s", logs.String())
			}
			rec.expectNone(t, 0)
		})
	}
}

func TestDatabaseErrorsAreRetriedAtTheInterval(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	fx := &flakyExec{Executor: db.Exec()}
	fx.failElect.Store(true)
	var logs logBuffer
	cfg := testConfig(db, "patient")
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	e := newElector(t, fx, startNotifier(t, db), cfg)
	rec := record(e)
	start(t, e)

	testwait.Until(t, waitTimeout, func() bool { return fx.elects.Load() >= 3 }, "three failed election attempts")
	times := fx.electTimes()
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < testElectInterval {
			t.Errorf("attempt %d came %v after the previous one; want at least the interval %v", i, gap, testElectInterval)
		}
	}
	if e.IsLeader() {
		t.Error("leader without a successful election")
	}
	if !strings.Contains(logs.String(), errUnreachable.Error()) {
		t.Errorf("database error not logged:\n%s", logs.String())
	}

	fx.failElect.Store(false)
	rec.expect(t, true, waitTimeout)
}

func TestResignedNotifications(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	insertLeader(t, db, "other", time.Hour)
	fx := &flakyExec{Executor: db.Exec()}
	cfg := testConfig(db, "listener")
	cfg.ElectInterval = time.Minute // only notifications prompt an attempt
	e := newElector(t, fx, startNotifier(t, db), cfg)
	rec := record(e)
	start(t, e)
	testwait.Until(t, waitTimeout, func() bool { return fx.electsDone.Load() == 1 }, "the first election attempt")

	// The row goes without a notice; then notices that must not prompt an
	// attempt: our own resignation, garbage, an unknown action.
	execSQL(t, db, "DELETE FROM "+table(db))
	notifyLeadership(t, db, `{"leader_id" : "listener", "action" : "resigned"}`)
	notifyLeadership(t, db, `not json`)
	notifyLeadership(t, db, `{"action":"promoted","leader_id":"other"}`)
	rec.expectNone(t, 200*time.Millisecond)
	if got := fx.elects.Load(); got != 1 {
		t.Fatalf("election attempts after ignorable notices: got %d, want 1", got)
	}

	// Another leader's resignation prompts an attempt at once.
	sent := time.Now()
	notifyLeadership(t, db, `{"leader_id" : "other", "action" : "resigned"}`)
	rec.expect(t, true, waitTimeout)
	t.Logf("elected %v after another leader's resigned notice", time.Since(sent))
	if id := leaderID(t, db); id != "listener" {
		t.Errorf("river_leader has %q, want listener", id)
	}
}

func TestTakesOverFromDeadLeader(t *testing.T) {
	t.Parallel()

	t.Run("expired row", func(t *testing.T) {
		t.Parallel()
		db := testfixture.New(t)
		insertLeader(t, db, "dead", -time.Second)
		cfg := testConfig(db, "heir")
		cfg.ElectInterval = time.Minute // the first attempt must do it
		e := newElector(t, db.Exec(), nil, cfg)
		rec := record(e)
		start(t, e)
		rec.expect(t, true, waitTimeout)
		if id := leaderID(t, db); id != "heir" {
			t.Errorf("river_leader has %q, want heir", id)
		}
	})

	t.Run("row expiring later", func(t *testing.T) {
		t.Parallel()
		db := testfixture.New(t)
		insertLeader(t, db, "dying", 300*time.Millisecond)
		e := newElector(t, db.Exec(), startNotifier(t, db), testConfig(db, "heir"))
		rec := record(e)
		start(t, e)
		rec.expect(t, true, waitTimeout)
		if id := leaderID(t, db); id != "heir" {
			t.Errorf("river_leader has %q, want heir", id)
		}
	})
}

func TestPollOnly(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	const interval = 200 * time.Millisecond
	var counter leaderCounter
	mk := func(id string) *Elector {
		cfg := testConfig(db, id)
		cfg.ElectInterval = interval
		e := newElector(t, db.Exec(), nil, cfg)
		counter.watch(e)
		return e
	}
	a, b := mk("poll-a"), mk("poll-b")
	recA, recB := record(a), record(b)
	start(t, a)
	recA.expect(t, true, waitTimeout)
	start(t, b)
	recB.expectNone(t, interval+interval/5)

	stopped := time.Now()
	a.Stop()
	recA.expect(t, false, 0)
	recB.expect(t, true, waitTimeout)
	took := time.Since(stopped)
	t.Logf("poll-only failover took %v (interval %v)", took, interval)
	// Within one interval plus its jitter (a fifth), with room for the
	// round trips.
	if limit := interval + interval/5 + 300*time.Millisecond; took > limit {
		t.Errorf("poll-only failover took %v, want within %v", took, limit)
	}
	if id := leaderID(t, db); id != "poll-b" {
		t.Errorf("river_leader has %q, want poll-b", id)
	}
	if m := counter.max.Load(); m != 1 {
		t.Errorf("at most %d electors led at once; want 1", m)
	}
}

func TestStartStopCycles(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	n := startNotifier(t, db)
	e := newElector(t, db.Exec(), n, testConfig(db, "cyclist"))
	rec := record(e)

	e.Stop() // before any Start
	e.Stop()

	for cycle := range 3 {
		started, stopped := e.Started(), e.Stopped()
		start(t, e)
		start(t, e) // already running: no-op
		<-started
		rec.expect(t, true, waitTimeout)
		if id := leaderID(t, db); id != "cyclist" {
			t.Fatalf("cycle %d: river_leader has %q", cycle, id)
		}
		e.Stop()
		<-stopped
		rec.expect(t, false, 0)
		if row := leaderRow(t, db); row != nil {
			t.Fatalf("cycle %d: row left after Stop: %+v", cycle, row)
		}
		e.Stop() // double Stop
	}
	rec.expectNone(t, 0)
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	n := startNotifier(t, db)
	fx := &flakyExec{Executor: db.Exec()}
	e := newElector(t, fx, n, testConfig(db, "unlucky"))
	rec := record(e)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	startedCh := e.Started()
	if err := e.Start(ctx); err == nil {
		t.Fatal("Start with an ended context succeeded")
	}
	select {
	case <-startedCh:
	default:
		t.Error("Started not closed after a failed Start")
	}
	if fx.elects.Load() != 0 || e.IsLeader() || leaderRow(t, db) != nil {
		t.Error("a failed Start left something running")
	}
	e.Stop() // harmless

	// It can be started properly afterwards.
	start(t, e)
	rec.expect(t, true, waitTimeout)
}

func TestSubscribers(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	n := startNotifier(t, db)
	e := newElector(t, db.Exec(), n, testConfig(db, "host"))

	var (
		mu  sync.Mutex
		log []string
	)
	add := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(log)
	}
	entry := func(name string, v bool) string {
		if v {
			return name + ":true"
		}
		return name + ":false"
	}

	// At the false of Stop, "first" checks that IsLeader is already false
	// and the term not yet resigned.
	var rowAtFalse, leaderAtFalse bool
	e.Subscribe(func(v bool) {
		add(entry("first", v))
		if !v {
			leaderAtFalse = e.IsLeader()
			var id string
			err := db.Pool.QueryRow(context.Background(), "SELECT leader_id FROM "+table(db)).Scan(&id)
			rowAtFalse = err == nil && id == "host"
		}
	})
	var unsubSelf func()
	unsubSelf = e.Subscribe(func(v bool) {
		add(entry("once", v))
		unsubSelf() // unsubscribing from inside the callback is allowed
	})
	e.Subscribe(func(v bool) {
		add(entry("panicky", v))
		panic("subscriber bug")
	})
	never := e.Subscribe(func(v bool) { add(entry("never", v)) })
	never()
	never() // twice is harmless
	last := make(chan bool, 10)
	e.Subscribe(func(v bool) {
		add(entry("last", v))
		last <- v
	})

	start(t, e)
	select {
	case v := <-last:
		if !v {
			t.Fatal("first change was not true")
		}
	case <-time.After(waitTimeout):
		t.Fatal("not elected")
	}
	if want := []string{"first:true", "once:true", "panicky:true", "last:true"}; !slices.Equal(got(), want) {
		t.Fatalf("calls on election: got %v, want %v", got(), want)
	}

	e.Stop()
	want := []string{"first:true", "once:true", "panicky:true", "last:true", "first:false", "panicky:false", "last:false"}
	if !slices.Equal(got(), want) {
		t.Fatalf("calls: got %v, want %v", got(), want)
	}
	if leaderAtFalse {
		t.Error("IsLeader was still true when subscribers heard false")
	}
	if !rowAtFalse {
		t.Error("the term was resigned before subscribers heard false")
	}
	if row := leaderRow(t, db); row != nil {
		t.Errorf("row left after Stop: %+v", row)
	}
}

// A notifier that is not running yet is fine: the elector's subscription
// is applied when it connects.
func TestNotifierStartedLater(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	n := notifier.New(func() (driver.Listener, error) { return db.Driver.GetListener(db.Schema) },
		&notifier.Config{Schema: db.Schema})
	t.Cleanup(n.Stop) // registered first, so it runs after the elector's Stop
	cfg := testConfig(db, "early")
	cfg.ElectInterval = time.Minute
	insertLeader(t, db, "other", time.Hour)
	fx := &flakyExec{Executor: db.Exec()}
	e := newElector(t, fx, n, cfg)
	rec := record(e)
	start(t, e)
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, waitTimeout, func() bool { return n.Connected() && fx.electsDone.Load() == 1 }, "notifier connected and the first election attempt")

	execSQL(t, db, "DELETE FROM "+table(db))
	notifyLeadership(t, db, `{"leader_id" : "other", "action" : "resigned"}`)
	rec.expect(t, true, waitTimeout)
}
