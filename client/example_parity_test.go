package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/millracetype"
)

// startExampleClient starts a client working the default queue of schema
// with workers; the caller stops it.
func startExampleClient(ctx context.Context, pool *pgxpool.Pool, schema string, workers *client.Workers) *client.Client[pgx.Tx] {
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
	return c
}

// waitFinalized subscribes before the jobs run and waits until n of them
// are finalized, returning them in the order they finished.
func waitFinalized(events <-chan *client.Event, n int) []*millracetype.JobRow {
	var jobs []*millracetype.JobRow
	for ev := range events {
		if ev.Job.State.Finalized() {
			jobs = append(jobs, ev.Job)
			if len(jobs) == n {
				break
			}
		}
	}
	return jobs
}

// InvoiceArgs are the args of a job that marks an invoice paid.
type InvoiceArgs struct {
	InvoiceID int `json:"invoice_id"`
}

func (InvoiceArgs) Kind() string { return "invoice_paid" }

// ExampleJobCompleteTx completes a job in the same transaction as the
// worker's own write: either both happen or neither does.
func ExampleJobCompleteTx() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()
	table := pgx.Identifier{schema, "paid_invoices"}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY)"); err != nil {
		log.Fatal(err)
	}

	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[InvoiceArgs]) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1)", job.Args.InvoiceID); err != nil {
			return err
		}
		if _, err := client.JobCompleteTx(ctx, tx, job); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}))
	c := startExampleClient(ctx, pool, schema, workers)
	defer c.Stop(ctx) //nolint:errcheck // stopped below
	events, unsubscribe := c.Subscribe(client.EventKindJobCompleted)
	defer unsubscribe()

	if _, err := c.Insert(ctx, InvoiceArgs{InvoiceID: 42}, nil); err != nil {
		log.Fatal(err)
	}
	job := waitFinalized(events, 1)[0]
	var paid int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&paid); err != nil {
		log.Fatal(err)
	}
	fmt.Println("job:", job.State, "- invoices paid:", paid)

	// Output:
	// job: completed - invoices paid: 1
}

// SignupArgs are the args of a job that, once done, schedules a welcome
// email.
type SignupArgs struct {
	Email string `json:"email"`
}

func (SignupArgs) Kind() string { return "signup" }

// ExampleClientFromContext inserts a follow-up job from inside a worker,
// in the worker's own transaction.
func ExampleClientFromContext() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	sent := make(chan string, 1)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[SignupArgs]) error {
		c := client.ClientFromContext[pgx.Tx](ctx)
		if c == nil {
			return errors.New("not running in a millrace worker")
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		if _, err := c.InsertTx(ctx, tx, WelcomeEmailArgs{To: job.Args.Email}, nil); err != nil {
			return err
		}
		if _, err := client.JobCompleteTx(ctx, tx, job); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}))
	client.AddWorker(workers, &WelcomeEmailWorker{sent: sent})
	c := startExampleClient(ctx, pool, schema, workers)
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil

	if _, err := c.Insert(ctx, SignupArgs{Email: "ada@example.com"}, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println("follow-up job sent a welcome email to", <-sent)

	// Outside a worker there is no client in the context.
	fmt.Println("outside a worker:", client.ClientFromContext[pgx.Tx](ctx))
	_, err := client.ClientFromContextSafely[pgx.Tx](ctx)
	fmt.Println(errors.Is(err, client.ErrNotInWorker))

	// Output:
	// follow-up job sent a welcome email to ada@example.com
	// outside a worker: <nil>
	// true
}

// ImportArgs are the args of a job that imports a file.
type ImportArgs struct {
	File string `json:"file"`
}

func (ImportArgs) Kind() string { return "import" }

// ExampleMetadataSet records facts about a job's run in its metadata,
// stored when the attempt ends whatever its outcome.
func ExampleMetadataSet() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[ImportArgs]) error {
		if err := client.MetadataSet(ctx, "rows_imported", 1200); err != nil {
			return err
		}
		// Keys starting with "river:" are reserved.
		err := client.MetadataSet(ctx, "river:mine", true)
		fmt.Println("reserved key refused:", errors.Is(err, client.ErrReservedMetadataKey))
		return client.RecordOutput(ctx, map[string]string{"status": "ok"})
	}))
	c := startExampleClient(ctx, pool, schema, workers)
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil
	events, unsubscribe := c.Subscribe(client.EventKindJobCompleted)
	defer unsubscribe()

	if _, err := c.Insert(ctx, ImportArgs{File: "users.csv"}, nil); err != nil {
		log.Fatal(err)
	}
	job := waitFinalized(events, 1)[0]
	fmt.Println(string(job.Metadata))

	// Output:
	// reserved key refused: true
	// {"output": {"status": "ok"}, "rows_imported": 1200}
}

