package maintenance

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
	"github.com/millrace/millrace/startstop"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func ptr[T any](v T) *T { return &v }

// onePass starts a service, waits for its first pass, and stops it.
func onePass(t *testing.T, svc startstop.Service, passes chan struct{}) {
	t.Helper()
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	select {
	case <-passes:
	case <-time.After(10 * time.Second):
		t.Fatal("no pass within 10s")
	}
}

func metadata(t *testing.T, job *millracetype.JobRow) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(job.Metadata, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestScheduler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	now := time.Now().UTC()
	due := db.InsertJob(t, &driver.JobInsertFullParams{State: millracetype.JobStateScheduled, ScheduledAt: ptr(now.Add(-time.Minute)), Queue: "q1"})
	retry := db.InsertJob(t, &driver.JobInsertFullParams{State: millracetype.JobStateRetryable, ScheduledAt: ptr(now.Add(-time.Second)), Queue: "q2"})
	soon := db.InsertJob(t, &driver.JobInsertFullParams{State: millracetype.JobStateScheduled, ScheduledAt: ptr(now.Add(2 * time.Second)), Queue: "q3"})
	later := db.InsertJob(t, &driver.JobInsertFullParams{State: millracetype.JobStateScheduled, ScheduledAt: ptr(now.Add(time.Hour))})
	key := []byte("0123456789abcdef0123456789abcdef")
	mask := millracetype.UniqueStatesMask(millracetype.JobStateAvailable, millracetype.JobStatePending, millracetype.JobStateRunning)
	db.InsertJob(t, &driver.JobInsertFullParams{State: millracetype.JobStateAvailable, UniqueKey: key, UniqueStates: mask})
	conflict := db.InsertJob(t, &driver.JobInsertFullParams{State: millracetype.JobStateRetryable, ScheduledAt: ptr(now.Add(-time.Second)),
		UniqueKey: key, UniqueStates: mask})

	// Listen to insert notifications to see the queues woken.
	listener, err := db.Driver.GetListener(db.Schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := listener.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if err := listener.Listen(ctx, driver.TopicInsert); err != nil {
		t.Fatal(err)
	}

	passes := make(chan struct{}, 1)
	s, err := NewScheduler(db.Exec(), &SchedulerConfig{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	s.passes = passes
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-passes

	for _, j := range []*millracetype.JobRow{due, retry, soon} {
		if got := db.Job(t, j.ID); got.State != millracetype.JobStateAvailable || !got.ScheduledAt.Equal(j.ScheduledAt) {
			t.Errorf("job %d (queue %s): state %s scheduled %s", j.ID, j.Queue, got.State, got.ScheduledAt)
		}
	}
	if got := db.Job(t, later.ID); got.State != millracetype.JobStateScheduled {
		t.Errorf("job due in an hour became %s", got.State)
	}
	got := db.Job(t, conflict.ID)
	if got.State != millracetype.JobStateDiscarded || metadata(t, got)["unique_key_conflict"] != "scheduler_discarded" || got.FinalizedAt == nil {
		t.Errorf("conflicting job: state %s metadata %s", got.State, got.Metadata)
	}
	// q1 and q2 at once, q3 when due (about 2 s later); the conflict's
	// queue is not woken for it.
	woken := map[string]time.Time{}
	for len(woken) < 3 {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("woken so far %v: %v", woken, err)
		}
		var p struct{ Queue string }
		if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
			t.Fatal(err)
		}
		// River's payload byte for byte (a space after the colon), as
		// driver.InsertNotifyPayload builds it for every other insert
		// notification.
		if want := `{"queue": "` + p.Queue + `"}`; n.Payload != want || n.Payload != driver.InsertNotifyPayload(p.Queue) {
			t.Errorf("insert notification payload %q, want %q (River's form, driver.InsertNotifyPayload)", n.Payload, want)
		}
		woken[p.Queue] = time.Now()
	}
	if woken["q3"].Before(soon.ScheduledAt.Add(-50 * time.Millisecond)) {
		t.Errorf("q3 woken at %s, before its job is due at %s", woken["q3"], soon.ScheduledAt)
	}
	s.Stop()
}

type fakeTimeouts map[string]time.Duration

func (f fakeTimeouts) lookup(job *millracetype.JobRow) (time.Duration, bool) {
	d, ok := f[job.Kind]
	return d, ok
}

func TestRescuer(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	now := time.Now().UTC()
	stuckAt := ptr(now.Add(-2 * time.Hour))
	running := func(kind string, attempt, maxAttempts int, metadata string) *millracetype.JobRow {
		return db.InsertJob(t, &driver.JobInsertFullParams{Kind: kind, State: millracetype.JobStateRunning, Attempt: attempt,
			MaxAttempts: maxAttempts, AttemptedAt: stuckAt, Metadata: []byte(metadata)})
	}
	plain := running("known", 1, 5, `{"river:rescue_count": 2}`)
	outOfAttempts := running("known", 5, 5, `{}`)
	cancelAsked := running("known", 1, 5, `{"cancel_attempted_at": "2026-01-01T00:00:00.123456789Z"}`)
	unknownKind := running("stranger", 1, 5, `{}`)
	// Out of attempts, but of a kind another service works: that service
	// decides, not this leader.
	unknownOutOfAttempts := running("stranger", 5, 5, `{}`)
	unknownCancelAsked := running("stranger", 1, 5, `{"cancel_attempted_at": "2026-01-01T00:00:00.123456789Z"}`)
	noTimeout := running("forever", 1, 5, `{}`)
	longTimeout := running("slow", 1, 5, `{}`)
	recent := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "known", State: millracetype.JobStateRunning, Attempt: 1,
		AttemptedAt: ptr(now.Add(-time.Minute))})

	passes := make(chan struct{}, 1)
	r, err := NewRescuer(db.Exec(), &RescuerConfig{Schema: db.Schema,
		WorkerTimeout: fakeTimeouts{"known": 0, "forever": -1, "slow": 3 * time.Hour}.lookup})
	if err != nil {
		t.Fatal(err)
	}
	r.passes = passes
	onePass(t, r, passes)

	check := func(job *millracetype.JobRow, state millracetype.JobState, rescues float64) *millracetype.JobRow {
		t.Helper()
		got := db.Job(t, job.ID)
		if got.State != state {
			t.Errorf("job %d (%s): state %s, want %s", job.ID, job.Kind, got.State, state)
		}
		if state != millracetype.JobStateRunning {
			last := got.Errors[len(got.Errors)-1]
			if last.Error != RescueErrorMessage || last.Attempt != job.Attempt || last.Trace != "" {
				t.Errorf("job %d: error %+v", job.ID, last)
			}
			if metadata(t, got)["river:rescue_count"] != rescues {
				t.Errorf("job %d: rescue count %v, want %v", job.ID, metadata(t, got)["river:rescue_count"], rescues)
			}
		}
		return got
	}
	p := check(plain, millracetype.JobStateRetryable, 3)
	if !p.ScheduledAt.After(now) || p.FinalizedAt != nil {
		t.Errorf("retryable rescued job: scheduled %s finalized %v", p.ScheduledAt, p.FinalizedAt)
	}
	check(outOfAttempts, millracetype.JobStateDiscarded, 1)
	check(cancelAsked, millracetype.JobStateCancelled, 1)
	check(unknownKind, millracetype.JobStateRetryable, 1) // never discarded: another client may work it
	u := check(unknownOutOfAttempts, millracetype.JobStateRetryable, 1)
	if !u.ScheduledAt.After(now) || u.FinalizedAt != nil {
		t.Errorf("unknown kind out of attempts: scheduled %s finalized %v, want a retry time and no finalization", u.ScheduledAt, u.FinalizedAt)
	}
	check(unknownCancelAsked, millracetype.JobStateCancelled, 1) // the caller asked for it
	check(noTimeout, millracetype.JobStateRunning, 0)
	check(longTimeout, millracetype.JobStateRunning, 0)
	check(recent, millracetype.JobStateRunning, 0)
}

