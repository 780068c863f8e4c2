package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// allRows reads every job of the schema, by id.
func allRows(t *testing.T, db *testfixture.DB) []*millracetype.JobRow {
	t.Helper()
	jobs, err := db.Exec().JobList(context.Background(), &driver.JobListParams{Schema: db.Schema, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// requireRowsUnchanged fails when the schema's jobs differ from before.
func requireRowsUnchanged(t *testing.T, db *testfixture.DB, before []*millracetype.JobRow, what string) {
	t.Helper()
	after := allRows(t, db)
	if len(after) != len(before) {
		t.Fatalf("%s: %d jobs, want %d unchanged", what, len(after), len(before))
	}
	for i := range before {
		a, b := after[i], before[i]
		if a.ID != b.ID || a.State != b.State || string(a.Metadata) != string(b.Metadata) || !a.ScheduledAt.Equal(b.ScheduledAt) ||
			(a.FinalizedAt == nil) != (b.FinalizedAt == nil) || a.MaxAttempts != b.MaxAttempts {
			t.Fatalf("%s: job %d changed: %+v, was %+v", what, b.ID, a, b)
		}
	}
}

func TestJobListTagsAndTimeRanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	base := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
	var jobs []*millracetype.JobRow
	for i, tags := range [][]string{{"red"}, {"red", "blue"}, {"blue"}, nil, {"green", "red"}} {
		res, err := c.Insert(ctx, noopArgs{N: i}, &InsertOpts{Tags: tags, ScheduledAt: base.Add(time.Duration(i) * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, res.Job)
	}
	tests := []struct {
		name   string
		params *JobListParams
		want   []int64
	}{
		{"tags any", &JobListParams{TagsAny: []string{"blue", "green"}}, []int64{jobs[1].ID, jobs[2].ID, jobs[4].ID}},
		{"tags all", &JobListParams{TagsAll: []string{"red", "blue"}}, []int64{jobs[1].ID}},
		{"tags any and all", &JobListParams{TagsAny: []string{"green", "blue"}, TagsAll: []string{"red"}}, []int64{jobs[1].ID, jobs[4].ID}},
		{"scheduled from", &JobListParams{ScheduledAt: TimeRange{From: ptr(base.Add(3 * time.Minute))}}, []int64{jobs[3].ID, jobs[4].ID}},
		{"scheduled before", &JobListParams{ScheduledAt: TimeRange{Before: ptr(base.Add(time.Minute))}}, []int64{jobs[0].ID}},
		{"scheduled between", &JobListParams{ScheduledAt: TimeRange{From: ptr(base.Add(time.Minute)), Before: ptr(base.Add(3 * time.Minute))}},
			[]int64{jobs[1].ID, jobs[2].ID}},
		{"created in the last hour", &JobListParams{CreatedAt: TimeRange{From: ptr(time.Now().Add(-time.Hour))}}, ids(jobs)},
		{"never attempted", &JobListParams{AttemptedAt: TimeRange{From: ptr(time.Time{})}}, nil},
		{"not finalized", &JobListParams{FinalizedAt: TimeRange{Before: ptr(base.Add(time.Hour))}}, nil},
	}
	for _, tc := range tests {
		res, err := c.JobList(ctx, tc.params)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := ids(res.Jobs); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestJobFilterInvalid: every entry point rejects bad filters with an error
// wrapping ErrInvalidFilter (and ErrInvalidArgs), and changes nothing.
func TestJobFilterInvalid(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	for range 3 {
		if _, err := c.Insert(ctx, noopArgs{}, &InsertOpts{Tags: []string{"abc"}}); err != nil {
			t.Fatal(err)
		}
	}
	before := allRows(t, db)
	at := time.Now()
	later := at.Add(time.Second)
	kinds := []string{"noop"}
	shared := []struct {
		name    string
		params  *JobListParams
		wantMsg string
	}{
		{"negative limit", &JobListParams{Kinds: kinds, Limit: -1}, "limit -1 out of range 1..10000"},
		{"limit too big", &JobListParams{Kinds: kinds, Limit: 10001}, "limit 10001 out of range 1..10000"},
		{"unknown state", &JobListParams{States: []millracetype.JobState{"sleeping"}}, `unknown job state "sleeping"`},
		{"metadata not an object", &JobListParams{Metadata: []byte(`"x"`)}, "metadata filter must be a JSON object"},
		{"metadata null", &JobListParams{Metadata: []byte(`null`)}, "metadata filter must be a JSON object"},
		{"metadata not JSON", &JobListParams{Metadata: []byte(`{"a":`)}, "metadata filter must be a JSON object"},
		{"priority zero", &JobListParams{Priorities: []int{0}}, "priority 0 out of range 1..4"},
		{"priority five", &JobListParams{Priorities: []int{1, 5}}, "priority 5 out of range 1..4"},
		{"id zero", &JobListParams{IDs: []int64{1, 0}}, "job ID 0 cannot exist"},
		{"negative id", &JobListParams{IDs: []int64{-4}}, "job ID -4 cannot exist"},
		{"empty kind", &JobListParams{Kinds: []string{"noop", ""}}, "empty string in Kinds"},
		{"empty queue", &JobListParams{Queues: []string{""}}, "empty string in Queues"},
		{"empty tag (any)", &JobListParams{TagsAny: []string{""}}, "empty string in TagsAny"},
		{"empty tag (all)", &JobListParams{TagsAll: []string{"abc", ""}}, "empty string in TagsAll"},
		{"tag too long", &JobListParams{TagsAny: []string{strings.Repeat("x", 256)}}, "longer than 255 characters"},
		{"inverted created range", &JobListParams{CreatedAt: TimeRange{From: &later, Before: &at}}, "CreatedAt range is empty or inverted"},
		{"inverted scheduled range", &JobListParams{ScheduledAt: TimeRange{From: &later, Before: &at}}, "ScheduledAt range is empty or inverted"},
		{"inverted attempted range", &JobListParams{AttemptedAt: TimeRange{From: &later, Before: &at}}, "AttemptedAt range is empty or inverted"},
		{"empty finalized range", &JobListParams{FinalizedAt: TimeRange{From: &at, Before: &at}}, "FinalizedAt range is empty or inverted"},
		{"unknown order", &JobListParams{Kinds: kinds, OrderBy: "kind"}, `cannot order by "kind"`},
	}
	listOnly := []struct {
		name    string
		params  *JobListParams
		wantMsg string
	}{
		{"cursor of another order", &JobListParams{OrderBy: JobListOrderByCreatedAt,
			After: &JobListCursor{ID: 1, OrderBy: JobListOrderByScheduledAt, Value: &at}}, "cursor is for order"},
	}
	manyOnly := []struct {
		name    string
		params  *JobListParams
		wantMsg string
	}{
		{"nil params", nil, "no filter given"},
		{"no filter", &JobListParams{}, "no filter given"},
		{"only order and limit", &JobListParams{OrderBy: JobListOrderByCreatedAt, Desc: true, Limit: 5}, "no filter given"},
		{"empty lists", &JobListParams{IDs: []int64{}, Kinds: []string{}, TagsAll: []string{}}, "no filter given"},
		{"cursor", &JobListParams{Kinds: kinds, After: &JobListCursor{ID: 1}}, "After (a cursor) is for listing only"},
	}
	ops := []struct {
		name string
		many bool
		call func(p *JobListParams) error
	}{
		{"JobList", false, func(p *JobListParams) error { _, err := c.JobList(ctx, p); return err }},
		{"JobDeleteMany", true, func(p *JobListParams) error { _, err := c.JobDeleteMany(ctx, p); return err }},
		{"JobCancelMany", true, func(p *JobListParams) error { _, err := c.JobCancelMany(ctx, p); return err }},
		{"JobRetryMany", true, func(p *JobListParams) error { _, err := c.JobRetryMany(ctx, p); return err }},
	}
	for _, op := range ops {
		cases := slices.Clone(shared)
		if op.many {
			cases = append(cases, manyOnly...)
		} else {
			cases = append(cases, listOnly...)
		}
		for _, tc := range cases {
			err := op.call(tc.params)
			if !errors.Is(err, ErrInvalidFilter) || !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("%s with %s: %v, want ErrInvalidFilter saying %q", op.name, tc.name, err, tc.wantMsg)
			}
		}
	}
	// Deleting running jobs by state is refused, and says why.
	_, err := c.JobDeleteMany(ctx, &JobListParams{States: []millracetype.JobState{millracetype.JobStateAvailable, millracetype.JobStateRunning}})
	if !errors.Is(err, ErrInvalidFilter) || !errors.Is(err, millracetype.ErrJobRunning) {
		t.Errorf("JobDeleteMany naming running: %v", err)
	}
	requireRowsUnchanged(t, db, before, "after the refused calls")
	// The filters do work with the right input.
	res, err := c.JobDeleteMany(ctx, &JobListParams{TagsAll: []string{"abc"}, Limit: 2})
	if err != nil || len(res.Jobs) != 2 || !res.More {
		t.Fatalf("JobDeleteMany: %+v, %v", res, err)
	}
}

// blockingWorkers returns workers for noopArgs whose jobs block until their
// context ends, reporting each start on started and each context cause on
// causes.
func blockingWorkers(started chan<- int64, causes chan<- error) *Workers {
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		started <- job.ID
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return ctx.Err()
	}))
	return workers
}

func TestJobDeleteMany(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	started := make(chan int64, 1)
	causes := make(chan error, 1)
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: blockingWorkers(started, causes), JobTimeout: -1})
	start(t, c)
	run, err := c.Insert(ctx, noopArgs{N: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := recv(t, started, "the job to start"); id != run.Job.ID {
		t.Fatalf("running %d, want %d", id, run.Job.ID)
	}
	// Seven jobs that wait (scheduled later) and one of another kind.
	var waiting []int64
	for i := range 7 {
		res, err := c.Insert(ctx, noopArgs{N: i + 1}, &InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		waiting = append(waiting, res.Job.ID)
	}
	other := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "other", State: millracetype.JobStateScheduled, ScheduledAt: ptr(time.Now().Add(time.Hour))})

	// Unknown IDs: nothing deleted, and the error says which.
	before := allRows(t, db)
	_, err = c.JobDeleteMany(ctx, &JobListParams{IDs: []int64{waiting[0], 424242}})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "424242") {
		t.Fatalf("JobDeleteMany with an unknown ID: %v", err)
	}
	requireRowsUnchanged(t, db, before, "after the unknown ID")

	// In a transaction: rolled back, nothing is gone.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.JobDeleteManyTx(ctx, tx, &JobListParams{Kinds: []string{"noop"}})
	if err != nil || len(res.Jobs) != 7 {
		t.Fatalf("JobDeleteManyTx: %+v, %v", res, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	requireRowsUnchanged(t, db, before, "after the rollback")

	// Batches of 3 by kind: 3, 3, 1, never the running job.
	var deleted []int64
	for _, want := range []struct {
		n    int
		more bool
	}{{3, true}, {3, true}, {1, false}} {
		res, err := c.JobDeleteMany(ctx, &JobListParams{Kinds: []string{"noop"}, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Jobs) != want.n || res.More != want.more {
			t.Fatalf("batch: %d jobs more=%v, want %d more=%v", len(res.Jobs), res.More, want.n, want.more)
		}
		deleted = append(deleted, ids(res.Jobs)...)
	}
	if !slices.Equal(deleted, waiting) {
		t.Errorf("deleted %v, want %v", deleted, waiting)
	}
	if got := ids(allRows(t, db)); !slices.Equal(got, []int64{run.Job.ID, other.ID}) {
		t.Errorf("jobs left %v, want the running one and the other kind", got)
	}
	if job := db.Job(t, run.Job.ID); job.State != millracetype.JobStateRunning {
		t.Errorf("running job is %s", job.State)
	}
}

// TestJobCancelManyRunning: cancelling running jobs from another client
// reaches their workers through the control notification, as JobCancel
// does; jobs that are not running are cancelled at once.
func TestJobCancelManyRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	started := make(chan int64, 2)
	causes := make(chan error, 2)
	worker := newClient(t, db, &Config{Queues: oneQueue(2), Workers: blockingWorkers(started, causes), JobTimeout: -1})
	events, unsubscribe := worker.Subscribe(EventKindJobCancelled)
	defer unsubscribe()
	start(t, worker)
	admin := newClient(t, db, nil) // insert-only: no producers of its own

	var running []int64
	for i := range 2 {
		res, err := admin.Insert(ctx, noopArgs{N: i}, nil)
		if err != nil {
			t.Fatal(err)
		}
		running = append(running, res.Job.ID)
	}
	recv(t, started, "the first job to start")
	recv(t, started, "the second job to start")
	pending, err := admin.Insert(ctx, noopArgs{N: 9}, &InsertOpts{Pending: true})
	if err != nil {
		t.Fatal(err)
	}

	res, err := admin.JobCancelMany(ctx, &JobListParams{Kinds: []string{"noop"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(res.Jobs); !slices.Equal(got, append(slices.Clone(running), pending.Job.ID)) {
		t.Fatalf("changed %v", got)
	}
	for _, j := range res.Jobs {
		wantState := millracetype.JobStateRunning
		if j.ID == pending.Job.ID {
			wantState = millracetype.JobStateCancelled
		}
		if j.State != wantState || !strings.Contains(string(j.Metadata), "cancel_attempted_at") {
			t.Errorf("job %d: state %s metadata %s", j.ID, j.State, j.Metadata)
		}
	}
	for range 2 {
		if err := recv(t, causes, "a worker to be cancelled"); err == nil || err.Error() != "job cancelled remotely" {
			t.Errorf("job context cause: %v", err)
		}
	}
	var cancelled []int64
	for range 2 {
		ev := waitEvent(t, events)
		if ev.Job.State != millracetype.JobStateCancelled || ev.Job.Errors[0].Error != "JobCancelError: job cancelled remotely" {
			t.Errorf("event %+v", ev.Job)
		}
		cancelled = append(cancelled, ev.Job.ID)
	}
	slices.Sort(cancelled)
	if !slices.Equal(cancelled, running) {
		t.Errorf("cancelled %v, want %v", cancelled, running)
	}
	// Nothing is left to cancel.
	res, err = admin.JobCancelMany(ctx, &JobListParams{Kinds: []string{"noop"}})
	if err != nil || len(res.Jobs) != 0 || res.More {
		t.Errorf("second JobCancelMany: %+v, %v", res, err)
	}
}

// TestJobCancelManyOwnClientAndTx: the client's own running job is
// cancelled without waiting for the notification; in a transaction the
// cancel takes effect (and notifies) only when it commits.
func TestJobCancelManyOwnClientAndTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	started := make(chan int64, 1)
	causes := make(chan error, 1)
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: blockingWorkers(started, causes), JobTimeout: -1})
	start(t, c)
	res, err := c.Insert(ctx, noopArgs{}, &InsertOpts{Tags: []string{"batch_7"}})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, started, "the job to start")

	// Rolled back: the job keeps running, its metadata untouched.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	many, err := c.JobCancelManyTx(ctx, tx, &JobListParams{TagsAny: []string{"batch_7"}})
	if err != nil || len(many.Jobs) != 1 {
		t.Fatalf("JobCancelManyTx: %+v, %v", many, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if job := db.Job(t, res.Job.ID); job.State != millracetype.JobStateRunning || strings.Contains(string(job.Metadata), "cancel_attempted_at") {
		t.Fatalf("job after the rollback: %s %s", job.State, job.Metadata)
	}
	// Committed: the worker is cancelled.
	tx, err = db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := c.JobCancelManyTx(ctx, tx, &JobListParams{TagsAny: []string{"batch_7"}}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, causes, "the worker to be cancelled"); err == nil || err.Error() != "job cancelled remotely" {
		t.Errorf("job context cause: %v", err)
	}
	waitState(t, db, res.Job.ID, millracetype.JobStateCancelled)

	// The same client's own call reaches its worker directly.
	second, err := c.Insert(ctx, noopArgs{N: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, started, "the second job to start")
	if _, err := c.JobCancelMany(ctx, &JobListParams{IDs: []int64{second.Job.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, causes, "the second worker to be cancelled"); err == nil || err.Error() != "job cancelled remotely" {
		t.Errorf("job context cause: %v", err)
	}
	waitState(t, db, second.Job.ID, millracetype.JobStateCancelled)
}

func TestJobRetryMany(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, noopWorker())
	// No polling to speak of: the retried jobs run because JobRetryMany
	// wakes this client's producer.
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers, FetchPollInterval: time.Hour})
	failedAt := time.Now().Add(-time.Hour)
	var discarded []int64
	for i := range 4 {
		j := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "noop", Args: []byte(`{"n": 1}`), Attempt: 2, MaxAttempts: 2,
			AttemptedAt: &failedAt, State: millracetype.JobStateDiscarded, FinalizedAt: &failedAt, Priority: 1 + i%2,
			Errors: []millracetype.AttemptError{{At: failedAt, Attempt: 2, Error: "boom"}}})
		discarded = append(discarded, j.ID)
	}
	completed := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "noop", State: millracetype.JobStateCompleted, Attempt: 1,
		FinalizedAt: &failedAt})
	start(t, c)

	// Unknown IDs change nothing.
	before := allRows(t, db)
	if _, err := c.JobRetryMany(ctx, &JobListParams{IDs: []int64{discarded[0], 999999}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("JobRetryMany with an unknown ID: %v", err)
	}
	// Rolled back: still discarded.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.JobRetryManyTx(ctx, tx, &JobListParams{States: []millracetype.JobState{millracetype.JobStateDiscarded}})
	if err != nil || len(res.Jobs) != 4 {
		t.Fatalf("JobRetryManyTx: %+v, %v", res, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	requireRowsUnchanged(t, db, before, "after the unknown ID and the rollback")

	// Priority 1 discarded jobs only: two of them.
	res, err = c.JobRetryMany(ctx, &JobListParams{States: []millracetype.JobState{millracetype.JobStateDiscarded}, Priorities: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(res.Jobs); !slices.Equal(got, []int64{discarded[0], discarded[2]}) {
		t.Fatalf("retried %v", got)
	}
	for _, j := range res.Jobs {
		if j.State != millracetype.JobStateAvailable || j.MaxAttempts != 3 || j.Attempt != 2 || len(j.Errors) != 1 || j.FinalizedAt != nil {
			t.Errorf("retried job %+v", j)
		}
	}
	for _, id := range []int64{discarded[0], discarded[2]} {
		if done := waitState(t, db, id, millracetype.JobStateCompleted); done.Attempt != 3 {
			t.Errorf("job %d worked at attempt %d", id, done.Attempt)
		}
	}
	for _, id := range []int64{discarded[1], discarded[3], completed.ID} {
		if job := db.Job(t, id); job.State.Finalized() == false {
			t.Errorf("job %d not asked for is %s", id, job.State)
		}
	}
}

// TestJobManyAtomic: a batch is one statement. A row that makes it fail
// half way (a trigger raising on one job) leaves every row as it was.
func TestJobManyAtomic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	schema := pgx.Identifier{db.Schema}.Sanitize()
	if _, err := db.Pool.Exec(ctx, `CREATE FUNCTION `+schema+`.poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.kind = 'poison' THEN
        RAISE EXCEPTION 'poisoned job %', OLD.id;
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison BEFORE UPDATE OR DELETE ON `+schema+`.river_job FOR EACH ROW EXECUTE FUNCTION `+schema+`.poison()`); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	for i := range 9 {
		kind := "noop"
		if i == 4 { // scheduled, in the middle: every op changes rows before it
			kind = "poison"
		}
		state := millracetype.JobStateScheduled
		var finalizedAt *time.Time
		if i%2 == 1 {
			state, finalizedAt = millracetype.JobStateDiscarded, &later
		}
		db.InsertJob(t, &driver.JobInsertFullParams{Kind: kind, State: state, ScheduledAt: &later, FinalizedAt: finalizedAt, Tags: []string{"batch"}})
	}
	before := allRows(t, db)
	params := &JobListParams{TagsAny: []string{"batch"}}
	for name, call := range map[string]func() error{
		"JobDeleteMany": func() error { _, err := c.JobDeleteMany(ctx, params); return err },
		"JobCancelMany": func() error { _, err := c.JobCancelMany(ctx, params); return err },
		"JobRetryMany":  func() error { _, err := c.JobRetryMany(ctx, params); return err },
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), "poisoned job") {
			t.Errorf("%s over a poisoned row: %v", name, err)
		}
		requireRowsUnchanged(t, db, before, name+" that failed half way")
	}
	// Without the poisoned row, the same batch goes through.
	res, err := c.JobCancelMany(ctx, &JobListParams{TagsAny: []string{"batch"}, Kinds: []string{"noop"}})
	if err != nil || len(res.Jobs) != 4 {
		t.Fatalf("JobCancelMany without the poisoned row: %d jobs, %v", len(res.Jobs), err)
	}
}

// TestJobListStablePagination walks every order, both ways, page by page,
// while another goroutine keeps inserting jobs whose values fall before,
// among (ties included) and after the rows already there. Every row that
// was there from the start must come exactly once, and the walk must stay
// in order: no row repeats, none is skipped.
func TestJobListStablePagination(t *testing.T) {
	t.Parallel()
	orders := []JobListOrderBy{JobListOrderByID, JobListOrderByScheduledAt, JobListOrderByCreatedAt,
		JobListOrderByAttemptedAt, JobListOrderByFinalizedAt}
	for _, by := range orders {
		for _, desc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s_desc_%v", by, desc), func(t *testing.T) {
				t.Parallel()
				testStablePagination(t, by, desc)
			})
		}
	}
}

