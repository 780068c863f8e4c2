package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// HangArgs are the args of a job whose worker ignores its context.
type HangArgs struct{}

func (HangArgs) Kind() string { return "hang" }

// ExampleJobStuckHandler is told of a job that ran past its timeout and
// did not return: the worker waits on a channel and never looks at its
// context. The job keeps its worker slot until it returns, and its outcome
// is then recorded as usual.
func ExampleJobStuckHandler() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	release := make(chan struct{})
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[HangArgs]) error {
		<-release // a bug: should also select on ctx.Done()
		return nil
	}))
	stuck := make(chan *client.JobStuck, 1)
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:            schema,
		Queues:            map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 1}},
		Workers:           workers,
		JobTimeout:        10 * time.Millisecond,
		JobStuckThreshold: 10 * time.Millisecond,
		JobStuckHandler: func(ctx context.Context, s *client.JobStuck) {
			// Report it (an alert, a metric), or decide to restart the
			// process once too many are stuck (s.TotalStuck). Do not wait
			// here for the client to stop: the job's outcome is written
			// after this returns.
			stuck <- s
		},
		Logger: slog.New(slog.DiscardHandler), // it also logs a warning
	})
	if err != nil {
		log.Fatal(err)
	}
	events, unsubscribe := c.Subscribe(client.EventKindJobCompleted)
	defer unsubscribe()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil

	res, err := c.Insert(ctx, HangArgs{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	s := <-stuck
	fmt.Printf("job %s stuck: timeout %s, stuck jobs %d, same job: %v\n",
		s.Job.Kind, s.Timeout, s.TotalStuck, s.Job.ID == res.Job.ID)

	close(release) // the worker returns at last
	ev := <-events
	fmt.Println("then recorded:", ev.Job.State)

	// Output:
	// job hang stuck: timeout 10ms, stuck jobs 1, same job: true
	// then recorded: completed
}
