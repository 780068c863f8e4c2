package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/startstop"
)

// httpService runs an HTTP server as a startstop.Service: Start listens
// (a port already taken fails Start), Stop shuts the server down
// gracefully.
func httpService(handler http.Handler) startstop.Service {
	return startstop.StartStopFunc(func(ctx context.Context, shouldStart bool, started, stopped func()) error {
		if !shouldStart {
			return nil
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("http server: %w", err)
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Print(err)
			}
		}()
		go func() {
			defer stopped()
			started()
			<-ctx.Done()
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
			<-served
		}()
		return nil
	})
}

// ExampleClient_AsService composes a client with an HTTP server through
// startstop: StartAll starts both or neither, StopAllParallel stops both
// and returns once the client's outcomes are written. Set
// Config.SoftStopTimeout to bound how long the client's Stop waits for
// running jobs.
func ExampleClient_AsService() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	sent := make(chan string, 1)
	workers := client.NewWorkers()
	client.AddWorker(workers, &WelcomeEmailWorker{sent: sent})
	c, err := client.New(pgxv5.New(pool), &client.Config{
		Schema:          schema,
		Queues:          map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 10}},
		Workers:         workers,
		SoftStopTimeout: 20 * time.Second,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	server := httpService(http.NotFoundHandler())

	services := []startstop.Service{c.AsService(), server}
	if err := startstop.StartAll(ctx, services...); err != nil {
		log.Fatal(err) // neither runs: StartAll stopped what it had started
	}
	startstop.WaitAllStarted(services...)
	fmt.Println("client and HTTP server started")

	if _, err := c.Insert(ctx, WelcomeEmailArgs{To: "ada@example.com"}, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println("worked:", <-sent)

	stopped := c.Stopped() // taken before the stop, to observe it
	startstop.StopAllParallel(services...)
	<-stopped
	fmt.Println("both stopped; every outcome is written")

	// Output:
	// client and HTTP server started
	// worked: ada@example.com
	// both stopped; every outcome is written
}
