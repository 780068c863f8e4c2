package interop

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/millrace/millrace/client"
)

type fairArgs struct {
	Tenant string `json:"tenant"`
	N      int    `json:"n"`
}

func (fairArgs) Kind() string { return "interop_fair" }

// TestFairQueueWithRiver works one queue with a fair millrace client and
// a River client while tenant A's 400 jobs (inserted by an insert-only
// millrace client, which knows nothing of fairness) are queued; then the
// River client inserts 5 jobs of tenant B. With fairness, the millrace
// client finds B's partition from the River-inserted rows and B's jobs
// finish while most of A's still wait; without it (the control) they wait
// behind A's. Either way every job runs exactly once.
func TestFairQueueWithRiver(t *testing.T) {
	t.Parallel()
	for _, fair := range []bool{true, false} {
		t.Run(fmt.Sprintf("fair=%v", fair), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			_, schema := setup(t, true)
			var (
				mu                sync.Mutex
				runs              = map[string]int{}
				doneA, doneB      int
				aAtInsert, aAtEnd = -1, -1
				bySys             = map[string]int{}
			)
			work := func(system string, args fairArgs) {
				if args.Tenant == "A" {
					time.Sleep(10 * time.Millisecond)
				}
				mu.Lock()
				defer mu.Unlock()
				runs[fmt.Sprintf("%s%d", args.Tenant, args.N)]++
				bySys[system]++
				if args.Tenant == "A" {
					doneA++
					return
				}
				if doneB++; doneB == 5 {
					aAtEnd = doneA
				}
			}
			rWorkers := river.NewWorkers()
			river.AddWorker(rWorkers, river.WorkFunc(func(_ context.Context, job *river.Job[fairArgs]) error {
				work("river", job.Args)
				return nil
			}))
			mWorkers := client.NewWorkers()
			client.AddWorker(mWorkers, client.WorkFunc(func(_ context.Context, job *client.Job[fairArgs]) error {
				work("millrace", job.Args)
				return nil
			}))
			inserter := newMillraceClient(t, schema, nil)
			params := make([]client.InsertManyParams, 400)
			for i := range params {
				params[i] = client.InsertManyParams{Args: fairArgs{Tenant: "A", N: i}}
			}
			if _, err := inserter.InsertMany(ctx, params); err != nil {
				t.Fatal(err)
			}
			q := client.QueueConfig{MaxWorkers: 4}
			if fair {
				q.Fairness = &client.Fairness{ByArgs: []string{"tenant"}}
			}
			mc := newMillraceClient(t, schema, &client.Config{Workers: mWorkers,
				Queues: map[string]client.QueueConfig{client.QueueDefault: q}, FetchPollInterval: 100 * time.Millisecond})
			rc := newRiverClient(t, schema, &river.Config{Workers: rWorkers,
				Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}}, FetchPollInterval: 100 * time.Millisecond})
			if !eventually(30*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return doneA >= 20 }) {
				t.Fatal("A's jobs did not start")
			}
			bParams := make([]river.InsertManyParams, 5)
			for i := range bParams {
				bParams[i] = river.InsertManyParams{Args: fairArgs{Tenant: "B", N: i}}
			}
			mu.Lock()
			aAtInsert = doneA
			mu.Unlock()
			if _, err := rc.InsertMany(ctx, bParams); err != nil {
				t.Fatalf("River insert: %v", err)
			}
			if !eventually(60*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return doneA+doneB == 405 }) {
				t.Fatal("not every job ran within 60 s")
			}
			stopWithin(t, "River client", rc.Stop)
			stopWithin(t, "millrace client", mc.Stop)
			mu.Lock()
			defer mu.Unlock()
			if len(runs) != 405 {
				t.Errorf("%d distinct jobs ran, want 405", len(runs))
			}
			for k, n := range runs {
				if n != 1 {
					t.Errorf("job %s ran %d times", k, n)
				}
			}
			waited := aAtEnd - aAtInsert
			t.Logf("A's jobs done while B's 5 ran: %d (River worked %d, millrace %d)", waited, bySys["river"], bySys["millrace"])
			if bySys["river"] == 0 || bySys["millrace"] == 0 {
				t.Errorf("one client did all the work (River %d, millrace %d)", bySys["river"], bySys["millrace"])
			}
			if fair && waited >= 200 {
				t.Errorf("B's jobs finished after %d more of A's, want fewer than 200 (of the 380 queued)", waited)
			}
			if !fair && waited < 200 {
				t.Errorf("control: without fairness B's jobs finished after only %d more of A's: the test cannot tell", waited)
			}
		})
	}
}
