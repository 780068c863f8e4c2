package sqlite

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetype"
)

type countArgs struct {
	N int `json:"n"`
}

func (countArgs) Kind() string { return "count" }

type countWorker struct {
	client.WorkerDefaults[countArgs]
	done *atomic.Int64
	// all is closed when want jobs were worked.
	want int64
	all  chan struct{}
}

func (w *countWorker) Work(context.Context, *client.Job[countArgs]) error {
	if w.done.Add(1) == w.want {
		close(w.all)
	}
	return nil
}

// A client on a temporary SQLite file inserts and works 1,000 jobs, each
// once, polling (no listener), and every job ends completed.
func TestClientWorksJobs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	drv := newTestDriver(ctx, t)
	if _, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionUp, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	const n = 1000
	var done atomic.Int64
	all := make(chan struct{})
	workers := client.NewWorkers()
	client.AddWorker(workers, &countWorker{done: &done, want: n, all: all})
	c, err := client.New(drv, &client.Config{
		Queues:            map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 20}},
		Workers:           workers,
		FetchPollInterval: 20 * time.Millisecond,
		Logger:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	params := make([]client.InsertManyParams, n)
	for i := range params {
		params[i] = client.InsertManyParams{Args: countArgs{N: i}}
	}
	if _, err := c.InsertMany(ctx, params); err != nil {
		t.Fatalf("InsertMany: %v", err)
	}
	select {
	case <-all:
	case <-ctx.Done():
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := done.Load(); got != n {
		t.Fatalf("worked %d jobs, want %d (each once)", got, n)
	}
	jobs, err := drv.GetExecutor().JobList(ctx, &driver.JobListParams{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	completed := 0
	for _, j := range jobs {
		if j.State == millracetype.JobStateCompleted && j.Attempt == 1 {
			completed++
		}
	}
	if completed != n || len(jobs) != n {
		t.Fatalf("%d jobs, %d completed at attempt 1; want %d of %d", len(jobs), completed, n, n)
	}
}
