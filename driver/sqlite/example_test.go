package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/sqlite"
	"github.com/millrace/millrace/migrate"
)

// GreetArgs is the example's job.
type GreetArgs struct {
	Name string `json:"name"`
}

func (GreetArgs) Kind() string { return "greet" }

// ExampleNew runs millrace on a SQLite file, with no server: open (the
// file is created), migrate, insert a job and work it. The client polls
// (SQLite has no LISTEN).
func ExampleNew() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "millrace-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	db, err := sqlite.Open(ctx, filepath.Join(dir, "jobs.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	drv := sqlite.New(db)
	if _, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionUp, nil); err != nil {
		log.Fatal(err)
	}

	done := make(chan string, 1)
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[GreetArgs]) error {
		done <- "hello, " + job.Args.Name
		return nil
	}))
	c, err := client.New(drv, &client.Config{ // a *client.Client[*sql.Tx]
		Queues:            map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 5}},
		Workers:           workers,
		FetchPollInterval: 50 * time.Millisecond,
		Logger:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Insert(ctx, GreetArgs{Name: "sqlite"}, nil); err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // a demo
	select {
	case msg := <-done:
		fmt.Println(msg)
	case <-time.After(30 * time.Second):
		log.Fatal("the job did not run")
	}
	// Output: hello, sqlite
}
