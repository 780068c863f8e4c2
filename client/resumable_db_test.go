package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

type resumeArgs struct {
	Mode string `json:"mode"`
}

func (resumeArgs) Kind() string { return "resume" }

// resumeWorker retries failed jobs at once, so a test sees the retry
// resume within milliseconds.
type resumeWorker struct {
	work func(ctx context.Context, job *Job[resumeArgs]) error
}

func (w *resumeWorker) Work(ctx context.Context, job *Job[resumeArgs]) error { return w.work(ctx, job) }
func (w *resumeWorker) NextRetry(*Job[resumeArgs]) time.Time {
	return time.Now().Add(10 * time.Millisecond)
}

// TestResumableRetry: a retry runs only what the failed attempt did not
// finish: plain steps after the last completed one, a cursor step from its
// saved cursor.
func TestResumableRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	rec := &recorder{}
	workers := NewWorkers()
	AddWorker(workers, &resumeWorker{work: func(ctx context.Context, job *Job[resumeArgs]) error {
		prefix := fmt.Sprintf("%s#%d:", job.Args.Mode, job.Attempt)
		switch job.Args.Mode {
		case "steps":
			for _, name := range []string{"s1", "s2", "s3"} {
				if err := ResumableStep(ctx, name, func(context.Context) error {
					rec.add(prefix + name)
					if name == "s3" && job.Attempt == 1 {
						return errors.New("s3 fails once")
					}
					return nil
				}); err != nil {
					return err
				}
			}
		case "cursor":
			if err := ResumableStep(ctx, "prepare", func(context.Context) error { rec.add(prefix + "prepare"); return nil }); err != nil {
				return err
			}
			return ResumableStepCursor(ctx, "items", func(ctx context.Context, from int) error {
				for i := from; i < 8; i++ {
					if i == 5 && job.Attempt == 1 {
						return errors.New("item 5 fails once")
					}
					rec.add(fmt.Sprintf("%sitem%d", prefix, i))
					if err := ResumableSetCursor(ctx, i+1); err != nil {
						return err
					}
				}
				return nil
			})
		}
		return nil
	}})
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers})
	start(t, c)
	steps, err := c.Insert(ctx, resumeArgs{Mode: "steps"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cursor, err := c.Insert(ctx, resumeArgs{Mode: "cursor"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	job := waitState(t, db, steps.Job.ID, millracetype.JobStateCompleted)
	if job.Attempt != 2 || len(job.Errors) != 1 || !sameJSON(t, job.Metadata, []byte(`{"river:resumable_step":"s2"}`)) {
		t.Errorf("steps job: attempt %d errors %v metadata %s", job.Attempt, job.Errors, job.Metadata)
	}
	job = waitState(t, db, cursor.Job.ID, millracetype.JobStateCompleted)
	if job.Attempt != 2 || !sameJSON(t, job.Metadata, []byte(`{"river:resumable_step":"prepare","river:resumable_cursor":{"items":5}}`)) {
		t.Errorf("cursor job: attempt %d metadata %s", job.Attempt, job.Metadata)
	}
	var gotSteps, gotCursor []string
	for _, s := range rec.get() {
		if s[:5] == "steps" {
			gotSteps = append(gotSteps, s)
		} else {
			gotCursor = append(gotCursor, s)
		}
	}
	if want := []string{"steps#1:s1", "steps#1:s2", "steps#1:s3", "steps#2:s3"}; !slices.Equal(gotSteps, want) {
		t.Errorf("steps ran %v, want %v", gotSteps, want)
	}
	want := []string{"cursor#1:prepare"}
	for i := range 5 {
		want = append(want, fmt.Sprintf("cursor#1:item%d", i))
	}
	for i := 5; i < 8; i++ {
		want = append(want, fmt.Sprintf("cursor#2:item%d", i))
	}
	if !slices.Equal(gotCursor, want) {
		t.Errorf("cursor ran %v, want %v", gotCursor, want)
	}
}

// TestResumableCheckpointTx: a checkpoint written in the worker's
// transaction is in the database while the job still runs, and rolls back
// with the transaction; a retry resumes from the last committed one, so
// every item is written exactly once.
func TestResumableCheckpointTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	table := appTable(t, db)
	midway := make(chan struct{})
	resume := make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, &resumeWorker{work: func(ctx context.Context, job *Job[resumeArgs]) error {
		return ResumableStepCursor(ctx, "items", func(ctx context.Context, from int) error {
			for i := from; i < 6; i++ {
				tx, err := db.Pool.Begin(ctx)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, $2)", job.ID, fmt.Sprint(i)); err != nil {
					_ = tx.Rollback(ctx)
					return err
				}
				if _, err := ResumableSetStepCursorTx(ctx, tx, job, i+1); err != nil {
					_ = tx.Rollback(ctx)
					return err
				}
				if job.Attempt == 1 && i == 3 {
					// The process "dies" before committing item 3.
					_ = tx.Rollback(ctx)
					return errors.New("lost item 3")
				}
				if err := tx.Commit(ctx); err != nil {
					return err
				}
				if job.Attempt == 1 && i == 2 {
					close(midway)
					<-resume
				}
			}
			return nil
		})
	}})
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	start(t, c)
	res, err := c.Insert(ctx, resumeArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, midway, "the checkpoint of item 2")
	running := db.Job(t, res.Job.ID)
	if running.State != millracetype.JobStateRunning ||
		!sameJSON(t, running.Metadata, []byte(`{"river:resumable_step":"items","river:resumable_cursor":{"items":3}}`)) {
		t.Errorf("while running: %s %s", running.State, running.Metadata)
	}
	close(resume)
	job := waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
	if job.Attempt != 2 || len(job.Errors) != 1 || job.Errors[0].Error != "lost item 3" {
		t.Errorf("attempt %d errors %v", job.Attempt, job.Errors)
	}
	rows, err := db.Pool.Query(ctx, "SELECT note FROM "+table+" WHERE job_id = $1 ORDER BY note", res.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"0", "1", "2", "3", "4", "5"}; !slices.Equal(notes, want) {
		t.Errorf("items written %v, want each of %v once", notes, want)
	}
}

