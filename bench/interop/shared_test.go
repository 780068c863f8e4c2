package interop

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/millrace/millrace/client"
)

type sharedArgs struct {
	N int `json:"n"`
}

func (sharedArgs) Kind() string { return "interop_shared" }

// workLog counts how often each job ran and on which system.
type workLog struct {
	mu    sync.Mutex
	runs  map[int64]int
	bySys map[string]int
}

func (l *workLog) record(system string, id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs[id]++
	l.bySys[system]++
}

// TestSharedQueueExactlyOnce runs a River client and a millrace client on
// one queue while both insert into it: every job must be worked exactly
// once, and both clients must have taken part.
func TestSharedQueueExactlyOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, schema := setup(t, true)
	log := &workLog{runs: map[int64]int{}, bySys: map[string]int{}}
	// A little work per job, so neither client can take everything.
	pause := func(ctx context.Context) {
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
	}
	rWorkers := river.NewWorkers()
	river.AddWorker(rWorkers, river.WorkFunc(func(ctx context.Context, job *river.Job[sharedArgs]) error {
		log.record("river", job.ID)
		pause(ctx)
		return nil
	}))
	mWorkers := client.NewWorkers()
	client.AddWorker(mWorkers, client.WorkFunc(func(ctx context.Context, job *client.Job[sharedArgs]) error {
		log.record("millrace", job.ID)
		pause(ctx)
		return nil
	}))
	rc := newRiverClient(t, schema, &river.Config{Workers: rWorkers,
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 20}}, FetchPollInterval: 100 * time.Millisecond})
	mc := newMillraceClient(t, schema, &client.Config{Workers: mWorkers,
		Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 20}}, FetchPollInterval: 100 * time.Millisecond})

	const waves, perWave = 20, 100
	for w := range waves {
		if w%2 == 0 {
			params := make([]river.InsertManyParams, perWave)
			for i := range params {
				params[i] = river.InsertManyParams{Args: sharedArgs{N: w*perWave + i}}
			}
			if _, err := rc.InsertMany(ctx, params); err != nil {
				t.Fatalf("River insert: %v", err)
			}
		} else {
			params := make([]client.InsertManyParams, perWave)
			for i := range params {
				params[i] = client.InsertManyParams{Args: sharedArgs{N: w*perWave + i}}
			}
			if _, err := mc.InsertMany(ctx, params); err != nil {
				t.Fatalf("millrace insert: %v", err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	const total = waves * perWave
	q := "SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FROM " + jobTable(schema)
	var completed, all int
	if !eventually(30*time.Second, func() bool {
		if err := pool.QueryRow(ctx, q).Scan(&completed, &all); err != nil {
			t.Fatal(err)
		}
		return completed == total
	}) {
		t.Fatalf("%d of %d jobs completed within 30 s", completed, all)
	}
	// Stop both, so no late run goes unseen.
	stopWithin(t, "River client", rc.Stop)
	stopWithin(t, "millrace client", mc.Stop)

	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.runs) != total {
		t.Errorf("%d distinct jobs worked, want %d", len(log.runs), total)
	}
	for id, n := range log.runs {
		if n != 1 {
			t.Errorf("job %d worked %d times", id, n)
		}
	}
	var attempts, both int
	err := pool.QueryRow(ctx, "SELECT coalesce(sum(attempt), 0), count(*) FILTER (WHERE cardinality(attempted_by) <> 1) FROM "+
		jobTable(schema)).Scan(&attempts, &both)
	if err != nil {
		t.Fatal(err)
	}
	if attempts != total || both != 0 {
		t.Errorf("%d attempts over %d jobs and %d jobs attempted by more than one client; want one attempt each", attempts, total, both)
	}
	t.Logf("River worked %d jobs, millrace %d", log.bySys["river"], log.bySys["millrace"])
	if log.bySys["river"] == 0 || log.bySys["millrace"] == 0 {
		t.Errorf("one client did all the work (River %d, millrace %d): the queue was not shared", log.bySys["river"], log.bySys["millrace"])
	}
}
