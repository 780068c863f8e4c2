package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/migrate"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
)

type domainTickA struct{}

func (domainTickA) Kind() string { return "domain_tick_a" }

type domainTickB struct{}

func (domainTickB) Kind() string { return "domain_tick_b" }

// domainClient starts a client of a domain with one periodic job (every
// second) of its own kind, and fast leader elections.
func domainClient[T JobArgs](t *testing.T, db *testfixture.DB, domain string, tick T) *Client[pgx.Tx] {
	t.Helper()
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(context.Context, *Job[T]) error { return nil }))
	c := newClient(t, db, &Config{Domain: domain, Queues: oneQueue(2), Workers: workers,
		leaderTTL: 2 * time.Second, electInterval: 200 * time.Millisecond,
		PeriodicJobs: []*PeriodicJob{NewPeriodicJob(PeriodicInterval(time.Second),
			func() (JobArgs, *InsertOpts) { return tick, nil }, &PeriodicJobOpts{ID: "tick"})}})
	start(t, c)
	return c
}

func countKind(t *testing.T, db *testfixture.DB, kind string) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{db.Schema, "river_job"}.Sanitize()+
		" WHERE kind = $1", kind).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDomainPeriodicJobsWhileAnotherServiceLeads: a client of domain b
// holds the database leadership; the client of domain a leads its own
// domain and enqueues its periodic job all the same (River's issue 342),
// and each domain enqueues only its own.
func TestDomainPeriodicJobsWhileAnotherServiceLeads(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	b := domainClient(t, db, "b", domainTickB{})
	testwait.For(t, 10*time.Second, "b leads the database and its domain", func() bool { return b.IsLeader() && b.IsDomainLeader() })
	a := domainClient(t, db, "a", domainTickA{})
	testwait.For(t, 10*time.Second, "a leads its domain", a.IsDomainLeader)
	if a.IsLeader() {
		t.Fatal("a leads the database too, while b should")
	}
	before := countKind(t, db, "domain_tick_a")
	testwait.For(t, 10*time.Second, "3 more ticks of a while b leads the database", func() bool {
		return countKind(t, db, "domain_tick_a") >= before+3
	})
	if !b.IsLeader() || a.IsLeader() {
		t.Fatalf("database leadership moved: a %v, b %v", a.IsLeader(), b.IsLeader())
	}
	// A second client of a, stopped leader: a's other client takes over
	// the domain, b keeps the database.
	a2 := domainClient(t, db, "a", domainTickA{})
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "a2 leads domain a", a2.IsDomainLeader)
	if !b.IsLeader() || !b.IsDomainLeader() {
		t.Fatalf("b lost a leadership when a's leader stopped: database %v, domain %v", b.IsLeader(), b.IsDomainLeader())
	}
	after := countKind(t, db, "domain_tick_a")
	testwait.For(t, 10*time.Second, "ticks of a from a2", func() bool { return countKind(t, db, "domain_tick_a") >= after+2 })
}

// TestDomainNeedsMillraceLine: a client with a Domain, like every working
// client, refuses to start on a schema without migration line millrace
// (millrace_leader, millrace_client), naming the line and the missing
// versions.
func TestDomainNeedsMillraceLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool := testdb.NewSchema(t)
	drv := pgxv5.New(pool)
	m, err := migrate.New[pgx.Tx](drv, &migrate.Config{Schema: schema}) // line main only
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(context.Context, *Job[noopArgs]) error { return nil }))
	c := newClientOn(t, drv, schema, &Config{Domain: "a", Queues: oneQueue(1), Workers: workers})
	err = c.Start(ctx)
	var nm *NotMigratedError
	if !errors.Is(err, ErrNotMigrated) || !errors.As(err, &nm) || len(nm.MissingMillrace) != RequiredMillraceMigrationVersion {
		t.Fatalf("Start with a Domain on line main only: %v (%+v)", err, nm)
	}
	if !strings.Contains(err.Error(), "of migration line millrace") || !strings.Contains(err.Error(), "migrate.MigrateAll") {
		t.Errorf("error does not say what to do: %v", err)
	}
}
