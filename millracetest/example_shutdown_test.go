package millracetest_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetest"
)

// ResizeImageArgs are the args of the job whose worker is under test.
type ResizeImageArgs struct {
	ImageID int `json:"image_id"`
}

func (ResizeImageArgs) Kind() string { return "resize_image" }

// ResizeImageWorker takes a few milliseconds and honours its context.
type ResizeImageWorker struct {
	client.WorkerDefaults[ResizeImageArgs]
}

func (ResizeImageWorker) Work(ctx context.Context, job *client.Job[ResizeImageArgs]) error {
	select {
	case <-time.After(time.Duration(job.Args.ImageID%20) * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Example_shutdownUnderLoad shuts clients running a worker down under load,
// in each in-process way, and checks what happened to the jobs. In a real
// test, pass your *testing.T where this example passes its stand-in.
func Example_shutdownUnderLoad() {
	ctx := context.Background()
	pool, _, cleanup := testfixture.ExampleDatabase(ctx, "millracetest_example_")
	defer cleanup()

	workers := client.NewWorkers()
	client.AddWorker[ResizeImageArgs](workers, ResizeImageWorker{})
	tb := &exampleHarnessTB{}
	defer tb.cleanup()
	rep := millracetest.ShutdownUnderLoad(tb, &millracetest.ShutdownConfig{
		Pool:    pool,
		Workers: workers,
		Mix: []millracetest.JobMix{{Args: func(rng *mrand.Rand) client.JobArgs {
			return ResizeImageArgs{ImageID: rng.IntN(1000)}
		}}},
		Backlog: 100,
		Rate:    200,
		Plan:    millracetest.DefaultShutdownPlan(),
	})
	fmt.Println("rounds:", len(rep.Rounds))
	fmt.Println("lost:", len(rep.Lost), "left running:", len(rep.Rounds[0].LeftRunning))
	fmt.Println("every job completed:", rep.Completed == rep.Inserted)
	fmt.Println("problems:", len(rep.Problems))
	// Output:
	// rounds: 4
	// lost: 0 left running: 0
	// every job completed: true
	// problems: 0
}

// exampleHarnessTB stands for a test's *testing.T: it prints failures and
// runs the cleanups when the example ends.
type exampleHarnessTB struct {
	testing.TB
	cleanups []func()
}

func (*exampleHarnessTB) Helper()                   {}
func (*exampleHarnessTB) Name() string              { return "Example_shutdownUnderLoad" }
func (*exampleHarnessTB) Logf(string, ...any)       {}
func (*exampleHarnessTB) Errorf(f string, a ...any) { fmt.Printf("FAIL: "+f+"\n", a...) }
func (*exampleHarnessTB) Fatalf(f string, a ...any) {
	fmt.Printf("FAIL: "+f+"\n", a...)
	os.Exit(1)
}
func (tb *exampleHarnessTB) Cleanup(fn func()) { tb.cleanups = append(tb.cleanups, fn) }
func (tb *exampleHarnessTB) cleanup() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
}
