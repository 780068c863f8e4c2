package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

func TestJobGet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	res, err := c.Insert(ctx, noopArgs{N: 3}, &InsertOpts{Tags: []string{"abc"}})
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.JobGet(ctx, res.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if job.ID != res.Job.ID || job.Kind != "noop" || !slices.Equal(job.Tags, []string{"abc"}) || !sameJSON(t, job.Args, []byte(`{"n":3}`)) {
		t.Errorf("JobGet returned %+v", job)
	}
	if _, err := c.JobGet(ctx, res.Job.ID+1000); !errors.Is(err, ErrNotFound) {
		t.Errorf("JobGet of a missing job: %v", err)
	}
}

// listFixture inserts jobs with every column the listing filters or orders
// on varied, with many ties, and returns them as stored.
func listFixture(t *testing.T, db *testfixture.DB) []*millracetype.JobRow {
	t.Helper()
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	states := []millracetype.JobState{millracetype.JobStateAvailable, millracetype.JobStateCompleted,
		millracetype.JobStateRunning, millracetype.JobStateScheduled, millracetype.JobStateDiscarded}
	var jobs []*millracetype.JobRow
	for i := range 30 {
		state := states[i%len(states)]
		p := &driver.JobInsertFullParams{
			Kind:        []string{"alpha", "beta"}[i%2],
			Queue:       []string{"q1", "q2", "q2"}[i%3],
			Priority:    i%4 + 1,
			State:       state,
			Metadata:    fmt.Appendf(nil, `{"team": %q, "n": %d}`, []string{"red", "blue"}[i%2], i),
			CreatedAt:   ptr(base.Add(time.Duration(i%5) * time.Minute)),
			ScheduledAt: ptr(base.Add(time.Duration(i*7%11) * time.Minute)),
		}
		if state != millracetype.JobStateAvailable && state != millracetype.JobStateScheduled {
			p.Attempt = 1
			p.AttemptedAt = ptr(base.Add(time.Duration(i%3) * time.Hour))
		}
		if state.Finalized() {
			p.FinalizedAt = ptr(base.Add(time.Duration(i%4) * 24 * time.Hour))
		}
		jobs = append(jobs, db.InsertJob(t, p))
	}
	return jobs
}

func ptr[T any](v T) *T { return &v }

