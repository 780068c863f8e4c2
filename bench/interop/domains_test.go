package interop

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

type riverTickArgs struct{}

func (riverTickArgs) Kind() string { return "interop_river_tick" }

type domainTickA struct{}

func (domainTickA) Kind() string { return "interop_domain_a_tick" }

type domainTickB struct{}

func (domainTickB) Kind() string { return "interop_domain_b_tick" }

// TestDomainsWithRiver runs a River client (the database's leader, with a
// periodic job) and two millrace clients of domains "a" and "b" (each with
// a periodic job, on queues of their own) on one schema migrated on both
// lines. River keeps its leadership and its periodic job, each millrace
// domain elects its leader in millrace_leader and enqueues its periodic
// job while River leads the database, a millrace domain leader's
// resignation does not disturb River, and River's migrator still finds
// nothing to do.
func TestDomainsWithRiver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	if _, err := migrate.MigrateAll(ctx, pgxv5.New(pool), &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}

	rWorkers := river.NewWorkers()
	river.AddWorker(rWorkers, river.WorkFunc(func(context.Context, *river.Job[riverTickArgs]) error { return nil }))
	rc := newRiverClient(t, schema, &river.Config{ID: "interop_river", Workers: rWorkers,
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}},
		PeriodicJobs: []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(time.Second),
			func() (river.JobArgs, *river.InsertOpts) { return riverTickArgs{}, nil }, &river.PeriodicJobOpts{RunOnStart: true})}})
	if !eventually(10*time.Second, func() bool { return leaderID(t, pool, schema) == rc.ID() }) {
		t.Fatalf("River did not become leader within 10 s; river_leader says %q", leaderID(t, pool, schema))
	}

	startDomain := func(domain string, tick client.JobArgs, add func(*client.Workers)) *client.Client[pgx.Tx] {
		ws := client.NewWorkers()
		add(ws)
		return newMillraceClient(t, schema, &client.Config{ID: "interop_millrace_" + domain, Domain: domain, Workers: ws,
			// Queues of their own: River's client fetches every kind of
			// the queues it works.
			Queues: map[string]client.QueueConfig{"svc_" + domain: {MaxWorkers: 2}},
			PeriodicJobs: []*client.PeriodicJob{client.NewPeriodicJob(client.PeriodicInterval(time.Second),
				func() (client.JobArgs, *client.InsertOpts) { return tick, &client.InsertOpts{Queue: "svc_" + domain} },
				&client.PeriodicJobOpts{ID: "tick_" + domain})}})
	}
	ma := startDomain("a", domainTickA{}, func(ws *client.Workers) {
		client.AddWorker(ws, client.WorkFunc(func(context.Context, *client.Job[domainTickA]) error { return nil }))
	})
	mb := startDomain("b", domainTickB{}, func(ws *client.Workers) {
		client.AddWorker(ws, client.WorkFunc(func(context.Context, *client.Job[domainTickB]) error { return nil }))
	})

	domainLeader := func(domain string) string {
		var id string
		err := pool.QueryRow(ctx, "SELECT leader_id FROM "+pgx.Identifier{schema, "millrace_leader"}.Sanitize()+
			" WHERE domain = $1 AND expires_at > now()", domain).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return ""
		}
		if err != nil {
			t.Fatalf("read millrace_leader: %v", err)
		}
		return id
	}
	completed := func(kind string) int {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+jobTable(schema)+" WHERE kind = $1 AND state = 'completed'", kind).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// A client learns it won after its election's statement commits, so
	// the rows and the clients' own view are awaited together.
	if !eventually(10*time.Second, func() bool {
		return domainLeader("a") == ma.ID() && domainLeader("b") == mb.ID() && ma.IsDomainLeader() && mb.IsDomainLeader()
	}) {
		t.Fatalf("domain leaders: a %q (client says %v), b %q (client says %v); want %s and %s", domainLeader("a"),
			ma.IsDomainLeader(), domainLeader("b"), mb.IsDomainLeader(), ma.ID(), mb.ID())
	}
	if ma.IsLeader() || mb.IsLeader() {
		t.Errorf("millrace clients: a domain leader %v leader %v, b domain leader %v leader %v; want domain leaders only",
			ma.IsDomainLeader(), ma.IsLeader(), mb.IsDomainLeader(), mb.IsLeader())
	}
	// Each system's periodic job runs while River leads the database.
	if !eventually(15*time.Second, func() bool {
		return completed("interop_domain_a_tick") >= 3 && completed("interop_domain_b_tick") >= 3 && completed("interop_river_tick") >= 3
	}) {
		t.Fatalf("periodic jobs completed: a %d, b %d, River %d; want 3 each", completed("interop_domain_a_tick"),
			completed("interop_domain_b_tick"), completed("interop_river_tick"))
	}
	if id := leaderID(t, pool, schema); id != rc.ID() {
		t.Fatalf("river_leader names %q; River should still lead", id)
	}

	// Domain a's leader stops and resigns: its row goes, River's term and
	// domain b's stay, and River's client goes on.
	stopWithin(t, "millrace client a", ma.Stop)
	if id := domainLeader("a"); id != "" {
		t.Errorf("domain a's row left after its only client stopped: %q", id)
	}
	before := completed("interop_river_tick")
	if !eventually(10*time.Second, func() bool { return completed("interop_river_tick") >= before+2 }) {
		t.Error("River's periodic job stopped after a millrace domain leader resigned")
	}
	if id, b := leaderID(t, pool, schema), domainLeader("b"); id != rc.ID() || b != mb.ID() {
		t.Errorf("after a's resignation: river_leader %q, domain b %q; want %s and %s", id, b, rc.ID(), mb.ID())
	}

	// River's migrator still finds the schema complete.
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: schema, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil || len(res.Versions) != 0 {
		t.Errorf("River migrate up with millrace domains in use: %+v, %v", res, err)
	}
}
