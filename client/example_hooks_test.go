package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/millracetype"
)

// TenantHook tags every job with this service's tenant and refuses jobs
// that carry another tenant's tag. One struct may implement several steps.
type TenantHook struct {
	client.HookDefaults
	Tenant string
}

// InsertBegin runs just before each job is written; an error rejects the
// insert.
func (h *TenantHook) InsertBegin(ctx context.Context, params *client.JobInsertParams) error {
	for _, tag := range params.Tags {
		if strings.HasPrefix(tag, "tenant_") && tag != "tenant_"+h.Tenant {
			return fmt.Errorf("job for %s inserted by tenant %s", tag, h.Tenant)
		}
	}
	params.Tags = append(params.Tags, "tenant_"+h.Tenant)
	return nil
}

// WorkBegin runs before each job's Work; an error fails the attempt.
func (h *TenantHook) WorkBegin(ctx context.Context, job *millracetype.JobRow) error {
	fmt.Println("work begins for a job tagged", job.Tags)
	return nil
}

// ReportArgs are the args of a report job.
type ReportArgs struct {
	Fail bool `json:"fail"`
}

func (ReportArgs) Kind() string { return "report" }

// Example_hooks installs global hooks: an insert hook that tags jobs (and
// can refuse them), a work hook that runs before Work, and a WorkEnd hook
// that turns one known error into success.
func Example_hooks() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	errAlreadySent := errors.New("report already sent")
	done := make(chan struct{})
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[ReportArgs]) error {
		defer close(done)
		if job.Args.Fail {
			return errAlreadySent
		}
		return nil
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Queues:  map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 1}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
		Hooks: []client.Hook{
			&TenantHook{Tenant: "acme"},
			client.HookWorkEndFunc(func(ctx context.Context, job *millracetype.JobRow, err error) error {
				if errors.Is(err, errAlreadySent) {
					fmt.Println("work ended with", err, "- counted as done")
					return nil
				}
				return err
			}),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = c.Insert(ctx, ReportArgs{}, &client.InsertOpts{Tags: []string{"tenant_globex"}})
	fmt.Println("insert refused:", err)
	res, err := c.Insert(ctx, ReportArgs{Fail: true}, nil)
	if err != nil {
		log.Fatal(err)
	}
	<-done
	if err := c.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	job, err := c.JobGet(ctx, res.Job.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("job state:", job.State)

	// Output:
	// insert refused: insert hook *client_test.TenantHook: job for tenant_globex inserted by tenant acme
	// work begins for a job tagged [tenant_acme]
	// work ended with report already sent - counted as done
	// job state: completed
}

// AuditedArgs are the args of a job whose kind has hooks of its own.
type AuditedArgs struct {
	Account string `json:"account"`
}

func (AuditedArgs) Kind() string { return "audited" }

// Hooks run for AuditedArgs jobs only, after any global hooks. They are
// asked for once per kind, so they must not depend on a job's args.
func (AuditedArgs) Hooks() []client.Hook {
	return []client.Hook{
		client.HookInsertBeginFunc(func(ctx context.Context, params *client.JobInsertParams) error {
			fmt.Println("audit: inserting", params.Args.(AuditedArgs).Account)
			return nil
		}),
		client.HookWorkEndFunc(func(ctx context.Context, job *millracetype.JobRow, err error) error {
			fmt.Println("audit: worked job, error:", err)
			return err
		}),
	}
}

// AuditedWorker wraps its own jobs in middleware.
type AuditedWorker struct {
	client.WorkerDefaults[AuditedArgs]
	done chan struct{}
}

func (w *AuditedWorker) Work(ctx context.Context, job *client.Job[AuditedArgs]) error {
	fmt.Println("working for", job.Args.Account)
	close(w.done)
	return nil
}

var auditedMiddleware = []client.WorkerMiddleware{
	client.WorkerMiddlewareFunc(func(ctx context.Context, job *millracetype.JobRow, next func(context.Context) error) error {
		fmt.Println("middleware: before")
		err := next(ctx)
		fmt.Println("middleware: after")
		return err
	}),
}

// Middleware returns the same slice for every job.
func (w *AuditedWorker) Middleware(*client.Job[AuditedArgs]) []client.WorkerMiddleware {
	return auditedMiddleware
}

// Example_jobArgsHooks gives one kind of job hooks of its own (through its
// args type) and middleware of its own (through its worker).
func Example_jobArgsHooks() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	worker := &AuditedWorker{done: make(chan struct{})}
	workers := client.NewWorkers()
	client.AddWorker(workers, worker)
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
	if _, err := c.Insert(ctx, AuditedArgs{Account: "ada"}, nil); err != nil {
		log.Fatal(err)
	}
	<-worker.done
	if err := c.Stop(ctx); err != nil { // waits for the job to finish
		log.Fatal(err)
	}

	// Output:
	// audit: inserting ada
	// middleware: before
	// working for ada
	// audit: worked job, error: <nil>
	// middleware: after
}

// Example_metricsHook reports each attempt's outcome and timings, the way a
// Prometheus or OpenTelemetry exporter would, without the client depending
// on either.
func Example_metricsHook() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	metrics := make(chan client.JobMetrics, 10)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[ReportArgs]) error {
		if job.Args.Fail {
			return errors.New("printer on fire")
		}
		return nil
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Queues:  map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 1}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
		Hooks: []client.Hook{
			client.HookWorkMetricsFunc(func(ctx context.Context, m client.JobMetrics) {
				// A real hook would observe a histogram here, e.g.
				// runSeconds.WithLabelValues(m.Kind, string(m.Outcome)).Observe(m.RunDuration.Seconds()).
				metrics <- m
			}),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // shown in ExampleClient_Stop

	for _, fail := range []bool{false, true} {
		if _, err := c.Insert(ctx, ReportArgs{Fail: fail}, &client.InsertOpts{MaxAttempts: 1}); err != nil {
			log.Fatal(err)
		}
		m := <-metrics
		fmt.Printf("kind %s, queue %s, attempt %d: %s (state %s), timed: %v\n",
			m.Kind, m.Queue, m.Attempt, m.Outcome, m.State, m.RunDuration > 0 && m.QueueWait < time.Minute)
	}

	// Output:
	// kind report, queue default, attempt 1: completed (state completed), timed: true
	// kind report, queue default, attempt 1: discarded (state discarded), timed: true
}
