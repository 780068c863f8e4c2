package millracetest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/millracetest"
)

// ThumbnailArgs is a job that fails for an image it cannot find.
type ThumbnailArgs struct {
	Path string `json:"path"`
}

func (ThumbnailArgs) Kind() string { return "thumbnail" }

type ThumbnailWorker struct {
	client.WorkerDefaults[ThumbnailArgs]
}

func (ThumbnailWorker) Work(ctx context.Context, job *client.Job[ThumbnailArgs]) error {
	if job.Args.Path == "" {
		return errors.New("no image to resize")
	}
	return client.RecordOutput(ctx, map[string]string{"thumbnail": job.Args.Path + ".thumb.png"})
}

// A worker run through the harness: no client to start, the job's outcome
// written to its row and returned.
func ExampleWorker() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	w := millracetest.NewWorker(exampleT, pgxv5.New(pool), &client.Config{Schema: schema},
		client.Worker[ThumbnailArgs](ThumbnailWorker{}))

	res := w.Work(ctx, exampleT, ThumbnailArgs{Path: "cat.png"}, nil)
	fmt.Println(res.Kind, res.Job.State, string(res.Output))

	res = w.Work(ctx, exampleT, ThumbnailArgs{}, nil)
	fmt.Println(res.Kind, res.Err, "retried:", !res.NextRetryAt.IsZero())

	// Output:
	// job_completed completed {"thumbnail": "cat.png.thumb.png"}
	// job_failed no image to resize retried: true
}
