package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testfixture"
)

// WelcomeEmailArgs are the args of a job that sends a welcome email. The
// struct is stored as the job's JSON args; Kind names the job type.
type WelcomeEmailArgs struct {
	To string `json:"to"`
}

func (WelcomeEmailArgs) Kind() string { return "welcome_email" }

// WelcomeEmailWorker works WelcomeEmailArgs jobs.
type WelcomeEmailWorker struct {
	client.WorkerDefaults[WelcomeEmailArgs]
	sent chan<- string
}

func (w *WelcomeEmailWorker) Work(ctx context.Context, job *client.Job[WelcomeEmailArgs]) error {
	// A real worker would send the email here.
	w.sent <- job.Args.To
	return nil
}

// Example defines a job type and its worker, starts a client, inserts a
// job and waits for it to be worked.
func Example() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	sent := make(chan string, 1)
	workers := client.NewWorkers()
	client.AddWorker(workers, &WelcomeEmailWorker{sent: sent})

	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Queues:  map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 10}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil

	res, err := c.Insert(ctx, WelcomeEmailArgs{To: "ada@example.com"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("inserted a %s job in queue %s\n", res.Job.Kind, res.Job.Queue)
	fmt.Println("worker sent a welcome email to", <-sent)

	if err := c.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	job, err := c.JobGet(ctx, res.Job.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("job state:", job.State)

	// Output:
	// inserted a welcome_email job in queue default
	// worker sent a welcome email to ada@example.com
	// job state: completed
}

// ExampleClient_InsertTx inserts a job in the same transaction as the
// application's own writes: the job exists only if the transaction commits.
func ExampleClient_InsertTx() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	// A client that only inserts needs no queues or workers.
	c, err := client.New(pgxv5.New(pool), &client.Config{Schema: schema})
	if err != nil {
		log.Fatal(err)
	}

	insertInTx := func(commit bool) int64 {
		tx, err := pool.Begin(ctx)
		if err != nil {
			log.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		// ... the application's own writes go here, on tx ...
		res, err := c.InsertTx(ctx, tx, WelcomeEmailArgs{To: "grace@example.com"}, nil)
		if err != nil {
			log.Fatal(err)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				log.Fatal(err)
			}
		}
		return res.Job.ID
	}

	rolledBack := insertInTx(false)
	if _, err := c.JobGet(ctx, rolledBack); errors.Is(err, client.ErrNotFound) {
		fmt.Println("rolled back: the job does not exist")
	}
	committed := insertInTx(true)
	job, err := c.JobGet(ctx, committed)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("committed: the job is", job.State)

	// Output:
	// rolled back: the job does not exist
	// committed: the job is available
}

// SlowArgs are the args of a job that takes a moment.
type SlowArgs struct{}

func (SlowArgs) Kind() string { return "slow" }

// ExampleClient_Stop stops a client while a job runs: Stop waits for the
// job to finish and for its outcome to be written.
func ExampleClient_Stop() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	started := make(chan struct{})
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[SlowArgs]) error {
		close(started)
		time.Sleep(100 * time.Millisecond) // the job's work
		return nil
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
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	res, err := c.Insert(ctx, SlowArgs{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	<-started
	fmt.Println("job running; stopping the client")

	// Give running jobs up to 10 s; past that, StopAndCancel would cancel
	// their contexts.
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Stop(stopCtx); err != nil {
		log.Fatal(err)
	}
	job, err := c.JobGet(ctx, res.Job.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stopped; the job is", job.State)

	// Output:
	// job running; stopping the client
	// stopped; the job is completed
}

// FlakyArgs are the args of a job that fails when asked to.
type FlakyArgs struct {
	Fail bool `json:"fail"`
}

func (FlakyArgs) Kind() string { return "flaky" }

// ExampleClient_Subscribe listens to a client's job events.
func ExampleClient_Subscribe() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[FlakyArgs]) error {
		if job.Args.Fail {
			return errors.New("something went wrong")
		}
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
	// Subscribe before starting so that no event is missed.
	events, unsubscribe := c.Subscribe(client.EventKindJobCompleted, client.EventKindJobFailed)
	defer unsubscribe()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // shown in ExampleClient_Stop

	if _, err := c.InsertMany(ctx, []client.InsertManyParams{
		{Args: FlakyArgs{Fail: false}},
		{Args: FlakyArgs{Fail: true}, InsertOpts: &client.InsertOpts{MaxAttempts: 1}},
	}); err != nil {
		log.Fatal(err)
	}

	// The two jobs run concurrently: sort their events for stable output.
	var lines []string
	for range 2 {
		ev := <-events
		line := fmt.Sprintf("%s: state %s", ev.Kind, ev.Job.State)
		if len(ev.Job.Errors) > 0 {
			line += ", error " + ev.Job.Errors[len(ev.Job.Errors)-1].Error
		}
		lines = append(lines, line)
	}
	slices.Sort(lines)
	for _, line := range lines {
		fmt.Println(line)
	}

	// Output:
	// job_completed: state completed
	// job_failed: state discarded, error something went wrong
}

// exampleDatabase connects to TEST_DATABASE_URL (default: the postgres
// database of a local server), creates a schema of its own and migrates it.
// cleanup drops the schema and closes the pool.
func exampleDatabase(ctx context.Context) (pool *pgxpool.Pool, schema string, cleanup func()) {
	pool, schema, cleanup = testfixture.ExampleDatabase(ctx, "millrace_example_")
	return pool, schema, cleanup
}
