package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/testfixture"
)

type customerArgs struct {
	Customer int    `json:"customer_id"`
	Region   string `json:"region,omitempty"`
	Skip     string `json:"-"`
}

func (customerArgs) Kind() string { return "sync_account" }

// TestConcurrencyLimitInvalid: bad limits in QueueConfig, in Add and in
// QueueLimitSet are refused with ErrInvalidConfig, naming what is wrong.
func TestConcurrencyLimitInvalid(t *testing.T) {
	t.Parallel()
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(context.Context, *Job[customerArgs]) error { return nil }))
	AddWorker(workers, WorkFunc(func(context.Context, *Job[noopArgs]) error { return nil }))
	cases := []struct {
		name   string
		limits []ConcurrencyLimit
		want   string
		is     error
	}{
		{"negative", []ConcurrencyLimit{{Global: -1}}, "Global -1 is negative", nil},
		{"negative local", []ConcurrencyLimit{{Kind: "noop", Local: -3, Global: 2}}, `limit of kind "noop": Local -3 is negative`, nil},
		{"zero", []ConcurrencyLimit{{}}, "are all 0", nil},
		{"per partition alone", []ConcurrencyLimit{{PerPartition: 2}}, "needs PartitionByKind or PartitionByArgs", nil},
		{"partition without number", []ConcurrencyLimit{{Global: 2, PartitionByArgs: []string{"customer_id"}}}, "PerPartition is 0", nil},
		{"kind partition of a kind", []ConcurrencyLimit{{Kind: "noop", PerPartition: 1, PartitionByKind: true}}, "PartitionByKind needs a limit of the whole queue", nil},
		{"bad kind", []ConcurrencyLimit{{Kind: "no pe", Global: 1}}, "not a valid kind name", nil},
		{"empty key", []ConcurrencyLimit{{PerPartition: 1, PartitionByArgs: []string{""}}}, "must be 1..128 bytes", nil},
		{"duplicate key", []ConcurrencyLimit{{PerPartition: 1, PartitionByArgs: []string{"customer_id", "customer_id"}}}, "appears twice", nil},
		{"duplicate kind", []ConcurrencyLimit{{Global: 1}, {Local: 2}}, `two limits of kind ""`, nil},
		{"unknown key of a kind", []ConcurrencyLimit{{Kind: "sync_account", PerPartition: 1, PartitionByArgs: []string{"customer"}}}, `unknown partition key "customer"`, ErrUnknownPartitionKey},
		{"key of no kind", []ConcurrencyLimit{{PerPartition: 1, PartitionByArgs: []string{"nope"}}}, `unknown partition key "nope"`, ErrUnknownPartitionKey},
		{"json dash field", []ConcurrencyLimit{{Kind: "sync_account", PerPartition: 1, PartitionByArgs: []string{"Skip"}}}, `unknown partition key "Skip"`, ErrUnknownPartitionKey},
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
			_, err := New(db.Driver, &Config{Schema: db.Schema, Workers: workers,
				Queues: map[string]QueueConfig{"q": {MaxWorkers: 2, Limits: tc.limits}}})
			check(err, "New")
			c, err := New(db.Driver, &Config{Schema: db.Schema, Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			check(c.Queues().Add("q", QueueConfig{MaxWorkers: 2, Limits: tc.limits}), "Add")
			if len(tc.limits) == 1 {
				_, err := c.QueueLimitSet(context.Background(), "q", tc.limits[0])
				check(err, "QueueLimitSet")
			}
		})
	}
	// Keys that exist (a queue-wide key found in one kind's args, an
	// omitempty field) are accepted.
	_, err := New(db.Driver, &Config{Schema: db.Schema, Workers: workers, Queues: map[string]QueueConfig{"q": {MaxWorkers: 2,
		Limits: []ConcurrencyLimit{{PerPartition: 1, PartitionByArgs: []string{"customer_id", "region"}}, {Kind: "noop", Global: 1}}}}})
	if err != nil {
		t.Fatalf("valid limits: %v", err)
	}
	c, err := New(db.Driver, &Config{Schema: db.Schema, Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.QueueLimitSet(context.Background(), "bad queue!", ConcurrencyLimit{Global: 1}); !errors.Is(err, ErrInvalidQueue) {
		t.Fatalf("QueueLimitSet on a bad queue name: %v", err)
	}
}

// limitSampler reads from the database, every 2 ms until stopped, the
// most jobs running at once in the queue in all and per customer_id.
type limitSampler struct {
	stop               chan struct{}
	done               chan struct{}
	maxTotal, maxGroup int
	samples            int
	err                error
}

func sampleLimits(db *testfixture.DB, queue string) *limitSampler {
	s := &limitSampler{stop: make(chan struct{}), done: make(chan struct{})}
	q := fmt.Sprintf(`SELECT count(*), coalesce(max(n), 0) FROM (
		SELECT count(*) AS n FROM %s.river_job WHERE state = 'running' AND queue = $1 GROUP BY args -> 'customer_id') AS g`,
		pgx.Identifier{db.Schema}.Sanitize())
	q = strings.Replace(q, "SELECT count(*), coalesce", "SELECT coalesce(sum(n), 0)::int, coalesce", 1)
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			var total, group int
			if err := db.Pool.QueryRow(context.Background(), q, queue).Scan(&total, &group); err != nil {
				s.err = err
				return
			}
			s.samples++
			s.maxTotal, s.maxGroup = max(s.maxTotal, total), max(s.maxGroup, group)
		}
	}()
	return s
}

