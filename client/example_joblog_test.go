package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/millracetype"
)

// LoggedReportArgs are the args of a job that builds a report.
type LoggedReportArgs struct {
	Name string `json:"name"`
}

func (LoggedReportArgs) Kind() string { return "report" }

// ExampleNewJobLogMiddleware stores what a job logs with the job, one entry
// per attempt, and reads it back with JobLogs (River UI shows the same
// entries).
func ExampleNewJobLogMiddleware() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	jobLogs, err := client.NewJobLogMiddleware(&client.JobLogConfig{
		// Lines without their time, so that this example's output is
		// stable; the default is slog.NewTextHandler(w, nil).
		NewHandler: func(w io.Writer) slog.Handler {
			return slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}})
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[LoggedReportArgs]) error {
		logger := client.JobLogger(ctx)
		logger.Info("building report", "name", job.Args.Name, "attempt", job.Attempt)
		if job.Attempt == 1 {
			logger.Warn("data source not ready")
			return errors.New("data source not ready")
		}
		return nil
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:           schema,
		Queues:           map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 1}},
		Workers:          workers,
		WorkerMiddleware: []client.WorkerMiddleware{jobLogs},
		RetryPolicy:      retryAtOnce{},
		Logger:           slog.New(slog.DiscardHandler),
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

	if _, err := c.Insert(ctx, LoggedReportArgs{Name: "monthly"}, nil); err != nil {
		log.Fatal(err)
	}
	ev := <-events // the second attempt completed it

	// Any row from JobGet or JobList will do.
	job, err := c.JobGet(ctx, ev.Job.ID)
	if err != nil {
		log.Fatal(err)
	}
	entries, err := client.JobLogs(job)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Printf("attempt %d:\n%s", e.Attempt, e.Log)
	}

	// Output:
	// attempt 1:
	// level=INFO msg="building report" name=monthly attempt=1
	// level=WARN msg="data source not ready"
	// attempt 2:
	// level=INFO msg="building report" name=monthly attempt=2
}

// retryAtOnce retries a failed job right away (the default waits
// attempt^4 seconds).
type retryAtOnce struct{}

func (retryAtOnce) NextRetry(*millracetype.JobRow) time.Time { return time.Now().Add(time.Millisecond) }