func ids(jobs []*millracetype.JobRow) []int64 {
	out := make([]int64, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func TestJobListFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	jobs := listFixture(t, db)
	filter := func(keep func(*millracetype.JobRow) bool) []int64 {
		var out []int64
		for _, j := range jobs {
			if keep(j) {
				out = append(out, j.ID)
			}
		}
		return out
	}
	tests := []struct {
		name   string
		params *JobListParams
		want   []int64
	}{
		{"nil params", nil, ids(jobs)},
		{"no filter", &JobListParams{}, ids(jobs)},
		{"ids", &JobListParams{IDs: []int64{jobs[3].ID, jobs[7].ID, 999999}}, []int64{jobs[3].ID, jobs[7].ID}},
		{"kinds", &JobListParams{Kinds: []string{"beta"}}, filter(func(j *millracetype.JobRow) bool { return j.Kind == "beta" })},
		{"queues", &JobListParams{Queues: []string{"q1"}}, filter(func(j *millracetype.JobRow) bool { return j.Queue == "q1" })},
		{"states", &JobListParams{States: []millracetype.JobState{millracetype.JobStateRunning, millracetype.JobStateDiscarded}},
			filter(func(j *millracetype.JobRow) bool {
				return j.State == millracetype.JobStateRunning || j.State == millracetype.JobStateDiscarded
			})},
		{"priorities", &JobListParams{Priorities: []int{2, 4}}, filter(func(j *millracetype.JobRow) bool { return j.Priority%2 == 0 })},
		{"metadata", &JobListParams{Metadata: []byte(`{"team": "red"}`)}, filter(func(j *millracetype.JobRow) bool {
			return strings.Contains(string(j.Metadata), `"red"`)
		})},
		{"combined", &JobListParams{Kinds: []string{"alpha"}, Queues: []string{"q2"}, States: []millracetype.JobState{millracetype.JobStateAvailable}},
			filter(func(j *millracetype.JobRow) bool {
				return j.Kind == "alpha" && j.Queue == "q2" && j.State == millracetype.JobStateAvailable
			})},
		{"nothing matches", &JobListParams{Kinds: []string{"gamma"}}, nil},
	}
	for _, tc := range tests {
		res, err := c.JobList(ctx, tc.params)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := ids(res.Jobs); !slices.Equal(got, tc.want) && (len(got) != 0 || len(tc.want) != 0) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
		if len(tc.want) == 0 {
			if res.LastCursor != nil {
				t.Errorf("%s: empty page has a cursor", tc.name)
			}
		} else if res.LastCursor == nil || res.LastCursor.ID != tc.want[len(tc.want)-1] {
			t.Errorf("%s: cursor %+v", tc.name, res.LastCursor)
		}
	}
	// The filters are sanity-checked against the fixture: each keeps some
	// jobs and drops some.
	for _, tc := range tests[3:9] {
		if n := len(tc.want); n == 0 || n == len(jobs) {
			t.Errorf("fixture does not exercise filter %s: %d of %d", tc.name, n, len(jobs))
		}
	}
}

// TestJobListOrderAndPages walks every ordering, both directions, page by
// page, and compares with the expected full order.
func TestJobListOrderAndPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	jobs := listFixture(t, db)
	orders := []struct {
		by    JobListOrderBy
		value func(*millracetype.JobRow) *time.Time
	}{
		{"", nil},
		{JobListOrderByID, nil},
		{JobListOrderByScheduledAt, func(j *millracetype.JobRow) *time.Time { return &j.ScheduledAt }},
		{JobListOrderByCreatedAt, func(j *millracetype.JobRow) *time.Time { return &j.CreatedAt }},
		{JobListOrderByAttemptedAt, func(j *millracetype.JobRow) *time.Time { return j.AttemptedAt }},
		{JobListOrderByFinalizedAt, func(j *millracetype.JobRow) *time.Time { return j.FinalizedAt }},
	}
	for _, o := range orders {
		for _, desc := range []bool{false, true} {
			name := fmt.Sprintf("order %q desc %v", o.by, desc)
			// The expected order: by value then id, rows without a value left out.
			var want []*millracetype.JobRow
			for _, j := range jobs {
				if o.value == nil || o.value(j) != nil {
					want = append(want, j)
				}
			}
			slices.SortFunc(want, func(a, b *millracetype.JobRow) int {
				r := 0
				if o.value != nil {
					r = o.value(a).Compare(*o.value(b))
				}
				if r == 0 {
					r = cmp.Compare(a.ID, b.ID)
				}
				if desc {
					r = -r
				}
				return r
			})
			if o.value != nil && len(want) == len(jobs) && (o.by == JobListOrderByAttemptedAt || o.by == JobListOrderByFinalizedAt) {
				t.Fatalf("%s: fixture has no NULLs to leave out", name)
			}

			full, err := c.JobList(ctx, &JobListParams{OrderBy: o.by, Desc: desc, Limit: 1000})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !slices.Equal(ids(full.Jobs), ids(want)) {
				t.Errorf("%s: full list %v, want %v", name, ids(full.Jobs), ids(want))
			}

			var walked []int64
			var after *JobListCursor
			for page := 0; ; page++ {
				if page > len(jobs) {
					t.Fatalf("%s: pagination does not end", name)
				}
				res, err := c.JobList(ctx, &JobListParams{OrderBy: o.by, Desc: desc, Limit: 4, After: after})
				if err != nil {
					t.Fatalf("%s page %d: %v", name, page, err)
				}
				if len(res.Jobs) == 0 {
					if res.LastCursor != nil {
						t.Errorf("%s: empty page with a cursor", name)
					}
					break
				}
				if len(res.Jobs) > 4 {
					t.Fatalf("%s: page of %d over the limit", name, len(res.Jobs))
				}
				walked = append(walked, ids(res.Jobs)...)
				// The cursor survives its text form.
				token := res.LastCursor.String()
				parsed, err := ParseJobListCursor(token)
				if err != nil {
					t.Fatalf("%s: parse cursor %q: %v", name, token, err)
				}
				if parsed.ID != res.LastCursor.ID || parsed.OrderBy != res.LastCursor.OrderBy ||
					(parsed.Value == nil) != (res.LastCursor.Value == nil) ||
					(parsed.Value != nil && !parsed.Value.Equal(*res.LastCursor.Value)) {
					t.Fatalf("%s: cursor %+v came back as %+v", name, res.LastCursor, parsed)
				}
				after = parsed
			}
			if !slices.Equal(walked, ids(want)) {
				t.Errorf("%s: pages gave %v, want %v", name, walked, ids(want))
			}
		}
	}
}

