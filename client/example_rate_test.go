package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// CallAPIArgs is a job calling an API with one of several tokens.
type CallAPIArgs struct {
	Token string `json:"token"`
	N     int    `json:"n"`
}

func (CallAPIArgs) Kind() string { return "call_api" }

// errTooManyRequests stands for an HTTP 429 answer.
var errTooManyRequests = errors.New("429 Too Many Requests")

// ExampleRateLimit limits a queue to 2 jobs started per second per API
// token, across every client on the database, and shows a worker pausing
// its token after a 429 until the time the API asked for: the token's
// jobs wait, the other token's go on, and they resume by themselves.
func ExampleRateLimit() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	var (
		mu      sync.Mutex
		once    sync.Once
		retryAt time.Time
		// pausedAt: when the pause was stored; jobs fetched from then on
		// (those fetched before may run) wait for retryAt.
		pausedAt time.Time
		done     = map[string]int{}
		all      = make(chan struct{})
	)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[CallAPIArgs]) error {
		var err error
		if job.Args.Token == "slow" && job.Args.N == 0 {
			once.Do(func() { err = errTooManyRequests }) // the API says: retry after 1 s
		}
		if errors.Is(err, errTooManyRequests) {
			mu.Lock()
			defer mu.Unlock()
			retryAt = time.Now().Add(time.Second)
			// Pause every job of this token until then; this one is snoozed.
			err := client.JobPauseUntil(ctx, retryAt, &client.JobPauseOpts{ByArgs: []string{"token"}})
			pausedAt = time.Now()
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if at := *job.AttemptedAt; job.Args.Token == "slow" && !pausedAt.IsZero() && at.After(pausedAt) && at.Before(retryAt) {
			fmt.Println("a paused token's job was fetched during its pause")
		}
		done[job.Args.Token]++
		if done["slow"]+done["fast"] == 6 {
			close(all)
		}
		return nil
	}))
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema: schema,
		Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 10,
			RateLimits: []client.RateLimit{{N: 2, Interval: time.Second, PartitionByArgs: []string{"token"}}}}},
		Workers: workers,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	for n := range 3 {
		for _, token := range []string{"slow", "fast"} {
			if _, err := c.Insert(ctx, CallAPIArgs{Token: token, N: n}, nil); err != nil {
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
	tokens := make([]string, 0, len(done))
	for t := range done {
		tokens = append(tokens, t)
	}
	sort.Strings(tokens)
	for _, t := range tokens {
		fmt.Printf("token %s: %d jobs done\n", t, done[t])
	}
	mu.Unlock()

	// A bad limit is refused when the client is made.
	_, err = client.New(pgxv5.New(pool), &client.Config{Schema: schema, Workers: workers,
		Queues: map[string]client.QueueConfig{"other": {MaxWorkers: 1, RateLimits: []client.RateLimit{{N: 0, Interval: time.Minute}}}}})
	fmt.Println("rate of 0:", errors.Is(err, client.ErrInvalidConfig))
	// Output:
	// token fast: 3 jobs done
	// token slow: 3 jobs done
	// rate of 0: true
}