func testStablePagination(t *testing.T, by JobListOrderBy, desc bool) {
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	base := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	// row makes the n-th job: values spread over 60 s, so with hundreds of
	// jobs there are many ties; a quarter each available, running,
	// completed, scheduled.
	row := func(n int, queue string) *driver.JobInsertFullParams {
		at := func(k int) *time.Time { return ptr(base.Add(time.Duration((n*k)%60) * time.Second)) }
		p := &driver.JobInsertFullParams{Schema: db.Schema, Kind: "page", Queue: queue, CreatedAt: at(7), ScheduledAt: at(11)}
		switch n % 4 {
		case 0:
			p.State = millracetype.JobStateAvailable
		case 1:
			p.State, p.Attempt, p.AttemptedAt = millracetype.JobStateRunning, 1, at(13)
		case 2:
			p.State, p.Attempt, p.AttemptedAt, p.FinalizedAt = millracetype.JobStateCompleted, 1, at(13), at(17)
		case 3:
			p.State = millracetype.JobStateScheduled
		}
		return p
	}
	for n := range 240 {
		p := row(n, []string{"main", "main", "other"}[n%3])
		if _, err := db.Exec().JobInsertFull(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	filter := func(after *JobListCursor, limit int) *JobListParams {
		return &JobListParams{Queues: []string{"main"}, OrderBy: by, Desc: desc, After: after, Limit: limit}
	}
	existing, err := c.JobList(ctx, filter(nil, 10000))
	if err != nil {
		t.Fatal(err)
	}
	if len(existing.Jobs) < 40 {
		t.Fatalf("only %d jobs to page through", len(existing.Jobs))
	}

	// The inserter: on each signal, a batch of 4 jobs, inserted while the
	// walk reads its next page; the walk waits for the batch to commit
	// before the page after, so every page boundary has inserts across it.
	insertCtx, stopInserting := context.WithCancel(ctx)
	defer stopInserting()
	insert := make(chan struct{})
	inserted := make(chan error)
	go func() {
		n := 1000
		for {
			select {
			case <-insert:
			case <-insertCtx.Done():
				return
			}
			var err error
			for range 4 {
				n++
				if _, err = db.Exec().JobInsertFull(insertCtx, row(n, []string{"main", "other"}[n%2])); err != nil {
					break
				}
			}
			select {
			case inserted <- err:
			case <-insertCtx.Done():
				return
			}
		}
	}()
	inserts := 0

	value := func(j *millracetype.JobRow) *time.Time { return orderValue(j, by) }
	compare := func(a, b *millracetype.JobRow) int {
		r := 0
		if by != JobListOrderByID {
			r = value(a).Compare(*value(b))
		}
		if r == 0 {
			r = int(a.ID - b.ID)
		}
		if desc {
			r = -r
		}
		return r
	}
	// Inserts stop once the walk has passed every job there from the
	// start: a walk that has caught up with the inserts (ascending by id,
	// new jobs sort last) would otherwise find the previous page's batch on
	// every page and end only when a batch happened to commit before the
	// page that shows it was read.
	existingIDs := map[int64]bool{}
	for _, j := range existing.Jobs {
		existingIDs[j.ID] = true
	}
	existingLeft := len(existingIDs)
	var walked []*millracetype.JobRow
	var after *JobListCursor
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatal("pagination does not end")
		}
		inserting := existingLeft > 0
		if inserting {
			insert <- struct{}{}
		}
		res, err := c.JobList(ctx, filter(after, 9))
		if err != nil {
			t.Fatal(err)
		}
		if inserting {
			if err := recv(t, inserted, "a batch of inserts"); err != nil {
				t.Fatalf("insert: %v", err)
			}
			inserts++
		}
		if len(res.Jobs) == 0 {
			break
		}
		walked = append(walked, res.Jobs...)
		for _, j := range res.Jobs {
			if existingIDs[j.ID] {
				existingLeft--
			}
		}
		// Continue from the cursor's text form, as a caller across requests would.
		after, err = ParseJobListCursor(res.LastCursor.String())
		if err != nil {
			t.Fatal(err)
		}
	}
	stopInserting()

	seen := map[int64]int{}
	for i, j := range walked {
		seen[j.ID]++
		if j.Queue != "main" {
			t.Fatalf("job %d of queue %q listed", j.ID, j.Queue)
		}
		if by != JobListOrderByID && value(j) == nil {
			t.Fatalf("job %d has no %s", j.ID, by)
		}
		if i > 0 && compare(walked[i-1], j) >= 0 {
			t.Fatalf("walk out of order at %d: job %d (%v) after job %d (%v)", i, j.ID, value(j), walked[i-1].ID, value(walked[i-1]))
		}
	}
	for _, j := range existing.Jobs {
		if seen[j.ID] != 1 {
			t.Errorf("job %d there from the start seen %d times", j.ID, seen[j.ID])
		}
	}
	if inserts < 5 {
		t.Errorf("only %d batches inserted during the walk", inserts)
	}
	if !desc && by == JobListOrderByID && len(walked) <= len(existing.Jobs) {
		t.Errorf("ascending by id, no job inserted during the walk was seen (%d walked)", len(walked))
	}
}

