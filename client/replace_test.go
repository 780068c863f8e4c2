package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// debounceArgs are unique by Key only: N changes without changing the key.
type debounceArgs struct {
	Key string `json:"key" river:"unique"`
	N   int    `json:"n"`
}

func (debounceArgs) Kind() string { return "debounce" }

// debounceOpts is the acceptance's option: one run, 5 s after the last
// insert, with the last args.
func debounceOpts(d time.Duration) *InsertOpts {
	return &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true}, Replace: ReplaceOpts{Args: true, Debounce: d}}
}

func dbNow(t *testing.T, db *testfixture.DB) time.Time {
	t.Helper()
	var now time.Time
	if err := db.Pool.QueryRow(context.Background(), "SELECT now()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// TestDebounceRunsOnceAfterTheLastInsert: 100 inserts of one unique key
// over 2 s give one run, 5 s after the last insert, with the last args.
// Times are the database's: the job's attempted_at (written by the fetch)
// against now() read just before and just after the last insert.
func TestDebounceRunsOnceAfterTheLastInsert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	type run struct {
		id int64
		n  int
	}
	runs := make(chan run, 100)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[debounceArgs]) error {
		runs <- run{job.ID, job.Args.N}
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers})
	start(t, c)

	const inserts, debounce = 100, 5 * time.Second
	ticker := time.NewTicker(2 * time.Second / inserts)
	defer ticker.Stop()
	var first *InsertResult
	var beforeLast, afterLast time.Time
	for i := range inserts {
		<-ticker.C // paces the burst: 100 inserts over 2 s
		if i == inserts-1 {
			beforeLast = dbNow(t, db)
		}
		res, err := c.Insert(ctx, debounceArgs{Key: "k", N: i}, debounceOpts(debounce))
		if err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
		if i == 0 {
			first = res
			if res.UniqueSkippedAsDuplicate || res.UniqueReplaced {
				t.Fatalf("first insert: %+v, want a new job", res)
			}
			continue
		}
		if !res.UniqueReplaced || res.UniqueSkippedAsDuplicate || res.Job.ID != first.Job.ID {
			t.Fatalf("insert %d: replaced %v skipped %v job %d, want job %d replaced",
				i, res.UniqueReplaced, res.UniqueSkippedAsDuplicate, res.Job.ID, first.Job.ID)
		}
		if !sameJSON(t, res.Job.Args, fmt.Appendf(nil, `{"key":"k","n":%d}`, i)) {
			t.Fatalf("insert %d: returned args %s", i, res.Job.Args)
		}
	}
	afterLast = dbNow(t, db)
	if n := c.dueTimers.pending(); n != 1 {
		t.Errorf("%d wake-up timers after the burst, want 1 (one per job, moved by each insert)", n)
	}

	got := recv(t, runs, "the debounced job's run")
	if got.id != first.Job.ID || got.n != inserts-1 {
		t.Errorf("ran job %d with n=%d, want job %d with the last args n=%d", got.id, got.n, first.Job.ID, inserts-1)
	}
	row := waitState(t, db, first.Job.ID, millracetype.JobStateCompleted)
	if row.AttemptedAt == nil || row.Attempt != 1 {
		t.Fatalf("job attempt %d attempted_at %v, want one attempt", row.Attempt, row.AttemptedAt)
	}
	ranAt := *row.AttemptedAt
	t.Logf("ran between %s and %s after the last insert", ranAt.Sub(afterLast), ranAt.Sub(beforeLast))
	// Never before the last insert + 5 s: the fetch takes only due jobs.
	if earliest := beforeLast.Add(debounce); ranAt.Before(earliest) {
		t.Errorf("ran at %s, before the last insert + %s (%s)", ranAt, debounce, earliest)
	}
	// Soon after: this client's producer is woken when the job is due;
	// without that wake-up it would still fetch at its next poll
	// (FetchPollInterval, 1 s), so 1 s plus 1 s for a loaded machine.
	if latest := afterLast.Add(debounce + 2*time.Second); ranAt.After(latest) {
		t.Errorf("ran at %s, later than the last insert + %s + 2 s (%s)", ranAt, debounce, latest)
	}
	if counts := db.CountByState(t); len(counts) != 1 || counts[millracetype.JobStateCompleted] != 1 {
		t.Errorf("jobs by state %v, want one completed job", counts)
	}
	select {
	case r := <-runs:
		t.Errorf("a second run: %+v", r)
	default:
	}
}

