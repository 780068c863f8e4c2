package riverdrivertest

import (
	"slices"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

// testRate covers the tables of rate limits and timed pauses and the
// reads and takes of a rate-limited fetch.
func (s *suite[TTx]) testRate(t *testing.T) {
	setup := func(t *testing.T, e *env[TTx]) {
		t.Helper()
		m, err := migrate.New(e.drv, &migrate.Config{Schema: e.name, Line: migrate.LineMillrace})
		requireNoError(t, err, "migrate.New line millrace")
		_, err = m.Migrate(e.ctx, migrate.DirectionUp, nil)
		requireNoError(t, err, "migrate line millrace up")
	}
	state := func(t *testing.T, e *env[TTx], queue string) *driver.RateState {
		t.Helper()
		st, err := e.exec.RateStateRead(e.ctx, &driver.RateStateParams{Schema: e.schema, Queue: queue})
		requireNoError(t, err, "RateStateRead")
		return st
	}
	add := func(t *testing.T, e *env[TTx], queue string, at time.Time, counts ...*driver.RateCount) {
		t.Helper()
		requireNoError(t, e.exec.RateCountAdd(e.ctx, &driver.RateCountAddParams{Schema: e.schema, Queue: queue, Now: at, Add: counts}), "RateCountAdd")
	}

	s.run(t, "Counts", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		before := now()
		st := state(t, e, "q")
		requireBetween(t, st.Now, before, now(), "the clock")
		requireEqual(t, len(st.Counts)+len(st.Pauses), 0, "rows of an empty schema")

		ws := st.Now.Truncate(time.Hour)
		we := ws.Add(2 * time.Hour)
		add(t, e, "q", st.Now, &driver.RateCount{Key: "a", WindowStart: ws, WindowEnd: we, Started: 3},
			&driver.RateCount{Key: "b", WindowStart: ws, WindowEnd: we, Started: 1})
		add(t, e, "q", st.Now, &driver.RateCount{Key: "a", WindowStart: ws, WindowEnd: we, Started: 4})
		// An ended window and another queue's window.
		add(t, e, "q", st.Now, &driver.RateCount{Key: "a", WindowStart: ws.Add(-3 * time.Hour), WindowEnd: ws.Add(-2 * time.Hour), Started: 9})
		add(t, e, "other", st.Now, &driver.RateCount{Key: "a", WindowStart: ws, WindowEnd: we, Started: 5})

		got := state(t, e, "q").Counts
		slices.SortFunc(got, func(x, y *driver.RateCount) int {
			return x.WindowStart.Compare(y.WindowStart)*10 + cmpStr(x.Key, y.Key)
		})
		requireEqual(t, len(got), 2, "current counts of q")
		requireEqual(t, *got[0], driver.RateCount{Key: "a", WindowStart: ws, WindowEnd: we, Started: 7}, "count a (added twice)")
		requireEqual(t, *got[1], driver.RateCount{Key: "b", WindowStart: ws, WindowEnd: we, Started: 1}, "count b")
		// The ended window's row goes with the next add to q (a statement
		// does not see the rows it inserts itself).
		requireEqual(t, e.rawString(t, "SELECT count(*) FROM "+e.table("millrace_rate")+" WHERE queue = 'q'"), "3", "rows of q")
		add(t, e, "q", st.Now)
		requireEqual(t, e.rawString(t, "SELECT count(*) FROM "+e.table("millrace_rate")+" WHERE queue = 'q'"), "2", "rows of q")

		// Adding with a later clock deletes the rows of windows ended.
		add(t, e, "q", we.Add(time.Second))
		requireEqual(t, e.rawString(t, "SELECT count(*) FROM "+e.table("millrace_rate")+" WHERE queue = 'q'"), "0", "rows of q after its windows")
		requireEqual(t, e.rawString(t, "SELECT count(*) FROM "+e.table("millrace_rate")+" WHERE queue = 'other'"), "1", "rows of other")

		err := e.exec.RateCountAdd(e.ctx, &driver.RateCountAddParams{Schema: e.schema, Queue: "q", Now: st.Now,
			Add: []*driver.RateCount{{Key: "a", WindowStart: ws, WindowEnd: ws, Started: 1}}})
		if err == nil {
			t.Fatal("RateCountAdd accepted an empty window")
		}
	})

	s.run(t, "Pauses", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		until := now().Add(time.Hour)
		set := func(p millracetype.Pause) *millracetype.Pause {
			t.Helper()
			got, err := e.exec.PauseSet(e.ctx, &driver.PauseSetParams{Schema: e.schema, Pause: p})
			requireNoError(t, err, "PauseSet")
			return got
		}
		got := set(millracetype.Pause{Queue: "q", Args: []byte(`{"token": "a"}`), Until: until})
		requireEqual(t, got.Queue, "q", "queue")
		requireEqual(t, string(got.Args), `{"token": "a"}`, "args in jsonb text form")
		requireTime(t, got.Until, until, "until")
		set(millracetype.Pause{Queue: "q", Kind: "k", Until: until})
		set(millracetype.Pause{Queue: "q", Args: []byte(`{"token":"b"}`), Until: now().Add(-time.Minute)}) // over
		// The same pause again replaces its time.
		got = set(millracetype.Pause{Queue: "q", Args: []byte(`{"token":"a"}`), Until: until.Add(time.Hour)})
		requireTime(t, got.Until, until.Add(time.Hour), "replaced until")

		list, err := e.exec.PauseGetMany(e.ctx, &driver.PauseGetManyParams{Schema: e.schema, Queue: "q"})
		requireNoError(t, err, "PauseGetMany")
		requireEqual(t, len(list), 2, "current pauses")
		requireEqual(t, list[0].Kind+string(list[0].Args), `{"token": "a"}`, "first pause (kind '' first)")
		requireEqual(t, list[1].Kind+string(list[1].Args), `k{}`, "second pause")
		all, err := e.exec.PauseGetMany(e.ctx, &driver.PauseGetManyParams{Schema: e.schema, All: true})
		requireNoError(t, err, "PauseGetMany all")
		requireEqual(t, len(all), 3, "all pauses")
		requireEqual(t, len(state(t, e, "q").Pauses), 2, "pauses in the rate state")

		ok, err := e.exec.PauseDelete(e.ctx, &driver.PauseDeleteParams{Schema: e.schema, Queue: "q", Kind: "k"})
		requireNoError(t, err, "PauseDelete")
		requireEqual(t, ok, true, "deleted")
		ok, err = e.exec.PauseDelete(e.ctx, &driver.PauseDeleteParams{Schema: e.schema, Queue: "q", Kind: "k"})
		requireNoError(t, err, "PauseDelete again")
		requireEqual(t, ok, false, "deleted again")
		ok, err = e.exec.PauseDelete(e.ctx, &driver.PauseDeleteParams{Schema: e.schema, Queue: "q", Args: []byte(`{"token":"a"}`)})
		requireNoError(t, err, "PauseDelete by args")
		requireEqual(t, ok, true, "deleted by args (in another spacing)")
		// A count add deletes the ended pause.
		add(t, e, "q", now())
		requireEqual(t, e.rawString(t, "SELECT count(*) FROM "+e.table("millrace_pause")), "0", "pauses left")
	})

	s.run(t, "ScanTake", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		base := now()
		job := func(kind, args string, priority int) *millracetype.JobRow {
			return e.insertFull(t, &driver.JobInsertFullParams{Queue: "q", Kind: kind, Args: []byte(args), Priority: priority,
				ScheduledAt: ptr(base.Add(-time.Minute)), State: millracetype.JobStateAvailable})
		}
		a1 := job("k1", `{"token":"a","n":1}`, 1)
		a2 := job("k1", `{"token":"a","n":2}`, 1)
		a3 := job("k1", `{"token":"a","n":3}`, 1)
		b1 := job("k2", `{"token":"b"}`, 2)
		none := job("k1", `{"token":null}`, 3)
		missing := job("k1", `{}`, 3)
		e.insertFull(t, &driver.JobInsertFullParams{Queue: "other", Kind: "k1", Args: []byte(`{}`), State: millracetype.JobStateAvailable})
		e.insertFull(t, &driver.JobInsertFullParams{Queue: "q", Kind: "k1", Args: []byte(`{}`), ScheduledAt: ptr(base.Add(time.Hour)), State: millracetype.JobStateAvailable})

		scan := func(p driver.JobRateScanParams) []*driver.JobRateCandidate {
			t.Helper()
			p.Schema, p.Queue = e.schema, "q"
			c, err := e.exec.JobRateScan(e.ctx, &p)
			requireNoError(t, err, "JobRateScan")
			return c
		}
		ids := func(cs []*driver.JobRateCandidate) []int64 {
			var out []int64
			for _, c := range cs {
				out = append(out, c.ID)
			}
			return out
		}
		cs := scan(driver.JobRateScanParams{Keys: []string{"token", "n"}, Max: 100})
		requireEqual(t, ids(cs), []int64{a1.ID, a2.ID, a3.ID, b1.ID, none.ID, missing.ID}, "candidates in fetch order (every group of one job but the last)")
		requireEqual(t, cs[0].Kind, "k1", "kind")
		requireEqual(t, cs[0].Part, []string{`"a"`, "1"}, "part of a1")
		requireEqual(t, cs[3].Part, []string{`"b"`, ""}, "part of b1 (no n)")
		requireEqual(t, cs[4].Part, []string{"", ""}, "part of a null token")
		requireEqual(t, ids(scan(driver.JobRateScanParams{Keys: []string{"token"}, Max: 100, PerGroup: 1})), []int64{a1.ID, b1.ID, none.ID}, "one per group (null and missing share one)")
		// In rounds over the groups: a few deep groups do not hide the others.
		requireEqual(t, ids(scan(driver.JobRateScanParams{Keys: []string{"token"}, Max: 100})),
			[]int64{a1.ID, b1.ID, none.ID, a2.ID, missing.ID, a3.ID}, "candidates in rounds over the tokens")
		requireEqual(t, ids(scan(driver.JobRateScanParams{Max: 2})), []int64{a1.ID, b1.ID}, "Max (one of each kind first)")
		requireEqual(t, ids(scan(driver.JobRateScanParams{Kinds: []string{"k2"}, Max: 100})), []int64{b1.ID}, "Kinds")
		requireEqual(t, len(scan(driver.JobRateScanParams{Max: 0})), 0, "Max 0")

		// Pauses: of token a, of kind k2; an ended one pauses nothing.
		for _, p := range []millracetype.Pause{
			{Queue: "q", Args: []byte(`{"token":"a"}`), Until: base.Add(time.Hour)},
			{Queue: "q", Kind: "k2", Until: base.Add(time.Hour)},
			{Queue: "q", Args: []byte(`{}`), Kind: "k1", Until: base.Add(-time.Hour)},
			{Queue: "other", Until: base.Add(time.Hour)},
		} {
			_, err := e.exec.PauseSet(e.ctx, &driver.PauseSetParams{Schema: e.schema, Pause: p})
			requireNoError(t, err, "PauseSet")
		}
		requireEqual(t, ids(scan(driver.JobRateScanParams{Max: 100})), []int64{none.ID, missing.ID}, "candidates with pauses")

		taken, err := e.exec.JobGetAvailableByID(e.ctx, &driver.JobGetAvailableByIDParams{Schema: e.schema, IDs: []int64{missing.ID, a2.ID, none.ID}, ClientID: "c1"})
		requireNoError(t, err, "JobGetAvailableByID")
		requireIDs(t, taken, []int64{a2.ID, none.ID, missing.ID}, "taken in fetch order")
		for _, j := range taken {
			requireEqual(t, j.State, millracetype.JobStateRunning, "state")
			requireEqual(t, j.Attempt, 1, "attempt")
			requireEqual(t, j.AttemptedBy, []string{"c1"}, "attempted_by")
			requireBetween(t, *j.AttemptedAt, base, now(), "attempted_at")
		}
		again, err := e.exec.JobGetAvailableByID(e.ctx, &driver.JobGetAvailableByIDParams{Schema: e.schema, IDs: []int64{a2.ID}, ClientID: "c2"})
		requireNoError(t, err, "JobGetAvailableByID again")
		requireEqual(t, len(again), 0, "a running job taken again")
	})
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
