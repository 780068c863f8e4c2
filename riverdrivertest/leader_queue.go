package riverdrivertest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

const leaderTTL = 15 * time.Second

func (s *suite[TTx]) testLeader(t *testing.T) {
	elect := func(t *testing.T, e *env[TTx], id string) *millracetype.Leader {
		t.Helper()
		l, err := e.exec.LeaderAttemptElect(e.ctx, &driver.LeaderElectParams{Schema: e.schema, LeaderID: id, TTL: leaderTTL})
		requireNoError(t, err, "LeaderAttemptElect")
		return l
	}
	elected := func(t *testing.T, e *env[TTx]) *millracetype.Leader {
		t.Helper()
		l, err := e.exec.LeaderGetElected(e.ctx, e.schema)
		requireNoError(t, err, "LeaderGetElected")
		return l
	}
	requireNoLeader := func(t *testing.T, e *env[TTx]) {
		t.Helper()
		_, err := e.exec.LeaderGetElected(e.ctx, e.schema)
		requireErrorIs(t, err, millracetype.ErrNotFound, "LeaderGetElected without a live leader")
	}
	requireLeader := func(t *testing.T, got, want *millracetype.Leader, what string) {
		t.Helper()
		if got == nil {
			t.Fatalf("%s: got no leader, want %s", what, want.LeaderID)
		}
		requireEqual(t, got.LeaderID, want.LeaderID, what+": leader_id")
		requireTime(t, got.ElectedAt, want.ElectedAt, what+": elected_at")
		requireTime(t, got.ExpiresAt, want.ExpiresAt, what+": expires_at")
	}

	s.run(t, "ElectWhenEmpty", func(t *testing.T, e *env[TTx]) {
		requireNoLeader(t, e)
		before := now()
		l := elect(t, e, "leader_a")
		after := now()
		if l == nil {
			t.Fatal("not elected although nobody leads")
		}
		requireEqual(t, l.LeaderID, "leader_a", "leader_id")
		requireBetween(t, l.ElectedAt, before, after, "elected_at")
		requireTime(t, l.ExpiresAt, l.ElectedAt.Add(leaderTTL), "expires_at (elected_at + TTL)")
		requireLeader(t, elected(t, e), l, "LeaderGetElected")
	})

	s.run(t, "SecondCandidateRefused", func(t *testing.T, e *env[TTx]) {
		first := elect(t, e, "leader_a")
		if l := elect(t, e, "leader_b"); l != nil {
			t.Fatalf("leader_b elected while leader_a's term is live: %+v", l)
		}
		if l := elect(t, e, "leader_a"); l != nil {
			t.Fatalf("leader_a elected again while its own term is live: %+v", l)
		}
		requireLeader(t, elected(t, e), first, "LeaderGetElected")
	})

	s.run(t, "ElectAfterExpiry", func(t *testing.T, e *env[TTx]) {
		e.rawExec(t, e.sql(`INSERT INTO `+e.table("river_leader")+` (leader_id, elected_at, expires_at)
			VALUES ('old_leader', now() - interval '1 minute', now() - interval '1 second')`,
			`INSERT INTO `+e.table("river_leader")+` (leader_id, elected_at, expires_at)
			VALUES ('old_leader', `+liteAgo(60)+`, `+liteAgo(1)+`)`))
		requireNoLeader(t, e)
		l := elect(t, e, "new_leader")
		if l == nil {
			t.Fatal("not elected although the only term expired")
		}
		requireLeader(t, elected(t, e), l, "LeaderGetElected")
	})

	s.run(t, "Reelect", func(t *testing.T, e *env[TTx]) {
		first := elect(t, e, "leader_a")
		reelect := func(id string, electedAt time.Time, ttl time.Duration) *millracetype.Leader {
			l, err := e.exec.LeaderAttemptReelect(e.ctx, &driver.LeaderReelectParams{Schema: e.schema, LeaderID: id, ElectedAt: electedAt, TTL: ttl})
			requireNoError(t, err, "LeaderAttemptReelect")
			return l
		}
		before := now()
		l := reelect("leader_a", first.ElectedAt, time.Minute)
		after := now()
		if l == nil {
			t.Fatal("re-election of the live term refused")
		}
		requireEqual(t, l.LeaderID, "leader_a", "leader_id")
		requireTime(t, l.ElectedAt, first.ElectedAt, "elected_at (the term's start stays)")
		requireBetween(t, l.ExpiresAt, before.Add(time.Minute), after.Add(time.Minute), "expires_at (now + TTL)")
		requireLeader(t, elected(t, e), l, "LeaderGetElected after re-election")

		if got := reelect("leader_a", first.ElectedAt.Add(time.Microsecond), time.Minute); got != nil {
			t.Fatalf("re-election with another term's elected_at accepted: %+v", got)
		}
		if got := reelect("leader_b", first.ElectedAt, time.Minute); got != nil {
			t.Fatalf("re-election by another client accepted: %+v", got)
		}
		e.rawExec(t, e.sql(`UPDATE `+e.table("river_leader")+` SET expires_at = now() - interval '1 second'`,
			`UPDATE `+e.table("river_leader")+` SET expires_at = `+liteAgo(1)))
		if got := reelect("leader_a", first.ElectedAt, time.Minute); got != nil {
			t.Fatalf("re-election of an expired term accepted: %+v", got)
		}
		requireNoLeader(t, e)
	})

	s.run(t, "Resign", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicLeadership)
		term := elect(t, e, "leader_a")
		resign := func(id string, electedAt time.Time) bool {
			ok, err := e.exec.LeaderResign(e.ctx, &driver.LeaderResignParams{Schema: e.schema, LeaderID: id, ElectedAt: electedAt})
			requireNoError(t, err, "LeaderResign")
			return ok
		}
		// Stale or foreign terms delete nothing and announce nothing.
		if resign("leader_a", term.ElectedAt.Add(-time.Second)) {
			t.Fatal("resignation of a stale term deleted a row")
		}
		if resign("leader_b", term.ElectedAt) {
			t.Fatal("resignation by another client deleted a row")
		}
		requireLeader(t, elected(t, e), term, "LeaderGetElected after refused resignations")
		e.requireQuiet(t, l, e.schema, driver.TopicLeadership)

		if !resign("leader_a", term.ElectedAt) {
			t.Fatal("resignation of the live term deleted nothing")
		}
		e.requireNext(t, l, driver.TopicLeadership, map[string]any{"leader_id": "leader_a", "action": "resigned"})
		requireNoLeader(t, e)
		if resign("leader_a", term.ElectedAt) {
			t.Fatal("second resignation deleted a row")
		}
		e.requireQuiet(t, l, e.schema, driver.TopicLeadership)
		if elect(t, e, "leader_b") == nil {
			t.Fatal("not elected after the leader resigned")
		}
	})
}

