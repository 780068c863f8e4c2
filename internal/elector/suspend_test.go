package elector

import (
	"testing"
	"time"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
)

// TestSuspend: a suspended leader steps down and resigns at once (another
// elector takes over), a suspended follower makes no election attempt, and
// Resume lets it be elected again; a new Start begins unsuspended.
func TestSuspend(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	n := startNotifier(t, db)
	fa := &flakyExec{Executor: db.Exec()}
	a := newElector(t, fa, n, testConfig(db, "a"))
	recA := record(a)
	start(t, a)
	recA.expect(t, true, waitTimeout)

	// b follows with a long interval: only a's resignation (notified) can
	// let it win before a's term (2 s) would expire.
	cfgB := testConfig(db, "b")
	cfgB.ElectInterval = time.Hour
	b := newElector(t, db.Exec(), n, cfgB)
	recB := record(b)
	start(t, b)

	suspendedAt := time.Now()
	a.Suspend()
	recA.expect(t, false, waitTimeout)
	recB.expect(t, true, waitTimeout)
	if took := time.Since(suspendedAt); took >= testTTL {
		t.Errorf("b was elected %v after a was suspended, not before a's term (%v) could expire: a did not resign", took, testTTL)
	}
	if id := leaderID(t, db); id != "b" {
		t.Fatalf("leader %q after a was suspended, want b", id)
	}

	// Suspended, a tries nothing, even when b resigns.
	electsBefore := fa.elects.Load()
	b.Stop()
	recB.expect(t, false, 0)
	recA.expectNone(t, 10*testElectInterval)
	if got := fa.elects.Load(); got != electsBefore {
		t.Errorf("a suspended made %d election attempts", got-electsBefore)
	}
	if id := leaderID(t, db); id != "" {
		t.Fatalf("leader %q while the only elector left is suspended", id)
	}

	a.Resume()
	recA.expect(t, true, waitTimeout)

	// Suspended then stopped and started again: the new run may lead.
	a.Suspend()
	recA.expect(t, false, waitTimeout)
	a.Stop()
	start(t, a)
	recA.expect(t, true, waitTimeout)
	if !testwait.Poll(waitTimeout, func() bool { return leaderID(t, db) == "a" }) {
		t.Errorf("leader %q after a restarted, want a", leaderID(t, db))
	}
}