func TestJobListInvalidParams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	when := time.Now()
	tests := []struct {
		name    string
		params  *JobListParams
		wantMsg string
	}{
		{"negative limit", &JobListParams{Limit: -1}, "list limit -1 out of range"},
		{"limit too big", &JobListParams{Limit: 10001}, "list limit 10001 out of range"},
		{"unknown state", &JobListParams{States: []millracetype.JobState{"sleeping"}}, `unknown job state "sleeping"`},
		{"metadata not an object", &JobListParams{Metadata: []byte(`[1]`)}, "metadata filter must be a JSON object"},
		{"metadata not JSON", &JobListParams{Metadata: []byte(`{`)}, "metadata filter must be a JSON object"},
		{"unknown order", &JobListParams{OrderBy: "kind"}, `cannot order by "kind"`},
		{"priority out of range", &JobListParams{Priorities: []int{65537}}, "priority 65537 out of range 1..4"},
		{"cursor of another order", &JobListParams{OrderBy: JobListOrderByCreatedAt,
			After: &JobListCursor{ID: 1, OrderBy: JobListOrderByScheduledAt, Value: &when}}, "cursor is for order"},
		{"cursor without value", &JobListParams{OrderBy: JobListOrderByCreatedAt,
			After: &JobListCursor{ID: 1, OrderBy: JobListOrderByCreatedAt}}, "cursor has no value"},
	}
	for _, tc := range tests {
		_, err := c.JobList(ctx, tc.params)
		if !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("%s: %v, want ErrInvalidArgs saying %q", tc.name, err, tc.wantMsg)
		}
	}
	for _, token := range []string{"", "!!!", "bm90IGpzb24"} { // the last is "not json"
		if _, err := ParseJobListCursor(token); err == nil || !strings.Contains(err.Error(), "invalid job list cursor") {
			t.Errorf("ParseJobListCursor(%q): %v", token, err)
		}
	}
}