// TestReplaceNotifications: inserts that move a job's run time later send
// no insert notification; one that replaces it with now does.
func TestReplaceNotifications(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	l, err := db.Driver.GetListener(db.Schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	if err := l.Listen(ctx, driver.TopicInsert); err != nil {
		t.Fatal(err)
	}
	next := func() *driver.Notification {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := l.WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// quiet sends a sentinel and requires it to be the next notification
	// (Postgres delivers in commit order).
	quiet := func(what string) {
		t.Helper()
		sentinel := fmt.Sprintf(`{"sentinel":%d}`, time.Now().UnixNano())
		if err := db.Exec().NotifyMany(ctx, &driver.NotifyManyParams{Schema: db.Schema, Topic: driver.TopicInsert,
			Payloads: []string{sentinel}}); err != nil {
			t.Fatal(err)
		}
		if n := next(); n.Payload != sentinel {
			t.Fatalf("%s: notification %s before the sentinel", what, n.Payload)
		}
	}
	// FetchCooldown longer than the test, so a notification that is sent
	// cannot be told from one suppressed by the limiter: each case uses a
	// queue of its own.
	c := newClient(t, db, &Config{FetchCooldown: time.Hour})
	for i := range 3 {
		if _, err := c.Insert(ctx, debounceArgs{Key: "later", N: i}, &InsertOpts{Queue: "later",
			UniqueOpts: UniqueOpts{ByArgs: true}, Replace: ReplaceOpts{Args: true, Debounce: 2 * time.Second}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Insert(ctx, debounceArgs{Key: "now"}, &InsertOpts{Queue: "now",
		UniqueOpts: UniqueOpts{ByArgs: true}, Replace: ReplaceOpts{Debounce: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	quiet("inserts debounced 2 s and 1 h")
	res, err := c.Insert(ctx, debounceArgs{Key: "now"}, &InsertOpts{Queue: "now",
		UniqueOpts: UniqueOpts{ByArgs: true}, Replace: ReplaceOpts{ScheduledAt: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.UniqueReplaced || res.Job.State != millracetype.JobStateAvailable {
		t.Fatalf("insert replacing the run time with now: replaced %v state %s", res.UniqueReplaced, res.Job.State)
	}
	if n := next(); !sameJSON(t, []byte(n.Payload), []byte(`{"queue":"now"}`)) {
		t.Fatalf("insert replacing the run time with now: notification %s, want queue now", n.Payload)
	}
}

// TestReplaceRunTime: ScheduledAt replaces the run time (and state) with
// the insert's; Args alone leaves them; a ByPeriod key comes from the
// insert's time, not the debounced run time.
func TestReplaceRunTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	first, err := c.Insert(ctx, debounceArgs{Key: "a"}, &InsertOpts{ScheduledAt: later, UniqueOpts: UniqueOpts{ByArgs: true}})
	if err != nil {
		t.Fatal(err)
	}
	if first.Job.State != millracetype.JobStateScheduled {
		t.Fatalf("first job %s, want scheduled", first.Job.State)
	}
	args, err := c.Insert(ctx, debounceArgs{Key: "a", N: 1}, &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true}, Replace: ReplaceOpts{Args: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !args.UniqueReplaced || !args.Job.ScheduledAt.Equal(later) || args.Job.State != millracetype.JobStateScheduled ||
		!sameJSON(t, args.Job.Args, []byte(`{"key":"a","n":1}`)) {
		t.Errorf("args replaced: replaced %v at %s state %s args %s", args.UniqueReplaced, args.Job.ScheduledAt, args.Job.State, args.Job.Args)
	}
	before := time.Now()
	now, err := c.Insert(ctx, debounceArgs{Key: "a", N: 2}, &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true}, Replace: ReplaceOpts{ScheduledAt: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !now.UniqueReplaced || now.Job.ScheduledAt.Before(before.Add(-time.Millisecond)) || now.Job.ScheduledAt.After(time.Now()) ||
		now.Job.State != millracetype.JobStateAvailable || !sameJSON(t, now.Job.Args, []byte(`{"key":"a","n":1}`)) {
		t.Errorf("run time replaced with now: replaced %v at %s state %s args %s", now.UniqueReplaced, now.Job.ScheduledAt, now.Job.State, now.Job.Args)
	}
	long, err := c.Insert(ctx, debounceArgs{Key: "a"}, &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true}, Replace: ReplaceOpts{Debounce: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	if !long.UniqueReplaced || long.Job.State != millracetype.JobStateScheduled || long.Job.ScheduledAt.Before(before.Add(time.Minute)) {
		t.Errorf("debounce of a minute: replaced %v at %s state %s", long.UniqueReplaced, long.Job.ScheduledAt, long.Job.State)
	}

	// ByPeriod: the key is the insert time's period, as River's is for an
	// insert without ScheduledAt; two inserts debounced by more than the
	// period still collide. (By a client whose clock stands at half past
	// the hour: the hour turning between the two inserts would give them
	// two keys.)
	mid := time.Now().UTC().Truncate(time.Hour).Add(30 * time.Minute)
	cm := newClient(t, db, &Config{clock: func() time.Time { return mid }})
	hourly := &InsertOpts{UniqueOpts: UniqueOpts{ByPeriod: time.Hour}, Replace: ReplaceOpts{Debounce: 2 * time.Hour}}
	p1, err := cm.Insert(ctx, noopArgs{N: 1}, hourly)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := cm.Insert(ctx, noopArgs{N: 2}, hourly)
	if err != nil {
		t.Fatal(err)
	}
	if want := hashOf(`&kind=noop&period=` + mid.Truncate(time.Hour).Format(time.RFC3339)); string(p1.Job.UniqueKey) != string(want) {
		t.Errorf("ByPeriod key %x is not the insert time's period", p1.Job.UniqueKey)
	}
	if !p2.UniqueReplaced || p2.Job.ID != p1.Job.ID {
		t.Errorf("second hourly insert: replaced %v job %d, want job %d", p2.UniqueReplaced, p2.Job.ID, p1.Job.ID)
	}
}

// replaceKindArgs sets replace options for its kind without unique ones.
type replaceKindArgs struct{}

func (replaceKindArgs) Kind() string { return "replace_kind" }
func (replaceKindArgs) InsertOpts() InsertOpts {
	return InsertOpts{Replace: ReplaceOpts{Debounce: time.Second}}
}

func TestReplaceValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	unique := UniqueOpts{ByArgs: true}
	tests := []struct {
		name    string
		args    JobArgs
		opts    *InsertOpts
		wantMsg string
	}{
		{"debounce without unique options", noopArgs{}, &InsertOpts{Replace: ReplaceOpts{Debounce: time.Second}}, "need unique options"},
		{"args without unique options", noopArgs{}, &InsertOpts{Replace: ReplaceOpts{Args: true}}, "need unique options"},
		{"kind's replace without unique options", replaceKindArgs{}, nil, "need unique options"},
		{"negative debounce", noopArgs{}, &InsertOpts{UniqueOpts: unique, Replace: ReplaceOpts{Debounce: -time.Second}}, "debounce -1s is negative"},
		{"debounce with ScheduledAt", noopArgs{}, &InsertOpts{UniqueOpts: unique, ScheduledAt: time.Now().Add(time.Hour),
			Replace: ReplaceOpts{Debounce: time.Second}}, "ScheduledAt must not be set"},
		{"debounce of a pending job", noopArgs{}, &InsertOpts{UniqueOpts: unique, Pending: true,
			Replace: ReplaceOpts{Debounce: time.Second}}, "Pending must not be set"},
		{"run time of a pending job", noopArgs{}, &InsertOpts{UniqueOpts: unique, Pending: true,
			Replace: ReplaceOpts{ScheduledAt: true}}, "Pending must not be set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s accepted the job", what)
				}
				if !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("%s: error %v, want ErrInvalidArgs saying %q", what, err, tc.wantMsg)
				}
			}
			_, err := c.Insert(ctx, tc.args, tc.opts)
			check("Insert", err)
			_, err = c.InsertMany(ctx, []InsertManyParams{{Args: noopArgs{}}, {Args: tc.args, InsertOpts: tc.opts}})
			check("InsertMany", err)
		})
	}
	// Valid replace options, but COPY cannot replace.
	_, err := c.InsertManyFast(ctx, []InsertManyParams{{Args: noopArgs{}, InsertOpts: debounceOpts(time.Second)}})
	if !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), "InsertManyFast") {
		t.Errorf("InsertManyFast with replace options: %v, want ErrInvalidArgs naming InsertManyFast", err)
	}
	if counts := db.CountByState(t); len(counts) != 0 {
		t.Errorf("refused inserts wrote jobs: %v", counts)
	}

	// A kind whose own InsertOpts replace without unique options is
	// refused when its worker is added (configuration time).
	workers := NewWorkers()
	err = AddWorkerSafely(workers, WorkFunc(func(ctx context.Context, job *Job[replaceKindArgs]) error { return nil }))
	if !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), "need unique options") {
		t.Errorf("AddWorkerSafely for a kind replacing without unique options: %v", err)
	}
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[replaceKindArgs]) error { return nil }))
	_, err = New(db.Driver, &Config{Schema: db.Schema, Queues: oneQueue(1), Workers: workers})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "need unique options") {
		t.Errorf("New with that worker: %v, want ErrInvalidConfig", err)
	}
}
