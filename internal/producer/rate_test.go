package producer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

func TestRateWindow(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		now        string
		interval   time.Duration
		start, end string
	}{
		{"2026-12-04T15:07:20.5Z", time.Minute, "2026-12-04T15:07:00Z", "2026-12-04T15:08:00Z"},
		{"2026-12-04T15:07:00Z", time.Minute, "2026-12-04T15:07:00Z", "2026-12-04T15:08:00Z"}, // a window's start is in it
		{"2026-12-04T15:07:59.999Z", time.Minute, "2026-12-04T15:07:00Z", "2026-12-04T15:08:00Z"},
		{"2026-12-04T15:07:25Z", 10 * time.Second, "2026-12-04T15:07:20Z", "2026-12-04T15:07:30Z"},
		{"2026-12-04T15:07:25.3Z", 1500 * time.Millisecond, "2026-12-04T15:07:24Z", "2026-12-04T15:07:25.5Z"},
		{"2026-12-04T15:07:25Z", 24 * time.Hour, "2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z"},
		{"1969-12-31T23:59:30Z", time.Minute, "1969-12-31T23:59:00Z", "1970-01-01T00:00:00Z"}, // before the epoch
		{"2026-12-04T17:07:25+02:00", time.Hour, "2026-12-04T15:00:00Z", "2026-12-04T16:00:00Z"},
	} {
		s, e := RateWindow(at(c.now), c.interval)
		if !s.Equal(at(c.start)) || !e.Equal(at(c.end)) {
			t.Errorf("RateWindow(%s, %v) = %v, %v; want %s, %s", c.now, c.interval, s, e, c.start, c.end)
		}
	}
}

func TestRateKey(t *testing.T) {
	t.Parallel()
	base := millracetype.RateLimit{N: 5, Interval: time.Minute, PartitionByArgs: []string{"token"}}
	other := base
	other.N = 9 // N is not in the key: a new N keeps the window's count
	if RateKey(base, "k", []string{`"a"`}) != RateKey(other, "k", []string{`"a"`}) {
		t.Error("the key depends on N")
	}
	keys := map[string]string{}
	for name, k := range map[string]string{
		"token a":      RateKey(base, "k", []string{`"a"`}),
		"token b":      RateKey(base, "k", []string{`"b"`}),
		"no token":     RateKey(base, "k", []string{""}),
		"other window": RateKey(millracetype.RateLimit{N: 5, Interval: time.Hour, PartitionByArgs: []string{"token"}}, "k", []string{`"a"`}),
		"other key":    RateKey(millracetype.RateLimit{N: 5, Interval: time.Minute, PartitionByArgs: []string{"user"}}, "k", []string{`"a"`}),
		"queue":        RateKey(millracetype.RateLimit{N: 5, Interval: time.Minute}, "k", nil),
		"kind k":       RateKey(millracetype.RateLimit{N: 5, Interval: time.Minute, Kind: "k"}, "k", nil),
		"by kind k":    RateKey(millracetype.RateLimit{N: 5, Interval: time.Minute, PartitionByKind: true}, "k", nil),
		"by kind k2":   RateKey(millracetype.RateLimit{N: 5, Interval: time.Minute, PartitionByKind: true}, "k2", nil),
		"token a;b":    RateKey(millracetype.RateLimit{N: 5, Interval: time.Minute, PartitionByArgs: []string{"token", "x"}}, "k", []string{`"a"`, `"b"`}),
	} {
		if prev, dup := keys[k]; dup {
			t.Errorf("%s and %s share the key %q", name, prev, k)
		}
		keys[k] = name
	}
}

// rateJobs inserts n available jobs of queue "q" per token.
func rateJobs(t *testing.T, db *testfixture.DB, tokens []string, n int) {
	t.Helper()
	var params []*driver.JobInsertParams
	for i := range n {
		for _, tok := range tokens {
			params = append(params, &driver.JobInsertParams{Args: []byte(fmt.Sprintf(`{"token":%q,"i":%d}`, tok, i)), Kind: "k",
				MaxAttempts: 25, Priority: 1, Queue: "q", State: millracetype.JobStateAvailable})
		}
	}
	if _, err := db.Exec().JobInsertMany(context.Background(), &driver.JobInsertManyParams{Schema: db.Schema, Jobs: params}); err != nil {
		t.Fatal(err)
	}
}

