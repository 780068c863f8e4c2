package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/millracetype"
)

// ImportRowArgs are the args of a job that imports one row of a file.
type ImportRowArgs struct {
	Row int `json:"row"`
}

func (ImportRowArgs) Kind() string { return "import_row" }

// ExampleClient_JobList pages through the jobs of one import, two at a
// time, with a cursor that survives being sent to a browser and back.
// Jobs inserted meanwhile never make a page repeat or skip one.
func ExampleClient_JobList() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	c, err := client.New(pgxv5.New(pool), &client.Config{Schema: schema})
	if err != nil {
		log.Fatal(err)
	}
	for row := range 5 {
		if _, err := c.Insert(ctx, ImportRowArgs{Row: row}, &client.InsertOpts{Tags: []string{"import_42"}}); err != nil {
			log.Fatal(err)
		}
	}

	token := "" // the cursor as text, e.g. a query parameter
	for page := 1; ; page++ {
		params := &client.JobListParams{
			TagsAny:   []string{"import_42"},
			CreatedAt: client.TimeRange{From: new(time.Now().Add(-time.Hour))},
			Limit:     2,
		}
		if token != "" {
			if params.After, err = client.ParseJobListCursor(token); err != nil {
				log.Fatal(err)
			}
		}
		res, err := c.JobList(ctx, params)
		if err != nil {
			log.Fatal(err)
		}
		if len(res.Jobs) == 0 {
			break
		}
		fmt.Printf("page %d: %d jobs\n", page, len(res.Jobs))
		token = res.LastCursor.String()
	}

	// Output:
	// page 1: 2 jobs
	// page 2: 2 jobs
	// page 3: 1 jobs
}

// ExampleClient_JobDeleteMany deletes the jobs of an import in batches of
// two, calling again while a batch comes back full.
func ExampleClient_JobDeleteMany() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	c, err := client.New(pgxv5.New(pool), &client.Config{Schema: schema})
	if err != nil {
		log.Fatal(err)
	}
	for row := range 5 {
		if _, err := c.Insert(ctx, ImportRowArgs{Row: row}, &client.InsertOpts{Tags: []string{"import_42"}}); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := c.Insert(ctx, ImportRowArgs{Row: 1}, &client.InsertOpts{Tags: []string{"import_43"}}); err != nil {
		log.Fatal(err)
	}

	for {
		// Running jobs are never deleted (cancel them first).
		res, err := c.JobDeleteMany(ctx, &client.JobListParams{TagsAny: []string{"import_42"}, Limit: 2})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("deleted", len(res.Jobs))
		if !res.More {
			break
		}
	}
	left, err := c.JobList(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("jobs left:", len(left.Jobs))

	// A filter naming a job that does not exist changes nothing.
	_, err = c.JobDeleteMany(ctx, &client.JobListParams{IDs: []int64{left.Jobs[0].ID, 123456}})
	fmt.Println("unknown ID is not found:", errors.Is(err, client.ErrNotFound))

	// Output:
	// deleted 2
	// deleted 2
	// deleted 1
	// jobs left: 1
	// unknown ID is not found: true
}

// ExampleClient_JobCancelMany cancels every job of a kind: the one already
// running is asked to stop (its worker's context is cancelled), the one
// waiting is cancelled at once.
func ExampleClient_JobCancelMany() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	started := make(chan struct{})
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[ImportRowArgs]) error {
		close(started)
		<-ctx.Done() // a long import, until cancelled
		return ctx.Err()
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Queues:  map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 1}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	events, unsubscribe := c.Subscribe(client.EventKindJobCancelled)
	defer unsubscribe()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil

	if _, err := c.Insert(ctx, ImportRowArgs{Row: 1}, nil); err != nil {
		log.Fatal(err)
	}
	<-started
	if _, err := c.Insert(ctx, ImportRowArgs{Row: 2}, &client.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)}); err != nil {
		log.Fatal(err)
	}

	res, err := c.JobCancelMany(ctx, &client.JobListParams{Kinds: []string{"import_row"}})
	if err != nil {
		log.Fatal(err)
	}
	for _, job := range res.Jobs {
		fmt.Println("batch:", job.State)
	}
	ev := <-events
	fmt.Println("the running job ended", ev.Job.State)

	// Output:
	// batch: running
	// batch: cancelled
	// the running job ended cancelled
}

// ExampleClient_JobRetryMany retries the jobs an outage discarded, once
// the outage is over.
func ExampleClient_JobRetryMany() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	var outage atomic.Bool
	outage.Store(true)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[ImportRowArgs]) error {
		if outage.Load() {
			return errors.New("upstream unavailable")
		}
		return nil
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Queues:  map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 3}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	events, unsubscribe := c.Subscribe(client.EventKindJobFailed, client.EventKindJobCompleted)
	defer unsubscribe()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil

	for row := range 3 {
		if _, err := c.Insert(ctx, ImportRowArgs{Row: row}, &client.InsertOpts{MaxAttempts: 1}); err != nil {
			log.Fatal(err)
		}
	}
	for range 3 {
		<-events // each fails once and, out of attempts, is discarded
	}
	outage.Store(false)

	res, err := c.JobRetryMany(ctx, &client.JobListParams{
		Kinds:  []string{"import_row"},
		States: []millracetype.JobState{millracetype.JobStateDiscarded},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("retried:", len(res.Jobs))
	for range 3 {
		ev := <-events
		fmt.Println(ev.Kind, "at attempt", ev.Job.Attempt)
	}

	// Output:
	// retried: 3
	// job_completed at attempt 2
	// job_completed at attempt 2
	// job_completed at attempt 2
}