// TestResumableCheckpointTxErrors: checkpoints refuse what they cannot
// record truthfully, and write nothing.
func TestResumableCheckpointTxErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	type result struct {
		name string
		err  error
	}
	results := make(chan result, 16)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[resumeArgs]) error {
		report := func(name string, err error) { results <- result{name, err} }
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // nothing to keep
		if job.Args.Mode == "pending" {
			// Saved cursor of "loop" not reached yet: no checkpoint before it.
			_ = ResumableStep(ctx, "first", func(ctx context.Context) error {
				_, err := ResumableSetStepTx(ctx, tx, job)
				report("before the saved cursor step", err)
				return nil
			})
			return ResumableStepCursor(ctx, "loop", func(ctx context.Context, n int) error {
				_, err := ResumableSetStepCursorTx(ctx, tx, job, n+1)
				report("at the saved cursor step", err)
				return nil
			})
		}
		_, err = ResumableSetStepTx(ctx, tx, job)
		report("outside a step", err)
		_ = ResumableStep(ctx, "plain", func(ctx context.Context) error {
			_, err := ResumableSetStepCursorTx(ctx, tx, job, 1)
			report("cursor in a plain step", err)
			other := &Job[resumeArgs]{JobRow: &millracetype.JobRow{}}
			*other.JobRow = *job.JobRow
			other.ID += 1000
			_, err = ResumableSetStepTx(ctx, tx, other)
			report("another job", err)
			other.ID, other.State = job.ID, millracetype.JobStateCompleted
			_, err = ResumableSetStepTx(ctx, tx, other)
			report("a job not running", err)
			_, err = ResumableSetStepCursorTx(ctx, tx, job, make(chan int))
			report("unencodable cursor", err)
			// Moved on meanwhile (as by a rescue): the guard refuses.
			if _, err := tx.Exec(ctx, "UPDATE "+pgx.Identifier{db.Schema, "river_job"}.Sanitize()+
				" SET attempt = attempt + 1 WHERE id = $1", job.ID); err != nil {
				return err
			}
			_, err = ResumableSetStepTx(ctx, tx, job)
			report("another attempt", err)
			return nil
		})
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	start(t, c)
	plain, err := c.Insert(ctx, resumeArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]error{
		"outside a step": ErrResumableNotInStep, "cursor in a plain step": ErrResumableNotInStep,
		"another job": ErrInvalidArgs, "a job not running": ErrJobNotRunning, "unencodable cursor": nil,
		"another attempt": ErrJobNotRunning,
	}
	check := func(n int) {
		for range n {
			r := recv(t, results, "the worker's checks")
			w, ok := want[r.name]
			switch {
			case !ok:
				t.Errorf("unexpected check %q", r.name)
			case r.err == nil:
				t.Errorf("%s: no error", r.name)
			case w != nil && !errors.Is(r.err, w):
				t.Errorf("%s: %v, want %v", r.name, r.err, w)
			}
		}
	}
	check(len(want))
	if job := waitState(t, db, plain.Job.ID, millracetype.JobStateCompleted); !sameJSON(t, job.Metadata, []byte(`{}`)) {
		t.Errorf("metadata %s", job.Metadata)
	}

	pending := db.InsertJob(t, &driver.JobInsertFullParams{Kind: resumeArgs{}.Kind(), Args: []byte(`{"mode":"pending"}`),
		Metadata: []byte(`{"river:resumable_cursor":{"loop":4}}`)})
	want = map[string]error{"before the saved cursor step": ErrResumableCursorPending}
	check(1)
	results2 := recv(t, results, "the checkpoint at the cursor step")
	if results2.name != "at the saved cursor step" || results2.err != nil {
		t.Errorf("%s: %v", results2.name, results2.err)
	}
	// Rolled back with the worker's transaction; the attempt succeeded, so
	// nothing else was saved.
	if job := waitState(t, db, pending.ID, millracetype.JobStateCompleted); !sameJSON(t, job.Metadata, []byte(`{"river:resumable_cursor":{"loop":4}}`)) {
		t.Errorf("metadata %s", job.Metadata)
	}
}
