package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/millrace/millrace/driver/databasesql"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

type sqlTxArgs struct {
	Mode string `json:"mode"`
}

func (sqlTxArgs) Kind() string { return "sql_tx" }

// TestDatabaseSQLDriver: a poll-only client on driver/databasesql works
// jobs inserted with InsertManyFastTx in a *sql.Tx (the driver's plain,
// COPY-less insert); JobCompleteTx commits and rolls back with the
// worker's own writes in its *sql.Tx; a rolled-back insert leaves no job;
// a Tx admin call takes a *sql.Tx.
func TestDatabaseSQLDriver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := testfixture.New(t)
	db := stdlib.OpenDB(*fx.Pool.Config().ConnConfig)
	db.SetMaxOpenConns(5)
	defer func() { _ = db.Close() }()
	table := pgx.Identifier{fx.Schema, "app_writes"}.Sanitize()
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (job_id bigint NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	drv, err := databasesql.New(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[sqlTxArgs]) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" VALUES ($1)", job.ID); err != nil {
			return err
		}
		if _, err := JobCompleteTx(ctx, tx, job); err != nil {
			return err
		}
		if job.Args.Mode == "commit" {
			return tx.Commit()
		}
		if err := tx.Rollback(); err != nil {
			return err
		}
		return errors.New("rolled back")
	}))
	c, err := New(drv, &Config{
		Schema:            fx.Schema,
		Queues:            map[string]QueueConfig{QueueDefault: {MaxWorkers: 5}},
		Workers:           workers,
		FetchPollInterval: 20 * time.Millisecond,
		Logger:            testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop(context.WithoutCancel(ctx)) }()

	insert := func(commit bool, params ...InsertManyParams) {
		t.Helper()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit
		n, err := c.InsertManyFastTx(ctx, tx, params)
		if err != nil || n != len(params) {
			t.Fatalf("InsertManyFastTx: %d, %v; want %d", n, err, len(params))
		}
		if commit {
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(false, InsertManyParams{Args: sqlTxArgs{Mode: "commit"}})
	once := &InsertOpts{MaxAttempts: 1}
	insert(true, InsertManyParams{Args: sqlTxArgs{Mode: "commit"}}, InsertManyParams{Args: sqlTxArgs{Mode: "rollback"}, InsertOpts: once})

	var jobs []*millracetype.JobRow
	testwait.Until(t, 30*time.Second, func() bool {
		res, err := c.JobList(ctx, &JobListParams{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		jobs = res.Jobs
		for _, j := range jobs {
			if j.FinalizedAt == nil {
				return false
			}
		}
		return len(jobs) > 0
	}, "the jobs finalized; have %d", len(jobs))
	if len(jobs) != 2 {
		t.Fatalf("%d jobs; want 2 (the rolled-back insert left none)", len(jobs))
	}
	for _, j := range jobs {
		var writes int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE job_id = $1", j.ID).Scan(&writes); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.Contains(string(j.Args), "rollback"):
			if j.State != millracetype.JobStateDiscarded || writes != 0 || len(j.Errors) != 1 || j.Errors[0].Error != "rolled back" {
				t.Errorf("rolled-back job: %s, %d writes, errors %+v; want discarded, none, one \"rolled back\"", j.State, writes, j.Errors)
			}
		default:
			if j.State != millracetype.JobStateCompleted || writes != 1 {
				t.Errorf("committed job: %s, %d writes; want completed, 1", j.State, writes)
			}
		}
	}

	// A Tx admin call, on a job scheduled for later.
	res, err := c.Insert(ctx, sqlTxArgs{Mode: "commit"}, &InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	cancelled, err := c.JobCancelTx(ctx, tx, res.Job.ID)
	if err != nil || cancelled.State != millracetype.JobStateCancelled {
		t.Fatalf("JobCancelTx: %v, %+v; want cancelled", err, cancelled)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.JobGet(ctx, res.Job.ID); err != nil || got.State != millracetype.JobStateCancelled {
		t.Fatalf("after the commit: %v, %+v; want cancelled", err, got)
	}
}
