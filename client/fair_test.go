package client

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/testfixture"
)

type fairTenantArgs struct {
	Tenant string `json:"tenant,omitempty"`
	N      int    `json:"n"`
}

func (fairTenantArgs) Kind() string { return "fair_tenant_job" }

// TestFairnessInvalid: bad Fairness settings, and combinations with flow
// control that would bypass it, are refused by New and Add with
// ErrInvalidConfig, naming what is wrong.
func TestFairnessInvalid(t *testing.T) {
	t.Parallel()
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(context.Context, *Job[fairTenantArgs]) error { return nil }))
	AddWorker(workers, WorkFunc(func(context.Context, *Job[noopArgs]) error { return nil }))
	many := make([]string, MaxFairnessKeys+1)
	for i := range many {
		many[i] = strings.Repeat("k", i+1)
	}
	cases := []struct {
		name string
		q    QueueConfig
		want string
		is   error
	}{
		{"no key", QueueConfig{Fairness: &Fairness{}}, "neither ByKind nor ByArgs", nil},
		{"empty key", QueueConfig{Fairness: &Fairness{ByArgs: []string{""}}}, `ByArgs key "" must be 1..128 bytes`, nil},
		{"long key", QueueConfig{Fairness: &Fairness{ByArgs: []string{strings.Repeat("x", 129)}}}, "must be 1..128 bytes", nil},
		{"duplicate key", QueueConfig{Fairness: &Fairness{ByArgs: []string{"tenant", "tenant"}}}, `"tenant" appears twice`, nil},
		{"too many keys", QueueConfig{Fairness: &Fairness{ByArgs: many}}, "9 ByArgs keys, at most 8", nil},
		{"unknown key", QueueConfig{Fairness: &Fairness{ByArgs: []string{"tenant_id"}}}, `unknown partition key "tenant_id"`, ErrUnknownPartitionKey},
		{"kind limit", QueueConfig{Fairness: &Fairness{ByKind: true}, Limits: []ConcurrencyLimit{{Kind: "noop", Global: 1}}},
			"cannot combine with a concurrency limit by kind or partition", nil},
		{"partition limit", QueueConfig{Fairness: &Fairness{ByKind: true}, Limits: []ConcurrencyLimit{{PerPartition: 1, PartitionByKind: true}}},
			"cannot combine with a concurrency limit by kind or partition", nil},
		{"partition rate", QueueConfig{Fairness: &Fairness{ByKind: true}, RateLimits: []RateLimit{{N: 1, Interval: time.Second, PartitionByArgs: []string{"n"}}}},
			"cannot combine with a rate limit by kind or partition", nil},
		{"kind rate", QueueConfig{Fairness: &Fairness{ByKind: true}, RateLimits: []RateLimit{{N: 1, Interval: time.Second, Kind: "noop"}}},
			"cannot combine with a rate limit by kind or partition", nil},
	}
	db := testfixture.New(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check := func(err error, where string) {
				t.Helper()
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
					t.Fatalf("%s: got %v, want ErrInvalidConfig with %q", where, err, tc.want)
				}
			}
			q := tc.q
			q.MaxWorkers = 2
			_, err := New(db.Driver, &Config{Schema: db.Schema, Workers: workers, Queues: map[string]QueueConfig{"q": q}})
			check(err, "New")
			c, err := New(db.Driver, &Config{Schema: db.Schema, Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			check(c.Queues().Add("q", q), "Add")
		})
	}
	// What combines is accepted: by kind and a key of one kind's args,
	// with limits and a rate limit of the whole queue.
	_, err := New(db.Driver, &Config{Schema: db.Schema, Workers: workers, Queues: map[string]QueueConfig{"q": {MaxWorkers: 2,
		Fairness:   &Fairness{ByKind: true, ByArgs: []string{"tenant", "n"}},
		Limits:     []ConcurrencyLimit{{Global: 10, Local: 5}},
		RateLimits: []RateLimit{{N: 100, Interval: time.Second}}}}})
	if err != nil {
		t.Fatalf("valid fairness refused: %v", err)
	}
	// The configuration keeps its own copy: a change to the caller's
	// Fairness after New (or Add) does not bypass validation.
	keys := []string{"tenant"}
	fair := &Fairness{ByArgs: keys}
	c, err := New(db.Driver, &Config{Schema: db.Schema, Workers: workers, Queues: map[string]QueueConfig{"q": {MaxWorkers: 2, Fairness: fair}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Queues().Add("q2", QueueConfig{MaxWorkers: 2, Fairness: fair}); err != nil {
		t.Fatal(err)
	}
	keys[0], fair.ByKind = "", true
	for _, q := range []string{"q", "q2"} {
		if got := c.config.Queues[q].Fairness; got.ByKind || got.ByArgs[0] != "tenant" {
			t.Errorf("queue %s: Fairness changed after validation: %+v", q, got)
		}
	}
}

// fairRun works a queue of 200 workers holding tenant A's jobs 50 ms
// each, with queued jobs of A, and once the workers are busy inserts 10
// jobs of tenant B. It returns when B's jobs have all started, or after
// wait, with how long after B's insert each started.
func fairRun(t *testing.T, queuedA int, fair *Fairness, wait time.Duration) []time.Duration {
	t.Helper()
	ctx := context.Background()
	db := testfixture.New(t)
	var (
		mu       sync.Mutex
		insertAt time.Time
		startsB  []time.Duration
		startedA int
	)
	doneB := make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, j *Job[fairTenantArgs]) error {
		mu.Lock()
		if j.Args.Tenant == "B" {
			startsB = append(startsB, time.Since(insertAt))
			if len(startsB) == 10 {
				close(doneB)
			}
			mu.Unlock()
			return nil
		}
		startedA++
		mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		return nil
	}))
	c := newClient(t, db, &Config{Workers: workers, Queues: map[string]QueueConfig{"q": {MaxWorkers: 200, Fairness: fair}}})
	params := make([]InsertManyParams, queuedA)
	for i := range params {
		params[i] = InsertManyParams{Args: fairTenantArgs{Tenant: "A", N: i}, InsertOpts: &InsertOpts{Queue: "q"}}
	}
	for rest := params; len(rest) > 0; {
		n := min(len(rest), 50_000)
		if _, err := c.InsertManyFast(ctx, rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if _, err := db.Pool.Exec(ctx, "ANALYZE "+db.Schema+".river_job"); err != nil { // as autovacuum would
		t.Fatal(err)
	}
	start(t, c)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		busy := startedA >= 400
		mu.Unlock()
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the workers never got busy with A's jobs")
		}
	}
	params = params[:10]
	for i := range params {
		params[i] = InsertManyParams{Args: fairTenantArgs{Tenant: "B", N: i}, InsertOpts: &InsertOpts{Queue: "q"}}
	}
	mu.Lock()
	insertAt = time.Now()
	mu.Unlock()
	if _, err := c.InsertMany(ctx, params); err != nil {
		t.Fatal(err)
	}
	select {
	case <-doneB:
	case <-time.After(wait):
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(startsB)
}

