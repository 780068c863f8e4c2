package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// HealthPingArgs are the args of a small job nobody needs to look at once it
// has succeeded: its kind is ephemeral.
type HealthPingArgs struct {
	Host string `json:"host"`
}

func (HealthPingArgs) Kind() string { return "ping" }

// Ephemeral makes every ping job that completes be deleted instead of kept.
func (HealthPingArgs) Ephemeral() bool { return true }

// CacheWarmArgs are the args of a job whose kind is not ephemeral; it runs in
// a queue that is.
type CacheWarmArgs struct {
	Fail bool `json:"fail"`
}

func (CacheWarmArgs) Kind() string { return "cache_warm" }

// ExampleJobArgsWithEphemeral deletes jobs when they complete: by kind
// (HealthPingArgs.Ephemeral) and by queue (QueueConfig.Ephemeral). A job that
// fails keeps its row, and the completion event still carries the row as
// completed.
func ExampleJobArgsWithEphemeral() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[HealthPingArgs]) error {
		return client.RecordOutput(ctx, "pong from "+job.Args.Host) // seen by the event only
	}))
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[CacheWarmArgs]) error {
		if job.Args.Fail {
			return errors.New("cache warm failed")
		}
		return nil
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema: schema,
		Queues: map[string]client.QueueConfig{
			client.QueueDefault: {MaxWorkers: 10},
			"warmups":           {MaxWorkers: 10, Ephemeral: true},
		},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	events, unsubscribe := c.Subscribe(client.EventKindJobCompleted, client.EventKindJobFailed)
	defer unsubscribe()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil

	show := func(args client.JobArgs, opts *client.InsertOpts) {
		res, err := c.Insert(ctx, args, opts)
		if err != nil {
			log.Fatal(err)
		}
		ev := <-events
		fmt.Printf("%s %s: event %s, state %s, metadata %s\n", ev.Job.Queue, ev.Job.Kind, ev.Kind, ev.Job.State, ev.Job.Metadata)
		switch job, err := c.JobGet(ctx, res.Job.ID); {
		case errors.Is(err, client.ErrNotFound):
			fmt.Println("  the row is deleted")
		case err != nil:
			log.Fatal(err)
		default:
			fmt.Println("  the row is kept:", job.State)
		}
	}
	show(HealthPingArgs{Host: "db1"}, nil)                                                // ephemeral kind
	show(CacheWarmArgs{}, nil)                                                            // kept: neither kind nor queue
	show(CacheWarmArgs{}, &client.InsertOpts{Queue: "warmups"})                           // ephemeral queue
	show(CacheWarmArgs{Fail: true}, &client.InsertOpts{Queue: "warmups", MaxAttempts: 1}) // failures are kept

	// Output:
	// default ping: event job_completed, state completed, metadata {"output": "pong from db1"}
	//   the row is deleted
	// default cache_warm: event job_completed, state completed, metadata {}
	//   the row is kept: completed
	// warmups cache_warm: event job_completed, state completed, metadata {}
	//   the row is deleted
	// warmups cache_warm: event job_failed, state discarded, metadata {}
	//   the row is kept: discarded
}