// testDomainLeader checks the leader methods with a Domain: they work on
// that domain's row of millrace_leader (migration line millrace), with the
// rules of river_leader, and leave river_leader and other domains alone.
func (s *suite[TTx]) testDomainLeader(t *testing.T) {
	elect := func(t *testing.T, e *env[TTx], domain, id string) *millracetype.Leader {
		t.Helper()
		l, err := e.exec.LeaderAttemptElect(e.ctx, &driver.LeaderElectParams{Schema: e.schema, Domain: domain, LeaderID: id, TTL: leaderTTL})
		requireNoError(t, err, "LeaderAttemptElect in domain "+domain)
		return l
	}
	reelect := func(t *testing.T, e *env[TTx], domain, id string, electedAt time.Time) *millracetype.Leader {
		t.Helper()
		l, err := e.exec.LeaderAttemptReelect(e.ctx, &driver.LeaderReelectParams{Schema: e.schema, Domain: domain,
			LeaderID: id, ElectedAt: electedAt, TTL: time.Minute})
		requireNoError(t, err, "LeaderAttemptReelect in domain "+domain)
		return l
	}
	resign := func(t *testing.T, e *env[TTx], domain, id string, electedAt time.Time) bool {
		t.Helper()
		ok, err := e.exec.LeaderResign(e.ctx, &driver.LeaderResignParams{Schema: e.schema, Domain: domain, LeaderID: id, ElectedAt: electedAt})
		requireNoError(t, err, "LeaderResign in domain "+domain)
		return ok
	}
	// rows lists millrace_leader as "domain=leader_id" in domain order.
	rows := func(t *testing.T, e *env[TTx]) string {
		t.Helper()
		return e.rawString(t, e.sql(`SELECT coalesce(string_agg(domain || '=' || leader_id, ',' ORDER BY domain), '') FROM `+e.table("millrace_leader"),
			`SELECT coalesce(group_concat(domain || '=' || leader_id, ',' ORDER BY domain), '') FROM `+e.table("millrace_leader")))
	}

	s.run(t, "DomainsAreIndependent", func(t *testing.T, e *env[TTx]) {
		before := now()
		a := elect(t, e, "svc-a", "client_a1")
		after := now()
		if a == nil {
			t.Fatal("not elected in an empty domain")
		}
		requireEqual(t, a.LeaderID, "client_a1", "leader_id")
		requireEqual(t, a.Domain, "svc-a", "domain")
		requireBetween(t, a.ElectedAt, before, after, "elected_at")
		requireTime(t, a.ExpiresAt, a.ElectedAt.Add(leaderTTL), "expires_at (elected_at + TTL)")
		if l := elect(t, e, "svc-a", "client_a2"); l != nil {
			t.Fatalf("client_a2 elected in svc-a while client_a1's term is live: %+v", l)
		}
		if elect(t, e, "svc_b", "client_b1") == nil {
			t.Fatal("not elected in domain svc_b although only svc-a has a leader")
		}
		// The database's leader is another thing altogether.
		if elect(t, e, "", "client_b1") == nil {
			t.Fatal("not elected database leader although river_leader is empty")
		}
		requireEqual(t, rows(t, e), "svc-a=client_a1,svc_b=client_b1", "millrace_leader")
		requireEqual(t, e.rawString(t, `SELECT leader_id FROM `+e.table("river_leader")), "client_b1", "river_leader")
	})

	s.run(t, "DomainReelectAndExpiry", func(t *testing.T, e *env[TTx]) {
		a := elect(t, e, "a", "client_a1")
		b := elect(t, e, "b", "client_b1")
		before := now()
		l := reelect(t, e, "a", "client_a1", a.ElectedAt)
		after := now()
		if l == nil {
			t.Fatal("re-election of the live term refused")
		}
		requireTime(t, l.ElectedAt, a.ElectedAt, "elected_at (the term's start stays)")
		requireEqual(t, l.Domain, "a", "domain of the extended term")
		requireBetween(t, l.ExpiresAt, before.Add(time.Minute), after.Add(time.Minute), "expires_at (now + TTL)")
		if got := reelect(t, e, "b", "client_a1", a.ElectedAt); got != nil {
			t.Fatalf("client_a1 extended a term in domain b: %+v", got)
		}
		if got := reelect(t, e, "a", "client_a1", a.ElectedAt.Add(time.Microsecond)); got != nil {
			t.Fatalf("re-election with another term's elected_at accepted: %+v", got)
		}
		// Domain a's term expires; b's is untouched, and a new a leader
		// may be elected, and the old one can no longer extend.
		e.rawExec(t, e.sql(`UPDATE `+e.table("millrace_leader")+` SET expires_at = now() - interval '1 second' WHERE domain = 'a'`,
			`UPDATE `+e.table("millrace_leader")+` SET expires_at = `+liteAgo(1)+` WHERE domain = 'a'`))
		if got := reelect(t, e, "a", "client_a1", a.ElectedAt); got != nil {
			t.Fatalf("re-election of an expired term accepted: %+v", got)
		}
		if elect(t, e, "a", "client_a2") == nil {
			t.Fatal("not elected in domain a after its term expired")
		}
		if elect(t, e, "b", "client_b2") != nil {
			t.Fatal("elected in domain b while its term is live")
		}
		requireEqual(t, rows(t, e), "a=client_a2,b=client_b1", "millrace_leader")
		if reelect(t, e, "b", "client_b1", b.ElectedAt) == nil {
			t.Fatal("domain b's live term could not be extended")
		}
	})

	s.run(t, "DomainResign", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicDomainLeadership, driver.TopicLeadership)
		a := elect(t, e, "a", "client_1")
		b := elect(t, e, "b", "client_1")
		db := elect(t, e, "", "client_1")
		if resign(t, e, "b", "client_1", a.ElectedAt.Add(-time.Second)) {
			t.Fatal("resignation of a stale term deleted a row")
		}
		if resign(t, e, "a", "client_2", a.ElectedAt) {
			t.Fatal("resignation by another client deleted a row")
		}
		e.requireQuiet(t, l, e.schema, driver.TopicDomainLeadership)
		if !resign(t, e, "a", "client_1", a.ElectedAt) {
			t.Fatal("resignation of the live term deleted nothing")
		}
		e.requireNext(t, l, driver.TopicDomainLeadership, map[string]any{"domain": "a", "leader_id": "client_1", "action": "resigned"})
		// Nothing on River's topic: River clients never hear of domains.
		e.requireQuiet(t, l, e.schema, driver.TopicLeadership)
		requireEqual(t, rows(t, e), "b=client_1", "millrace_leader after a's resignation")
		requireEqual(t, e.rawString(t, `SELECT leader_id FROM `+e.table("river_leader")), "client_1", "river_leader after a's resignation")
		if !resign(t, e, "", "client_1", db.ElectedAt) {
			t.Fatal("the database leader's resignation deleted nothing")
		}
		e.requireNext(t, l, driver.TopicLeadership, map[string]any{"leader_id": "client_1", "action": "resigned"})
		requireEqual(t, rows(t, e), "b=client_1", "millrace_leader after the database leader's resignation")
		if !resign(t, e, "b", "client_1", b.ElectedAt) {
			t.Fatal("b's resignation deleted nothing")
		}
		e.requireNext(t, l, driver.TopicDomainLeadership, map[string]any{"domain": "b", "leader_id": "client_1", "action": "resigned"})
	})

	s.runBare(t, "DomainListNeedsTheTable", func(t *testing.T, e *env[TTx]) {
		e.migrate(t, 0) // line main only
		if _, err := e.exec.LeaderListDomains(e.ctx, e.schema); err == nil {
			t.Fatal("LeaderListDomains succeeded before line millrace created millrace_leader")
		}
	})

	s.run(t, "DomainList", func(t *testing.T, e *env[TTx]) {
		list := func() []*millracetype.Leader {
			t.Helper()
			ls, err := e.exec.LeaderListDomains(e.ctx, e.schema)
			requireNoError(t, err, "LeaderListDomains")
			return ls
		}
		requireEqual(t, len(list()), 0, "domain leaders of an empty table")
		b := elect(t, e, "b", "client_b")
		a := elect(t, e, "a", "client_a")
		elect(t, e, "", "client_db") // the database's leader is not a domain's
		e.rawExec(t, e.sql(`INSERT INTO `+e.table("millrace_leader")+` (domain, leader_id, elected_at, expires_at)
			VALUES ('c', 'client_c', now() - interval '1 minute', now() - interval '1 second')`,
			`INSERT INTO `+e.table("millrace_leader")+` (domain, leader_id, elected_at, expires_at)
			VALUES ('c', 'client_c', `+liteAgo(60)+`, `+liteAgo(1)+`)`))
		ls := list()
		if len(ls) != 2 {
			t.Fatalf("LeaderListDomains returned %d terms, want the live ones of a and b: %+v", len(ls), ls)
		}
		for i, want := range []struct {
			domain string
			l      *millracetype.Leader
		}{{"a", a}, {"b", b}} {
			requireEqual(t, ls[i].Domain, want.domain, "domain")
			requireEqual(t, ls[i].LeaderID, want.l.LeaderID, "leader_id")
			requireTime(t, ls[i].ElectedAt, want.l.ElectedAt, "elected_at")
			requireTime(t, ls[i].ExpiresAt, want.l.ExpiresAt, "expires_at")
		}
	})

	s.run(t, "DomainNameChecked", func(t *testing.T, e *env[TTx]) {
		for _, bad := range []string{"Upper", "a b", "-a", strings.Repeat("x", 65)} {
			if _, err := e.exec.LeaderAttemptElect(e.ctx, &driver.LeaderElectParams{Schema: e.schema, Domain: bad, LeaderID: "c", TTL: leaderTTL}); err == nil {
				t.Errorf("election in domain %q accepted; the table's check should refuse it", bad)
			}
		}
	})
}

