package maintenance

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// every returns an aligned schedule of period d.
func every(d time.Duration) func(time.Time) time.Time {
	return func(t time.Time) time.Time { return t.UTC().Truncate(d).Add(d) }
}

// durableJob is a durable job of kind "tick" whose runs carry no unique
// key: only the compare-and-set on its row keeps a run from being
// inserted twice.
func durableJob(id string, d time.Duration) *PeriodicJob {
	return &PeriodicJob{ID: id, Next: every(d), Construct: func(runAt time.Time) (*driver.JobInsertParams, error) {
		return &driver.JobInsertParams{Args: []byte(`{}`), Kind: "tick", MaxAttempts: 25, Priority: 1, Queue: "default",
			State: millracetype.JobStateAvailable, ScheduledAt: &runAt, Metadata: []byte(fmt.Sprintf(`{"id": %q}`, id))}, nil
	}}
}

func newEnqueuer(t *testing.T, db *testfixture.DB, cfg *PeriodicJobEnqueuerConfig, jobs ...*PeriodicJob) *PeriodicJobEnqueuer {
	t.Helper()
	if cfg == nil {
		cfg = &PeriodicJobEnqueuerConfig{}
	}
	cfg.Schema = db.Schema
	e, err := NewPeriodicJobEnqueuer(db.Exec(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, job := range jobs {
		if _, err := e.Add(job); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// runTimes lists the scheduled_at of the tick jobs of a periodic job ID.
func runTimes(t *testing.T, db *testfixture.DB, id string) []time.Time {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), "SELECT scheduled_at FROM "+db.Schema+".river_job WHERE kind = 'tick' AND metadata->>'id' = $1 ORDER BY scheduled_at, id", id)
	if err != nil {
		t.Fatal(err)
	}
	times, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		t.Fatal(err)
	}
	for i := range times {
		times[i] = times[i].UTC()
	}
	return times
}

// row reads a periodic job's row, or nil.
func row(t *testing.T, db *testfixture.DB, id string) *driver.PeriodicJobRow {
	t.Helper()
	res, err := db.Exec().PeriodicJobGetMany(context.Background(), &driver.PeriodicJobGetManyParams{Schema: db.Schema, IDs: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Jobs) == 0 {
		return nil
	}
	return res.Jobs[0]
}

func dbNow(t *testing.T, db *testfixture.DB) time.Time {
	t.Helper()
	var now time.Time
	if err := db.Pool.QueryRow(context.Background(), "SELECT now()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now.UTC()
}

// clearOfTurn returns the database's time, after waiting for the next
// multiple of period to pass when that is less than margin away: a test
// that wants no run of a schedule aligned to period for margin holds at
// whatever time it starts.
func clearOfTurn(t *testing.T, db *testfixture.DB, period, margin time.Duration) time.Time {
	t.Helper()
	now := dbNow(t, db)
	if left := now.Truncate(period).Add(period).Sub(now); left < margin {
		t.Logf("waiting %s for the turn of the %s at %s", left, period, now.Add(left).Format(time.TimeOnly))
		time.Sleep(left + 50*time.Millisecond)
		now = dbNow(t, db)
	}
	return now
}

func putRow(t *testing.T, db *testfixture.DB, id string, next, from time.Time) {
	t.Helper()
	if _, err := db.Exec().PeriodicJobInsertMany(context.Background(), &driver.PeriodicJobInsertManyParams{Schema: db.Schema,
		Jobs: []*driver.PeriodicJobInsert{{ID: id, NextRunAt: next, NextFrom: from}}}); err != nil {
		t.Fatal(err)
	}
}

// TestPeriodicStaleLeaderFenced: two enqueuers (a leader and a stale one,
// as in a split brain) read the same due run and both try to enqueue it:
// the first moves the row on and inserts the job, the second changes
// nothing and inserts nothing.
func TestPeriodicStaleLeaderFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	const period = time.Hour
	job := durableJob("fenced", period)
	now := dbNow(t, db)
	due := now.Truncate(period)
	putRow(t, db, "fenced", due, due.Add(-period))
	jobs := map[string]*PeriodicJob{"fenced": job}
	adv := func() []*driver.PeriodicJobAdvance {
		return []*driver.PeriodicJobAdvance{{ID: "fenced", Expected: due, NextRunAt: due.Add(period), NextFrom: due, LastRunAt: &due}}
	}
	runs := map[string][]time.Time{"fenced": {due}}
	leader := newEnqueuer(t, db, nil, job)
	stale := newEnqueuer(t, db, nil, job)
	changed, err := leader.advance(ctx, jobs, adv(), runs)
	if err != nil || !slices.Equal(changed, []string{"fenced"}) {
		t.Fatalf("leader's advance: %v, %v", changed, err)
	}
	changed, err = stale.advance(ctx, jobs, adv(), runs)
	if err != nil || len(changed) != 0 {
		t.Fatalf("stale leader's advance: %v, %v; want nothing changed", changed, err)
	}
	if got := runTimes(t, db, "fenced"); !slices.Equal(got, []time.Time{due}) {
		t.Fatalf("runs %v, want one at %v", got, due)
	}
	if r := row(t, db, "fenced"); !r.NextRunAt.Equal(due.Add(period)) || r.LastRunAt == nil || !r.LastRunAt.Equal(due) {
		t.Fatalf("row after the race: %+v", r)
	}
}

// TestPeriodicEnqueuersRaceOnTicks: two enqueuers run the same durable job
// of a 1 s schedule at once, each waking at the same ticks; its runs have
// no unique key, so only the compare-and-set keeps them apart: every tick
// is inserted once, and the enqueuers did race (some compare-and-sets
// lost).
func TestPeriodicEnqueuersRaceOnTicks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	var inserted, lost atomic.Int64
	var enqueuers []*PeriodicJobEnqueuer
	for range 2 {
		e := newEnqueuer(t, db, nil, durableJob("race", time.Second))
		e.inserted = func(res []*driver.JobInsertResult) { inserted.Add(int64(len(res))) }
		e.advanced = func(tried, changed int) { lost.Add(int64(tried - changed)) }
		if err := e.Start(ctx); err != nil {
			t.Fatal(err)
		}
		enqueuers = append(enqueuers, e)
	}
	testwait.For(t, 30*time.Second, "6 ticks inserted and a lost race", func() bool { return inserted.Load() >= 6 && lost.Load() > 0 })
	for _, e := range enqueuers {
		e.Stop()
	}
	got := runTimes(t, db, "race")
	if int64(len(got)) != inserted.Load() {
		t.Fatalf("%d rows, %d inserts reported", len(got), inserted.Load())
	}
	for i, at := range got {
		if !at.Equal(at.Truncate(time.Second)) {
			t.Errorf("run %v is not on a tick", at)
		}
		if i > 0 && !at.Equal(got[i-1].Add(time.Second)) {
			t.Errorf("run %v follows %v: a tick doubled or missing", at, got[i-1])
		}
	}
	t.Logf("%d ticks inserted once each; %d compare-and-sets lost", len(got), lost.Load())
}

// TestPeriodicMissedRuns: a job's row is 5 periods overdue. Runs due
// before the cluster came back (LiveSince) count as one, the first; runs
// due since are held-up runs, all enqueued; the row moves to the first
// run after now. With SkipMissed the first is dropped too.
//
// With fromDB, the enqueuer's own LiveSince says it started just now (a
// new process that won the election at once) and LiveSinceDB (the live
// clients' heartbeat rows) knows a client has been running for 2.5
// periods: the runs due since are held-up runs all the same.
func TestPeriodicMissedRuns(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ skip, fromDB bool }{{false, false}, {true, false}, {false, true}} {
		skip := c.skip
		t.Run(fmt.Sprintf("SkipMissed=%v,fromDB=%v", c.skip, c.fromDB), func(t *testing.T) {
			t.Parallel()
			db := testfixture.New(t)
			const period = time.Hour
			now := dbNow(t, db)
			first := now.Truncate(period).Add(-5 * period)
			putRow(t, db, "missed", first, first.Add(-period))
			liveSince := now.Truncate(period).Add(-2*period - period/2) // 2.5 periods before the current tick
			job := durableJob("missed", period)
			job.SkipMissed = skip
			passes := make(chan struct{}, 1)
			cfg := &PeriodicJobEnqueuerConfig{LiveSince: func() time.Time { return liveSince }}
			if c.fromDB {
				cfg.LiveSince = time.Now
				cfg.LiveSinceDB = func(context.Context) (time.Time, bool) { return liveSince, true }
			}
			e := newEnqueuer(t, db, cfg, job)
			e.passes = passes
			onePass(t, e, passes)
			// The hour may have turned since now: then the pass enqueued
			// that run too (want below counts it) and the next run is
			// the one after.
			after := dbNow(t, db)

			r := row(t, db, "missed")
			if r.NextRunAt.Before(now) || r.NextRunAt.Sub(after) > period {
				t.Fatalf("next run %v, want the first after %v", r.NextRunAt, after)
			}
			var want []time.Time
			if !skip {
				want = append(want, first)
			}
			for at := now.Truncate(period).Add(-2 * period); at.Before(r.NextRunAt); at = at.Add(period) {
				want = append(want, at)
			}
			if got := runTimes(t, db, "missed"); !slices.Equal(got, want) {
				t.Fatalf("runs\n%v\nwant\n%v", got, want)
			}
			if r.LastRunAt == nil || !r.LastRunAt.Equal(want[len(want)-1]) {
				t.Fatalf("last_run_at %v, want %v", r.LastRunAt, want[len(want)-1])
			}
		})
	}
}