// TestFairnessAcceptance is issue 23's acceptance test: tenant A has
// 200,000 jobs queued and 200 workers busy with them; tenant B inserts
// 10 jobs, which all start within a second of their insert. Without
// fairness (the control, on a shorter queue) they wait behind A's.
func TestFairnessAcceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts 200,000 jobs")
	}
	t.Run("Fair", func(t *testing.T) {
		starts := fairRun(t, 200_000, &Fairness{ByArgs: []string{"tenant"}}, 10*time.Second)
		if len(starts) != 10 {
			t.Fatalf("%d of B's 10 jobs started within 10 s", len(starts))
		}
		last := slices.Max(starts)
		t.Logf("B's jobs started %v after their insert (last: %v)", starts, last)
		if last > time.Second {
			t.Fatalf("B's last job started %v after the insert, want within 1 s", last)
		}
	})
	t.Run("Control", func(t *testing.T) {
		// 20,000 of A take 200 workers 5 s at 50 ms each.
		starts := fairRun(t, 20_000, nil, 2*time.Second)
		if len(starts) == 10 {
			t.Fatalf("without fairness B's jobs all started (%v): the test cannot tell", starts)
		}
	})
}

// TestFairnessWithGlobalLimit: a fair queue under a Global limit keeps
// the limit and still lets tenant B's jobs, inserted behind 40 of A's,
// start among the first.
func TestFairnessWithGlobalLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	var (
		mu            sync.Mutex
		running, most int
		order         []string
	)
	done := make(chan struct{}, 50)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, j *Job[fairTenantArgs]) error {
		mu.Lock()
		running++
		most = max(most, running)
		order = append(order, j.Args.Tenant)
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		done <- struct{}{}
		return nil
	}))
	c := newClient(t, db, &Config{Workers: workers, Queues: map[string]QueueConfig{"q": {MaxWorkers: 10,
		Fairness: &Fairness{ByArgs: []string{"tenant"}}, Limits: []ConcurrencyLimit{{Global: 2}}}}})
	var params []InsertManyParams
	for i := range 40 {
		params = append(params, InsertManyParams{Args: fairTenantArgs{Tenant: "A", N: i}, InsertOpts: &InsertOpts{Queue: "q"}})
	}
	if _, err := c.InsertMany(ctx, params); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InsertMany(ctx, []InsertManyParams{{Args: fairTenantArgs{Tenant: "B"}, InsertOpts: &InsertOpts{Queue: "q"}},
		{Args: fairTenantArgs{Tenant: "B", N: 1}, InsertOpts: &InsertOpts{Queue: "q"}}}); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	for range 42 {
		recv(t, done, "a job done")
	}
	mu.Lock()
	defer mu.Unlock()
	if most > 2 {
		t.Errorf("%d jobs ran at once under a Global limit of 2", most)
	}
	if i := slices.Index(order, "B"); i < 0 || i > 4 || slices.Index(order[i+1:], "B") > 4 {
		t.Errorf("B's jobs started at places %v of %v, want both among the first few", i, order)
	}
}
