package elector

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// domainConfig returns a fast configuration for a client of db in domain.
func domainConfig(db *testfixture.DB, domain, clientID string) *Config {
	cfg := testConfig(db, clientID)
	cfg.Domain = domain
	return cfg
}

// domainRow reads the domain's row of millrace_leader, expired or not; nil
// when there is none.
func domainRow(t *testing.T, db *testfixture.DB, domain string) *millracetype.Leader {
	t.Helper()
	var l millracetype.Leader
	err := db.Pool.QueryRow(context.Background(),
		"SELECT leader_id, elected_at, expires_at FROM "+pgx.Identifier{db.Schema, "millrace_leader"}.Sanitize()+" WHERE domain = $1",
		domain).Scan(&l.LeaderID, &l.ElectedAt, &l.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		t.Fatalf("read millrace_leader: %v", err)
	}
	return &l
}

func domainLeaderID(t *testing.T, db *testfixture.DB, domain string) string {
	t.Helper()
	if l := domainRow(t, db, domain); l != nil {
		return l.LeaderID
	}
	return ""
}

// notifyDomainLeadership sends a payload on the schema's domain leadership
// channel.
func notifyDomainLeadership(t *testing.T, db *testfixture.DB, payload string) {
	t.Helper()
	execSQL(t, db, "SELECT pg_notify($1, $2)", db.Schema+"."+driver.TopicDomainLeadership, payload)
}

