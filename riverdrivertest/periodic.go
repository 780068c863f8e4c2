package riverdrivertest

import (
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/migrate"
)

func (s *suite[TTx]) testPeriodicJob(t *testing.T) {
	// setup migrates line millrace too, whose version 2 has the table.
	setup := func(t *testing.T, e *env[TTx]) {
		t.Helper()
		m, err := migrate.New(e.drv, &migrate.Config{Schema: e.name, Line: migrate.LineMillrace})
		requireNoError(t, err, "migrate.New line millrace")
		_, err = m.Migrate(e.ctx, migrate.DirectionUp, nil)
		requireNoError(t, err, "migrate line millrace up")
	}
	get := func(t *testing.T, e *env[TTx], ids ...string) *driver.PeriodicJobGetManyResult {
		t.Helper()
		res, err := e.exec.PeriodicJobGetMany(e.ctx, &driver.PeriodicJobGetManyParams{Schema: e.schema, IDs: ids})
		requireNoError(t, err, "PeriodicJobGetMany")
		return res
	}
	insert := func(t *testing.T, e *env[TTx], jobs ...*driver.PeriodicJobInsert) int {
		t.Helper()
		n, err := e.exec.PeriodicJobInsertMany(e.ctx, &driver.PeriodicJobInsertManyParams{Schema: e.schema, Jobs: jobs})
		requireNoError(t, err, "PeriodicJobInsertMany")
		return n
	}
	rowIDs := func(rows []*driver.PeriodicJobRow) []string {
		var ids []string
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		return ids
	}
	base := time.Date(2026, 3, 8, 6, 0, 0, 0, time.UTC)

	s.run(t, "GetInsert", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		before := now()
		res := get(t, e, "a", "b")
		requireBetween(t, res.Now, before, now(), "now() with no rows")
		requireEqual(t, len(res.Jobs), 0, "rows before any insert")

		requireEqual(t, insert(t, e, &driver.PeriodicJobInsert{ID: "b", NextRunAt: base.Add(time.Hour), NextFrom: base},
			&driver.PeriodicJobInsert{ID: "a", NextRunAt: base.Add(time.Minute), NextFrom: base}), 2, "rows inserted")
		// An existing row stays as it is.
		requireEqual(t, insert(t, e, &driver.PeriodicJobInsert{ID: "a", NextRunAt: base.Add(5 * time.Minute), NextFrom: base},
			&driver.PeriodicJobInsert{ID: "c", NextRunAt: base.Add(time.Second), NextFrom: base}), 1, "rows inserted among existing")

		before = now()
		res = get(t, e, "c", "a", "missing")
		requireBetween(t, res.Now, before, now(), "now()")
		requireEqual(t, rowIDs(res.Jobs), []string{"a", "c"}, "rows, by ID")
		a := res.Jobs[0]
		requireTime(t, a.NextRunAt, base.Add(time.Minute), "a: next_run_at (the first insert's)")
		requireTime(t, a.NextFrom, base, "a: next_from")
		requireNilTime(t, a.LastRunAt, "a: last_run_at")
		if a.CreatedAt.IsZero() || a.UpdatedAt.IsZero() {
			t.Fatalf("a: created_at %v, updated_at %v", a.CreatedAt, a.UpdatedAt)
		}
		requireEqual(t, len(get(t, e).Jobs), 0, "rows for no IDs")
	})

	s.run(t, "AdvanceCompareAndSet", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		insert(t, e, &driver.PeriodicJobInsert{ID: "a", NextRunAt: base.Add(time.Minute), NextFrom: base},
			&driver.PeriodicJobInsert{ID: "b", NextRunAt: base.Add(time.Minute), NextFrom: base})
		ran := base.Add(time.Minute)
		changed, err := e.exec.PeriodicJobAdvanceMany(e.ctx, &driver.PeriodicJobAdvanceManyParams{Schema: e.schema, Jobs: []*driver.PeriodicJobAdvance{
			{ID: "b", Expected: base.Add(time.Minute), NextRunAt: base.Add(2 * time.Minute), NextFrom: ran, LastRunAt: &ran},
			{ID: "a", Expected: base, NextRunAt: base.Add(3 * time.Minute), NextFrom: ran}, // stale expectation
			{ID: "gone", Expected: base, NextRunAt: base.Add(3 * time.Minute), NextFrom: ran},
		}})
		requireNoError(t, err, "PeriodicJobAdvanceMany")
		requireEqual(t, changed, []string{"b"}, "rows changed")
		rows := get(t, e, "a", "b").Jobs
		requireTime(t, rows[0].NextRunAt, base.Add(time.Minute), "a unchanged: next_run_at")
		requireTime(t, rows[1].NextRunAt, base.Add(2*time.Minute), "b: next_run_at")
		requireTime(t, rows[1].NextFrom, ran, "b: next_from")
		requireTimePtr(t, rows[1].LastRunAt, ran, "b: last_run_at")
		if !rows[1].UpdatedAt.After(rows[0].UpdatedAt) {
			t.Fatalf("b: updated_at %v not after a's %v", rows[1].UpdatedAt, rows[0].UpdatedAt)
		}
		// A nil LastRunAt keeps the row's.
		changed, err = e.exec.PeriodicJobAdvanceMany(e.ctx, &driver.PeriodicJobAdvanceManyParams{Schema: e.schema, Jobs: []*driver.PeriodicJobAdvance{
			{ID: "b", Expected: base.Add(2 * time.Minute), NextRunAt: base.Add(time.Hour), NextFrom: base.Add(time.Minute)},
		}})
		requireNoError(t, err, "PeriodicJobAdvanceMany")
		requireEqual(t, changed, []string{"b"}, "rows changed")
		b := get(t, e, "b").Jobs[0]
		requireTime(t, b.NextRunAt, base.Add(time.Hour), "b: next_run_at")
		requireTimePtr(t, b.LastRunAt, ran, "b: last_run_at kept")
	})

	// Two transactions compare-and-set the same row from the same read:
	// the second waits for the first, then finds the row moved and
	// changes nothing.
	s.run(t, "AdvanceRace", func(t *testing.T, e *env[TTx]) {
		e.requireRowLocks(t)
		setup(t, e)
		insert(t, e, &driver.PeriodicJobInsert{ID: "a", NextRunAt: base.Add(time.Minute), NextFrom: base})
		advance := func(exec driver.Executor, next time.Duration) ([]string, error) {
			return exec.PeriodicJobAdvanceMany(e.ctx, &driver.PeriodicJobAdvanceManyParams{Schema: e.schema, Jobs: []*driver.PeriodicJobAdvance{
				{ID: "a", Expected: base.Add(time.Minute), NextRunAt: base.Add(next), NextFrom: base.Add(time.Minute)},
			}})
		}
		first, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = first.Rollback(e.ctx) }()
		changed, err := advance(first, 2*time.Minute)
		requireNoError(t, err, "first advance")
		requireEqual(t, changed, []string{"a"}, "first advance")
		type result struct {
			changed []string
			err     error
		}
		second := make(chan result, 1)
		go func() {
			changed, err := advance(e.exec, 3*time.Minute)
			second <- result{changed, err}
		}()
		// The second must be blocked on the first's row lock: it cannot
		// have finished while the first is open.
		waitForLockWait(t, e)
		select {
		case r := <-second:
			t.Fatalf("second advance finished while the first transaction held the row: %v, %v", r.changed, r.err)
		default:
		}
		requireNoError(t, first.Commit(e.ctx), "commit first")
		r := <-second
		requireNoError(t, r.err, "second advance")
		requireEqual(t, len(r.changed), 0, "rows the second advance changed")
		requireTime(t, get(t, e, "a").Jobs[0].NextRunAt, base.Add(2*time.Minute), "next_run_at: the first's")
	})

	s.run(t, "Delete", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		insert(t, e, &driver.PeriodicJobInsert{ID: "old_kept", NextRunAt: base, NextFrom: base.Add(-time.Hour)},
			&driver.PeriodicJobInsert{ID: "old", NextRunAt: base, NextFrom: base.Add(-time.Hour)},
			&driver.PeriodicJobInsert{ID: "new", NextRunAt: base.Add(48 * time.Hour), NextFrom: base},
			&driver.PeriodicJobInsert{ID: "named", NextRunAt: base.Add(48 * time.Hour), NextFrom: base})
		del := func(p *driver.PeriodicJobDeleteManyParams) []string {
			t.Helper()
			p.Schema = e.schema
			ids, err := e.exec.PeriodicJobDeleteMany(e.ctx, p)
			requireNoError(t, err, "PeriodicJobDeleteMany")
			return ids
		}
		requireEqual(t, len(del(&driver.PeriodicJobDeleteManyParams{})), 0, "deleted with no IDs and no horizon")
		requireEqual(t, del(&driver.PeriodicJobDeleteManyParams{IDs: []string{"named", "missing"}}), []string{"named"}, "deleted by ID")
		horizon := base.Add(time.Hour)
		requireEqual(t, del(&driver.PeriodicJobDeleteManyParams{OverdueBefore: &horizon, Keep: []string{"old_kept"}}), []string{"old"},
			"deleted overdue, but kept")
		// No Keep list keeps nothing.
		requireEqual(t, del(&driver.PeriodicJobDeleteManyParams{OverdueBefore: &horizon}), []string{"old_kept"}, "deleted overdue, none kept")
		requireEqual(t, rowIDs(get(t, e, "old_kept", "old", "new", "named").Jobs), []string{"new"}, "rows left")
	})
}

// waitForLockWait waits until a statement on the env's millrace_periodic
// waits for a lock.
func waitForLockWait[TTx any](t *testing.T, e *env[TTx]) {
	t.Helper()
	testwait.For(t, 10*time.Second, "a statement on millrace_periodic to wait for a lock", func() bool {
		return e.rawString(t, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
			AND position($1 IN query) > 0`, `"`+e.name+`".millrace_periodic`) != "0"
	})
}