// TestPeriodicRows: a new job gets a row at its next run; a row written
// for another schedule starts afresh without a run; the row of a job
// removed while the enqueuer runs is deleted; a row overdue for over a
// week whose job the enqueuer lacks is deleted, a recent one is kept.
func TestPeriodicRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	// The hourly jobs must not fall due while the test runs.
	now := clearOfTurn(t, db, time.Hour, 30*time.Second)
	// "changed" was every 7 minutes (its next run 7 minutes past an hour);
	// now hourly.
	putRow(t, db, "changed", now.Truncate(time.Hour).Add(-53*time.Minute), now.Truncate(time.Hour).Add(-time.Hour))
	putRow(t, db, "stale", now.Add(-8*24*time.Hour).Truncate(time.Hour), now.Add(-8*24*time.Hour).Truncate(time.Hour).Add(-time.Hour))
	putRow(t, db, "recent", now.Add(-6*24*time.Hour).Truncate(time.Hour), now.Add(-6*24*time.Hour).Truncate(time.Hour).Add(-time.Hour))
	passes := make(chan struct{}, 1)
	e := newEnqueuer(t, db, nil, durableJob("new", time.Hour), durableJob("changed", time.Hour))
	h, err := e.Add(durableJob("removed", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Add(durableJob("new", time.Minute)); err == nil {
		t.Fatal("a second job with ID new was added")
	}
	e.passes = passes
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	recvPass := func() {
		t.Helper()
		select {
		case <-passes:
		case <-time.After(10 * time.Second):
			t.Fatal("no pass within 10 s")
		}
	}
	recvPass()
	for _, id := range []string{"new", "changed", "removed"} {
		r := row(t, db, id)
		if r == nil || !r.NextRunAt.Equal(r.NextFrom.Truncate(time.Hour).Add(time.Hour)) || r.NextRunAt.Before(now) || r.LastRunAt != nil {
			t.Errorf("%s: row %+v, want the first hourly run after now and no run", id, r)
		}
	}
	if got := runTimes(t, db, "changed"); len(got) != 0 {
		t.Errorf("the changed schedule enqueued %v", got)
	}
	if row(t, db, "stale") != nil || row(t, db, "recent") == nil {
		t.Errorf("stale row kept or recent row deleted: %v, %v", row(t, db, "stale"), row(t, db, "recent"))
	}
	e.Remove(h)
	testwait.For(t, 10*time.Second, "the removed job's row to be deleted", func() bool { return row(t, db, "removed") == nil })
	if row(t, db, "new") == nil {
		t.Error("the row of a job still added was deleted")
	}
}

// TestPeriodicRemovedBeforeStart: a job removed while the enqueuer is not
// running (this client did not lead) keeps its row: the leader's
// configuration is what counts.
func TestPeriodicRemovedBeforeStart(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	now := dbNow(t, db)
	putRow(t, db, "kept", now.Truncate(time.Hour).Add(time.Hour), now.Truncate(time.Hour))
	passes := make(chan struct{}, 1)
	e := newEnqueuer(t, db, nil)
	h, err := e.Add(durableJob("kept", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.Remove(h)
	if _, err := e.Add(durableJob("other", time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.passes = passes
	onePass(t, e, passes)
	if row(t, db, "kept") == nil {
		t.Fatal("a job removed before the enqueuer started lost its row")
	}
}

// TestPeriodicWithoutTable: on a schema without line millrace, jobs with
// an ID are scheduled in memory, as before durable schedules.
func TestPeriodicWithoutTable(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	var mu sync.Mutex
	var got []time.Time
	e := newEnqueuer(t, db, nil, durableJob("memory", time.Second))
	e.inserted = func(res []*driver.JobInsertResult) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range res {
			got = append(got, r.Job.ScheduledAt)
		}
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "two runs", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 2 })
	e.Stop()
}