func TestCleaner(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	now := time.Now().UTC()
	final := func(state millracetype.JobState, age time.Duration) *millracetype.JobRow {
		return db.InsertJob(t, &driver.JobInsertFullParams{State: state, FinalizedAt: ptr(now.Add(-age))})
	}
	oldCompleted := final(millracetype.JobStateCompleted, 25*time.Hour)
	newCompleted := final(millracetype.JobStateCompleted, time.Hour)
	oldCancelled := final(millracetype.JobStateCancelled, 25*time.Hour)
	oldDiscarded := final(millracetype.JobStateDiscarded, 8*24*time.Hour)
	youngDiscarded := final(millracetype.JobStateDiscarded, 2*24*time.Hour)
	available := db.InsertJob(t, &driver.JobInsertFullParams{})

	passes := make(chan struct{}, 1)
	c, err := NewCleaner(db.Exec(), &CleanerConfig{Schema: db.Schema, CancelledJobRetention: -1, Batch: 1})
	if err != nil {
		t.Fatal(err)
	}
	c.passes = passes
	onePass(t, c, passes)
	exists := func(j *millracetype.JobRow) bool {
		_, err := db.Exec().JobGetByID(context.Background(), &driver.JobGetByIDParams{Schema: db.Schema, ID: j.ID})
		return err == nil
	}
	for _, tc := range []struct {
		job  *millracetype.JobRow
		kept bool
	}{{oldCompleted, false}, {newCompleted, true}, {oldCancelled, true}, {oldDiscarded, false}, {youngDiscarded, true}, {available, true}} {
		if exists(tc.job) != tc.kept {
			t.Errorf("job %d (%s, finalized %v): kept=%v, want %v", tc.job.ID, tc.job.State, tc.job.FinalizedAt, !tc.kept, tc.kept)
		}
	}
	if _, err := NewCleaner(db.Exec(), &CleanerConfig{DiscardedJobRetention: -2}); err == nil || !strings.Contains(err.Error(), "discarded") {
		t.Errorf("retention -2: %v", err)
	}
}

