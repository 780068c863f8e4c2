package producer

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// fairJobs inserts n available jobs of queue "q" and kind for each args
// text (fmt'd with the job's number), in one statement, in order.
func fairJobs(t *testing.T, db *testfixture.DB, kind string, n int, args ...string) []*millracetype.JobRow {
	t.Helper()
	var params []*driver.JobInsertParams
	for _, a := range args {
		for i := range n {
			params = append(params, &driver.JobInsertParams{Args: []byte(fmt.Sprintf(a, i)), Kind: kind,
				MaxAttempts: 25, Priority: 1, Queue: "q", State: millracetype.JobStateAvailable})
		}
	}
	res, err := db.Exec().JobInsertMany(context.Background(), &driver.JobInsertManyParams{Schema: db.Schema, Jobs: params})
	if err != nil {
		t.Fatal(err)
	}
	jobs := make([]*millracetype.JobRow, len(res))
	for i, r := range res {
		jobs[i] = r.Job
	}
	return jobs
}

// tenantOf reads a job's tenant ("" when it has none).
func tenantOf(t *testing.T, j *millracetype.JobRow) string {
	t.Helper()
	var a struct{ Tenant string }
	if err := json.Unmarshal(j.Args, &a); err != nil {
		t.Fatal(err)
	}
	return a.Tenant
}

