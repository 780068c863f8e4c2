package interop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/millrace/millrace/client"
)

// resumableArgs drive one resumable job through both systems: the system
// named FailOn runs the first attempt and fails part way; the other one
// runs the retry, which must resume where the first stopped.
type resumableArgs struct {
	Mode   string `json:"mode"` // steps, cursor, checkpoint
	FailOn string `json:"fail_on"`
}

func (resumableArgs) Kind() string { return "interop_resumable" }

// recorder collects what each system's worker ran, as "system:what".
type recorder struct {
	ch chan string
}

func (r *recorder) add(s string) { r.ch <- s }

func (r *recorder) drain() []string {
	var out []string
	for {
		select {
		case s := <-r.ch:
			out = append(out, s)
		default:
			return out
		}
	}
}

// resumableOps is the resumable API of one system, so one script runs on
// both.
type resumableOps struct {
	system     string
	step       func(ctx context.Context, name string, fn func(ctx context.Context) error)
	cursorStep func(ctx context.Context, name string, fn func(ctx context.Context, cursor int) error)
	setCursor  func(ctx context.Context, cursor int) error
	// checkpoint records the running step with cursor in tx.
	checkpoint func(ctx context.Context, tx pgx.Tx, cursor int) error
}

// runScript is the worker of both systems.
func runScript(ctx context.Context, ops *resumableOps, args resumableArgs, jobID int64, pool *pgxpool.Pool, table string, rec *recorder) error {
	fail := args.FailOn == ops.system
	log := func(what string) { rec.add(ops.system + ":" + what) }
	switch args.Mode {
	case "steps":
		for _, name := range []string{"s1", "s2", "s3", "s4"} {
			ops.step(ctx, name, func(context.Context) error {
				log(name)
				if fail && name == "s3" {
					return errors.New("s3 fails after s2")
				}
				return nil
			})
		}
	case "cursor":
		ops.step(ctx, "prepare", func(context.Context) error { log("prepare"); return nil })
		ops.cursorStep(ctx, "items", func(ctx context.Context, from int) error {
			for i := from; i < 10; i++ {
				if fail && i == 5 {
					return errors.New("item 5 fails")
				}
				log(fmt.Sprint("item", i))
				if err := ops.setCursor(ctx, i+1); err != nil {
					return err
				}
			}
			return nil
		})
	case "checkpoint":
		ops.cursorStep(ctx, "items", func(ctx context.Context, from int) error {
			for i := from; i < 6; i++ {
				tx, err := pool.Begin(ctx)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, $2)", jobID, i); err != nil {
					_ = tx.Rollback(ctx)
					return err
				}
				if err := ops.checkpoint(ctx, tx, i+1); err != nil {
					_ = tx.Rollback(ctx)
					return err
				}
				if fail && i == 3 {
					// Dies before committing item 3.
					_ = tx.Rollback(ctx)
					return errors.New("item 3 lost")
				}
				if err := tx.Commit(ctx); err != nil {
					return err
				}
				log(fmt.Sprint("item", i))
			}
			return nil
		})
	}
	return nil
}

// riverResumableWorker runs the script on River, retrying an hour later
// so the test decides who runs the retry.
type riverResumableWorker struct {
	river.WorkerDefaults[resumableArgs]
	pool  *pgxpool.Pool
	table string
	rec   *recorder
}

func (w *riverResumableWorker) Work(ctx context.Context, job *river.Job[resumableArgs]) error {
	ops := &resumableOps{
		system: "river",
		step: func(ctx context.Context, name string, fn func(context.Context) error) {
			river.ResumableStep(ctx, name, nil, fn)
		},
		cursorStep: func(ctx context.Context, name string, fn func(context.Context, int) error) {
			river.ResumableStepCursor(ctx, name, nil, fn)
		},
		setCursor: func(ctx context.Context, cursor int) error { return river.ResumableSetCursor(ctx, cursor) },
		checkpoint: func(ctx context.Context, tx pgx.Tx, cursor int) error {
			_, err := river.ResumableSetStepCursorTx[*riverpgxv5.Driver](ctx, tx, job, cursor)
			return err
		},
	}
	return runScript(ctx, ops, job.Args, job.ID, w.pool, w.table, w.rec)
}

func (w *riverResumableWorker) NextRetry(*river.Job[resumableArgs]) time.Time {
	return time.Now().Add(time.Hour)
}

// millraceResumableWorker runs the script on millrace.
type millraceResumableWorker struct {
	pool  *pgxpool.Pool
	table string
	rec   *recorder
}

func (w *millraceResumableWorker) Work(ctx context.Context, job *client.Job[resumableArgs]) error {
	ops := &resumableOps{
		system: "millrace",
		// millrace's steps return their error as well as recording it; the
		// script, written for both, relies on the recording alone.
		step: func(ctx context.Context, name string, fn func(context.Context) error) {
			_ = client.ResumableStep(ctx, name, fn)
		},
		cursorStep: func(ctx context.Context, name string, fn func(context.Context, int) error) {
			_ = client.ResumableStepCursor(ctx, name, fn)
		},
		setCursor: func(ctx context.Context, cursor int) error { return client.ResumableSetCursor(ctx, cursor) },
		checkpoint: func(ctx context.Context, tx pgx.Tx, cursor int) error {
			_, err := client.ResumableSetStepCursorTx(ctx, tx, job, cursor)
			return err
		},
	}
	return runScript(ctx, ops, job.Args, job.ID, w.pool, w.table, w.rec)
}

func (w *millraceResumableWorker) NextRetry(*client.Job[resumableArgs]) time.Time {
	return time.Now().Add(time.Hour)
}