func TestValidateDomain(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "a", "billing", "svc-a", "svc_b2", "0", strings.Repeat("x", MaxDomainLength)} {
		if err := ValidateDomain(ok); err != nil {
			t.Errorf("ValidateDomain(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"A", "svc a", "-a", "a-", "a--b", "a.b", "é", "a|b", strings.Repeat("x", MaxDomainLength+1)} {
		if err := ValidateDomain(bad); err == nil {
			t.Errorf("ValidateDomain(%q) accepted it", bad)
		}
		if _, err := New(&flakyExec{}, nil, &Config{ClientID: "c", Domain: bad}); err == nil || !strings.Contains(err.Error(), "domain") {
			t.Errorf("New with Domain %q: got %v, want a domain error", bad, err)
		}
	}
}

// A domain elector leads its domain through millrace_leader, extends its
// term, and resigns it at Stop, never touching river_leader.
func TestDomainElectorLeadsExtendsAndResigns(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	n := startNotifier(t, db)
	e := newElector(t, db.Exec(), n, domainConfig(db, "svc-a", "a1"))
	rec := record(e)
	start(t, e)
	rec.expect(t, true, waitTimeout)
	first := domainRow(t, db, "svc-a")
	if first == nil || first.LeaderID != "a1" {
		t.Fatalf("millrace_leader row of svc-a: got %+v, want leader_id a1", first)
	}
	if ttl := first.ExpiresAt.Sub(first.ElectedAt); ttl != testTTL {
		t.Errorf("term length: got %v, want %v", ttl, testTTL)
	}
	if row := leaderRow(t, db); row != nil {
		t.Fatalf("a domain elector wrote river_leader: %+v", row)
	}
	testwait.Until(t, waitTimeout, func() bool {
		r := domainRow(t, db, "svc-a")
		return r != nil && r.ExpiresAt.After(first.ExpiresAt)
	}, "the term is extended")
	if r := domainRow(t, db, "svc-a"); !r.ElectedAt.Equal(first.ElectedAt) {
		t.Errorf("term changed while being extended: first %+v, now %+v", first, r)
	}

	e.Stop()
	rec.expect(t, false, 0)
	if r := domainRow(t, db, "svc-a"); r != nil {
		t.Errorf("millrace_leader row left after Stop: %+v", r)
	}
	rec.expectNone(t, 0)
}

// Two domains and the database each have their own leader at once, and a
// change in one leaves the others alone.
func TestDomainsAreIndependent(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	type member struct {
		e   *Elector
		rec *recorder
	}
	mk := func(domain, id string) member {
		e := newElector(t, db.Exec(), startNotifier(t, db), domainConfig(db, domain, id))
		return member{e, record(e)}
	}
	a1, b1, d1 := mk("a", "a1"), mk("b", "b1"), mk("", "d1")
	for _, m := range []member{a1, b1, d1} {
		start(t, m.e)
		m.rec.expect(t, true, waitTimeout)
	}
	a2, b2 := mk("a", "a2"), mk("b", "b2")
	start(t, a2.e)
	start(t, b2.e)
	if got := [3]string{domainLeaderID(t, db, "a"), domainLeaderID(t, db, "b"), leaderID(t, db)}; got != [3]string{"a1", "b1", "d1"} {
		t.Fatalf("leaders of a, b and the database: %v", got)
	}

	// a1 stops: a2 takes a over at once (the domain's resigned
	// notification), b and the database keep their leaders.
	sent := time.Now()
	a1.e.Stop()
	a2.rec.expect(t, true, waitTimeout)
	t.Logf("domain a take-over after a resignation: %v", time.Since(sent))
	b1.rec.expectNone(t, 0)
	d1.rec.expectNone(t, 0)
	if got := [3]string{domainLeaderID(t, db, "a"), domainLeaderID(t, db, "b"), leaderID(t, db)}; got != [3]string{"a2", "b1", "d1"} {
		t.Fatalf("leaders of a, b and the database after a1 stopped: %v", got)
	}

	// Domain b's term expires (its leader lost it): b1 finds out at its
	// next extension, b2 takes over, a is untouched.
	execSQL(t, db, "DELETE FROM "+pgx.Identifier{db.Schema, "millrace_leader"}.Sanitize()+" WHERE domain = 'b'")
	b1.rec.expect(t, false, waitTimeout)
	testwait.Until(t, waitTimeout, func() bool { return domainLeaderID(t, db, "b") != "" }, "a new leader of b")
	if !a2.e.IsLeader() || !d1.e.IsLeader() {
		t.Errorf("a2 or d1 lost leadership when b's row went: a2 %v, d1 %v", a2.e.IsLeader(), d1.e.IsLeader())
	}
	a2.rec.expectNone(t, 0)
	d1.rec.expectNone(t, 0)
}

// A domain's leader takes over an expired term of its domain, and a live
// term of another domain's leader is no obstacle.
func TestDomainElectorTakesOverExpiredTerm(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	tbl := pgx.Identifier{db.Schema, "millrace_leader"}.Sanitize()
	execSQL(t, db, "INSERT INTO "+tbl+` (domain, leader_id, elected_at, expires_at) VALUES
		('a', 'dead', now() - interval '1 hour', now() + interval '1 second'),
		('b', 'alive', now() - interval '1 hour', now() + interval '1 hour')`)
	e := newElector(t, db.Exec(), nil, domainConfig(db, "a", "heir"))
	rec := record(e)
	start(t, e)
	rec.expect(t, true, waitTimeout) // once the dead leader's second is up
	if id := domainLeaderID(t, db, "a"); id != "heir" {
		t.Errorf("leader of a: %q, want heir", id)
	}
	if id := domainLeaderID(t, db, "b"); id != "alive" {
		t.Errorf("leader of b: %q, want alive", id)
	}
}

// request_resign on the domain topic reaches only the named domain's
// leader; River's request_resign reaches only the database's leader.
func TestDomainRequestResign(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	mk := func(domain, id string) (*Elector, *recorder, *flakyExec) {
		fx := &flakyExec{Executor: db.Exec()}
		cfg := domainConfig(db, domain, id)
		cfg.ElectInterval = time.Minute // a re-election would come from the notification alone
		e := newElector(t, fx, startNotifier(t, db), cfg)
		return e, record(e), fx
	}
	a, recA, fxA := mk("a", "a1")
	b, recB, fxB := mk("b", "b1")
	d, recD, fxD := mk("", "d1")
	for _, p := range []struct {
		e   *Elector
		rec *recorder
	}{{a, recA}, {b, recB}, {d, recD}} {
		start(t, p.e)
		p.rec.expect(t, true, waitTimeout)
	}

	notifyDomainLeadership(t, db, `{"action":"request_resign","domain":"b"}`)
	recB.expect(t, false, waitTimeout)
	testwait.Until(t, waitTimeout, func() bool { return fxB.resigns.Load() == 1 }, "b's resignation")
	// River's topic: the database leader only.
	notifyLeadership(t, db, `{"action":"request_resign","leader_id":""}`)
	recD.expect(t, false, waitTimeout)
	testwait.Until(t, waitTimeout, func() bool { return fxD.resigns.Load() == 1 }, "the database leader's resignation")
	// A message without a domain, or for another domain, is ignored on the
	// domain topic.
	notifyDomainLeadership(t, db, `{"action":"request_resign"}`)
	notifyDomainLeadership(t, db, `{"action":"request_resign","domain":"c"}`)
	notifyDomainLeadership(t, db, `{"action":"resigned","domain":"c","leader_id":"x"}`)
	recA.expectNone(t, 300*time.Millisecond)
	if fxA.resigns.Load() != 0 || fxA.elects.Load() != 1 || !a.IsLeader() {
		t.Errorf("a reacted to others' notifications: %d resigns, %d elects, leader %v", fxA.resigns.Load(), fxA.elects.Load(), a.IsLeader())
	}
	if id := domainLeaderID(t, db, "a"); id != "a1" {
		t.Errorf("leader of a: %q, want a1", id)
	}
}
