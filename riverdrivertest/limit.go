package riverdrivertest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

func (s *suite[TTx]) testLimit(t *testing.T) {
	// setup migrates line millrace too, whose version 5 has millrace_limit.
	setup := func(t *testing.T, e *env[TTx]) {
		t.Helper()
		m, err := migrate.New(e.drv, &migrate.Config{Schema: e.name, Line: migrate.LineMillrace})
		requireNoError(t, err, "migrate.New line millrace")
		_, err = m.Migrate(e.ctx, migrate.DirectionUp, nil)
		requireNoError(t, err, "migrate line millrace up")
	}

	s.run(t, "SetGetDelete", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		l := e.listen(t, e.name, driver.TopicControl)
		before := now()
		row, err := e.exec.LimitSet(e.ctx, &driver.LimitSetParams{Schema: e.schema, Queue: "q1",
			Limit: millracetype.ConcurrencyLimit{Global: 3, PerPartition: 2, PartitionByArgs: []string{"customer_id", "region"}}})
		requireNoError(t, err, "LimitSet q1")
		requireEqual(t, row.Queue, "q1", "queue")
		requireEqual(t, row.Limit, millracetype.ConcurrencyLimit{Global: 3, PerPartition: 2, PartitionByArgs: []string{"customer_id", "region"}}, "limit")
		requireBetween(t, row.CreatedAt, before, now(), "created_at")
		e.requireNext(t, l, driver.TopicControl, map[string]any{"action": "limits_changed", "queue": "q1"})

		_, err = e.exec.LimitSet(e.ctx, &driver.LimitSetParams{Schema: e.schema, Queue: "q1",
			Limit: millracetype.ConcurrencyLimit{Kind: "k", Local: 1}})
		requireNoError(t, err, "LimitSet q1 k")
		e.requireNext(t, l, driver.TopicControl, map[string]any{"action": "limits_changed", "queue": "q1"})
		_, err = e.exec.LimitSet(e.ctx, &driver.LimitSetParams{Schema: e.schema, Queue: "q0",
			Limit: millracetype.ConcurrencyLimit{PerPartition: 1, PartitionByKind: true}})
		requireNoError(t, err, "LimitSet q0")
		e.requireNext(t, l, driver.TopicControl, map[string]any{"action": "limits_changed", "queue": "q0"})

		// Replacing a row keeps created_at and replaces every number.
		time.Sleep(2 * time.Millisecond)
		row2, err := e.exec.LimitSet(e.ctx, &driver.LimitSetParams{Schema: e.schema, Queue: "q1",
			Limit: millracetype.ConcurrencyLimit{Global: 5}})
		requireNoError(t, err, "LimitSet q1 again")
		requireEqual(t, row2.Limit, millracetype.ConcurrencyLimit{Global: 5}, "replaced limit")
		requireTime(t, row2.CreatedAt, row.CreatedAt, "created_at kept")
		if !row2.UpdatedAt.After(row.UpdatedAt) {
			t.Fatalf("updated_at %v not after %v", row2.UpdatedAt, row.UpdatedAt)
		}
		e.requireNext(t, l, driver.TopicControl, map[string]any{"action": "limits_changed", "queue": "q1"})

		all, err := e.exec.LimitGetMany(e.ctx, &driver.LimitGetManyParams{Schema: e.schema})
		requireNoError(t, err, "LimitGetMany")
		var got []string
		for _, r := range all {
			got = append(got, r.Queue+"/"+r.Limit.Kind)
		}
		requireEqual(t, got, []string{"q0/", "q1/", "q1/k"}, "rows by queue and kind")
		q1, err := e.exec.LimitGetMany(e.ctx, &driver.LimitGetManyParams{Schema: e.schema, Queue: "q1"})
		requireNoError(t, err, "LimitGetMany q1")
		requireEqual(t, len(q1), 2, "rows of q1")
		requireEqual(t, q1[1].Limit, millracetype.ConcurrencyLimit{Kind: "k", Local: 1}, "q1/k")

		// The table refuses what the client's validation refuses too.
		for _, bad := range []millracetype.ConcurrencyLimit{{Global: -1}, {}, {PerPartition: 2}, {Global: 1, PartitionByKind: true}} {
			_, err := e.exec.LimitSet(e.ctx, &driver.LimitSetParams{Schema: e.schema, Queue: "q2", Limit: bad})
			if err == nil {
				t.Fatalf("LimitSet %+v: no error", bad)
			}
		}
		e.requireQuiet(t, l, e.name, driver.TopicControl)

		ok, err := e.exec.LimitDelete(e.ctx, &driver.LimitDeleteParams{Schema: e.schema, Queue: "q1", Kind: "k"})
		requireNoError(t, err, "LimitDelete")
		requireEqual(t, ok, true, "deleted")
		e.requireNext(t, l, driver.TopicControl, map[string]any{"action": "limits_changed", "queue": "q1"})
		ok, err = e.exec.LimitDelete(e.ctx, &driver.LimitDeleteParams{Schema: e.schema, Queue: "q1", Kind: "k"})
		requireNoError(t, err, "LimitDelete again")
		requireEqual(t, ok, false, "deleted again")
		e.requireQuiet(t, l, e.name, driver.TopicControl)
	})

	s.run(t, "Bound", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		_, ok, err := e.exec.LimitBoundGet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "q"})
		requireNoError(t, err, "LimitBoundGet")
		requireEqual(t, ok, false, "a bound before any is set")
		requireNoError(t, e.exec.LimitBoundSet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "q", Bound: 7}), "LimitBoundSet")
		requireNoError(t, e.exec.LimitBoundSet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "other", Bound: 1}), "LimitBoundSet other")
		requireNoError(t, e.exec.LimitBoundSet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "q", Bound: 3}), "LimitBoundSet again")
		bound, ok, err := e.exec.LimitBoundGet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "q"})
		requireNoError(t, err, "LimitBoundGet")
		requireEqual(t, ok, true, "bound set")
		requireEqual(t, bound, 3, "the last bound set")

		// Setting or deleting a limit of the queue deletes its bound.
		_, err = e.exec.LimitSet(e.ctx, &driver.LimitSetParams{Schema: e.schema, Queue: "q",
			Limit: millracetype.ConcurrencyLimit{Global: 1}})
		requireNoError(t, err, "LimitSet")
		_, ok, err = e.exec.LimitBoundGet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "q"})
		requireNoError(t, err, "LimitBoundGet")
		requireEqual(t, ok, false, "bound after LimitSet")
		_, ok, err = e.exec.LimitBoundGet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "other"})
		requireNoError(t, err, "LimitBoundGet other")
		requireEqual(t, ok, true, "another queue's bound after LimitSet")
		requireNoError(t, e.exec.LimitBoundSet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "q", Bound: 5}), "LimitBoundSet")
		_, err = e.exec.LimitDelete(e.ctx, &driver.LimitDeleteParams{Schema: e.schema, Queue: "q", Kind: "none"})
		requireNoError(t, err, "LimitDelete")
		_, ok, err = e.exec.LimitBoundGet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "q"})
		requireNoError(t, err, "LimitBoundGet")
		requireEqual(t, ok, false, "bound after LimitDelete")
	})

	s.run(t, "LockRead", func(t *testing.T, e *env[TTx]) {
		e.requireRowLocks(t)
		setup(t, e)
		key := int64(len(e.name))<<40 ^ int64(hashString(e.name+"/limit"))
		_, err := e.exec.LimitSet(e.ctx, &driver.LimitSetParams{Schema: e.schema, Queue: "q",
			Limit: millracetype.ConcurrencyLimit{Global: 4}})
		requireNoError(t, err, "LimitSet")
		requireNoError(t, e.exec.LimitBoundSet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "q", Bound: 2}), "LimitBoundSet")
		// reader is called on the test's goroutine only (it may fail the
		// test); lockRead may run on another.
		reader := func(tx driver.ExecutorTx) driver.LimitLockReader {
			r, ok := tx.(driver.LimitLockReader)
			if !ok {
				t.Fatalf("the transaction executor %T is not a driver.LimitLockReader", tx)
			}
			return r
		}
		lockRead := func(r driver.LimitLockReader, ctx context.Context, queue string) (*driver.LimitLockReadResult, error) {
			return r.LimitLockRead(ctx, &driver.LimitLockReadParams{Schema: e.schema, Queue: queue, LockKey: key})
		}

		first, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = first.Rollback(context.WithoutCancel(e.ctx)) }()
		res, err := lockRead(reader(first), e.ctx, "q")
		requireNoError(t, err, "LimitLockRead")
		requireEqual(t, len(res.Limits), 1, "limit rows")
		requireEqual(t, res.Limits[0].Limit, millracetype.ConcurrencyLimit{Global: 4}, "limit")
		requireEqual(t, [2]any{res.Bound, res.BoundOK}, [2]any{2, true}, "bound")
		// The holder moves the bound, not yet committed.
		requireNoError(t, first.LimitBoundSet(e.ctx, &driver.LimitBoundParams{Schema: e.schema, Queue: "q", Bound: 9}), "LimitBoundSet under the lock")

		// A second transaction waits for the lock, then reads what the
		// first committed.
		second, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = second.Rollback(context.WithoutCancel(e.ctx)) }()
		var (
			res2 *driver.LimitLockReadResult
			err2 error
		)
		done := make(chan struct{})
		secondReader := reader(second)
		go func() {
			defer close(done)
			res2, err2 = lockRead(secondReader, e.ctx, "q")
		}()
		e.waitForWaiting(t, "the advisory lock", func() string {
			select {
			case <-done:
				return fmt.Sprintf("LimitLockRead returned (%+v, %v) while the first transaction held the lock", res2, err2)
			default:
				return ""
			}
		}, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND classid::bigint = $1 AND objid::bigint = $2`, key>>32, key&0xffffffff)
		requireNoError(t, first.Commit(e.ctx), "Commit of the first transaction")
		<-done
		requireNoError(t, err2, "LimitLockRead of the second transaction")
		requireEqual(t, [2]any{res2.Bound, res2.BoundOK}, [2]any{9, true}, "bound the first transaction committed")
		requireNoError(t, second.Commit(e.ctx), "Commit")

		// A queue with neither limits nor a bound.
		third, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = third.Rollback(context.WithoutCancel(e.ctx)) }()
		res3, err := lockRead(reader(third), e.ctx, "none")
		requireNoError(t, err, "LimitLockRead of a queue without rows")
		requireEqual(t, [3]any{len(res3.Limits), res3.Bound, res3.BoundOK}, [3]any{0, 0, false}, "no rows, no bound")
	})

	s.run(t, "ScanAndTake", func(t *testing.T, e *env[TTx]) {
		past := now().Add(-time.Minute)
		at := func(d time.Duration) *time.Time { v := past.Add(d); return &v }
		ins := func(p *driver.JobInsertFullParams, queue, kind, args string, prio int, sched *time.Time) *millracetype.JobRow {
			cp := *p
			cp.Queue, cp.Kind, cp.Args, cp.Priority, cp.ScheduledAt = queue, kind, []byte(args), prio, sched
			if cp.State == "" {
				cp.State = millracetype.JobStateAvailable
			}
			return e.insertFull(t, &cp)
		}
		avail := &driver.JobInsertFullParams{}
		run := running(past)
		// Running: two of customer 1 (one with an extra key), one of
		// customer "1" (a string: another value), one without the key,
		// one with null, one of kind b; one in another queue.
		ins(run, "q", "a", `{"c":1,"x":true}`, 1, at(0))
		ins(run, "q", "a", `{"c":1}`, 1, at(0))
		ins(run, "q", "a", `{"c":"1"}`, 1, at(0))
		ins(run, "q", "a", `{}`, 1, at(0))
		ins(run, "q", "a", `{"c":null}`, 1, at(0))
		ins(run, "q", "b", `{"c":{"z":2,"y":[1]}}`, 1, at(0))
		ins(run, "other", "a", `{"c":1}`, 1, at(0))
		// Available, inserted out of fetch order.
		j4 := ins(avail, "q", "a", `{"c":2}`, 2, at(0))
		j1 := ins(avail, "q", "a", `{"c":1}`, 1, at(2*time.Second))
		j2 := ins(avail, "q", "a", `{"c":1}`, 1, at(3*time.Second))
		j3 := ins(avail, "q", "b", `{"c":1}`, 1, at(4*time.Second))
		j0 := ins(avail, "q", "a", `{"c":1}`, 1, at(time.Second))
		j5 := ins(avail, "q", "a", `{"c":2}`, 3, at(0))
		future := now().Add(time.Hour)
		ins(avail, "q", "a", `{"c":3}`, 1, &future)
		ins(&driver.JobInsertFullParams{State: millracetype.JobStateRetryable}, "q", "a", `{"c":3}`, 1, at(0))
		ins(avail, "other", "a", `{"c":4}`, 1, at(0))

		scan := func(p driver.JobLimitScanParams) *driver.JobLimitScanResult {
			t.Helper()
			p.Schema, p.Queue = e.schema, "q"
			res, err := e.exec.JobLimitScan(e.ctx, &p)
			requireNoError(t, err, "JobLimitScan")
			return res
		}
		groups := func(res *driver.JobLimitScanResult) []string {
			var out []string
			for _, g := range res.Running {
				out = append(out, g.Kind+" "+strings.Join(g.Part, "|")+" "+string(rune('0'+g.Count)))
			}
			slices.Sort(out)
			return out
		}
		ids := func(res *driver.JobLimitScanResult) []int64 {
			var out []int64
			for _, c := range res.Available {
				out = append(out, c.ID)
			}
			return out
		}

		// Counts only, no keys: by kind.
		res := scan(driver.JobLimitScanParams{})
		requireEqual(t, groups(res), []string{"a  5", "b  1"}, "running by kind")
		requireEqual(t, len(res.Available), 0, "no candidates asked for")

		// By key c: JSON values, missing and null together.
		res = scan(driver.JobLimitScanParams{Keys: []string{"c"}, Candidates: 100})
		requireEqual(t, groups(res), []string{"a  2", "a \"1\" 1", "a 1 2", `b {"y": [1], "z": 2} 1`}, "running by kind and c")
		requireEqual(t, ids(res), []int64{j0.ID, j1.ID, j2.ID, j3.ID, j4.ID, j5.ID}, "candidates in fetch order")
		requireEqual(t, res.Available[3].Kind, "b", "candidate kind")
		requireEqual(t, res.Available[0].Part, []string{"1"}, "candidate part")

		// Two keys, one missing everywhere.
		res = scan(driver.JobLimitScanParams{Keys: []string{"c", "x"}, Candidates: 2})
		requireEqual(t, groups(res), []string{"a \"1\"| 1", "a 1| 1", "a 1|true 1", "a | 2", `b {"y": [1], "z": 2}| 1`}, "running by kind, c and x")
		requireEqual(t, ids(res), []int64{j0.ID, j1.ID}, "candidates limited")
		requireEqual(t, res.Available[0].Part, []string{"1", ""}, "candidate part of two keys")

		// PerGroup: at most one of each kind and c; Kinds filters
		// candidates only.
		res = scan(driver.JobLimitScanParams{Keys: []string{"c"}, Candidates: 100, PerGroup: 1})
		requireEqual(t, ids(res), []int64{j0.ID, j3.ID, j4.ID}, "one per group")
		// FirstPerGroup: the first of every group, then the rest, each
		// in fetch order.
		res = scan(driver.JobLimitScanParams{Keys: []string{"c"}, Candidates: 100, FirstPerGroup: 1})
		requireEqual(t, ids(res), []int64{j0.ID, j3.ID, j4.ID, j1.ID, j2.ID, j5.ID}, "first of every group first")
		res = scan(driver.JobLimitScanParams{Keys: []string{"c"}, Candidates: 4, FirstPerGroup: 1})
		requireEqual(t, ids(res), []int64{j0.ID, j3.ID, j4.ID, j1.ID}, "first of every group first, limited")
		res = scan(driver.JobLimitScanParams{Keys: []string{"c"}, Candidates: 100, Kinds: []string{"b"}})
		requireEqual(t, ids(res), []int64{j3.ID}, "kind b only")
		requireEqual(t, len(res.Running), 4, "running of every kind counted")

		// JobGetAvailableByID takes those still available and due, in
		// fetch order, marked as a fetch marks them.
		other := ins(run, "q", "a", `{}`, 1, at(0))
		before := now()
		got, err := e.exec.JobGetAvailableByID(e.ctx, &driver.JobGetAvailableByIDParams{Schema: e.schema,
			IDs: []int64{j4.ID, j0.ID, other.ID, 1 << 40}, ClientID: "client_b"})
		requireNoError(t, err, "JobGetAvailableByID")
		requireIDs(t, got, []int64{j0.ID, j4.ID}, "taken, in fetch order")
		for _, j := range got {
			requireEqual(t, j.State, millracetype.JobStateRunning, "state")
			requireEqual(t, j.Attempt, 1, "attempt")
			requireEqual(t, j.AttemptedBy, []string{"client_b"}, "attempted_by")
			if j.AttemptedAt == nil {
				t.Fatal("attempted_at not set")
			}
			requireBetween(t, *j.AttemptedAt, before, now(), "attempted_at")
		}
		requireEqual(t, e.getJob(t, other.ID).Attempt, 1, "a running job is left alone")
		none, err := e.exec.JobGetAvailableByID(e.ctx, &driver.JobGetAvailableByIDParams{Schema: e.schema, ClientID: "c"})
		requireNoError(t, err, "JobGetAvailableByID of none")
		requireEqual(t, len(none), 0, "none")

		// A row locked by another transaction is skipped (a driver
		// without row locks has nothing to skip).
		if driver.IsSingleWriter(e.drv) {
			return
		}
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(e.ctx) }()
		_, err = tx.JobGetAvailableByID(e.ctx, &driver.JobGetAvailableByIDParams{Schema: e.schema, IDs: []int64{j1.ID}, ClientID: "c"})
		requireNoError(t, err, "JobGetAvailableByID in tx")
		got, err = e.exec.JobGetAvailableByID(e.ctx, &driver.JobGetAvailableByIDParams{Schema: e.schema, IDs: []int64{j1.ID, j2.ID}, ClientID: "c"})
		requireNoError(t, err, "JobGetAvailableByID beside tx")
		requireIDs(t, got, []int64{j2.ID}, "locked row skipped")
	})
}