// TestResumableAcrossSystems: a resumable job whose first attempt fails
// part way under one system is resumed by the other: completed steps are
// not run again, a cursor step goes on from its cursor, a checkpoint
// written in the worker's transaction is honoured. Both systems must
// store the same metadata for the same failed attempt.
func TestResumableAcrossSystems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		mode     string
		saved    string   // metadata after the failed first attempt
		first    []string // what the first attempt ran
		resumed  []string // what the retry ran
		appItems int      // rows the checkpoint mode must end with
	}{
		{mode: "steps", saved: `{"river:resumable_step":"s2"}`,
			first: []string{"s1", "s2", "s3"}, resumed: []string{"s3", "s4"}},
		{mode: "cursor", saved: `{"river:resumable_step":"prepare","river:resumable_cursor":{"items":5}}`,
			first:   []string{"prepare", "item0", "item1", "item2", "item3", "item4"},
			resumed: []string{"item5", "item6", "item7", "item8", "item9"}},
		{mode: "checkpoint", saved: `{"river:resumable_step":"items","river:resumable_cursor":{"items":3}}`,
			first: []string{"item0", "item1", "item2"}, resumed: []string{"item3", "item4", "item5"}, appItems: 6},
	}
	for _, tc := range cases {
		for _, riverFirst := range []bool{true, false} {
			first, second := "millrace", "river"
			if riverFirst {
				first, second = "river", "millrace"
			}
			t.Run(tc.mode+"/"+first+"_then_"+second, func(t *testing.T) {
				t.Parallel()
				runResumableCase(t, tc.mode, first, second, tc.saved, tc.first, tc.resumed, tc.appItems)
			})
		}
	}
}

func runResumableCase(t *testing.T, mode, first, second, saved string, wantFirst, wantResumed []string, appItems int) {
	ctx := context.Background()
	pool, schema := setup(t, first == "river")
	table := pgx.Identifier{schema, "interop_items"}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+" (job_id bigint NOT NULL, item int NOT NULL, UNIQUE (job_id, item))"); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{ch: make(chan string, 100)}
	args := resumableArgs{Mode: mode, FailOn: first}
	startSystem := func(system string) func() {
		if system == "river" {
			workers := river.NewWorkers()
			river.AddWorker(workers, &riverResumableWorker{pool: pool, table: table, rec: rec})
			rc := newRiverClient(t, schema, &river.Config{Workers: workers, FetchPollInterval: 100 * time.Millisecond,
				Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}}})
			return func() { stopWithin(t, "River client", rc.Stop) }
		}
		workers := client.NewWorkers()
		client.AddWorker(workers, &millraceResumableWorker{pool: pool, table: table, rec: rec})
		mc := newMillraceClient(t, schema, &client.Config{Workers: workers, FetchPollInterval: 50 * time.Millisecond,
			Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 2}}})
		return func() { stopWithin(t, "millrace client", mc.Stop) }
	}
	admin := newMillraceClient(t, schema, nil)

	// First attempt, inserted and run by the first system.
	var id int64
	if first == "river" {
		rc := newRiverClient(t, schema, nil)
		res, err := rc.Insert(ctx, args, &river.InsertOpts{MaxAttempts: 5})
		if err != nil {
			t.Fatal(err)
		}
		id = res.Job.ID
	} else {
		res, err := admin.Insert(ctx, args, &client.InsertOpts{MaxAttempts: 5})
		if err != nil {
			t.Fatal(err)
		}
		id = res.Job.ID
	}
	stop := startSystem(first)
	var state string
	var metadata []byte
	var nErrors int
	read := func() {
		if err := pool.QueryRow(ctx, "SELECT state::text, metadata, coalesce(array_length(errors, 1), 0) FROM "+jobTable(schema)+
			" WHERE id = $1", id).Scan(&state, &metadata, &nErrors); err != nil {
			t.Fatal(err)
		}
	}
	if !eventually(20*time.Second, func() bool { read(); return state == "retryable" && nErrors == 1 }) {
		t.Fatalf("first attempt under %s: state %s, %d errors, metadata %s", first, state, nErrors, metadata)
	}
	stop()
	if !jsonEqual(metadata, []byte(saved)) {
		t.Errorf("%s saved %s after the failed attempt, want %s", first, metadata, saved)
	}
	if got := trimSystem(rec.drain(), first); !slices.Equal(got, wantFirst) {
		t.Errorf("%s ran %v, want %v", first, got, wantFirst)
	}

	// The retry, now, by the other system.
	if _, err := admin.JobRetry(ctx, id); err != nil {
		t.Fatal(err)
	}
	stop = startSystem(second)
	if !eventually(20*time.Second, func() bool { read(); return state == "completed" }) {
		t.Fatalf("retry under %s: state %s, %d errors, metadata %s", second, state, nErrors, metadata)
	}
	stop()
	if got := trimSystem(rec.drain(), second); !slices.Equal(got, wantResumed) {
		t.Errorf("%s resumed with %v, want %v", second, got, wantResumed)
	}
	if appItems > 0 {
		var rows, distinct int
		if err := pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT item) FROM "+table+" WHERE job_id = $1", id).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		if rows != appItems || distinct != appItems {
			t.Errorf("%d item rows (%d distinct), want each of %d once", rows, distinct, appItems)
		}
	}
}

// trimSystem keeps the entries of one system, without the prefix, and
// fails on any other system's entry.
func trimSystem(entries []string, system string) []string {
	var out []string
	for _, e := range entries {
		if len(e) > len(system) && e[:len(system)+1] == system+":" {
			out = append(out, e[len(system)+1:])
		} else {
			out = append(out, "unexpected "+e)
		}
	}
	return out
}