// TestJobRetryDiscarded: a discarded job retried by hand gets one more
// attempt and is worked.
func TestJobRetryDiscarded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, noopWorker())
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	failedAt := time.Now().Add(-time.Hour)
	discarded := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "noop", Args: []byte(`{"n": 1}`), Attempt: 2, MaxAttempts: 2,
		AttemptedAt: &failedAt, State: millracetype.JobStateDiscarded, FinalizedAt: &failedAt,
		Metadata: []byte(`{"cancel_attempted_at": "2025-01-01T00:00:00Z", "keep": 1}`),
		Errors:   []millracetype.AttemptError{{At: failedAt, Attempt: 1, Error: "e1"}, {At: failedAt, Attempt: 2, Error: "e2"}}})
	start(t, c)
	// Nothing happens to it while discarded.
	retried, err := c.JobRetry(ctx, discarded.ID)
	if err != nil {
		t.Fatal(err)
	}
	if retried.State != millracetype.JobStateAvailable || retried.FinalizedAt != nil || retried.MaxAttempts != 3 ||
		retried.Attempt != 2 || len(retried.Errors) != 2 || strings.Contains(string(retried.Metadata), "cancel_attempted_at") ||
		!strings.Contains(string(retried.Metadata), `"keep"`) {
		t.Errorf("retried job: %+v metadata %s", retried, retried.Metadata)
	}
	done := waitState(t, db, discarded.ID, millracetype.JobStateCompleted)
	if done.Attempt != 3 || len(done.Errors) != 2 {
		t.Errorf("worked job: attempt %d errors %d", done.Attempt, len(done.Errors))
	}
	// Retrying a completed job makes it run again; a missing one errors.
	if _, err := c.JobRetry(ctx, discarded.ID); err != nil {
		t.Fatal(err)
	}
	waitJob(t, db, discarded.ID, "completed again", func(j *millracetype.JobRow) bool {
		return j.State == millracetype.JobStateCompleted && j.Attempt == 4
	})
	if _, err := c.JobRetry(ctx, discarded.ID+1000); !errors.Is(err, ErrNotFound) {
		t.Errorf("JobRetry of a missing job: %v", err)
	}
}

func TestJobDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	running := make(chan int64, 1)
	release := make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		running <- job.ID
		<-release
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	start(t, c)

	waiting, err := c.Insert(ctx, noopArgs{}, &InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := c.JobDelete(ctx, waiting.Job.ID)
	if err != nil || deleted.ID != waiting.Job.ID || deleted.State != millracetype.JobStateScheduled {
		t.Fatalf("JobDelete: %+v, %v", deleted, err)
	}
	if _, err := c.JobGet(ctx, waiting.Job.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted job still there: %v", err)
	}
	if _, err := c.JobDelete(ctx, waiting.Job.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second JobDelete: %v", err)
	}

	res, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := recv(t, running, "the job to start"); id != res.Job.ID {
		t.Fatalf("running %d, want %d", id, res.Job.ID)
	}
	if _, err := c.JobDelete(ctx, res.Job.ID); !errors.Is(err, millracetype.ErrJobRunning) {
		t.Errorf("JobDelete of a running job: %v", err)
	}
	if job := db.Job(t, res.Job.ID); job.State != millracetype.JobStateRunning {
		t.Errorf("running job after refused delete: %s", job.State)
	}
	close(release)
	waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
	if _, err := c.JobDelete(ctx, res.Job.ID); err != nil {
		t.Errorf("JobDelete of a completed job: %v", err)
	}
}

func TestJobCancelNotRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	for _, opts := range []*InsertOpts{
		{ScheduledAt: time.Now().Add(time.Hour)},
		{Pending: true},
		nil,
	} {
		res, err := c.Insert(ctx, noopArgs{}, opts)
		if err != nil {
			t.Fatal(err)
		}
		job, err := c.JobCancel(ctx, res.Job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if job.State != millracetype.JobStateCancelled || job.FinalizedAt == nil ||
			!strings.Contains(string(job.Metadata), "cancel_attempted_at") {
			t.Errorf("cancelled %s job: state %s finalized %v metadata %s", res.Job.State, job.State, job.FinalizedAt, job.Metadata)
		}
		if stored := db.Job(t, res.Job.ID); stored.State != millracetype.JobStateCancelled {
			t.Errorf("stored state %s", stored.State)
		}
		// A finalized job comes back unchanged.
		again, err := c.JobCancel(ctx, res.Job.ID)
		if err != nil || !again.FinalizedAt.Equal(*job.FinalizedAt) || string(again.Metadata) != string(job.Metadata) {
			t.Errorf("second cancel: %+v, %v", again, err)
		}
	}
	if _, err := c.JobCancel(ctx, 123456); !errors.Is(err, ErrNotFound) {
		t.Errorf("JobCancel of a missing job: %v", err)
	}
}

