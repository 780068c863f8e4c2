package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"sync"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// TenantReportArgs builds a report for a tenant.
type TenantReportArgs struct {
	TenantID string `json:"tenant_id"`
	N        int    `json:"n"`
}

func (TenantReportArgs) Kind() string { return "tenant_report" }

// ExampleFairness works a fair queue with one worker: tenant "big" has
// six jobs queued before tenant "small" inserts two. The newest
// partition found goes first, then the tenants take turns (a turn ends
// with a job in the queue's usual order), so "small" does not wait
// behind all of "big"'s jobs.
func ExampleFairness() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	var (
		mu    sync.Mutex
		order []string
		done  = make(chan struct{}, 8)
	)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[TenantReportArgs]) error {
		mu.Lock()
		order = append(order, job.Args.TenantID)
		mu.Unlock()
		done <- struct{}{}
		return nil
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
		Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 1,
			Fairness: &client.Fairness{ByArgs: []string{"tenant_id"}}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	var jobs []client.InsertManyParams
	for i := range 6 {
		jobs = append(jobs, client.InsertManyParams{Args: TenantReportArgs{TenantID: "big", N: i}})
	}
	for i := range 2 {
		jobs = append(jobs, client.InsertManyParams{Args: TenantReportArgs{TenantID: "small", N: i}})
	}
	if _, err := c.InsertMany(ctx, jobs); err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // shown in ExampleClient_Stop
	for range jobs {
		<-done
	}
	mu.Lock()
	fmt.Println(strings.Join(order, " "))
	mu.Unlock()
	// Output:
	// small big small big big big big big
}
