package sqlite

import (
	"context"
	"errors"
	"testing"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/migrate"
	"github.com/millrace/millrace/millracetest"
	"github.com/millrace/millrace/millracetype"
)

type welcomeArgs struct {
	To string `json:"to"`
}

func (welcomeArgs) Kind() string { return "welcome_email" }

// otherArgs is a kind never inserted.
type otherArgs struct{}

func (otherArgs) Kind() string { return "other" }

type welcomeWorker struct {
	client.WorkerDefaults[welcomeArgs]
}

func (welcomeWorker) Work(_ context.Context, job *client.Job[welcomeArgs]) error {
	if job.Args.To == "" {
		return errors.New("no address")
	}
	return nil
}

// A user's tests run on SQLite with no server: millracetest's assertions
// on a job inserted in the user's *sql.Tx, and its worker harness.
func TestUsersTestsWithoutServer(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	drv := New(db)
	if _, err := migrate.MigrateAll(ctx, drv, nil, migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(drv, &client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := c.InsertTx(ctx, tx, welcomeArgs{To: "a@example.com"}, nil); err != nil {
		t.Fatal(err)
	}
	millracetest.RequireInsertedTx(ctx, t, drv, tx, welcomeArgs{To: "a@example.com"}, nil)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	millracetest.RequireInserted(ctx, t, drv, welcomeArgs{To: "a@example.com"}, nil)
	millracetest.RequireNotInserted(ctx, t, drv, otherArgs{}, nil)

	w := millracetest.NewWorker(t, drv, nil, client.Worker[welcomeArgs](welcomeWorker{}))
	if res := w.Work(ctx, t, welcomeArgs{To: "b@example.com"}, nil); res.Kind != client.EventKindJobCompleted ||
		res.Job.State != millracetype.JobStateCompleted {
		t.Fatalf("worked job: %+v", res)
	}
	// The first retry comes within a few seconds: the job is available
	// again, due then, with its error recorded.
	if res := w.Work(ctx, t, welcomeArgs{}, nil); res.Kind != client.EventKindJobFailed || res.Err != "no address" ||
		res.Job.State != millracetype.JobStateAvailable || !res.Job.ScheduledAt.After(*res.Job.AttemptedAt) ||
		len(res.Job.Errors) != 1 || res.Job.Errors[0].Error != "no address" {
		t.Fatalf("failing job: kind %v, err %q, row %+v", res.Kind, res.Err, res.Job)
	}
}