// TestJobCancelRunningSameClient: cancelling a job that runs in this very
// client reaches the worker at once, with the remote-cancel cause.
func TestJobCancelRunningSameClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	running := make(chan struct{})
	cause := make(chan error, 1)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error {
		close(running)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return ctx.Err()
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, JobTimeout: -1})
	events, unsubscribe := c.Subscribe(EventKindJobCancelled)
	defer unsubscribe()
	start(t, c)
	res, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, running, "the job to start")
	if _, err := c.JobCancel(ctx, res.Job.ID); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, cause, "the job to end"); err == nil || err.Error() != "job cancelled remotely" {
		t.Errorf("job context cause: %v", err)
	}
	ev := waitEvent(t, events)
	if ev.Job.ID != res.Job.ID || ev.Job.State != millracetype.JobStateCancelled ||
		ev.Job.Errors[0].Error != "JobCancelError: job cancelled remotely" {
		t.Errorf("event %+v", ev.Job)
	}
}

func TestQueueGetAndList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, noopWorker())
	c := newClient(t, db, &Config{Queues: map[string]QueueConfig{"default": {MaxWorkers: 1}, "zeta": {MaxWorkers: 1}, "alpha": {MaxWorkers: 1}},
		Workers: workers})
	admin := newClient(t, db, nil)
	if qs, err := admin.QueueList(ctx, 0); err != nil || len(qs) != 0 {
		t.Fatalf("queues before any client ran: %v, %v", qs, err)
	}
	if _, err := admin.QueueGet(ctx, "default"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("QueueGet before any client ran: %v", err)
	}
	before := time.Now().Add(-time.Minute)
	start(t, c)
	q, err := admin.QueueGet(ctx, "zeta")
	if err != nil {
		t.Fatal(err)
	}
	if q.Name != "zeta" || q.PausedAt != nil || q.CreatedAt.Before(before) || q.UpdatedAt.Before(before) {
		t.Errorf("queue %+v", q)
	}
	qs, err := admin.QueueList(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, q := range qs {
		names = append(names, q.Name)
	}
	if !slices.Equal(names, []string{"alpha", "default", "zeta"}) {
		t.Errorf("QueueList: %v", names)
	}
	if qs, err := admin.QueueList(ctx, 2); err != nil || len(qs) != 2 || qs[1].Name != "default" {
		t.Errorf("QueueList(2): %v, %v", qs, err)
	}
	for _, limit := range []int{-1, 10001} {
		if _, err := admin.QueueList(ctx, limit); !errors.Is(err, ErrInvalidArgs) {
			t.Errorf("QueueList(%d): %v", limit, err)
		}
	}
	// The Tx variants read inside the caller's transaction.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "DELETE FROM "+db.Schema+".river_queue WHERE name = 'alpha'"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.QueueGetTx(ctx, tx, "alpha"); !errors.Is(err, ErrNotFound) {
		t.Errorf("QueueGetTx of a queue deleted in the transaction: %v", err)
	}
	if qs, err := admin.QueueListTx(ctx, tx, 0); err != nil || len(qs) != 2 {
		t.Errorf("QueueListTx: %d queues, %v; want 2", len(qs), err)
	}
	if _, err := admin.QueueGet(ctx, "alpha"); err != nil {
		t.Errorf("QueueGet outside the transaction: %v", err)
	}
}

// nextQueueEvent waits for a queue event and renders it "kind:queue".
func nextQueueEvent(t *testing.T, ch <-chan *Event) string {
	t.Helper()
	ev := waitEvent(t, ch)
	return string(ev.Kind) + ":" + ev.Queue
}

