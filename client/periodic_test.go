package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
)

type reportArgs struct{}

func (reportArgs) Kind() string { return "report" }

func TestPeriodicJobAddValidation(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	ctor := func() (JobArgs, *InsertOpts) { return reportArgs{}, nil }
	for _, tc := range []struct {
		name string
		job  *PeriodicJob
	}{
		{"nil job", nil},
		{"zero interval", NewPeriodicJob(PeriodicInterval(0), ctor, nil)},
		{"sub-second interval", NewPeriodicJob(PeriodicInterval(time.Millisecond), ctor, nil)},
		{"nil constructor", NewPeriodicJob(PeriodicInterval(time.Hour), nil, nil)},
		{"nil schedule", NewPeriodicJob(nil, ctor, nil)},
	} {
		if _, err := c.PeriodicJobs().Add(tc.job); !errors.Is(err, ErrInvalidArgs) {
			t.Errorf("%s: %v, want ErrInvalidArgs", tc.name, err)
		}
	}
	if _, err := ParseCron("not a cron"); !errors.Is(err, ErrInvalidArgs) {
		t.Errorf("bad cron: %v", err)
	}
	s, err := ParseCron("*/15 * * * *")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 11, 25, 10, 7, 0, 0, time.UTC)
	if got := s.Next(from); !got.Equal(time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC)) {
		t.Errorf("cron next after %s: %s", from, got)
	}
	if got := PeriodicInterval(time.Hour).Next(from); !got.Equal(time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("interval next after %s: %s", from, got)
	}
	if _, err := New(db.Driver, &Config{PeriodicJobs: []*PeriodicJob{NewPeriodicJob(PeriodicInterval(0), ctor, nil)}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("config with a bad periodic job: %v", err)
	}
}

// TestPeriodicJobsOncePerPeriodAcrossClients: three clients share a
// periodic job; the leader stops half way so another takes over; every run
// is enqueued exactly once, with River's periodic metadata.
func TestPeriodicJobsOncePerPeriodAcrossClients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[reportArgs]) error { return nil }))
	job := NewPeriodicJob(PeriodicInterval(time.Second), func() (JobArgs, *InsertOpts) { return reportArgs{}, nil },
		&PeriodicJobOpts{ID: "nightly_report"})
	var clients []*Client[pgx.Tx]
	for range 3 {
		c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers, PeriodicJobs: []*PeriodicJob{job}})
		start(t, c)
		clients = append(clients, c)
	}
	leader := func() *Client[pgx.Tx] {
		for _, c := range clients {
			if c.IsLeader() {
				return c
			}
		}
		return nil
	}
	testwait.For(t, 15*time.Second, "a leader", func() bool { return leader() != nil })
	time.Sleep(2500 * time.Millisecond) // let runs happen: this test is about what accumulates over periods
	if err := leader().Stop(ctx); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "a new leader", func() bool { return leader() != nil })
	time.Sleep(2500 * time.Millisecond)

	rows, err := db.Pool.Query(ctx, `SELECT scheduled_at, count(*), bool_and(metadata @> '{"periodic": true, "river:periodic_job_id": "nightly_report"}'
			AND (metadata->>$1)::timestamptz = scheduled_at)
		FROM `+db.Schema+`.river_job WHERE kind = 'report' GROUP BY scheduled_at ORDER BY scheduled_at`, PeriodicRunAtMetadataKey)
	if err != nil {
		t.Fatal(err)
	}
	var runs []string
	var at time.Time
	var n int
	var meta bool
	if _, err := pgx.ForEachRow(rows, []any{&at, &n, &meta}, func() error {
		if n != 1 {
			t.Errorf("run at %s enqueued %d times", at, n)
		}
		if !meta {
			t.Errorf("run at %s lacks the periodic metadata (periodic, its ID, its run time)", at)
		}
		if !at.Equal(at.Truncate(time.Second)) {
			t.Errorf("run at %s is not aligned to the interval", at)
		}
		runs = append(runs, at.Format(time.TimeOnly))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(runs) < 3 {
		t.Fatalf("only %d runs in about 5 s of a 1 s schedule: %v", len(runs), runs)
	}
}

// TestPeriodicJobRunOnStartAndBadConstructor: RunOnStart enqueues at once;
// a constructor that panics is skipped without stopping the others.
func TestPeriodicJobRunOnStartAndBadConstructor(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	ran := make(chan struct{}, 10)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[reportArgs]) error { ran <- struct{}{}; return nil }))
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers})
	if _, err := c.PeriodicJobs().Add(NewPeriodicJob(PeriodicInterval(time.Hour), func() (JobArgs, *InsertOpts) { panic("broken constructor") },
		&PeriodicJobOpts{RunOnStart: true})); err != nil {
		t.Fatal(err)
	}
	h, err := c.PeriodicJobs().Add(NewPeriodicJob(PeriodicInterval(time.Hour), func() (JobArgs, *InsertOpts) { return reportArgs{}, nil },
		&PeriodicJobOpts{RunOnStart: true}))
	if err != nil {
		t.Fatal(err)
	}
	start(t, c)
	recv(t, ran, "the RunOnStart job to run")
	c.PeriodicJobs().Remove(h)
	c.PeriodicJobs().Clear()
}

// TestLeaderLosesDatabase: the leader's connections are killed and it
// cannot reconnect (its role may no longer log in); it steps down, and
// another client leads within the TTL and one election interval.
func TestLeaderLosesDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	role := "r_" + strings.TrimPrefix(db.Schema, "t_")
	if len(role) > 60 {
		role = role[:60]
	}
	if _, err := db.Pool.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN SUPERUSER", role)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
		if _, err := db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+role); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	cfg, err := pgxpool.ParseConfig(testdb.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.User = role
	cfg.ConnConfig.RuntimeParams["search_path"] = db.Schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil }))
	const ttl, interval = 2 * time.Second, 200 * time.Millisecond
	doomed := newClientOn(t, pgxv5.New(pool), db.Schema, &Config{Queues: oneQueue(1), Workers: workers})
	doomed.config.leaderTTL, doomed.config.electInterval = ttl, interval
	start(t, doomed)
	testwait.For(t, 15*time.Second, "the first client to lead", doomed.IsLeader)
	other := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	other.config.leaderTTL, other.config.electInterval = ttl, interval
	start(t, other)

	// Cut the leader off. Once NOLOGIN has committed no new connection of
	// the role can log in, but one whose login was checked just before is
	// only listed in pg_stat_activity at the end of its startup: a sweep of
	// pg_terminate_backend made meanwhile misses it, and the leader keeps
	// extending its term through it (its pool grows while it starts its
	// maintenance services, just when the cut happens). So sweep only once
	// its pool has no connection under construction: every connection that
	// logged in is then listed. (The notifier's connection was made at
	// Start; nothing has broken it, so it is not being remade now.)
	if _, err := db.Pool.Exec(ctx, "ALTER ROLE "+role+" NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "the cut-off client's pool to finish its connection attempts",
		func() bool { return pool.Stat().ConstructingConns() == 0 })
	killed := time.Now()
	if _, err := db.Pool.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "the other client to lead", other.IsLeader)
	if took := time.Since(killed); took > ttl+interval+time.Second {
		t.Fatalf("takeover took %s (TTL %s, interval %s)", took, ttl, interval)
	}
	testwait.For(t, 15*time.Second, "the cut-off client to step down", func() bool { return !doomed.IsLeader() })
	if _, err := db.Pool.Exec(ctx, "ALTER ROLE "+role+" LOGIN"); err != nil {
		t.Fatal(err)
	}
}
