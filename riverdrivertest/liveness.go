package riverdrivertest

import (
	"strconv"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// deadAfter is the dead-after duration the liveness subtests use; rows are
// made dead by moving their heartbeat back with raw SQL.
const deadAfter = 5 * time.Second

func (e *env[TTx]) register(t *testing.T, id string, metadata []byte) *driver.ClientRegisterResult {
	t.Helper()
	res, err := e.exec.ClientRegister(e.ctx, &driver.ClientRegisterParams{Schema: e.schema, ClientID: id, Metadata: metadata, HeartbeatTimeout: deadAfter})
	requireNoError(t, err, "ClientRegister "+id)
	return res
}

func (e *env[TTx]) heartbeat(t *testing.T, lease *driver.ClientLease) *driver.ClientHeartbeatResult {
	t.Helper()
	res, err := e.exec.ClientHeartbeat(e.ctx, &driver.ClientHeartbeatParams{Schema: e.schema, Lease: lease})
	requireNoError(t, err, "ClientHeartbeat "+lease.ClientID)
	return res
}

// ageHeartbeat moves a client's heartbeat back by d, by the database's
// clock.
func (e *env[TTx]) ageHeartbeat(t *testing.T, id string, d time.Duration) {
	t.Helper()
	if e.dialect == DialectSQLite {
		at := time.Now().UTC().Add(-d).Format("2006-01-02T15:04:05.000000Z")
		e.rawExec(t, `UPDATE `+e.table("millrace_client")+` SET heartbeat_at = ? WHERE client_id = ?`, at, id)
		return
	}
	e.rawExec(t, `UPDATE `+e.table("millrace_client")+` SET heartbeat_at = now() - $2::bigint * interval '1 microsecond' WHERE client_id = $1`,
		id, d.Microseconds())
}

func (e *env[TTx]) clientRows(t *testing.T) string {
	t.Helper()
	return e.rawString(t, e.sql(`SELECT coalesce(string_agg(client_id, ',' ORDER BY client_id), '') FROM `+e.table("millrace_client"),
		`SELECT coalesce(group_concat(client_id, ',' ORDER BY client_id), '') FROM `+e.table("millrace_client")))
}

// runningBy returns params for a job running attempt 1 by client id.
func runningBy(id string, at time.Time, kind string) *driver.JobInsertFullParams {
	p := running(at)
	p.AttemptedBy = []string{"earlier_client", id}
	p.Kind = kind
	return p
}

func (s *suite[TTx]) testClientLiveness(t *testing.T) {
	s.run(t, "RegisterHeartbeatDeregister", func(t *testing.T, e *env[TTx]) {
		first := e.register(t, "client_a", []byte(`{"kinds":["k"]}`))
		if first.Lease == nil || first.Replaced {
			t.Fatalf("first registration: %+v, want a lease, nothing replaced", first)
		}
		requireEqual(t, first.Lease.ClientID, "client_a", "lease client ID")
		requireBetween(t, first.Lease.StartedAt, now().Add(-time.Minute), now().Add(time.Minute), "lease started_at (the database's now())")
		requireEqual(t, e.rawString(t, e.sql(`SELECT metadata->'kinds'->>0 FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`,
			`SELECT metadata->'kinds'->>0 FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`)), "k", "stored metadata")

		before := e.rawString(t, e.sql(`SELECT heartbeat_at::text FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`,
			`SELECT heartbeat_at FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`))
		res := e.heartbeat(t, first.Lease)
		if !res.Alive || res.DeadClients {
			t.Fatalf("heartbeat of a fresh lease: %+v, want alive and no dead clients", res)
		}
		after := e.rawString(t, e.sql(`SELECT heartbeat_at::text FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`,
			`SELECT heartbeat_at FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`))
		if after == before {
			t.Fatalf("heartbeat did not move heartbeat_at (%s)", after)
		}

		// The same ID again while alive: refused (another process holds
		// it), the row as it was.
		if taken := e.register(t, "client_a", nil); taken.Lease != nil {
			t.Fatalf("registration over a live row: %+v, want no lease", taken)
		}
		requireEqual(t, e.rawString(t, e.sql(`SELECT metadata->'kinds'->>0 FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`,
			`SELECT metadata->'kinds'->>0 FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`)), "k", "metadata after a refused registration")
		if res := e.heartbeat(t, first.Lease); !res.Alive {
			t.Fatal("the live lease's heartbeat was refused after another registration was")
		}

		// Over a dead row: replaced, a new lease; the old one is void.
		e.ageHeartbeat(t, "client_a", deadAfter+time.Second)
		second := e.register(t, "client_a", nil)
		if second.Lease == nil || !second.Replaced {
			t.Fatalf("registration over a dead row: %+v, want a lease replacing it", second)
		}
		if !second.Lease.StartedAt.After(first.Lease.StartedAt) {
			t.Fatalf("new lease started_at %v not after the old %v", second.Lease.StartedAt, first.Lease.StartedAt)
		}
		requireEqual(t, e.rawString(t, e.sql(`SELECT metadata::text FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`,
			`SELECT metadata FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`)), "{}", "metadata of a registration without any")
		if res := e.heartbeat(t, first.Lease); res.Alive {
			t.Fatal("a replaced lease's heartbeat was accepted")
		}
		if res := e.heartbeat(t, second.Lease); !res.Alive {
			t.Fatal("the current lease's heartbeat was refused")
		}

		// Deregister: only the given incarnation.
		ok, err := e.exec.ClientDelete(e.ctx, &driver.ClientDeleteParams{Schema: e.schema, ClientID: "client_a", StartedAt: first.Lease.StartedAt})
		requireNoError(t, err, "ClientDelete of an old incarnation")
		requireEqual(t, ok, false, "an old incarnation's delete deleted")
		requireEqual(t, e.clientRows(t), "client_a", "rows after an old incarnation's delete")
		ok, err = e.exec.ClientDelete(e.ctx, &driver.ClientDeleteParams{Schema: e.schema, ClientID: "client_a", StartedAt: second.Lease.StartedAt})
		requireNoError(t, err, "ClientDelete")
		requireEqual(t, ok, true, "the current incarnation's delete deleted")
		requireEqual(t, e.clientRows(t), "", "rows after deregistering")
		if res := e.heartbeat(t, second.Lease); res.Alive {
			t.Fatal("the heartbeat of a deleted row was accepted")
		}
	})

	// A heartbeat that waits for a rescuer's lock on its row while the
	// row dies finds it dead once the lock goes, as the rescuer did: it
	// must not stamp a row whose jobs were just rescued. The rescuer
	// (ClientLockDead) writes the row again unchanged; the lock here does
	// the same, taken while the row is still alive, held past its death.
	s.run(t, "HeartbeatBehindARescuerSeesTheDeath", func(t *testing.T, e *env[TTx]) {
		a := e.register(t, "client_a", nil)
		e.ageHeartbeat(t, "client_a", deadAfter-500*time.Millisecond) // dies in 0.5 s
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(e.ctx) }()
		requireNoError(t, tx.Exec(e.ctx, `UPDATE `+e.table("millrace_client")+` SET heartbeat_at = heartbeat_at WHERE client_id = 'client_a'`), "lock the row")
		got := make(chan *driver.ClientHeartbeatResult, 1)
		go func() {
			res, err := e.exec.ClientHeartbeat(e.ctx, &driver.ClientHeartbeatParams{Schema: e.schema, Lease: a.Lease})
			if err != nil {
				t.Errorf("ClientHeartbeat: %v", err)
			}
			got <- res
		}()
		// Hold the lock past the death (the heartbeat statement started
		// before it).
		time.Sleep(time.Second) // the death is a time on the clock: nothing else to wait for
		requireNoError(t, tx.Commit(e.ctx), "Commit")
		if res := <-got; res == nil || res.Alive {
			t.Fatalf("heartbeat released after the row died: %+v, want not alive", res)
		}
	})

	s.run(t, "DeadRowsStayDead", func(t *testing.T, e *env[TTx]) {
		a := e.register(t, "client_a", nil)
		b := e.register(t, "client_b", nil)
		// Just under the limit: alive, and refreshed.
		e.ageHeartbeat(t, "client_a", deadAfter-time.Second)
		if res := e.heartbeat(t, a.Lease); !res.Alive || res.DeadClients {
			t.Fatalf("heartbeat %v old: %+v, want alive, no dead clients", deadAfter-time.Second, res)
		}
		e.ageHeartbeat(t, "client_a", deadAfter+time.Second)
		if res := e.heartbeat(t, b.Lease); !res.Alive || !res.DeadClients {
			t.Fatalf("b's heartbeat with a dead: %+v, want alive and dead clients", res)
		}
		// a's own heartbeat does not revive its dead row.
		if res := e.heartbeat(t, a.Lease); res.Alive {
			t.Fatal("a dead row was revived by its heartbeat")
		}
		age := e.rawString(t, e.sql(`SELECT (now() - heartbeat_at >= interval '6 seconds')::text FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`,
			`SELECT CASE WHEN heartbeat_at <= `+liteAgo(6)+` THEN 'true' ELSE 'false' END FROM `+e.table("millrace_client")+` WHERE client_id = 'client_a'`))
		requireEqual(t, age, "true", "the dead row's heartbeat_at was left as it was")
	})

	s.run(t, "EachRowItsOwnTimeout", func(t *testing.T, e *env[TTx]) {
		slow, err := e.exec.ClientRegister(e.ctx, &driver.ClientRegisterParams{Schema: e.schema, ClientID: "slow", HeartbeatTimeout: time.Minute})
		requireNoError(t, err, "ClientRegister")
		fast := e.register(t, "fast", nil)
		requireEqual(t, e.rawString(t, e.sql(`SELECT heartbeat_timeout::text FROM `+e.table("millrace_client")+` WHERE client_id = 'slow'`,
			`SELECT heartbeat_timeout FROM `+e.table("millrace_client")+` WHERE client_id = 'slow'`)), e.sql("00:01:00", "60000000"), "stored timeout (SQLite: microseconds)")
		// 10 s without a heartbeat: dead with a 5 s timeout, alive with 1 min.
		e.ageHeartbeat(t, "slow", 10*time.Second)
		if res := e.heartbeat(t, fast.Lease); !res.Alive || res.DeadClients {
			t.Fatalf("heartbeat with slow 10 s old (timeout 1 min): %+v, want alive, no dead clients", res)
		}
		if res := e.heartbeat(t, slow.Lease); !res.Alive {
			t.Fatal("slow's heartbeat refused within its own timeout")
		}
		e.ageHeartbeat(t, "fast", 10*time.Second)
		if res := e.heartbeat(t, slow.Lease); !res.DeadClients {
			t.Fatal("fast 10 s old (timeout 5 s) not seen dead")
		}
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(e.ctx) }()
		dead, err := tx.ClientLockDead(e.ctx, &driver.ClientLockDeadParams{Schema: e.schema, Max: 10})
		requireNoError(t, err, "ClientLockDead")
		if len(dead) != 1 || dead[0].ClientID != "fast" || dead[0].DeadFor < 4*time.Second || dead[0].DeadFor > time.Minute {
			t.Fatalf("dead rows: %+v, want fast, dead for about 5 s", dead)
		}
	})

	s.run(t, "LockDeadSkipsLocked", func(t *testing.T, e *env[TTx]) {
		e.requireRowLocks(t)
		for i := range 3 {
			e.register(t, "client_"+strconv.Itoa(i), nil)
		}
		e.ageHeartbeat(t, "client_0", deadAfter+3*time.Second)
		e.ageHeartbeat(t, "client_1", deadAfter+time.Second)
		tx1, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx1.Rollback(e.ctx) }()
		dead, err := tx1.ClientLockDead(e.ctx, &driver.ClientLockDeadParams{Schema: e.schema, Max: 1})
		requireNoError(t, err, "ClientLockDead")
		if len(dead) != 1 || dead[0].ClientID != "client_0" {
			t.Fatalf("first lock: %+v, want client_0 (the oldest heartbeat) only", dead)
		}
		if dead[0].DeadFor < 2*time.Second || dead[0].DeadFor > time.Minute {
			t.Fatalf("client_0 dead for %v, want about 3 s", dead[0].DeadFor)
		}
		tx2, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx2.Rollback(e.ctx) }()
		dead2, err := tx2.ClientLockDead(e.ctx, &driver.ClientLockDeadParams{Schema: e.schema, Max: 10})
		requireNoError(t, err, "ClientLockDead in a second transaction")
		if len(dead2) != 1 || dead2[0].ClientID != "client_1" {
			t.Fatalf("second transaction's lock: %+v, want client_1 only (client_0 locked, client_2 alive)", dead2)
		}
		requireNoError(t, tx1.Rollback(e.ctx), "Rollback")
		requireNoError(t, tx2.Rollback(e.ctx), "Rollback")
	})

	s.run(t, "RunningByLastClient", func(t *testing.T, e *env[TTx]) {
		at := now().Add(-time.Minute)
		mine := []*millracetype.JobRow{e.insertFull(t, runningBy("client_a", at, testKind)), e.insertFull(t, runningBy("client_a", at, testKind))}
		e.insertFull(t, runningBy("client_b", at, testKind))
		// client_a attempted it before, client_b runs it now.
		p := runningBy("client_b", at, testKind)
		p.AttemptedBy = []string{"client_a", "client_b"}
		e.insertFull(t, p)
		// Not running.
		q := inState(millracetype.JobStateRetryable, at)
		q.AttemptedBy = []string{"client_a"}
		e.insertFull(t, q)

		got, err := e.exec.JobGetRunningBy(e.ctx, &driver.JobGetRunningByParams{Schema: e.schema, ClientIDs: []string{"client_a"}, Max: 10})
		requireNoError(t, err, "JobGetRunningBy")
		requireIDs(t, got, jobIDs(mine), "client_a's running jobs")
		page, err := e.exec.JobGetRunningBy(e.ctx, &driver.JobGetRunningByParams{Schema: e.schema, ClientIDs: []string{"client_a"}, Max: 1, AfterID: mine[0].ID})
		requireNoError(t, err, "JobGetRunningBy after")
		requireIDs(t, page, []int64{mine[1].ID}, "the page after the first job")
		_, err = e.exec.JobGetRunningBy(e.ctx, &driver.JobGetRunningByParams{Schema: e.schema, ClientIDs: []string{"client_a"}, Max: 0})
		if err == nil {
			t.Fatal("JobGetRunningBy with Max 0: no error")
		}
	})

	s.run(t, "RescueGuardedByAttempt", func(t *testing.T, e *env[TTx]) {
		at := now().Add(-time.Minute)
		job := e.insertFull(t, runningBy("client_a", at, testKind))
		rescue := func(attempt int) int {
			n, err := e.exec.JobRescueMany(e.ctx, &driver.JobRescueManyParams{Schema: e.schema, Jobs: []*driver.JobRescue{{
				ID: job.ID, State: millracetype.JobStateRetryable, ScheduledAt: now(), Attempt: attempt,
				Error: millracetype.AttemptError{At: at, Attempt: 1, Error: "rescued"}}}})
			requireNoError(t, err, "JobRescueMany")
			return n
		}
		requireEqual(t, rescue(2), 0, "jobs rescued for an attempt the row does not run")
		requireEqual(t, e.getJob(t, job.ID).State, millracetype.JobStateRunning, "state after a rescue for another attempt")
		requireEqual(t, rescue(1), 1, "jobs rescued for the attempt the row runs")
		requireEqual(t, e.getJob(t, job.ID).State, millracetype.JobStateRetryable, "state after the rescue")
	})

	// A job row another transaction holds is skipped, not waited for.
	s.run(t, "RescueSkipsLockedRows", func(t *testing.T, e *env[TTx]) {
		e.requireRowLocks(t)
		at := now().Add(-time.Minute)
		job := e.insertFull(t, runningBy("client_a", at, testKind))
		rescue := func() (int, error) {
			return e.exec.JobRescueMany(e.ctx, &driver.JobRescueManyParams{Schema: e.schema, Jobs: []*driver.JobRescue{{
				ID: job.ID, State: millracetype.JobStateRetryable, ScheduledAt: now(), Attempt: 1,
				Error: millracetype.AttemptError{At: at, Attempt: 1, Error: "rescued"}}}})
		}
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(e.ctx) }()
		requireNoError(t, tx.Exec(e.ctx, `SELECT 1 FROM `+e.table("river_job")+` WHERE id = $1 FOR UPDATE`, job.ID), "lock the job")
		begin := time.Now()
		n, err := rescue()
		requireNoError(t, err, "JobRescueMany of a locked row")
		requireEqual(t, n, 0, "jobs rescued while the row is locked")
		if d := time.Since(begin); d > 5*time.Second {
			t.Fatalf("JobRescueMany waited %v for the locked row", d)
		}
		requireNoError(t, tx.Rollback(e.ctx), "Rollback")
		n, err = rescue()
		requireNoError(t, err, "JobRescueMany")
		requireEqual(t, n, 1, "jobs rescued once the lock is gone")
	})

	// Before: a dead client's jobs fetched before its death only.
	s.run(t, "RunningByBefore", func(t *testing.T, e *env[TTx]) {
		death := now().Add(-30 * time.Second)
		early := e.insertFull(t, runningBy("client_a", death.Add(-time.Minute), testKind))
		e.insertFull(t, runningBy("client_a", death.Add(10*time.Second), testKind)) // after the death
		otherEarly := e.insertFull(t, runningBy("client_b", death.Add(-time.Minute), testKind))
		got, err := e.exec.JobGetRunningBy(e.ctx, &driver.JobGetRunningByParams{Schema: e.schema, ClientIDs: []string{"client_a", "client_b"},
			Before: []time.Time{death, now().Add(time.Hour)}, Max: 10})
		requireNoError(t, err, "JobGetRunningBy with Before")
		requireIDs(t, got, []int64{early.ID, otherEarly.ID}, "jobs attempted before each client's time")
		if _, err := e.exec.JobGetRunningBy(e.ctx, &driver.JobGetRunningByParams{Schema: e.schema, ClientIDs: []string{"client_a"},
			Before: []time.Time{death, death}, Max: 10}); err == nil {
			t.Fatal("JobGetRunningBy with more Before times than clients: no error")
		}
	})

	s.run(t, "StuckSkipsLiveClients", func(t *testing.T, e *env[TTx]) {
		old := now().Add(-2 * time.Hour)
		e.register(t, "live", nil)
		e.register(t, "dead", nil)
		e.ageHeartbeat(t, "dead", deadAfter+time.Second)
		live := e.insertFull(t, runningBy("live", old, testKind))
		dead := e.insertFull(t, runningBy("dead", old, testKind))
		river := e.insertFull(t, runningBy("a_river_client", old, testKind))
		noClient := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRunning, Attempt: 1, AttemptedAt: &old})
		stuck := func(skip bool) []*millracetype.JobRow {
			jobs, err := e.exec.JobGetStuck(e.ctx, &driver.JobGetStuckParams{Schema: e.schema, StuckHorizon: now().Add(-time.Hour),
				Max: 10, SkipLiveClients: skip})
			requireNoError(t, err, "JobGetStuck")
			return jobs
		}
		requireIDs(t, stuck(false), []int64{live.ID, dead.ID, river.ID, noClient.ID}, "stuck jobs without SkipLiveClients")
		requireIDs(t, stuck(true), []int64{dead.ID, river.ID, noClient.ID}, "stuck jobs with SkipLiveClients")
	})

	s.run(t, "LiveSinceByDomain", func(t *testing.T, e *env[TTx]) {
		since := func(domain string) (time.Time, bool) {
			t.Helper()
			at, ok, err := e.exec.ClientLiveSince(e.ctx, &driver.ClientLiveSinceParams{Schema: e.schema, Domain: domain})
			requireNoError(t, err, "ClientLiveSince")
			return at, ok
		}
		if _, ok := since(""); ok {
			t.Fatal("ClientLiveSince of an empty table: ok")
		}
		first := e.register(t, "a1", []byte(`{"domain":"a"}`))
		e.register(t, "a2", []byte(`{"domain":"a"}`))
		plain := e.register(t, "plain", nil)
		e.register(t, "b1", []byte(`{"domain":"b"}`))
		if at, ok := since("a"); !ok || !at.Equal(first.Lease.StartedAt) {
			t.Fatalf("domain a: %v %v, want a1's start %v", at, ok, first.Lease.StartedAt)
		}
		if at, ok := since(""); !ok || !at.Equal(plain.Lease.StartedAt) {
			t.Fatalf("default domain: %v %v, want plain's start %v", at, ok, plain.Lease.StartedAt)
		}
		// A dead row no longer counts.
		e.ageHeartbeat(t, "a1", deadAfter+time.Second)
		if at, ok := since("a"); !ok || !at.After(first.Lease.StartedAt) {
			t.Fatalf("domain a with a1 dead: %v %v, want a2's later start", at, ok)
		}
		if _, ok := since("c"); ok {
			t.Fatal("a domain without rows: ok")
		}
	})

	s.run(t, "BadParams", func(t *testing.T, e *env[TTx]) {
		if _, err := e.exec.ClientRegister(e.ctx, &driver.ClientRegisterParams{Schema: e.schema, ClientID: "", HeartbeatTimeout: deadAfter}); err == nil {
			t.Fatal("ClientRegister with an empty ID: no error")
		}
		if _, err := e.exec.ClientRegister(e.ctx, &driver.ClientRegisterParams{Schema: e.schema, ClientID: "a"}); err == nil {
			t.Fatal("ClientRegister without HeartbeatTimeout: no error")
		}
		if _, err := e.exec.ClientRegister(e.ctx, &driver.ClientRegisterParams{Schema: e.schema, ClientID: "a", HeartbeatTimeout: deadAfter,
			Metadata: []byte(`[1]`)}); err == nil {
			t.Fatal("ClientRegister with metadata that is not an object: no error")
		}
		if _, err := e.exec.ClientHeartbeat(e.ctx, &driver.ClientHeartbeatParams{Schema: e.schema}); err == nil {
			t.Fatal("ClientHeartbeat without a lease: no error")
		}
		if _, err := e.exec.ClientLockDead(e.ctx, &driver.ClientLockDeadParams{Schema: e.schema}); err == nil {
			t.Fatal("ClientLockDead with Max 0: no error")
		}
	})
}