// TestQueuePauseFromAnotherClient: an insert-only client pauses and
// resumes a queue; the working client hears of it through notifications.
func TestQueuePauseFromAnotherClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	worked := make(chan int64, 10)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { worked <- job.ID; return nil }))
	const poll = 50 * time.Millisecond
	worker := newClient(t, db, &Config{Queues: map[string]QueueConfig{"default": {MaxWorkers: 2}, "other": {MaxWorkers: 2}},
		Workers: workers, FetchPollInterval: poll})
	events, unsubscribe := worker.Subscribe(EventKindQueuePaused, EventKindQueueResumed)
	defer unsubscribe()
	start(t, worker)
	admin := newClient(t, db, nil)

	if err := admin.QueuePause(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if ev := nextQueueEvent(t, events); ev != "queue_paused:default" {
		t.Fatalf("event %s", ev)
	}
	if q, err := admin.QueueGet(ctx, "default"); err != nil || q.PausedAt == nil {
		t.Fatalf("paused queue: %+v, %v", q, err)
	}
	paused, err := admin.Insert(ctx, noopArgs{N: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	insertedAt := time.Now()
	// The other queue keeps working...
	other, err := admin.Insert(ctx, noopArgs{N: 2}, &InsertOpts{Queue: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if id := recv(t, worked, "the job of the unpaused queue"); id != other.Job.ID {
		t.Fatalf("worked job %d, want %d (from the unpaused queue)", id, other.Job.ID)
	}
	// ...while the paused one, given several poll intervals and its insert
	// notification, fetches nothing.
	for time.Since(insertedAt) < 6*poll {
		if job := db.Job(t, paused.Job.ID); job.State != millracetype.JobStateAvailable {
			t.Fatalf("job in a paused queue went %s", job.State)
		}
		time.Sleep(poll / 5)
	}
	if err := admin.QueueResume(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if ev := nextQueueEvent(t, events); ev != "queue_resumed:default" {
		t.Fatalf("event %s", ev)
	}
	select {
	case id := <-worked:
		if id != paused.Job.ID {
			t.Fatalf("worked %d, want %d", id, paused.Job.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("job not worked after resume")
	}
	if q, err := admin.QueueGet(ctx, "default"); err != nil || q.PausedAt != nil {
		t.Fatalf("resumed queue: %+v, %v", q, err)
	}

	// "*" pauses and resumes every queue.
	if err := admin.QueuePause(ctx, "*"); err != nil {
		t.Fatal(err)
	}
	got := []string{nextQueueEvent(t, events), nextQueueEvent(t, events)}
	slices.Sort(got)
	if !slices.Equal(got, []string{"queue_paused:default", "queue_paused:other"}) {
		t.Fatalf("events after pausing *: %v", got)
	}
	qs, err := admin.QueueList(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.PausedAt == nil {
			t.Errorf("queue %s not paused by *", q.Name)
		}
	}
	if err := admin.QueueResume(ctx, "*"); err != nil {
		t.Fatal(err)
	}
	got = []string{nextQueueEvent(t, events), nextQueueEvent(t, events)}
	slices.Sort(got)
	if !slices.Equal(got, []string{"queue_resumed:default", "queue_resumed:other"}) {
		t.Fatalf("events after resuming *: %v", got)
	}
	res, err := admin.Insert(ctx, noopArgs{N: 3}, &InsertOpts{Queue: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if id := recv(t, worked, "the job after resuming *"); id != res.Job.ID {
		t.Fatalf("worked %d after resuming *, want %d", id, res.Job.ID)
	}
}

// TestQueuePauseOwnClient: a client pausing its own queue sees one event per
// change, in order, however fast pause and resume follow each other.
func TestQueuePauseOwnClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, noopWorker())
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	events, unsubscribe := c.Subscribe(EventKindQueuePaused, EventKindQueueResumed)
	defer unsubscribe()
	start(t, c)
	for range 5 {
		if err := c.QueuePause(ctx, "default"); err != nil {
			t.Fatal(err)
		}
		if ev := nextQueueEvent(t, events); ev != "queue_paused:default" {
			t.Fatalf("event %s, want queue_paused:default", ev)
		}
		if err := c.QueueResume(ctx, "default"); err != nil {
			t.Fatal(err)
		}
		if ev := nextQueueEvent(t, events); ev != "queue_resumed:default" {
			t.Fatalf("event %s, want queue_resumed:default", ev)
		}
	}
	// Pausing a paused queue changes nothing and is no error.
	if err := c.QueuePause(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if err := c.QueuePause(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if ev := nextQueueEvent(t, events); ev != "queue_paused:default" {
		t.Fatalf("event %s", ev)
	}
	if err := c.QueueResume(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if ev := nextQueueEvent(t, events); ev != "queue_resumed:default" {
		t.Fatalf("event %s after a double pause, want queue_resumed:default", ev)
	}
	// And the queue works.
	res, err := c.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
}

func TestQueuePauseErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	for _, fn := range []func(context.Context, string) error{c.QueuePause, c.QueueResume} {
		if err := fn(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown queue: %v", err)
		}
		if err := fn(ctx, "Bad Name"); !errors.Is(err, ErrInvalidArgs) {
			t.Errorf("invalid queue name: %v", err)
		}
		// "*" with no queues at all is not an error.
		if err := fn(ctx, "*"); err != nil {
			t.Errorf("* without queues: %v", err)
		}
	}
}

// TestQueuePausedAtStart: a queue paused before the client starts stays
// paused; the producer reports it as an event.
func TestQueuePausedAtStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	if _, err := db.Exec().QueueCreateOrSetUpdatedAt(ctx, &driver.QueueCreateParams{Schema: db.Schema, Name: "default"}); err != nil {
		t.Fatal(err)
	}
	admin := newClient(t, db, nil)
	if err := admin.QueuePause(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	res, err := admin.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	workers := NewWorkers()
	AddWorker(workers, noopWorker())
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	events, unsubscribe := c.Subscribe(EventKindQueuePaused, EventKindQueueResumed)
	defer unsubscribe()
	start(t, c)
	if ev := nextQueueEvent(t, events); ev != "queue_paused:default" {
		t.Fatalf("event %s", ev)
	}
	if job := db.Job(t, res.Job.ID); job.State != millracetype.JobStateAvailable {
		t.Fatalf("job in a queue paused at start: %s", job.State)
	}
	if err := admin.QueueResume(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
}

// TestQueuePauseTx: a pause inside a transaction takes effect, on every
// client, only when the transaction commits.
func TestQueuePauseTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, noopWorker())
	worker := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	events, unsubscribe := worker.Subscribe(EventKindQueuePaused, EventKindQueueResumed)
	defer unsubscribe()
	start(t, worker)
	admin := newClient(t, db, nil)

	inTx := func(commit bool, fn func(tx pgx.Tx) error) {
		t.Helper()
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		if err := fn(tx); err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	inTx(false, func(tx pgx.Tx) error { return admin.QueuePauseTx(ctx, tx, "default") })
	if q, err := admin.QueueGet(ctx, "default"); err != nil || q.PausedAt != nil {
		t.Fatalf("queue after a rolled-back pause: %+v, %v", q, err)
	}
	inTx(true, func(tx pgx.Tx) error { return admin.QueuePauseTx(ctx, tx, "default") })
	// The first event is the committed pause (the rolled-back one sent
	// nothing).
	if ev := nextQueueEvent(t, events); ev != "queue_paused:default" {
		t.Fatalf("event %s", ev)
	}
	inTx(true, func(tx pgx.Tx) error { return worker.QueueResumeTx(ctx, tx, "default") })
	if ev := nextQueueEvent(t, events); ev != "queue_resumed:default" {
		t.Fatalf("event %s", ev)
	}
	res, err := admin.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
}