func TestQueueCleaner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	old := time.Now().Add(-48 * time.Hour)
	for _, q := range []struct {
		name string
		at   *time.Time
	}{{"stale", &old}, {"fresh", nil}} {
		if _, err := db.Exec().QueueCreateOrSetUpdatedAt(ctx, &driver.QueueCreateParams{Schema: db.Schema, Name: q.name, Now: q.at}); err != nil {
			t.Fatal(err)
		}
	}
	passes := make(chan struct{}, 1)
	q, err := NewQueueCleaner(db.Exec(), &QueueCleanerConfig{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	q.passes = passes
	onePass(t, q, passes)
	qs, err := db.Exec().QueueList(ctx, &driver.QueueListParams{Schema: db.Schema, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 || qs[0].Name != "fresh" {
		t.Fatalf("queues left: %+v", qs)
	}
}

type fakeLeader struct {
	mu  sync.Mutex
	fns []func(bool)
}

func (f *fakeLeader) Subscribe(fn func(bool)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fns = append(f.fns, fn)
	return func() {}
}

func (f *fakeLeader) set(lead bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fn := range f.fns {
		fn(lead)
	}
}

func TestMaintainerFollowsLeadership(t *testing.T) {
	t.Parallel()
	var running atomic.Int64
	newService := func() startstop.Service {
		return startstop.StartStopFunc(func(ctx context.Context, shouldStart bool, started, stopped func()) error {
			if !shouldStart {
				return nil
			}
			running.Add(1)
			go func() {
				defer stopped()
				started()
				<-ctx.Done()
				running.Add(-1)
			}()
			return nil
		})
	}
	leader := &fakeLeader{}
	m, err := NewMaintainer(leader, nil, newService(), newService())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	leader.set(true)
	waitFor("services started", func() bool { return running.Load() == 2 && m.Running() })
	leader.set(false)
	waitFor("services stopped", func() bool { return running.Load() == 0 && !m.Running() })
	leader.set(true)
	waitFor("services restarted", func() bool { return running.Load() == 2 })
	m.Stop()
	if running.Load() != 0 || m.Running() {
		t.Fatalf("after Stop: %d services running", running.Load())
	}
}

// TestPeriodicEnqueuersNeverDoubleInsert runs two enqueuers at once (as
// around a leader change) on the same job: every run is inserted once,
// thanks to the run's unique key.
func TestPeriodicEnqueuersNeverDoubleInsert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	const period = 200 * time.Millisecond
	job := &PeriodicJob{
		Next: func(t time.Time) time.Time { return t.Truncate(period).Add(period) },
		Construct: func(runAt time.Time) (*driver.JobInsertParams, error) {
			return &driver.JobInsertParams{Args: []byte(`{}`), Kind: "tick", MaxAttempts: 25, Priority: 1, Queue: "default",
				State: millracetype.JobStateAvailable, ScheduledAt: &runAt,
				UniqueKey: []byte(runAt.UTC().Format(time.RFC3339Nano)), UniqueStates: 0xF5}, nil
		},
	}
	var inserted, duplicates atomic.Int64
	count := func(res []*driver.JobInsertResult) {
		for _, r := range res {
			if r.UniqueSkippedAsDuplicate {
				duplicates.Add(1)
			} else {
				inserted.Add(1)
			}
		}
	}
	var enqueuers []*PeriodicJobEnqueuer
	for range 2 {
		e, err := NewPeriodicJobEnqueuer(db.Exec(), &PeriodicJobEnqueuerConfig{Schema: db.Schema})
		if err != nil {
			t.Fatal(err)
		}
		e.inserted = count
		e.Add(job)
		// A job whose constructor fails is skipped without stopping the rest.
		e.Add(&PeriodicJob{Next: job.Next, Construct: func(time.Time) (*driver.JobInsertParams, error) { panic("broken") }})
		if err := e.Start(ctx); err != nil {
			t.Fatal(err)
		}
		enqueuers = append(enqueuers, e)
	}
	deadline := time.Now().Add(10 * time.Second)
	for inserted.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d runs inserted", inserted.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, e := range enqueuers {
		e.Stop()
	}
	var rows, distinct int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT scheduled_at) FROM "+db.Schema+".river_job").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != distinct || int64(rows) != inserted.Load() {
		t.Fatalf("%d rows for %d distinct runs (%d inserted, %d duplicates)", rows, distinct, inserted.Load(), duplicates.Load())
	}
	if duplicates.Load() == 0 {
		t.Fatalf("the two enqueuers never raced on a run (%d inserted): the test proved nothing", inserted.Load())
	}
}

