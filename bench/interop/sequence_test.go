package interop

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

type seqInteropArgs struct {
	N int `json:"n"`
}

func (seqInteropArgs) Kind() string { return "interop_seq" }

// TestSequenceWithRiver: millrace inserts a sequence of jobs; River's
// client works their queue. River never takes a job waiting for its turn
// (state pending), works each head when it becomes available, and a
// started millrace client (working another queue) moves the sequence on
// after River completes a head, so River runs them all, in order, one at
// a time. River's migrator is content with the sequence tables (see
// TestMillraceLineInterop for the migrator).
func TestSequenceWithRiver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	schema := newSchema(t, pool)
	if _, err := migrate.MigrateAll(ctx, pgxv5.New(pool), &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	const n = 5
	mc := newMillraceClient(t, schema, &client.Config{ID: "interop_millrace_seq", Workers: client.NewWorkers(),
		Queues: map[string]client.QueueConfig{"millrace_only": {MaxWorkers: 1}}})
	for i := range n {
		if _, err := mc.Insert(ctx, seqInteropArgs{N: i}, &client.InsertOpts{Queue: "seq",
			Sequence: client.SequenceOpts{Key: "account-1"}}); err != nil {
			t.Fatal(err)
		}
	}
	var states string
	if err := pool.QueryRow(ctx, "SELECT string_agg(state::text, ',' ORDER BY id) FROM "+pgx.Identifier{schema, "river_job"}.Sanitize()).Scan(&states); err != nil {
		t.Fatal(err)
	}
	if states != "available,pending,pending,pending,pending" {
		t.Fatalf("states after millrace's inserts: %s", states)
	}

	var mu sync.Mutex
	var order []int
	running := 0
	overlap := false
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(_ context.Context, job *river.Job[seqInteropArgs]) error {
		mu.Lock()
		running++
		overlap = overlap || running > 1
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		running--
		order = append(order, job.Args.N)
		mu.Unlock()
		return nil
	}))
	newRiverClient(t, schema, &river.Config{Workers: workers, Queues: map[string]river.QueueConfig{"seq": {MaxWorkers: 5}}})
	if !eventually(30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == n
	}) {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("River worked %v of the sequence within 30 s", order)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, got := range order {
		if got != i {
			t.Fatalf("River worked the sequence in order %v", order)
		}
	}
	if overlap {
		t.Fatal("River ran two jobs of the sequence at once")
	}
}
