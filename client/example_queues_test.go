package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sort"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// QueueReportArgs are the args of a job that builds a report.
type QueueReportArgs struct {
	Name string `json:"name"`
}

func (QueueReportArgs) Kind() string { return "report" }

// ExampleQueueBundle_Add adds a queue to a running client, works a job in
// it, and removes it again: Remove returns once the queue's running jobs
// have finished and their outcomes are written.
func ExampleQueueBundle_Add() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	done := make(chan string, 1)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[QueueReportArgs]) error {
		done <- job.Args.Name + " in queue " + job.Queue
		return nil
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Queues:  map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 2}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // shown in ExampleClient_Stop

	// The reports queue starts working as soon as Add returns.
	if err := c.Queues().Add("reports", client.QueueConfig{MaxWorkers: 5}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("queues:", c.Queues().Names())
	if _, err := c.Insert(ctx, QueueReportArgs{Name: "monthly"}, &client.InsertOpts{Queue: "reports"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("worked:", <-done)

	if err := c.Queues().Remove(ctx, "reports"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("queues:", c.Queues().Names())

	// Output:
	// queues: [default reports]
	// worked: monthly in queue reports
	// queues: [default]
}

// ExampleClient_QueueUpdate sets a queue's metadata. Every client working
// the queue (millrace or River) is told through River's metadata_changed
// notification; millrace clients report it as an event.
func ExampleClient_QueueUpdate() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[QueueReportArgs]) error { return nil }))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Queues:  map[string]client.QueueConfig{"reports": {MaxWorkers: 1}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	changes, unsubscribe := c.Subscribe(client.EventKindQueueMetadataChanged)
	defer unsubscribe()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // shown in ExampleClient_Stop

	q, err := c.QueueUpdate(ctx, "reports", &client.QueueUpdateParams{Metadata: []byte(`{"owner":"finance"}`)})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("queue %s metadata %s\n", q.Name, q.Metadata)
	ev := <-changes
	fmt.Printf("event %s for queue %s: %s\n", ev.Kind, ev.Queue, ev.QueueMetadata)

	// Metadata must be a JSON object.
	_, err = c.QueueUpdate(ctx, "reports", &client.QueueUpdateParams{Metadata: []byte(`["finance"]`)})
	fmt.Println("invalid metadata refused:", errors.Is(err, client.ErrInvalidArgs))

	// Output:
	// queue reports metadata {"owner": "finance"}
	// event queue_metadata_changed for queue reports: {"owner":"finance"}
	// invalid metadata refused: true
}

// ExampleClient_QueueListWithCounts lists queues with how many of their
// jobs wait, run, or are scheduled, read in one statement.
func ExampleClient_QueueListWithCounts() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[QueueReportArgs]) error { return nil }))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Queues:  map[string]client.QueueConfig{"reports": {MaxWorkers: 1}, "emails": {MaxWorkers: 1}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	// Starting registers the queues; once stopped, the client leaves the
	// jobs inserted below waiting, so the counts hold still.
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if _, err := c.Insert(ctx, QueueReportArgs{Name: name}, &client.InsertOpts{Queue: "reports"}); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := c.Insert(ctx, QueueReportArgs{Name: "later"}, &client.InsertOpts{Queue: "reports", Pending: true}); err != nil {
		log.Fatal(err)
	}

	queues, err := c.QueueListWithCounts(ctx, 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, q := range queues {
		fmt.Printf("%s: available %d, pending %d, running %d\n", q.Name, q.Counts.Available, q.Counts.Pending, q.Counts.Running)
	}

	// Output:
	// emails: available 0, pending 0, running 0
	// reports: available 3, pending 1, running 0
}

// ExampleConfig_workerOnly shows the three roles a client can take: an
// insert-only client (no queues: it starts nothing), a worker-only client
// (LeaderElectionDisabled: it works jobs but never runs maintenance), and
// a full client that may lead.
func ExampleConfig_workerOnly() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()
	drv := pgxv5.New(pool)
	quiet := slog.New(slog.DiscardHandler)

	// Insert-only: no Queues. Start refuses, and nothing runs.
	inserter, err := client.New(drv, &client.Config{Schema: schema, Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("insert-only Start:", inserter.Start(ctx))

	worked := make(chan string, 1)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[QueueReportArgs]) error {
		worked <- job.Args.Name
		return nil
	}))
	// Worker-only: works its queues, never leads.
	worker, err := client.New(drv, &client.Config{
		Schema:                 schema,
		Queues:                 map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 5}},
		Workers:                workers,
		LeaderElectionDisabled: true,
		Logger:                 quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := worker.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer worker.Stop(ctx) //nolint:errcheck // shown in ExampleClient_Stop

	if _, err := inserter.Insert(ctx, QueueReportArgs{Name: "weekly"}, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println("worker-only client worked:", <-worked)
	fmt.Println("worker-only client leads:", worker.IsLeader())

	// Output:
	// insert-only Start: client has no queues configured: it can insert but not work jobs
	// worker-only client worked: weekly
	// worker-only client leads: false
}

// TenantArgs is one args type for many kinds: each tenant's jobs get a
// kind of their own, chosen at run time.
type TenantArgs struct {
	Tenant string `json:"tenant"`
	kind   string
}

func (a TenantArgs) Kind() string { return a.kind }

// ExampleAddWorkerArgs registers one args type once per kind, with kinds
// decided at run time (from configuration, say).
func ExampleAddWorkerArgs() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	worked := make(chan string, 2)
	workers := client.NewWorkers()
	for _, tenant := range []string{"acme", "globex"} {
		client.AddWorkerArgs(workers, TenantArgs{kind: "sync." + tenant}, client.WorkFunc(func(ctx context.Context, job *client.Job[TenantArgs]) error {
			// Decoded args are a fresh TenantArgs: the kind is job.Kind.
			worked <- job.Kind + " for " + job.Args.Tenant
			return nil
		}))
	}
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Queues:  map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 2}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // shown in ExampleClient_Stop
	for _, tenant := range []string{"acme", "globex"} {
		if _, err := c.Insert(ctx, TenantArgs{Tenant: tenant, kind: "sync." + tenant}, nil); err != nil {
			log.Fatal(err)
		}
	}
	lines := []string{<-worked, <-worked}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}

	// Output:
	// sync.acme for acme
	// sync.globex for globex
}

// ExampleAddRawWorker works jobs of any kind with their args as raw JSON,
// as a proxy to another service would, and inserts jobs the same way.
func ExampleAddRawWorker() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	forwarded := make(chan string, 1)
	forward := client.WorkFunc(func(ctx context.Context, job *client.Job[client.RawArgs]) error {
		// A real proxy would send job.Args.JSON to the service for job.Kind.
		var body map[string]any
		if err := json.Unmarshal(job.Args.JSON, &body); err != nil {
			return err
		}
		forwarded <- fmt.Sprintf("%s %v", job.Kind, body)
		return nil
	})
	workers := client.NewWorkers()
	for _, kind := range []string{"image.resize", "image.crop"} {
		client.AddRawWorker(workers, kind, forward)
	}
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Queues:  map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 2}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // shown in ExampleClient_Stop

	args := client.NewRawArgs("image.resize", json.RawMessage(`{"width": 640}`))
	if _, err := c.Insert(ctx, args, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println("forwarded:", <-forwarded)

	// Output:
	// forwarded: image.resize map[width:640]
}
