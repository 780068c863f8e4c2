package client

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

type completeTxArgs struct {
	Mode string `json:"mode"`
}

func (completeTxArgs) Kind() string { return "complete_tx" }

// appTable creates a table for a worker's own writes in the test schema.
func appTable(t *testing.T, db *testfixture.DB) string {
	t.Helper()
	name := pgx.Identifier{db.Schema, "app_writes"}.Sanitize()
	if _, err := db.Pool.Exec(context.Background(), "CREATE TABLE "+name+" (job_id bigint NOT NULL, note text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	return name
}

func appWrites(t *testing.T, db *testfixture.DB, table string, jobID int64) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table+" WHERE job_id = $1", jobID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestJobCompleteTx: the completion commits or rolls back with the
// worker's own writes; after a commit the client's own outcome changes
// nothing, whatever Work returned.
func TestJobCompleteTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	table := appTable(t, db)
	returned := make(chan *Job[completeTxArgs], 4)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[completeTxArgs]) error {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, $2)", job.ID, job.Args.Mode); err != nil {
			return err
		}
		if err := RecordOutput(ctx, "before"); err != nil {
			return err
		}
		if err := MetadataSet(ctx, "set_before", 1); err != nil {
			return err
		}
		done, err := JobCompleteTx(ctx, tx, job)
		if err != nil {
			return err
		}
		returned <- done
		switch job.Args.Mode {
		case "commit", "commit_then_error":
			if err := tx.Commit(ctx); err != nil {
				return err
			}
			if err := MetadataSet(ctx, "set_after", 1); err != nil {
				return err
			}
			if job.Args.Mode == "commit_then_error" {
				return errors.New("error after commit")
			}
			return nil
		case "rollback_then_error":
			if err := tx.Rollback(ctx); err != nil {
				return err
			}
			return errors.New("error after rollback")
		}
		return tx.Rollback(ctx)
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(4), Workers: workers})
	events, unsubscribe := c.Subscribe()
	defer unsubscribe()
	start(t, c)

	insert := func(mode string) int64 {
		t.Helper()
		res, err := c.Insert(ctx, completeTxArgs{Mode: mode}, &InsertOpts{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		return res.Job.ID
	}
	ids := map[string]int64{}
	for _, mode := range []string{"commit", "commit_then_error", "rollback", "rollback_then_error"} {
		ids[mode] = insert(mode)
	}
	byID := map[int64]*Job[completeTxArgs]{}
	for range 4 {
		done := recv(t, returned, "JobCompleteTx results")
		byID[done.ID] = done
		if done.State != millracetype.JobStateCompleted || done.FinalizedAt == nil ||
			!sameJSON(t, done.Metadata, []byte(`{"output":"before","set_before":1}`)) || done.Args.Mode == "" {
			t.Errorf("JobCompleteTx returned state %s finalized %v metadata %s args %+v", done.State, done.FinalizedAt, done.Metadata, done.Args)
		}
	}
	evs := map[int64]*Event{}
	for range 4 {
		ev := waitEvent(t, events)
		evs[ev.Job.ID] = ev
	}

	for _, mode := range []string{"commit", "commit_then_error"} {
		id := ids[mode]
		job := waitState(t, db, id, millracetype.JobStateCompleted)
		if len(job.Errors) != 0 || !job.FinalizedAt.Equal(*byID[id].FinalizedAt) {
			t.Errorf("%s: the client's outcome changed the committed row: errors %v, finalized_at %v (completed at %v)",
				mode, job.Errors, job.FinalizedAt, byID[id].FinalizedAt)
		}
		if !sameJSON(t, job.Metadata, []byte(`{"output":"before","set_before":1}`)) {
			t.Errorf("%s: metadata %s (set after the committed completion must not be stored)", mode, job.Metadata)
		}
		if n := appWrites(t, db, table, id); n != 1 {
			t.Errorf("%s: %d app writes", mode, n)
		}
		if ev := evs[id]; ev == nil || ev.Kind != EventKindJobCompleted || ev.Job.State != millracetype.JobStateCompleted {
			t.Errorf("%s: event %+v", mode, ev)
		}
	}

	// Rolled back: Work's result applies as usual, and no app write.
	job := waitState(t, db, ids["rollback"], millracetype.JobStateCompleted)
	if n := appWrites(t, db, table, job.ID); n != 0 || len(job.Errors) != 0 {
		t.Errorf("rollback: %d app writes, errors %v", n, job.Errors)
	}
	if ev := evs[job.ID]; ev == nil || ev.Kind != EventKindJobCompleted {
		t.Errorf("rollback: event %+v", ev)
	}
	job = waitState(t, db, ids["rollback_then_error"], millracetype.JobStateDiscarded)
	if n := appWrites(t, db, table, job.ID); n != 0 || len(job.Errors) != 1 || job.Errors[0].Error != "error after rollback" {
		t.Errorf("rollback_then_error: %d app writes, errors %v", n, job.Errors)
	}
	if !sameJSON(t, job.Metadata, []byte(`{"output":"before","set_before":1}`)) {
		t.Errorf("rollback_then_error: metadata %s", job.Metadata)
	}
	if ev := evs[job.ID]; ev == nil || ev.Kind != EventKindJobFailed {
		t.Errorf("rollback_then_error: event %+v", ev)
	}
}

// TestJobCompleteTxErrors: every misuse gives a specific error and writes
// nothing.
func TestJobCompleteTxErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	type result struct {
		name string
		err  error
	}
	results := make(chan result, 16)
	kept := make(chan context.Context, 1)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[completeTxArgs]) error {
		report := func(name string, err error) { results <- result{name, err} }
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

		notRunning := &Job[completeTxArgs]{JobRow: &millracetype.JobRow{}, Args: job.Args}
		*notRunning.JobRow = *job.JobRow
		notRunning.State = millracetype.JobStateAvailable
		_, err = JobCompleteTx(ctx, tx, notRunning)
		report("not running", err)

		other := &Job[completeTxArgs]{JobRow: &millracetype.JobRow{}, Args: job.Args}
		*other.JobRow = *job.JobRow
		other.ID = job.ID + 1000
		_, err = JobCompleteTx(ctx, tx, other)
		report("another job", err)

		var nilTx pgx.Tx
		_, err = JobCompleteTx(ctx, nilTx, job)
		report("nil tx", err)
		_, err = JobCompleteTx[pgx.Tx, completeTxArgs](ctx, tx, nil)
		report("nil job", err)
		_, err = JobCompleteTx(ctx, "not a transaction", job)
		report("wrong transaction type", err)

		// Deleted in the worker's transaction.
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, "DELETE FROM "+pgx.Identifier{db.Schema, "river_job"}.Sanitize()+" WHERE id = $1", job.ID); err != nil {
			return err
		}
		_, err = JobCompleteTx(ctx, sp, job)
		report("deleted", err)
		if err := sp.Rollback(ctx); err != nil {
			return err
		}

		// Completed and committed once: a second completion is refused.
		if _, err := JobCompleteTx(ctx, tx, job); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		tx2, err := db.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx2.Rollback(ctx) //nolint:errcheck // rolled back in any case
		_, err = JobCompleteTx(ctx, tx2, job)
		report("twice", err)
		kept <- ctx
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	events, unsubscribe := c.Subscribe()
	defer unsubscribe()
	start(t, c)
	res, err := c.Insert(ctx, completeTxArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]error{
		"not running": ErrJobNotRunning, "another job": ErrInvalidArgs, "nil tx": ErrInvalidArgs, "nil job": ErrInvalidArgs,
		"wrong transaction type": nil, "deleted": ErrNotFound, "twice": ErrJobNotRunning,
	}
	for range want {
		r := recv(t, results, "the worker's checks")
		switch w := want[r.name]; {
		case r.err == nil:
			t.Errorf("%s: no error", r.name)
		case w != nil && !errors.Is(r.err, w):
			t.Errorf("%s: %v, want %v", r.name, r.err, w)
		}
	}
	jobCtx := recv(t, kept, "the job's context")
	// The event comes once the outcome is recorded, so after Work returned.
	if ev := waitEvent(t, events); ev.Kind != EventKindJobCompleted || ev.Job.ID != res.Job.ID {
		t.Errorf("event %s for job %d", ev.Kind, ev.Job.ID)
	}
	job := waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
	if len(job.Errors) != 0 {
		t.Errorf("errors %v", job.Errors)
	}

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	running := &Job[completeTxArgs]{JobRow: &millracetype.JobRow{ID: res.Job.ID, State: millracetype.JobStateRunning}}
	if _, err := JobCompleteTx(ctx, tx, running); !errors.Is(err, ErrNotInWorker) {
		t.Errorf("outside a worker: %v", err)
	}
	if _, err := JobCompleteTx(jobCtx, tx, running); !errors.Is(err, ErrNotInWorker) {
		t.Errorf("after Work returned: %v", err)
	}
}