// ExampleClient_JobUpdate annotates a job from outside and records its
// output.
func ExampleClient_JobUpdate() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	c, err := client.New(pgxv5.New(pool), &client.Config{Schema: schema})
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Insert(ctx, ImportArgs{File: "orders.csv"}, &client.InsertOpts{Metadata: []byte(`{"team":"billing"}`)})
	if err != nil {
		log.Fatal(err)
	}
	job, err := c.JobUpdate(ctx, res.Job.ID, &client.JobUpdateParams{
		Metadata: []byte(`{"ticket":"OPS-7"}`),
		Output:   "imported by hand",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(job.Metadata))

	_, err = c.JobUpdate(ctx, res.Job.ID+1000, &client.JobUpdateParams{Output: 1})
	fmt.Println("unknown job:", errors.Is(err, client.ErrNotFound))
	_, err = c.JobUpdate(ctx, res.Job.ID, &client.JobUpdateParams{Metadata: []byte(`["not","an","object"]`)})
	fmt.Println("not an object:", errors.Is(err, client.ErrInvalidArgs))

	// Output:
	// {"team": "billing", "output": "imported by hand", "ticket": "OPS-7"}
	// unknown job: true
	// not an object: true
}

// OnboardArgs are the args of a job in three steps.
type OnboardArgs struct{}

func (OnboardArgs) Kind() string { return "onboard" }

// ExampleResumableStep splits a job into steps: when the third step fails
// once, the retry skips the two steps already done.
func ExampleResumableStep() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	ran := make(chan string, 10)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[OnboardArgs]) error {
		for _, step := range []string{"create account", "send welcome", "notify sales"} {
			err := client.ResumableStep(ctx, step, func(ctx context.Context) error {
				ran <- fmt.Sprintf("attempt %d: %s", job.Attempt, step)
				if step == "notify sales" && job.Attempt == 1 {
					return errors.New("sales API down")
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}))
	c := startExampleClient(ctx, pool, schema, workers)
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil
	events, unsubscribe := c.Subscribe(client.EventKindJobCompleted)
	defer unsubscribe()

	if _, err := c.Insert(ctx, OnboardArgs{}, nil); err != nil {
		log.Fatal(err)
	}
	job := waitFinalized(events, 1)[0] // the retry comes about a second later
	close(ran)
	for line := range ran {
		fmt.Println(line)
	}
	fmt.Println(job.State, "after", job.Attempt, "attempts")

	// Output:
	// attempt 1: create account
	// attempt 1: send welcome
	// attempt 1: notify sales
	// attempt 2: notify sales
	// completed after 2 attempts
}

// ReindexArgs are the args of a job that walks through many records.
type ReindexArgs struct {
	Records int `json:"records"`
}

func (ReindexArgs) Kind() string { return "reindex" }

// ExampleResumableStepCursor saves how far a long step got, so a retry
// goes on from there instead of starting over.
func ExampleResumableStepCursor() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	done := make(chan string, 10)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[ReindexArgs]) error {
		return client.ResumableStepCursor(ctx, "records", func(ctx context.Context, next int) error {
			var batch []string
			defer func() { done <- fmt.Sprintf("attempt %d: %s", job.Attempt, strings.Join(batch, " ")) }()
			for i := next; i < job.Args.Records; i++ {
				if i == 3 && job.Attempt == 1 {
					return errors.New("connection lost")
				}
				batch = append(batch, fmt.Sprint(i)) // reindex record i
				if err := client.ResumableSetCursor(ctx, i+1); err != nil {
					return err
				}
			}
			return nil
		})
	}))
	c := startExampleClient(ctx, pool, schema, workers)
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil
	events, unsubscribe := c.Subscribe(client.EventKindJobCompleted)
	defer unsubscribe()

	if _, err := c.Insert(ctx, ReindexArgs{Records: 6}, nil); err != nil {
		log.Fatal(err)
	}
	waitFinalized(events, 1)
	fmt.Println(<-done)
	fmt.Println(<-done)

	// Output:
	// attempt 1: 0 1 2
	// attempt 2: 3 4 5
}

// ExampleResumableSetStepCursorTx writes each batch and its checkpoint in
// one transaction: a retry resumes exactly after the last committed batch,
// even if the process died without recording the attempt.
func ExampleResumableSetStepCursorTx() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()
	table := pgx.Identifier{schema, "copied"}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+" (n int PRIMARY KEY)"); err != nil {
		log.Fatal(err)
	}

	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[ReindexArgs]) error {
		return client.ResumableStepCursor(ctx, "copy", func(ctx context.Context, next int) error {
			for i := next; i < job.Args.Records; i++ {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1)", i); err != nil {
						return err
					}
					_, err := client.ResumableSetStepCursorTx(ctx, tx, job, i+1)
					return err
				})
				if err != nil {
					return err
				}
				if i == 2 && job.Attempt == 1 {
					return errors.New("interrupted")
				}
			}
			return nil
		})
	}))
	c := startExampleClient(ctx, pool, schema, workers)
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil
	events, unsubscribe := c.Subscribe(client.EventKindJobCompleted)
	defer unsubscribe()

	if _, err := c.Insert(ctx, ReindexArgs{Records: 5}, nil); err != nil {
		log.Fatal(err)
	}
	job := waitFinalized(events, 1)[0]
	var rows, distinct int
	if err := pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT n) FROM "+table).Scan(&rows, &distinct); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s after %d attempts; %d rows, %d distinct\n", job.State, job.Attempt, rows, distinct)

	// Output:
	// completed after 2 attempts; 5 rows, 5 distinct
}