// startedPerWindow counts the running jobs of queue q by token and window
// of their attempted_at.
func startedPerWindow(t *testing.T, db *testfixture.DB, interval time.Duration) map[string]int {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT coalesce(args->>'token', ''), attempted_at FROM `+db.Schema+`.river_job WHERE queue = 'q' AND state = 'running'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var tok string
		var at time.Time
		if err := rows.Scan(&tok, &at); err != nil {
			t.Fatal(err)
		}
		s, _ := RateWindow(at, interval)
		out[tok+"@"+s.Format(time.RFC3339)]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// hammer runs fetches of f from 6 goroutines until none takes a job in a
// round, and checks what every held-back answer says.
func hammer(t *testing.T, db *testfixture.DB, f *RateFetch, kinds []string) {
	t.Helper()
	for {
		var wg sync.WaitGroup
		var mu sync.Mutex
		took := 0
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := f.Fetch(context.Background(), db.Exec(), &FetchRequest{Schema: db.Schema, Queue: "q",
					ClientID: fmt.Sprintf("c%d", g), Kinds: kinds, Max: 7})
				if err != nil {
					t.Error(err)
					return
				}
				if len(res.Jobs) > 7 {
					t.Errorf("%d jobs for Max 7", len(res.Jobs))
				}
				if len(res.Jobs) < 7 && (!res.Limited || res.NextFetch <= 0) {
					t.Errorf("a short fetch (%d) not marked Limited with a NextFetch: %+v", len(res.Jobs), res)
				}
				mu.Lock()
				took += len(res.Jobs)
				mu.Unlock()
			}()
		}
		wg.Wait()
		if t.Failed() || took == 0 {
			return
		}
	}
}

// TestRateFetchExact: concurrent fetches from several connections start
// exactly N per window, queue-wide (the path through the inner strategy)
// and per partition (the path choosing jobs itself).
func TestRateFetchExact(t *testing.T) {
	t.Parallel()
	const interval = 24 * time.Hour // one window, but for a run over midnight UTC
	for _, c := range []struct {
		name     string
		limit    millracetype.RateLimit
		perToken bool
	}{
		{"Queue", millracetype.RateLimit{N: 40, Interval: interval}, false},
		{"PerToken", millracetype.RateLimit{N: 25, Interval: interval, PartitionByArgs: []string{"token"}}, true},
		{"Kind", millracetype.RateLimit{N: 30, Interval: interval, Kind: "k"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := testfixture.New(t)
			rateJobs(t, db, []string{"a", "b", "c"}, 60)
			f := NewRateFetch(db.Schema, "q", []millracetype.RateLimit{c.limit}, nil)
			hammer(t, db, f, nil)
			got := startedPerWindow(t, db, interval)
			// Per partition (token, or the whole queue) and window: at most
			// N; exactly N in a window the test ran within whole.
			byPart := map[string]map[string]int{} // window → partition → started
			for k, n := range got {
				tok, win, _ := strings.Cut(k, "@")
				if !c.perToken {
					tok = ""
				}
				if byPart[win] == nil {
					byPart[win] = map[string]int{}
				}
				byPart[win][tok] += n
			}
			for win, parts := range byPart {
				for tok, n := range parts {
					if n > c.limit.N || (len(byPart) == 1 && n != c.limit.N) {
						t.Errorf("window %s, partition %q: %d started, limit %d (windows: %d)", win, tok, n, c.limit.N, len(byPart))
					}
				}
				if want := 1; c.perToken {
					want = 3
					if len(byPart) == 1 && len(parts) != want {
						t.Errorf("window %s: %d partitions started, want %d", win, len(parts), want)
					}
				}
			}
		})
	}
}

