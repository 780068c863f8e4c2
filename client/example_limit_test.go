package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// SyncAccountArgs syncs one account of a customer.
type SyncAccountArgs struct {
	CustomerID int `json:"customer_id"`
}

func (SyncAccountArgs) Kind() string { return "sync_account" }

// ExampleConcurrencyLimit works a queue of 10 workers with at most one
// job per customer and two in all running at once (across every client on
// the database), then lowers the limit at run time and lists it.
func ExampleConcurrencyLimit() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	var (
		mu                sync.Mutex
		running, most     int
		perCustomer       = map[int]int{}
		mostOfOneCustomer int
		done              = make(chan struct{}, 8)
	)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[SyncAccountArgs]) error {
		mu.Lock()
		running++
		perCustomer[job.Args.CustomerID]++
		most, mostOfOneCustomer = max(most, running), max(mostOfOneCustomer, perCustomer[job.Args.CustomerID])
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		running--
		perCustomer[job.Args.CustomerID]--
		mu.Unlock()
		done <- struct{}{}
		return nil
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:  schema,
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
		Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 10, Limits: []client.ConcurrencyLimit{{
			Kind: "sync_account", Global: 2, PerPartition: 1, PartitionByArgs: []string{"customer_id"},
		}}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	var jobs []client.InsertManyParams
	for i := range 8 {
		jobs = append(jobs, client.InsertManyParams{Args: SyncAccountArgs{CustomerID: i % 3}})
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
	fmt.Printf("8 jobs done, at most %d running at once, at most %d of one customer\n", most, mostOfOneCustomer)
	mu.Unlock()

	// Lower the limit on every client working the queue, until deleted.
	if _, err := c.QueueLimitSet(ctx, client.QueueDefault, client.ConcurrencyLimit{Kind: "sync_account", Global: 1}); err != nil {
		log.Fatal(err)
	}
	limits, err := c.QueueLimitList(ctx, client.QueueDefault)
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range limits {
		fmt.Printf("queue %s kind %s: global %d, per partition %d\n", l.Queue, l.Kind, l.Global, l.PerPartition)
	}
	if _, err := c.QueueLimitSet(ctx, client.QueueDefault, client.ConcurrencyLimit{Global: -1}); err != nil {
		fmt.Println("error:", err)
	}
	// Output:
	// 8 jobs done, at most 2 running at once, at most 1 of one customer
	// queue default kind sync_account: global 1, per partition 0
	// error: set limit of queue "default": invalid client config: limit of the whole queue: Global -1 is negative (0 means none; to stop a queue, pause it)
}