// TestRunNow: a service asked to run now does not wait for its interval.
func TestRunNow(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	passes := make(chan struct{}, 1)
	q, err := NewQueueCleaner(db.Exec(), &QueueCleanerConfig{Schema: db.Schema, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	q.passes = passes
	onePass(t, q, passes) // starts, first pass, stops
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer q.Stop()
	<-passes // the pass at start
	q.RunNow()
	select {
	case <-passes:
	case <-time.After(10 * time.Second):
		t.Fatal("RunNow did not run a pass")
	}
}

func TestReindexer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	// A leftover from an interrupted concurrent rebuild makes that index
	// skipped; the others are rebuilt (their relfilenode changes).
	if _, err := db.Pool.Exec(ctx, "CREATE INDEX river_job_kind_ccnew ON "+db.Schema+".river_job (kind)"); err != nil {
		t.Fatal(err)
	}
	filenode := func(index string) int64 {
		var n int64
		if err := db.Pool.QueryRow(ctx, "SELECT relfilenode::bigint FROM pg_class WHERE oid = ($1)::regclass", db.Schema+"."+index).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := map[string]int64{}
	for _, idx := range ReindexerIndexes {
		before[idx] = filenode(idx)
	}
	passes := make(chan struct{}, 1)
	r, err := NewReindexer(db.Exec(), &ReindexerConfig{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	r.passes = passes
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	r.RunNow()
	select {
	case <-passes:
	case <-time.After(30 * time.Second):
		t.Fatal("no reindex pass")
	}
	for _, idx := range ReindexerIndexes {
		rebuilt := filenode(idx) != before[idx]
		if rebuilt == (idx == "river_job_kind") {
			t.Errorf("index %s rebuilt=%v", idx, rebuilt)
		}
	}
}

func TestSequencer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	var ids []int64
	for range 2 {
		j := db.InsertJob(t, &driver.JobInsertFullParams{Queue: "q", State: millracetype.JobStatePending})
		ids = append(ids, j.ID)
	}
	var app []driver.SequenceJob
	for _, id := range ids {
		app = append(app, driver.SequenceJob{Queue: "q", Key: "k", ID: id})
	}
	if _, err := db.Exec().SequenceAppend(ctx, &driver.SequenceAppendParams{Schema: db.Schema, Jobs: app}); err != nil {
		t.Fatal(err)
	}
	// The head is deleted behind the completer's back.
	if _, err := db.Exec().JobDelete(ctx, &driver.JobDeleteParams{Schema: db.Schema, ID: ids[0]}); err != nil {
		t.Fatal(err)
	}
	passes := make(chan struct{}, 1)
	s, err := NewSequencer(db.Exec(), &SequencerConfig{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	s.passes = passes
	onePass(t, s, passes)
	j, err := db.Exec().JobGetByID(ctx, &driver.JobGetByIDParams{Schema: db.Schema, ID: ids[1]})
	if err != nil {
		t.Fatal(err)
	}
	if j.State != millracetype.JobStateAvailable {
		t.Fatalf("next job of the sequence is %s after a pass, want available", j.State)
	}
	if _, err := NewSequencer(db.Exec(), &SequencerConfig{Interval: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("interval -1: %v", err)
	}
}