// TestRateFetchPause: a pause of the whole queue holds everything back
// until its time, with a NextFetch at it; a pause of one token holds back
// only its jobs, and they come back by themselves once it is over.
func TestRateFetchPause(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	rateJobs(t, db, []string{"a", "b"}, 3)
	f := NewRateFetch(db.Schema, "q", nil, nil) // timed pauses only
	fetch := func() FetchResult {
		t.Helper()
		res, err := f.Fetch(ctx, db.Exec(), &FetchRequest{Schema: db.Schema, Queue: "q", ClientID: "c", Max: 100})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	pause := func(args string, d time.Duration) time.Time {
		t.Helper()
		p, err := db.Exec().PauseSet(ctx, &driver.PauseSetParams{Schema: db.Schema,
			Pause: millracetype.Pause{Queue: "q", Args: []byte(args), Until: time.Now().Add(d)}})
		if err != nil {
			t.Fatal(err)
		}
		return p.Until
	}
	pause(`{}`, time.Hour)
	res := fetch()
	if len(res.Jobs) != 0 || !res.Limited || res.NextFetch < 59*time.Minute || res.NextFetch > time.Hour+time.Second {
		t.Fatalf("fetch of a paused queue: %d jobs, %+v", len(res.Jobs), res)
	}
	if ok, err := db.Exec().PauseDelete(ctx, &driver.PauseDeleteParams{Schema: db.Schema, Queue: "q"}); err != nil || !ok {
		t.Fatalf("PauseDelete: %v, %v", ok, err)
	}

	until := pause(`{"token":"a"}`, 2*time.Second)
	res = fetch()
	for _, j := range res.Jobs {
		if !strings.Contains(string(j.Args), `"b"`) {
			t.Errorf("job of a paused token fetched: %s", j.Args)
		}
	}
	if len(res.Jobs) != 3 || !res.Limited || res.NextFetch <= 0 || res.NextFetch > 2*time.Second+time.Second {
		t.Fatalf("fetch with token a paused: %d jobs, %+v", len(res.Jobs), res)
	}
	if res := fetch(); len(res.Jobs) != 0 {
		t.Fatalf("fetched %d while token a is paused", len(res.Jobs))
	}
	time.Sleep(time.Until(until) + 50*time.Millisecond) // the pause's own end, which the test is about
	res = fetch()
	if len(res.Jobs) != 3 || res.Limited {
		t.Fatalf("fetch after the pause: %d jobs, %+v", len(res.Jobs), res)
	}
	for _, j := range res.Jobs {
		if !strings.Contains(string(j.Args), `"a"`) {
			t.Errorf("after the pause, fetched %s", j.Args)
		}
	}
}

// TestRateFetchRollback: a fetch inside a transaction that rolls back
// counts nothing.
func TestRateFetchRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	rateJobs(t, db, []string{"a"}, 10)
	f := NewRateFetch(db.Schema, "q", []millracetype.RateLimit{{N: 4, Interval: 24 * time.Hour}}, nil)
	req := &FetchRequest{Schema: db.Schema, Queue: "q", ClientID: "c", Max: 10}
	tx, err := db.Exec().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Fetch(ctx, tx, req)
	if err != nil || len(res.Jobs) != 4 || !res.Limited {
		t.Fatalf("fetch in a transaction: %d jobs, %+v, %v", len(res.Jobs), res, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The window by the database's clock, which the fetches count by.
	window := func() time.Time {
		t.Helper()
		var now time.Time
		if err := db.Pool.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
			t.Fatal(err)
		}
		start, _ := RateWindow(now, 24*time.Hour)
		return start
	}
	before := window()
	res, err = f.Fetch(ctx, db.Exec(), req)
	if err != nil || len(res.Jobs) != 4 {
		t.Fatalf("fetch after the rollback: %d jobs, %v (want the 4 of the window again)", len(res.Jobs), err)
	}
	res, err = f.Fetch(ctx, db.Exec(), req)
	if after := window(); !after.Equal(before) {
		// Midnight UTC passed: the last fetch may have opened a new window.
		if err != nil || len(res.Jobs) > 4 {
			t.Fatalf("fetch across midnight: %d jobs, %+v, %v", len(res.Jobs), res, err)
		}
		t.Logf("the window turned at %s: the over-the-limit check did not apply", after.Format(time.RFC3339))
		return
	}
	if err != nil || len(res.Jobs) != 0 || !res.Limited || res.NextFetch <= 0 {
		t.Fatalf("fetch over the limit: %d jobs, %+v, %v", len(res.Jobs), res, err)
	}
}

// TestRateFetchHeldPerPartition: a fetch that takes a partition's N and
// leaves more of it says it held jobs back, with a NextFetch at the
// window's end, even when it took all it could see.
func TestRateFetchHeldPerPartition(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	rateJobs(t, db, []string{"a", "b"}, 3)
	f := NewRateFetch(db.Schema, "q", []millracetype.RateLimit{{N: 2, Interval: time.Hour, PartitionByArgs: []string{"token"}}}, nil)
	res, err := f.Fetch(context.Background(), db.Exec(), &FetchRequest{Schema: db.Schema, Queue: "q", ClientID: "c", Max: 10})
	if err != nil || len(res.Jobs) != 4 || !res.Limited || res.NextFetch <= 0 || res.NextFetch > time.Hour+time.Second {
		t.Fatalf("fetch: %d jobs, %+v, %v; want 4, Limited, a NextFetch within the hour", len(res.Jobs), res, err)
	}
}

// observingFetch is a strategy with both hooks, counting the calls.
type observingFetch struct {
	DefaultFetch
	mu              sync.Mutex
	finished, limit int
}

func (o *observingFetch) JobFinished(*millracetype.JobRow) { o.mu.Lock(); o.finished++; o.mu.Unlock() }
func (o *observingFetch) LimitsChanged()                   { o.mu.Lock(); o.limit++; o.mu.Unlock() }

// TestRateFetchForwardsHooks: the decorator passes the producer's hooks
// on to the strategy it wraps.
func TestRateFetchForwardsHooks(t *testing.T) {
	t.Parallel()
	in := &observingFetch{}
	f := NewRateFetch("s", "q", nil, in)
	var obs JobFinishedObserver = f
	obs.JobFinished(&millracetype.JobRow{ID: 1})
	f.LimitsChanged()
	NewRateFetch("s", "q", nil, nil).JobFinished(&millracetype.JobRow{ID: 2}) // DefaultFetch listens to nothing
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.finished != 1 || in.limit != 1 {
		t.Fatalf("inner heard %d finished jobs and %d limit changes, want 1 and 1", in.finished, in.limit)
	}
}