func fairFetch(t *testing.T, db *testfixture.DB, f FetchStrategy, max int, kinds ...string) []*millracetype.JobRow {
	t.Helper()
	res, err := f.Fetch(context.Background(), db.Exec(), &FetchRequest{Schema: db.Schema, Queue: "q", ClientID: "c", Max: max, Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Jobs) > max {
		t.Fatalf("%d jobs for Max %d", len(res.Jobs), max)
	}
	for _, j := range res.Jobs {
		if j.State != millracetype.JobStateRunning || j.Attempt != 1 || !slices.Equal(j.AttemptedBy, []string{"c"}) {
			t.Fatalf("job %d not marked as fetched: %s attempt %d by %v", j.ID, j.State, j.Attempt, j.AttemptedBy)
		}
	}
	return res.Jobs
}

// TestFairFetchTakesTurns: behind 300 jobs of tenant A, the few of B and
// C start in the first fetch, interleaved, where plain order takes A's.
func TestFairFetchTakesTurns(t *testing.T) {
	t.Parallel()
	for _, fair := range []bool{true, false} {
		t.Run(fmt.Sprintf("fair=%v", fair), func(t *testing.T) {
			t.Parallel()
			db := testfixture.New(t)
			fairJobs(t, db, "k", 300, `{"tenant":"A","i":%d}`)
			fairJobs(t, db, "k", 3, `{"tenant":"B","i":%d}`, `{"tenant":"C","i":%d}`)
			var f FetchStrategy = DefaultFetch{}
			if fair {
				f = NewFairFetch(db.Schema, "q", []string{"tenant"}, false)
			}
			got := map[string]int{}
			var order []string
			for _, j := range fairFetch(t, db, f, 10) {
				got[tenantOf(t, j)]++
				order = append(order, tenantOf(t, j))
			}
			if !fair {
				// The checker's control: plain order starves B and C.
				if got["A"] != 10 {
					t.Fatalf("plain order took %v", got)
				}
				return
			}
			// Units C, B, A (just found, the newest first) and plain
			// order: shares 3, 3, 2, the rest A's.
			if got["A"] != 4 || got["B"] != 3 || got["C"] != 3 {
				t.Fatalf("first fetch took %v, want A 4, B 3, C 3", got)
			}
			if want := []string{"C", "B", "A", "A", "C", "B", "A", "A", "C", "B"}; !slices.Equal(order, want) {
				t.Fatalf("start order %v, want %v", order, want)
			}
			// The next turn: only A's are left.
			got = map[string]int{}
			for _, j := range fairFetch(t, db, f, 10) {
				got[tenantOf(t, j)]++
			}
			if got["A"] != 10 {
				t.Fatalf("second fetch took %v, want A 10", got)
			}
		})
	}
}

// TestFairFetchSmallMax: one slot at a time, partitions and plain order
// take turns.
func TestFairFetchSmallMax(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	fairJobs(t, db, "k", 20, `{"tenant":"A","i":%d}`)
	fairJobs(t, db, "k", 20, `{"tenant":"B","i":%d}`)
	f := NewFairFetch(db.Schema, "q", []string{"tenant"}, false)
	var order []string
	for range 6 {
		for _, j := range fairFetch(t, db, f, 1) {
			order = append(order, tenantOf(t, j))
		}
	}
	// B (just found, the newest; A, found too, waits for its turn), then
	// the turn: A, B, plain order (A's next), and again.
	if want := []string{"B", "A", "B", "A", "A", "B"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}

// TestFairFetchDefaultPartitionAndKinds: a job without the key (or with
// null) is in the key's default partition; kinds the client lacks are
// not taken; partitions by kind.
func TestFairFetchDefaultPartitionAndKinds(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	fairJobs(t, db, "k", 50, `{"tenant":"A","i":%d}`)
	fairJobs(t, db, "k", 2, `{"i":%d}`, `{"tenant":null,"i":%d}`)
	fairJobs(t, db, "other", 5, `{"tenant":"X","i":%d}`)
	f := NewFairFetch(db.Schema, "q", []string{"tenant"}, true)
	got := map[string]int{}
	for _, j := range fairFetch(t, db, f, 8, "k") {
		if j.Kind != "k" {
			t.Fatalf("took kind %q, not asked for", j.Kind)
		}
		got[tenantOf(t, j)]++
	}
	// Units: (k, default) (4 jobs, missing key and null), (k, A)
	// ((other, X) is not read: the client has no worker for it) and plain
	// order: 3 + 3 + the rest (A's).
	if got[""] != 3 || got["A"] != 5 {
		t.Fatalf("took %v, want 3 of the default partition, 5 of A", got)
	}
	parts, err := db.Exec().FairPartitionList(context.Background(), &driver.FairPartitionListParams{Schema: db.Schema, Queue: "q", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := partNames(parts), []string{`k/{"tenant": null}`, `k/{"tenant": "A"}`, `other/{"tenant": "X"}`}; !slices.Equal(got, want) {
		t.Fatalf("partitions %v, want %v", got, want)
	}
}

func partNames(ps []*driver.FairPartition) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Kind+"/"+string(p.Args))
	}
	return out
}

// TestFairFetchDiscoversOldJobs: jobs older than the newest FairNewest,
// whose partition no fetch has registered (a River client inserted them,
// say), are taken in plain order and their partition registered then.
func TestFairFetchDiscoversOldJobs(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	fairJobs(t, db, "k", 3, `{"tenant":"D","i":%d}`)
	fairJobs(t, db, "k", 2*FairNewest, `{"tenant":"A","i":%d}`)
	f := NewFairFetch(db.Schema, "q", []string{"tenant"}, false)
	fetch := func() map[string]int {
		got := map[string]int{}
		for _, j := range fairFetch(t, db, f, 2) {
			got[tenantOf(t, j)]++
		}
		return got
	}
	// A just found; then the turn ends in plain order: D's (the oldest);
	// then D, registered, just found, and A's turn.
	for i, want := range []map[string]int{{"A": 2}, {"D": 2}, {"A": 1, "D": 1}} {
		if got := fetch(); !maps.Equal(got, want) {
			t.Fatalf("fetch %d took %v, want %v", i+1, got, want)
		}
	}
}

// TestFairFetchNewPartitionFirst: among 100 tenants, a new tenant's job
// starts in the next fetch, not at its place in the turn (last: "zz").
func TestFairFetchNewPartitionFirst(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	var args []string
	for i := range 100 {
		args = append(args, fmt.Sprintf(`{"tenant":"t%02d","i":%%d}`, i))
	}
	fairJobs(t, db, "k", 2, args...)
	f := NewFairFetch(db.Schema, "q", []string{"tenant"}, false)
	for range 3 {
		fairFetch(t, db, f, 4)
	}
	fairJobs(t, db, "k", 1, `{"tenant":"zz","i":%d}`)
	got := map[string]int{}
	for _, j := range fairFetch(t, db, f, 4) {
		got[tenantOf(t, j)]++
	}
	if got["zz"] != 1 {
		t.Fatalf("the fetch after zz's insert took %v, want zz's job", got)
	}
}

// TestFairFetchDropsEmptyPartitions: a partition found empty is marked,
// deleted once empty past the grace period with no job left to run, kept
// while one waits for a retry.
func TestFairFetchDropsEmptyPartitions(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	fairJobs(t, db, "k", 1, `{"tenant":"A","i":%d}`)
	later := time.Now().Add(time.Hour)
	db.InsertJob(t, &driver.JobInsertFullParams{Queue: "q", Kind: "k", Args: []byte(`{"tenant":"R"}`),
		State: millracetype.JobStateRetryable, ScheduledAt: &later})
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO `+db.Schema+`.millrace_fair_partition (queue, args, empty_since) VALUES
		('q', '{"tenant":"gone"}', NULL), ('q', '{"tenant":"old"}', now() - interval '1 hour'), ('q', '{"tenant":"R"}', now() - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	f := NewFairFetch(db.Schema, "q", []string{"tenant"}, false)
	if jobs := fairFetch(t, db, f, 10); len(jobs) != 1 {
		t.Fatalf("took %d jobs, want 1", len(jobs))
	}
	parts, err := db.Exec().FairPartitionList(context.Background(), &driver.FairPartitionListParams{Schema: db.Schema, Queue: "q", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range parts {
		names = append(names, fmt.Sprintf("%s empty=%v", p.Args, p.EmptySince != nil))
	}
	want := []string{`{"tenant": "A"} empty=false`, `{"tenant": "R"} empty=true`, `{"tenant": "gone"} empty=true`}
	if !slices.Equal(names, want) {
		t.Fatalf("partitions %v, want %v", names, want)
	}
}

// TestFairFetchConcurrent: fetches from several goroutines take every job
// once, none twice, none lost, alone and under a global limit and a rate
// limit of the whole queue (FairFetch as their inner strategy).
func TestFairFetchConcurrent(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		make func(db *testfixture.DB) FetchStrategy
		two  bool // two strategies (two clients), each fetching from half the goroutines
	}{
		{"Fair", func(db *testfixture.DB) FetchStrategy { return NewFairFetch(db.Schema, "q", []string{"tenant"}, false) }, false},
		{"TwoClients", func(db *testfixture.DB) FetchStrategy { return NewFairFetch(db.Schema, "q", []string{"tenant"}, false) }, true},
		{"GlobalLimit", func(db *testfixture.DB) FetchStrategy {
			return NewLimitFetchOver(db.Schema, "q", []millracetype.ConcurrencyLimit{{Global: 1000}},
				NewFairFetch(db.Schema, "q", []string{"tenant"}, false))
		}, false},
		{"RateLimit", func(db *testfixture.DB) FetchStrategy {
			return NewRateFetch(db.Schema, "q", []millracetype.RateLimit{{N: 100000, Interval: 24 * time.Hour}},
				NewFairFetch(db.Schema, "q", []string{"tenant"}, false))
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := testfixture.New(t)
			var all []int64
			for _, tenant := range []string{"A", "B", "C", "D", "E"} {
				for _, j := range fairJobs(t, db, "k", 40+len(all)/4, `{"tenant":"`+tenant+`","i":%d}`) {
					all = append(all, j.ID)
				}
			}
			fs := []FetchStrategy{c.make(db)}
			if c.two {
				fs = append(fs, c.make(db))
			}
			var mu sync.Mutex
			seen := map[int64]int{}
			for {
				var wg sync.WaitGroup
				took := 0
				for g := range 6 {
					wg.Go(func() {
						res, err := fs[g%len(fs)].Fetch(context.Background(), db.Exec(), &FetchRequest{Schema: db.Schema, Queue: "q",
							ClientID: fmt.Sprintf("c%d", g), Max: 7})
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						defer mu.Unlock()
						took += len(res.Jobs)
						for _, j := range res.Jobs {
							seen[j.ID]++
						}
					})
				}
				wg.Wait()
				if t.Failed() || took == 0 {
					break
				}
			}
			for _, id := range all {
				if seen[id] != 1 {
					t.Errorf("job %d fetched %d times", id, seen[id])
				}
			}
			if n := db.CountByState(t)[millracetype.JobStateRunning]; n != len(all) {
				t.Errorf("%d running, want %d", n, len(all))
			}
		})
	}
}

// TestFairFetchNoBuffer: neither the fair fetch nor a limit over it
// allows a fetch buffer.
func TestFairFetchNoBuffer(t *testing.T) {
	t.Parallel()
	f := NewFairFetch("s", "q", []string{"tenant"}, false)
	if f.BufferAllowed() {
		t.Error("FairFetch allows a buffer")
	}
	if NewLimitFetchOver("s", "q", nil, f).BufferAllowed() {
		t.Error("LimitFetch over FairFetch allows a buffer")
	}
}

// BenchmarkFairFetch measures one fetch of a queue of 200,000 jobs of
// tenant A and 10 of tenant B (set back to available after every fetch),
// fair and plain, at two fetch sizes.
func BenchmarkFairFetch(b *testing.B) {
	db := testfixture.New(b)
	ctx := context.Background()
	insert := func(tenant string, n int) {
		for done := 0; done < n; {
			var params []*driver.JobInsertParams
			for i := done; i < min(n, done+50_000); i++ {
				params = append(params, &driver.JobInsertParams{Args: []byte(fmt.Sprintf(`{"tenant":%q,"i":%d}`, tenant, i)), Kind: "k",
					MaxAttempts: 25, Priority: 1, Queue: "q", State: millracetype.JobStateAvailable})
			}
			if _, err := db.Exec().JobInsertMany(ctx, &driver.JobInsertManyParams{Schema: db.Schema, Jobs: params}); err != nil {
				b.Fatal(err)
			}
			done += len(params)
		}
	}
	insert("A", 200_000)
	insert("B", 10)
	if _, err := db.Pool.Exec(ctx, "ANALYZE "+db.Schema+".river_job"); err != nil {
		b.Fatal(err)
	}
	// First with the GIN index's pending list full of the inserted jobs
	// (as after a bulk insert), then after a VACUUM merged it (as
	// autovacuum does).
	for _, vacuumed := range []bool{false, true} {
		if vacuumed {
			if _, err := db.Pool.Exec(ctx, "VACUUM "+db.Schema+".river_job"); err != nil {
				b.Fatal(err)
			}
		}
		for _, max := range []int{20, 200} {
			for _, fair := range []bool{false, true} {
				b.Run(fmt.Sprintf("vacuumed=%v/max=%d/fair=%v", vacuumed, max, fair), func(b *testing.B) {
					var f FetchStrategy = DefaultFetch{}
					if fair {
						f = NewFairFetch(db.Schema, "q", []string{"tenant"}, false)
					}
					for b.Loop() {
						if _, err := f.Fetch(ctx, db.Exec(), &FetchRequest{Schema: db.Schema, Queue: "q", ClientID: "c", Max: max}); err != nil {
							b.Fatal(err)
						}
						b.StopTimer()
						if _, err := db.Pool.Exec(ctx, `UPDATE `+db.Schema+`.river_job SET state = 'available' WHERE args @> '{"tenant":"B"}' AND state = 'running'`); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
				})
			}
		}
	}
}

// BenchmarkFairFetchManyTenants measures one fair fetch of 10 and of 200
// jobs of a queue of 1,000 tenants with 200 jobs each, their jobs
// interleaved, after a VACUUM, against the plain fetch.
func BenchmarkFairFetchManyTenants(b *testing.B) {
	db := testfixture.New(b)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO `+db.Schema+`.river_job (kind, args, queue)
		SELECT 'k', jsonb_build_object('tenant', 't' || (i % 1000), 'i', i), 'q' FROM generate_series(1, 200000) i;
		ANALYZE `+db.Schema+`.river_job`); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "VACUUM "+db.Schema+".river_job"); err != nil {
		b.Fatal(err)
	}
	for _, max := range []int{10, 200} {
		for _, fair := range []bool{false, true} {
			b.Run(fmt.Sprintf("max=%d/fair=%v", max, fair), func(b *testing.B) {
				var f FetchStrategy = DefaultFetch{}
				if fair {
					f = NewFairFetch(db.Schema, "q", []string{"tenant"}, false)
				}
				for b.Loop() {
					if _, err := f.Fetch(ctx, db.Exec(), &FetchRequest{Schema: db.Schema, Queue: "q", ClientID: "c", Max: max}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
