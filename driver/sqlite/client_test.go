package sqlite

import (
	"context"
	"log/slog"
	"slices"
	"sync"
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

type seqArgs struct {
	N int `json:"n"`
}

func (seqArgs) Kind() string { return "seq" }

// Jobs of one sequence run one at a time in insertion order on SQLite,
// while another sequence moves on beside them.
func TestClientSequences(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	drv := newTestDriver(ctx, t)
	if _, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionUp, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	const perSeq = 10
	var mu sync.Mutex
	order := map[string][]int{}
	running := map[string]int{}
	all := make(chan struct{})
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[seqArgs]) error {
		key := "a"
		if job.Args.N >= perSeq {
			key = "b"
		}
		mu.Lock()
		running[key]++
		if running[key] > 1 {
			t.Errorf("sequence %s: two jobs run at once", key)
		}
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		running[key]--
		order[key] = append(order[key], job.Args.N)
		if len(order["a"])+len(order["b"]) == 2*perSeq {
			close(all)
		}
		mu.Unlock()
		return nil
	}))
	c, err := client.New(drv, &client.Config{
		Queues:            map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 10}},
		Workers:           workers,
		FetchPollInterval: 20 * time.Millisecond,
		Logger:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 2 * perSeq {
		key := "a"
		if i >= perSeq {
			key = "b"
		}
		if _, err := c.Insert(ctx, seqArgs{N: i}, &client.InsertOpts{Sequence: client.SequenceOpts{Key: key}}); err != nil {
			t.Fatalf("Insert %d: %v", i, err)
		}
	}
	select {
	case <-all:
	case <-ctx.Done():
		t.Errorf("not every sequenced job ran: %v", order)
	}
	if err := c.Stop(context.WithoutCancel(ctx)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for key, first := range map[string]int{"a": 0, "b": perSeq} {
		want := make([]int, perSeq)
		for i := range want {
			want[i] = first + i
		}
		if !slices.Equal(order[key], want) {
			t.Errorf("sequence %s ran %v, want %v", key, order[key], want)
		}
	}
}