// TestJobDeleteManyWhileWorking races JobDeleteMany against producers
// fetching the same jobs: no job is deleted while running, a job a worker
// started is deleted only once completed, and every job ends up deleted.
func TestJobDeleteManyWhileWorking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	var mu sync.Mutex
	started := map[int64]bool{}
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		mu.Lock()
		started[job.ID] = true
		mu.Unlock()
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(20), Workers: workers})
	const n = 1500
	params := make([]InsertManyParams, n)
	for i := range params {
		params[i] = InsertManyParams{Args: noopArgs{N: i}}
	}
	if _, err := c.InsertManyFast(ctx, params); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	deleted := map[int64]millracetype.JobState{}
	for batch := 0; ; batch++ {
		if batch > n {
			t.Fatal("deleting does not end")
		}
		// No state filter: the jobs running right now match, and must be left.
		res, err := c.JobDeleteMany(ctx, &JobListParams{Kinds: []string{"noop"}, Limit: 25})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range res.Jobs {
			if _, again := deleted[j.ID]; again || j.State == millracetype.JobStateRunning {
				t.Fatalf("deleted job %d in state %s (deleted before: %v)", j.ID, j.State, again)
			}
			deleted[j.ID] = j.State
		}
		if len(res.Jobs) == 0 && len(allRows(t, db)) == 0 {
			break
		}
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deleted) != n {
		t.Errorf("%d jobs deleted, want all %d", len(deleted), n)
	}
	for id := range started {
		if state := deleted[id]; state != millracetype.JobStateCompleted {
			t.Errorf("job %d was worked, then deleted as %q", id, state)
		}
	}
	t.Logf("%d of %d jobs were worked before being deleted", len(started), n)
}