func (s *suite[TTx]) testQueue(t *testing.T) {
	upsert := func(t *testing.T, e *env[TTx], name string, meta []byte, at *time.Time) *millracetype.Queue {
		t.Helper()
		q, err := e.exec.QueueCreateOrSetUpdatedAt(e.ctx, &driver.QueueCreateParams{Schema: e.schema, Name: name, Metadata: meta, Now: at})
		requireNoError(t, err, "QueueCreateOrSetUpdatedAt")
		return q
	}
	get := func(t *testing.T, e *env[TTx], name string) *millracetype.Queue {
		t.Helper()
		q, err := e.exec.QueueGet(e.ctx, &driver.QueueGetParams{Schema: e.schema, Name: name})
		requireNoError(t, err, "QueueGet "+name)
		return q
	}
	requireSameQueue := func(t *testing.T, got, want *millracetype.Queue, what string) {
		t.Helper()
		requireEqual(t, got.Name, want.Name, what+": name")
		requireTime(t, got.CreatedAt, want.CreatedAt, what+": created_at")
		requireTime(t, got.UpdatedAt, want.UpdatedAt, what+": updated_at")
		requireSameTimePtr(t, got.PausedAt, want.PausedAt, what+": paused_at")
		requireJSON(t, got.Metadata, jsonValue(t, want.Metadata), what+": metadata")
	}
	names := func(qs []*millracetype.Queue) []string {
		out := make([]string, len(qs))
		for i, q := range qs {
			out[i] = q.Name
		}
		return out
	}

	s.run(t, "CreateOrSetUpdatedAt", func(t *testing.T, e *env[TTx]) {
		created := now().Add(-time.Hour)
		q := upsert(t, e, "queue_a", []byte(`{"a":1}`), &created)
		requireEqual(t, q.Name, "queue_a", "name")
		requireTime(t, q.CreatedAt, created, "created_at")
		requireTime(t, q.UpdatedAt, created, "updated_at")
		requireNilTime(t, q.PausedAt, "paused_at")
		requireJSON(t, q.Metadata, map[string]any{"a": 1}, "metadata")
		requireSameQueue(t, get(t, e, "queue_a"), q, "QueueGet")

		refreshed := now()
		q2 := upsert(t, e, "queue_a", []byte(`{"b":2}`), &refreshed)
		requireTime(t, q2.CreatedAt, created, "created_at after the upsert (kept)")
		requireTime(t, q2.UpdatedAt, refreshed, "updated_at after the upsert")
		requireJSON(t, q2.Metadata, map[string]any{"a": 1}, "metadata after the upsert (kept)")
		requireSameQueue(t, get(t, e, "queue_a"), q2, "QueueGet after the upsert")

		before := now()
		q3 := upsert(t, e, "queue_b", nil, nil)
		after := now()
		requireBetween(t, q3.CreatedAt, before, after, "created_at with the database clock")
		requireTime(t, q3.UpdatedAt, q3.CreatedAt, "updated_at of a new queue")
		requireJSON(t, q3.Metadata, map[string]any{}, "default metadata")
	})

	s.run(t, "GetNotFound", func(t *testing.T, e *env[TTx]) {
		_, err := e.exec.QueueGet(e.ctx, &driver.QueueGetParams{Schema: e.schema, Name: "missing"})
		requireErrorIs(t, err, millracetype.ErrNotFound, "QueueGet of a missing queue")
	})

	s.run(t, "List", func(t *testing.T, e *env[TTx]) {
		for _, n := range []string{"queue_c", "queue_a", "queue_b"} {
			upsert(t, e, n, nil, nil)
		}
		list := func(limit int) []*millracetype.Queue {
			qs, err := e.exec.QueueList(e.ctx, &driver.QueueListParams{Schema: e.schema, Limit: limit})
			requireNoError(t, err, "QueueList")
			return qs
		}
		requireEqual(t, names(list(10)), []string{"queue_a", "queue_b", "queue_c"}, "queues listed by name")
		requireEqual(t, names(list(2)), []string{"queue_a", "queue_b"}, "queues listed with limit 2")
		requireSameQueue(t, list(1)[0], get(t, e, "queue_a"), "listed queue")
	})

	s.run(t, "PauseResume", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		old := now().Add(-time.Hour)
		upsert(t, e, "queue_a", nil, &old)
		upsert(t, e, "queue_b", nil, &old)
		pause := func(name string) error {
			return e.exec.QueuePause(e.ctx, &driver.QueuePauseParams{Schema: e.schema, Name: name})
		}
		resume := func(name string) error {
			return e.exec.QueueResume(e.ctx, &driver.QueuePauseParams{Schema: e.schema, Name: name})
		}
		requirePaused := func(name string, paused bool, from, to time.Time) *millracetype.Queue {
			t.Helper()
			q := get(t, e, name)
			if (q.PausedAt != nil) != paused {
				t.Fatalf("queue %s: paused_at %v, want paused %v", name, q.PausedAt, paused)
			}
			if paused {
				requireBetween(t, *q.PausedAt, from, to, name+": paused_at")
			}
			return q
		}

		before := now()
		requireNoError(t, pause("queue_a"), "QueuePause")
		after := now()
		qa := requirePaused("queue_a", true, before, after)
		requireTime(t, qa.UpdatedAt, *qa.PausedAt, "updated_at of the paused queue")
		requireSameQueue(t, get(t, e, "queue_b"), &millracetype.Queue{Name: "queue_b", CreatedAt: old, UpdatedAt: old, Metadata: []byte(`{}`)},
			"the other queue")
		e.requireNext(t, l, driver.TopicControl, map[string]any{"action": "pause", "queue": "queue_a"})

		before = now()
		requireNoError(t, resume("queue_a"), "QueueResume")
		after = now()
		qa = requirePaused("queue_a", false, before, after)
		requireBetween(t, qa.UpdatedAt, before, after, "updated_at of the resumed queue")
		e.requireNext(t, l, driver.TopicControl, map[string]any{"action": "resume", "queue": "queue_a"})

		before = now()
		requireNoError(t, pause("*"), "QueuePause *")
		after = now()
		requirePaused("queue_a", true, before, after)
		requirePaused("queue_b", true, before, after)
		e.requireNext(t, l, driver.TopicControl, map[string]any{"action": "pause", "queue": "*"})

		requireNoError(t, resume("*"), "QueueResume *")
		requirePaused("queue_a", false, before, after)
		requirePaused("queue_b", false, before, after)
		e.requireNext(t, l, driver.TopicControl, map[string]any{"action": "resume", "queue": "*"})

		requireErrorIs(t, pause("missing"), millracetype.ErrNotFound, "QueuePause of a missing queue")
		requireErrorIs(t, resume("missing"), millracetype.ErrNotFound, "QueueResume of a missing queue")

		// Pausing a paused queue keeps the time it was first paused.
		requireNoError(t, pause("queue_b"), "QueuePause")
		first := get(t, e, "queue_b")
		requireNoError(t, pause("queue_b"), "QueuePause of a paused queue")
		requireSameTimePtr(t, get(t, e, "queue_b").PausedAt, first.PausedAt, "paused_at after pausing again")
	})

	s.run(t, "DeleteExpired", func(t *testing.T, e *env[TTx]) {
		base := now()
		stale := base.Add(-25 * time.Hour)
		for _, n := range []string{"stale_c", "stale_a", "stale_b"} {
			upsert(t, e, n, nil, &stale)
		}
		upsert(t, e, "fresh", nil, &base)
		del := func(max int) []string {
			names, err := e.exec.QueueDeleteExpired(e.ctx, &driver.QueueDeleteExpiredParams{Schema: e.schema,
				UpdatedAtHorizon: base.Add(-24 * time.Hour), Max: max})
			requireNoError(t, err, "QueueDeleteExpired")
			slices.Sort(names)
			return names
		}
		first := del(2)
		requireEqual(t, len(first), 2, "queues deleted with Max 2")
		rest := del(10)
		all := slices.Sorted(slices.Values(append(first, rest...)))
		requireEqual(t, all, []string{"stale_a", "stale_b", "stale_c"}, "queues deleted over two calls")
		requireEqual(t, len(del(10)), 0, "queues deleted by a third call")
		qs, err := e.exec.QueueList(e.ctx, &driver.QueueListParams{Schema: e.schema, Limit: 10})
		requireNoError(t, err, "QueueList")
		requireEqual(t, names(qs), []string{"fresh"}, "queues left")
	})
}

// jsonValue decodes JSON for requireJSON comparisons.
func jsonValue(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	return v
}
