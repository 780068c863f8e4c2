package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// LedgerArgs is a change to an account's ledger: an account's changes must
// apply one at a time, in the order they were made.
type LedgerArgs struct {
	Account string `json:"account"`
	Change  int    `json:"change"`
}

func (LedgerArgs) Kind() string { return "ledger_change" }

// InsertOpts puts every change in its account's sequence.
func (a LedgerArgs) InsertOpts() client.InsertOpts {
	return client.InsertOpts{Sequence: client.SequenceOpts{Key: a.Account}}
}

// ExampleSequenceOpts runs each account's ledger changes in order, one at
// a time, on 10 workers: the first change of account "a" fails once and
// holds the account's sequence through its retry, while account "b" goes
// on.
func ExampleSequenceOpts() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	var (
		mu       sync.Mutex
		balances = map[string][]int{}
		failed   bool
		all      = make(chan struct{})
	)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[LedgerArgs]) error {
		mu.Lock()
		defer mu.Unlock()
		if job.Args.Account == "a" && !failed {
			failed = true
			return errors.New("the ledger is busy") // retried; "a" waits for it
		}
		hist := balances[job.Args.Account]
		last := 0
		if len(hist) > 0 {
			last = hist[len(hist)-1]
		}
		balances[job.Args.Account] = append(hist, last+job.Args.Change)
		if len(balances["a"])+len(balances["b"]) == 6 {
			close(all)
		}
		return nil
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:      schema,
		Queues:      map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 10}},
		Workers:     workers,
		RetryPolicy: retryAtOnce{},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, change := range []int{100, -30, 5} {
		for _, account := range []string{"a", "b"} {
			if _, err := c.Insert(ctx, LedgerArgs{Account: account, Change: change}, nil); err != nil {
				log.Fatal(err)
			}
		}
	}
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // shown in ExampleClient_Stop

	select {
	case <-all:
	case <-time.After(30 * time.Second):
		log.Fatal("the jobs did not finish")
	}
	mu.Lock()
	fmt.Println("a:", balances["a"])
	fmt.Println("b:", balances["b"])
	mu.Unlock()

	// A sequenced job cannot also be inserted pending.
	_, err = c.Insert(ctx, LedgerArgs{Account: "a"}, &client.InsertOpts{Pending: true})
	fmt.Println("pending and sequenced:", errors.Is(err, client.ErrInvalidArgs))
	// Output:
	// a: [100 70 75]
	// b: [100 70 75]
	// pending and sequenced: true
}