func (s *limitSampler) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	<-s.done
	if s.err != nil {
		t.Fatalf("sampler: %v", s.err)
	}
}

// TestConcurrencyLimitGlobalAndPartition: two clients of 8 workers each
// work one queue with a global limit of 3 and a limit of 1 per customer:
// the database never shows more running, every job completes, and the
// limits are reached (so the test sees them bind).
func TestConcurrencyLimitGlobalAndPartition(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	var running, peak atomic.Int32
	var mu sync.Mutex
	perCustomer := map[int]int{}
	peakCustomer := 0
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[customerArgs]) error {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		mu.Lock()
		perCustomer[job.Args.Customer]++
		peakCustomer = max(peakCustomer, perCustomer[job.Args.Customer])
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		perCustomer[job.Args.Customer]--
		mu.Unlock()
		return nil
	}))
	limits := []ConcurrencyLimit{{Global: 3, PerPartition: 1, PartitionByArgs: []string{"customer_id"}}}
	var clients []*Client[pgx.Tx]
	for range 2 {
		clients = append(clients, newClient(t, db, &Config{Workers: workers,
			Queues: map[string]QueueConfig{"limited": {MaxWorkers: 8, Limits: limits}}}))
	}
	var params []InsertManyParams
	for i := range 60 {
		params = append(params, InsertManyParams{Args: customerArgs{Customer: i % 4}, InsertOpts: &InsertOpts{Queue: "limited"}})
	}
	if _, err := clients[0].InsertMany(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	s := sampleLimits(db, "limited")
	for _, c := range clients {
		start(t, c)
	}
	deadline := time.Now().Add(30 * time.Second)
	for db.CountByState(t)["completed"] < len(params) {
		if time.Now().After(deadline) {
			t.Fatalf("jobs not all completed: %v", db.CountByState(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.finish(t)
	if s.maxTotal > 3 || s.maxGroup > 1 {
		t.Fatalf("database showed %d running (limit 3), %d of one customer (limit 1)", s.maxTotal, s.maxGroup)
	}
	if peak.Load() != 3 || peakCustomer != 1 {
		t.Fatalf("workers ran at most %d at once (want the limit, 3), %d of one customer", peak.Load(), peakCustomer)
	}
	t.Logf("%d samples; peak %d running", s.samples, s.maxTotal)
}

// TestConcurrencyLimitAtRunTime: a limit set with QueueLimitSet binds an
// unlimited queue's running client, replaces a configured one, and
// QueueLimitDelete gives the configured one back.
func TestConcurrencyLimitAtRunTime(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	var running, peak atomic.Int32
	release := make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}))
	c := newClient(t, db, &Config{Workers: workers, Queues: map[string]QueueConfig{
		"a": {MaxWorkers: 10},
		"b": {MaxWorkers: 10, Limits: []ConcurrencyLimit{{Kind: "noop", Local: 4}}}}})
	start(t, c)
	ctx := context.Background()
	if _, err := c.QueueLimitSet(ctx, "a", ConcurrencyLimit{Global: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.QueueLimitSet(ctx, "b", ConcurrencyLimit{Kind: "noop", Local: 1}); err != nil {
		t.Fatal(err)
	}
	list, err := c.QueueLimitList(ctx, "")
	if err != nil || len(list) != 2 || list[0].Queue != "a" || list[0].Global != 2 || list[1].Kind != "noop" || list[1].Local != 1 {
		t.Fatalf("QueueLimitList: %v %+v", err, list)
	}
	// The notification reaches the producers; give the poke's fetch time
	// to read the table before inserting (a fetch that ran before would
	// be unlimited).
	time.Sleep(200 * time.Millisecond)
	var params []InsertManyParams
	for range 6 {
		params = append(params, InsertManyParams{Args: noopArgs{}, InsertOpts: &InsertOpts{Queue: "a"}})
		params = append(params, InsertManyParams{Args: noopArgs{}, InsertOpts: &InsertOpts{Queue: "b"}})
	}
	if _, err := c.InsertMany(ctx, params); err != nil {
		t.Fatal(err)
	}
	waitRunning := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for running.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d running, want %d", running.Load(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitRunning(3) // 2 of a, 1 of b
	time.Sleep(300 * time.Millisecond)
	if n := running.Load(); n != 3 {
		t.Fatalf("%d running with limits 2 and 1, want 3", n)
	}
	// Deleting b's limit gives its configured local limit of 4 back.
	if ok, err := c.QueueLimitDelete(ctx, "b", "noop"); err != nil || !ok {
		t.Fatalf("QueueLimitDelete: %v %v", ok, err)
	}
	waitRunning(6)
	time.Sleep(300 * time.Millisecond)
	if n := running.Load(); n != 6 {
		t.Fatalf("%d running after the delete, want 6", n)
	}
	if ok, err := c.QueueLimitDelete(ctx, "b", "noop"); err != nil || ok {
		t.Fatalf("QueueLimitDelete again: %v %v", ok, err)
	}
	close(release)
}

// TestConcurrencyLimitGlobalBound: with a global limit above one fetch
// (20; three clients of 10 workers), fetches skip the count while the
// bound kept in millrace_limit_bound leaves room, and the database still
// never shows more than 20 running, while the limit is reached.
func TestConcurrencyLimitGlobalBound(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[customerArgs]) error {
		// Long enough that a full house lasts for several samples.
		time.Sleep(time.Duration(30+job.Args.Customer%20) * time.Millisecond)
		return nil
	}))
	var clients []*Client[pgx.Tx]
	for range 3 {
		clients = append(clients, newClient(t, db, &Config{Workers: workers,
			Queues: map[string]QueueConfig{"limited": {MaxWorkers: 10, Limits: []ConcurrencyLimit{{Global: 20}}}}}))
	}
	var params []InsertManyParams
	for i := range 900 {
		params = append(params, InsertManyParams{Args: customerArgs{Customer: i}, InsertOpts: &InsertOpts{Queue: "limited"}})
	}
	if _, err := clients[0].InsertMany(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	s := sampleLimits(db, "limited")
	for _, c := range clients {
		start(t, c)
	}
	deadline := time.Now().Add(60 * time.Second)
	for db.CountByState(t)["completed"] < len(params) {
		if time.Now().After(deadline) {
			t.Fatalf("jobs not all completed: %v", db.CountByState(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.finish(t)
	var bound int64
	if err := db.Pool.QueryRow(context.Background(), "SELECT bound FROM "+pgx.Identifier{db.Schema, "millrace_limit_bound"}.Sanitize()+
		" WHERE queue = 'limited'").Scan(&bound); err != nil {
		t.Fatalf("the bound was never stored: %v", err)
	}
	t.Logf("%d samples; peak %d running; last bound %d", s.samples, s.maxTotal, bound)
	if s.maxTotal > 20 {
		t.Fatalf("database showed %d running, limit 20", s.maxTotal)
	}
	if s.maxTotal < 20 {
		t.Fatalf("never more than %d running: the limit of 20 was not reached", s.maxTotal)
	}
}
