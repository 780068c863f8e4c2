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

func (s *suite[TTx]) testFair(t *testing.T) {
	// setup migrates line millrace too, whose version 8 has
	// millrace_fair_partition.
	setup := func(t *testing.T, e *env[TTx]) {
		t.Helper()
		m, err := migrate.New(e.drv, &migrate.Config{Schema: e.name, Line: migrate.LineMillrace})
		requireNoError(t, err, "migrate.New line millrace")
		_, err = m.Migrate(e.ctx, migrate.DirectionUp, nil)
		requireNoError(t, err, "migrate line millrace up")
	}
	past := now().Add(-time.Minute)
	at := func(d time.Duration) *time.Time { v := past.Add(d); return &v }
	ins := func(t *testing.T, e *env[TTx], p *driver.JobInsertFullParams, queue, kind, args string, prio int, sched *time.Time) *millracetype.JobRow {
		t.Helper()
		cp := *p
		cp.Queue, cp.Kind, cp.Args, cp.Priority, cp.ScheduledAt = queue, kind, []byte(args), prio, sched
		if cp.State == "" {
			cp.State = millracetype.JobStateAvailable
		}
		return e.insertFull(t, &cp)
	}
	avail := &driver.JobInsertFullParams{}
	parts := func(t *testing.T, e *env[TTx], queue string) []string {
		t.Helper()
		ps, err := e.exec.FairPartitionList(e.ctx, &driver.FairPartitionListParams{Schema: e.schema, Queue: queue, Limit: 100})
		requireNoError(t, err, "FairPartitionList")
		return partNames(ps)
	}

	s.run(t, "DiscoverList", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		// In fetch order: t1 (prio 1), t2 without the key, t3 with null,
		// then kind b's t1, then t4 of priority 2; another queue's t9.
		j1 := ins(t, e, avail, "q", "a", `{"t":1,"x":"y"}`, 1, at(0))
		ins(t, e, avail, "q", "a", `{"u":1}`, 1, at(time.Second))
		ins(t, e, avail, "q", "a", `{"t":null}`, 1, at(2*time.Second))
		ins(t, e, avail, "q", "b", `{"t":1}`, 1, at(3*time.Second))
		ins(t, e, avail, "q", "a", `{"t":{"b":2,"a":[1]}}`, 2, at(0))
		ins(t, e, avail, "other", "a", `{"t":9}`, 1, at(0))
		ins(t, e, running(past), "q", "a", `{"t":"r"}`, 1, at(0))
		// Oldest: args that are not an object (the default partition),
		// and a value too big to register (plain order only).
		ins(t, e, avail, "q", "a", `"str"`, 1, at(-3*time.Second))
		ins(t, e, avail, "q", "a", `[1, 2]`, 1, at(-2*time.Second))
		ins(t, e, avail, "q", "a", `{"t":"`+strings.Repeat("x", 2000)+`"}`, 1, at(-time.Second))

		discover := func(p driver.FairPartitionDiscoverParams) int {
			t.Helper()
			p.Schema, p.Queue = e.schema, "q"
			added, err := e.exec.FairPartitionDiscover(e.ctx, &p)
			requireNoError(t, err, "FairPartitionDiscover")
			return len(added)
		}
		// The newest two in fetch order: t4 (priority 2), then kind b's
		// t1.
		requireEqual(t, discover(driver.FairPartitionDiscoverParams{Keys: []string{"t"}, Newest: 2}), 2, "added")
		requireEqual(t, parts(t, e, "q"), []string{`/{"t": 1}`, `/{"t": {"a": [1], "b": 2}}`}, "the newest two")
		added, err := e.exec.FairPartitionDiscover(e.ctx, &driver.FairPartitionDiscoverParams{Schema: e.schema, Queue: "q",
			Keys: []string{"t", "x"}, Newest: 3})
		requireNoError(t, err, "FairPartitionDiscover returning")
		requireEqual(t, partNames(added), []string{`/{"t": {"a": [1], "b": 2}, "x": null}`, `/{"t": 1, "x": null}`, `/{"t": null, "x": null}`}, "the rows added, newest first")
		requireEqual(t, added[0].EmptySince == nil, true, "not empty")
		e.rawExec(t, e.sql(`DELETE FROM `+e.table("millrace_fair_partition")+` WHERE args ? 'x'`,
			`DELETE FROM `+e.table("millrace_fair_partition")+` WHERE json_type(args, '$.x') IS NOT NULL`))
		// All: missing and null are the same default partition; kind b's
		// t1 is t1's; running jobs are not read.
		requireEqual(t, discover(driver.FairPartitionDiscoverParams{Keys: []string{"t"}, Newest: 100}), 1, "added")
		requireEqual(t, parts(t, e, "q"), []string{`/{"t": null}`, `/{"t": 1}`, `/{"t": {"a": [1], "b": 2}}`}, "every partition (jsonb order)")
		requireEqual(t, discover(driver.FairPartitionDiscoverParams{Keys: []string{"t"}, Newest: 100}), 0, "nothing new")
		requireEqual(t, discover(driver.FairPartitionDiscoverParams{Keys: []string{"t"}}), 0, "nothing asked")
		// By kind and two keys, of chosen jobs only (of this queue).
		requireEqual(t, discover(driver.FairPartitionDiscoverParams{Keys: []string{"t", "x"}, ByKind: true, IDs: []int64{j1.ID, 1 << 40}}), 1, "added by ID")
		requireEqual(t, parts(t, e, "q")[3], `a/{"t": 1, "x": "y"}`, "by kind and two keys, after kind ''")
		requireEqual(t, parts(t, e, "other"), []string(nil), "other queue untouched")
		// By kind alone: an empty object.
		requireEqual(t, discover(driver.FairPartitionDiscoverParams{ByKind: true, Newest: 100}), 2, "by kind")
		requireEqual(t, slices.Contains(parts(t, e, "q"), "b/{}"), true, "kind b's partition")

		// List from a cursor.
		all := parts(t, e, "q")
		requireEqual(t, len(all), 6, "rows")
		list := func(after *driver.FairPartition, limit int) []*driver.FairPartition {
			t.Helper()
			ps, err := e.exec.FairPartitionList(e.ctx, &driver.FairPartitionListParams{Schema: e.schema, Queue: "q", After: after, Limit: limit})
			requireNoError(t, err, "FairPartitionList")
			return ps
		}
		first := list(nil, 2)
		requireEqual(t, partNames(first), all[:2], "first two")
		requireEqual(t, partNames(list(first[1], 3)), all[2:5], "the next three")
		requireEqual(t, partNames(list(first[1], 100)), all[2:], "the rest")
		requireEqual(t, len(list(&driver.FairPartition{Kind: "zzz"}, 2)), 0, "after the last: none")
		requireEqual(t, len(list(nil, 0)), 0, "limit 0")
		ps, err := e.exec.FairPartitionList(e.ctx, &driver.FairPartitionListParams{Schema: e.schema, Queue: "q", Limit: 100, Kinds: []string{"b"}})
		requireNoError(t, err, "FairPartitionList of kind b")
		requireEqual(t, partNames(ps), append(slices.Clone(all[:3]), "b/{}"), "kind '' and b only")
	})

	s.run(t, "Lock", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		var a, b, def []int64
		for i := range 5 {
			a = append(a, ins(t, e, avail, "q", "k", `{"t":"A"}`, 1, at(time.Duration(i)*time.Second)).ID)
		}
		for i := range 3 {
			b = append(b, ins(t, e, avail, "q", "k", `{"t":"B","n":1}`, 1, at(time.Duration(10+i)*time.Second)).ID)
		}
		def = append(def, ins(t, e, avail, "q", "k", `{}`, 1, at(20*time.Second)).ID)
		def = append(def, ins(t, e, avail, "q", "k", `{"t":null}`, 1, at(21*time.Second)).ID)
		bHigh := ins(t, e, avail, "q", "k", `{"t":"B"}`, 4, at(0)).ID
		bOther := ins(t, e, avail, "q", "other_kind", `{"t":"B"}`, 1, at(0)).ID
		future := now().Add(time.Hour)
		ins(t, e, avail, "q", "k", `{"t":"B"}`, 1, &future)
		ins(t, e, avail, "other", "k", `{"t":"B"}`, 1, at(0))

		lock := func(tx driver.ExecutorTx, p driver.JobFairLockParams) []*driver.FairLocked {
			t.Helper()
			p.Schema, p.Queue = e.schema, "q"
			got, err := tx.JobFairLock(e.ctx, &p)
			requireNoError(t, err, "JobFairLock")
			return got
		}
		show := func(ls []*driver.FairLocked) []string {
			var out []string
			for _, l := range ls {
				out = append(out, fmt.Sprintf("%d:%d#%d", l.ID, l.Share, l.Rank))
			}
			return out
		}
		want := func(pairs ...any) []string {
			var out []string
			for i := 0; i < len(pairs); i += 3 {
				out = append(out, fmt.Sprintf("%d:%d#%d", pairs[i], pairs[i+1], pairs[i+2]))
			}
			return out
		}
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(e.ctx) }()
		// Two of A, B up to 10 (of kind k: by kind; priority order), the
		// default partition, and plain order up to Max 9.
		got := lock(tx, driver.JobFairLockParams{Max: 9, Shares: []*driver.FairShare{
			{Args: []byte(`{"t":"A"}`), Max: 2},
			{Kind: "k", Args: []byte(`{"t":"B"}`), Max: 10},
			{Args: []byte(`{"t":null}`), Max: 10},
		}})
		requireEqual(t, show(got), want(a[0], 0, 0, a[1], 0, 1, b[0], 1, 0, b[1], 1, 1, b[2], 1, 2, bHigh, 1, 3,
			def[0], 2, 0, def[1], 2, 1, bOther, -1, 0), "locked")
		requireEqual(t, got[5].Priority, 4, "priority")
		// Nothing changed: the jobs are still available.
		requireEqual(t, e.getJob(t, a[0]).State, millracetype.JobStateAvailable, "state")

		// The first A job no lock holds.
		firstA := a[2]
		if driver.IsSingleWriter(e.drv) {
			// No row locks: another transaction would wait for this one's
			// end, so it ends first, and its rows are free again.
			requireNoError(t, tx.Rollback(e.ctx), "Rollback")
			firstA = a[0]
		} else {
			// Beside it, another fetch skips the locked rows; Kinds filters.
			tx2, err := e.exec.Begin(e.ctx)
			requireNoError(t, err, "Begin 2")
			defer func() { _ = tx2.Rollback(e.ctx) }()
			got = lock(tx2, driver.JobFairLockParams{Max: 5, Kinds: []string{"k"}, Shares: []*driver.FairShare{
				{Args: []byte(`{"t":"B"}`), Max: 5}, {Args: []byte(`{"t":"A"}`), Max: 1}}})
			requireEqual(t, show(got), want(a[2], 1, 0, a[3], -1, 0, a[4], -1, 1), "the rest")
			requireNoError(t, tx2.Rollback(e.ctx), "Rollback 2")
		}
		// Overlapping shares take a row once.
		tx3, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin 3")
		defer func() { _ = tx3.Rollback(e.ctx) }()
		got = lock(tx3, driver.JobFairLockParams{Max: 3, Shares: []*driver.FairShare{
			{Args: []byte(`{"t":"A"}`), Max: 1}, {Args: []byte(`{}`), Max: 2}}})
		requireEqual(t, len(got), 2, "three asked, a row taken twice")
		requireEqual(t, show(got)[0], want(firstA, 0, 0)[0], "first share")
		_, err = tx3.JobFairLock(e.ctx, &driver.JobFairLockParams{Schema: e.schema, Queue: "q", Max: 1,
			Shares: []*driver.FairShare{{Args: []byte(`[1`), Max: 1}}})
		if err == nil {
			t.Fatal("JobFairLock with bad args: no error")
		}
		// No shares: plain order.
		_, err = e.exec.JobFairLock(e.ctx, &driver.JobFairLockParams{Schema: e.schema, Queue: "q", Max: 1,
			Shares: make([]*driver.FairShare, driver.MaxFairShares+1)})
		if err == nil {
			t.Fatal("JobFairLock with too many shares: no error")
		}
	})

	s.run(t, "Update", func(t *testing.T, e *env[TTx]) {
		setup(t, e)
		ins(t, e, avail, "q", "k", `{"t":"A"}`, 1, at(0))
		ins(t, e, &driver.JobInsertFullParams{State: millracetype.JobStateRetryable}, "q", "k", `{"t":"R"}`, 1, at(0))
		ins(t, e, finalized(millracetype.JobStateCompleted, past), "q", "k", `{"t":"C"}`, 1, at(0))
		ins(t, e, avail, "q", "other_kind", `{"t":"K"}`, 1, at(0))
		ins(t, e, avail, "q", "k", `{"t":"N","u":1}`, 1, at(0))
		// SQLite stores args in jsonb's text form.
		hour, second := e.sql("now() - interval '1 hour'", liteAgo(3600)), e.sql("now() - interval '1 second'", liteAgo(1))
		e.rawExec(t, `INSERT INTO `+e.table("millrace_fair_partition")+` (queue, kind, args, empty_since) VALUES
			('q', '', '{"t": "A"}', `+hour+`), ('q', '', '{"t": "R"}', `+hour+`),
			('q', '', '{"t": "C"}', `+hour+`), ('q', '', '{"t": "D"}', NULL),
			('q', 'k', '{"t": "K"}', `+hour+`), ('q', '', '{"t": "N", "u": null}', `+hour+`),
			('q', '', '{"t": "C2"}', `+second+`)`)
		p := func(kind, args string) *driver.FairPartition {
			return &driver.FairPartition{Kind: kind, Args: []byte(args)}
		}
		n, err := e.exec.FairPartitionUpdate(e.ctx, &driver.FairPartitionUpdateParams{Schema: e.schema, Queue: "q",
			Found: []*driver.FairPartition{p("", `{"t":"A"}`)},
			Empty: []*driver.FairPartition{p("", `{"t":"R"}`), p("", `{"t":"C"}`), p("", `{"t":"D"}`), p("k", `{"t":"K"}`),
				p("", `{"t":"N","u":null}`), p("", `{"t":"C2"}`)},
			Grace: time.Minute})
		requireNoError(t, err, "FairPartitionUpdate")
		// Deleted: C (only a completed job), K (kind k has none), N (its
		// only job has u). Kept: R (a retryable job), D (just marked), C2
		// (within the grace period), A (found).
		requireEqual(t, n, 3, "deleted")
		ps, err := e.exec.FairPartitionList(e.ctx, &driver.FairPartitionListParams{Schema: e.schema, Queue: "q", Limit: 100})
		requireNoError(t, err, "FairPartitionList")
		requireEqual(t, partNames(ps), []string{`/{"t": "A"}`, `/{"t": "C2"}`, `/{"t": "D"}`, `/{"t": "R"}`}, "kept")
		requireEqual(t, ps[0].EmptySince == nil, true, "found: cleared")
		if ps[2].EmptySince == nil {
			t.Fatal("empty: marked")
		}
		requireBetween(t, *ps[2].EmptySince, now().Add(-time.Minute), now(), "marked now")
		n, err = e.exec.FairPartitionUpdate(e.ctx, &driver.FairPartitionUpdateParams{Schema: e.schema, Queue: "q"})
		requireNoError(t, err, "FairPartitionUpdate of nothing")
		requireEqual(t, n, 0, "nothing")

		// A row another transaction holds is skipped, not waited for (a
		// single writer has no row locks).
		if driver.IsSingleWriter(e.drv) {
			return
		}
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(e.ctx) }()
		requireNoError(t, tx.Exec(e.ctx, `SELECT 1 FROM `+e.table("millrace_fair_partition")+` WHERE args = '{"t":"D"}' FOR UPDATE`), "lock D")
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		_, err = e.exec.FairPartitionUpdate(ctx, &driver.FairPartitionUpdateParams{Schema: e.schema, Queue: "q",
			Found: []*driver.FairPartition{p("", `{"t":"D"}`), p("", `{"t":"R"}`)}, Grace: time.Minute})
		requireNoError(t, err, "FairPartitionUpdate beside a lock")
		ps, err = e.exec.FairPartitionList(e.ctx, &driver.FairPartitionListParams{Schema: e.schema, Queue: "q", Limit: 100})
		requireNoError(t, err, "FairPartitionList")
		requireEqual(t, partNames(ps)[2:], []string{`/{"t": "D"}`, `/{"t": "R"}`}, "rows")
		requireEqual(t, ps[2].EmptySince != nil, true, "locked D: left as it was")
		requireEqual(t, ps[3].EmptySince == nil, true, "R: cleared")
	})
}

// partNames shows partitions as kind/args.
func partNames(ps []*driver.FairPartition) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Kind+"/"+string(p.Args))
	}
	return out
}
