package riverdrivertest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

const clientID = "client_test"

// fetch calls JobGetAvailable on the env's pool.
func (e *env[TTx]) fetch(t *testing.T, queue string, max int) []*millracetype.JobRow {
	t.Helper()
	jobs, err := e.exec.JobGetAvailable(e.ctx, &driver.JobGetAvailableParams{Schema: e.schema, Queue: queue, Max: max, ClientID: clientID})
	requireNoError(t, err, "JobGetAvailable")
	return jobs
}

func (s *suite[TTx]) testJobGetAvailable(t *testing.T) {
	s.run(t, "OrderAndChanges", func(t *testing.T, e *env[TTx]) {
		base := now()
		at := func(d time.Duration) *time.Time { return ptr(base.Add(d)) }
		job := func(priority int, scheduledAt *time.Time, mod func(p *driver.JobInsertFullParams)) *millracetype.JobRow {
			p := &driver.JobInsertFullParams{Queue: "q", Priority: priority, ScheduledAt: scheduledAt, State: millracetype.JobStateAvailable}
			if mod != nil {
				mod(p)
			}
			return e.insertFull(t, p)
		}
		a := job(2, at(-10*time.Minute), func(p *driver.JobInsertFullParams) {
			// A job that ran before (its earlier attempt was snoozed away or
			// retried): attempt and attempted_by continue.
			p.Attempt, p.AttemptedBy = 2, []string{"old_client"}
			p.Args = []byte(`{"keep":"me"}`)
			p.Metadata = []byte(`{"m":1}`)
		})
		b := job(1, at(-5*time.Minute), nil)
		c := job(1, at(-10*time.Minute), nil)
		d := job(1, at(-10*time.Minute), nil) // ties with c: id decides
		ee := job(3, at(-20*time.Minute), nil)
		// None of these may be fetched.
		untouched := []*millracetype.JobRow{
			job(1, at(-time.Hour), func(p *driver.JobInsertFullParams) { p.Queue = "other_q" }),
			job(1, at(time.Hour), nil), // not due
			job(1, at(-time.Hour), func(p *driver.JobInsertFullParams) { p.State = millracetype.JobStateScheduled }),
			job(1, at(-time.Hour), func(p *driver.JobInsertFullParams) { p.State = millracetype.JobStateRetryable }),
			job(1, at(-time.Hour), func(p *driver.JobInsertFullParams) { p.State = millracetype.JobStatePending }),
			e.insertFull(t, &driver.JobInsertFullParams{Queue: "q", ScheduledAt: at(-time.Hour), State: millracetype.JobStateRunning,
				Attempt: 1, AttemptedAt: at(-time.Minute)}),
			e.insertFull(t, &driver.JobInsertFullParams{Queue: "q", ScheduledAt: at(-time.Hour), State: millracetype.JobStateCompleted,
				FinalizedAt: at(-time.Minute)}),
		}

		before := now()
		// Max picks the first jobs in that order, not the first ids.
		got := e.fetch(t, "q", 2)
		got = append(got, e.fetch(t, "q", 10)...)
		after := now()
		want := []*millracetype.JobRow{c, d, b, a, ee}
		requireIDs(t, got, jobIDs(want), "fetched jobs in order priority, scheduled_at, id")
		for i, j := range got {
			w := want[i]
			requireEqual(t, j.State, millracetype.JobStateRunning, "state")
			requireEqual(t, j.Attempt, w.Attempt+1, "attempt")
			if j.AttemptedAt == nil {
				t.Fatal("attempted_at not set")
			}
			requireBetween(t, *j.AttemptedAt, before, after, "attempted_at")
			requireEqual(t, j.AttemptedBy, append(slices.Clone(w.AttemptedBy), clientID), "attempted_by")
			// Nothing else changes.
			expect := *w
			expect.State, expect.Attempt, expect.AttemptedAt, expect.AttemptedBy = j.State, j.Attempt, j.AttemptedAt, j.AttemptedBy
			requireSameJob(t, j, &expect, "fetched row")
			requireSameJob(t, e.getJob(t, j.ID), j, "stored row")
		}
		requireEqual(t, len(e.fetch(t, "q", 10)), 0, "jobs fetched by a second call")
		for _, u := range untouched {
			requireSameJob(t, e.getJob(t, u.ID), u, "job that must not be fetched")
		}
	})

	s.run(t, "Max", func(t *testing.T, e *env[TTx]) {
		var ids []int64
		for range 5 {
			ids = append(ids, e.insertFull(t, &driver.JobInsertFullParams{}).ID)
		}
		requireIDs(t, e.fetch(t, "default", 2), ids[:2], "first fetch of 2")
		requireIDs(t, e.fetch(t, "default", 2), ids[2:4], "second fetch of 2")
		requireIDs(t, e.fetch(t, "default", 2), ids[4:], "third fetch of 2")
	})

	// With Kinds, only jobs of those kinds are fetched; the others are left
	// untouched for clients that work them.
	s.run(t, "Kinds", func(t *testing.T, e *env[TTx]) {
		other := e.insertFull(t, &driver.JobInsertFullParams{Kind: "kind_other"})
		mine := e.insertFull(t, &driver.JobInsertFullParams{Kind: "kind_mine"})
		also := e.insertFull(t, &driver.JobInsertFullParams{Kind: "kind_also"})
		jobs, err := e.exec.JobGetAvailable(e.ctx, &driver.JobGetAvailableParams{Schema: e.schema, Queue: "default", Max: 10,
			ClientID: clientID, Kinds: []string{"kind_mine", "kind_also"}})
		requireNoError(t, err, "JobGetAvailable with kinds")
		requireIDs(t, jobs, []int64{mine.ID, also.ID}, "jobs fetched")
		requireSameJob(t, e.getJob(t, other.ID), other, "job of another kind")
		requireIDs(t, e.fetch(t, "default", 10), []int64{other.ID}, "jobs fetched without kinds")
	})

	s.run(t, "After", func(t *testing.T, e *env[TTx]) {
		base := now()
		at := func(d time.Duration) *time.Time { return ptr(base.Add(d)) }
		job := func(priority int, scheduledAt *time.Time) *millracetype.JobRow {
			return e.insertFull(t, &driver.JobInsertFullParams{Priority: priority, ScheduledAt: scheduledAt})
		}
		// In fetch order: a, b and c tie on priority and scheduled_at.
		a := job(1, at(-3*time.Minute))
		b := job(1, at(-2*time.Minute))
		c := job(1, at(-2*time.Minute))
		d := job(1, at(-time.Minute))
		f := job(2, at(-time.Hour))
		after := func(j *millracetype.JobRow) []*millracetype.JobRow {
			jobs, err := e.exec.JobGetAvailable(e.ctx, &driver.JobGetAvailableParams{Schema: e.schema, Queue: "default", Max: 2,
				ClientID: clientID, After: &driver.JobFetchKey{Priority: j.Priority, ScheduledAt: j.ScheduledAt, ID: j.ID}})
			requireNoError(t, err, "JobGetAvailable after a key")
			return jobs
		}
		// After b: c (same priority and time, larger id), then d; a is
		// ahead of the key and stays available.
		requireIDs(t, after(b), []int64{c.ID, d.ID}, "jobs after b")
		requireIDs(t, after(b), []int64{f.ID}, "jobs after b once c and d run (priority 2 comes after)")
		requireIDs(t, after(f), nil, "jobs after the last")
		requireIDs(t, e.fetch(t, "default", 10), []int64{a.ID, b.ID}, "a full fetch takes what is ahead of the key")
	})

	s.run(t, "Now", func(t *testing.T, e *env[TTx]) {
		later := now().Add(time.Hour)
		job := e.insertFull(t, &driver.JobInsertFullParams{ScheduledAt: &later})
		requireEqual(t, len(e.fetch(t, "default", 10)), 0, "jobs fetched before they are due")
		fetchAt := later.Add(time.Minute)
		got, err := e.exec.JobGetAvailable(e.ctx, &driver.JobGetAvailableParams{
			Schema: e.schema, Queue: "default", Max: 10, ClientID: clientID, Now: &fetchAt,
		})
		requireNoError(t, err, "JobGetAvailable with Now")
		requireIDs(t, got, []int64{job.ID}, "jobs fetched with a later Now")
		requireTimePtr(t, got[0].AttemptedAt, fetchAt, "attempted_at (= Now)")
	})

	s.run(t, "AttemptedByKeepsLast100", func(t *testing.T, e *env[TTx]) {
		clients := func(from, to int) []string {
			var out []string
			for i := from; i < to; i++ {
				out = append(out, fmt.Sprintf("c%d", i))
			}
			return out
		}
		cases := []struct {
			had  int
			want []string
		}{
			{0, []string{clientID}},
			{99, append(clients(0, 99), clientID)},
			{100, append(clients(1, 100), clientID)},
			{150, append(clients(51, 150), clientID)},
		}
		for i, c := range cases {
			queue := fmt.Sprintf("q_%d", i)
			e.insertFull(t, &driver.JobInsertFullParams{Queue: queue, AttemptedBy: clients(0, c.had)})
			got := e.fetch(t, queue, 1)
			requireEqual(t, len(got), 1, "fetched jobs")
			requireEqual(t, got[0].AttemptedBy, c.want, fmt.Sprintf("attempted_by after a fetch of a job run by %d clients", c.had))
		}
	})

	s.run(t, "SkipsLockedRows", func(t *testing.T, e *env[TTx]) {
		e.requireRowLocks(t)
		var ids []int64
		for range 4 {
			ids = append(ids, e.insertFull(t, &driver.JobInsertFullParams{}).ID)
		}
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(e.ctx) }()
		held, err := tx.JobGetAvailable(e.ctx, &driver.JobGetAvailableParams{Schema: e.schema, Queue: "default", Max: 2, ClientID: "holder"})
		requireNoError(t, err, "JobGetAvailable in a transaction")
		requireIDs(t, held, ids[:2], "jobs fetched in the open transaction")
		// The pool skips the rows the transaction holds instead of waiting.
		requireIDs(t, e.fetch(t, "default", 10), ids[2:], "jobs fetched beside the open transaction")
		requireNoError(t, tx.Rollback(e.ctx), "Rollback")
		requireIDs(t, e.fetch(t, "default", 10), ids[:2], "jobs fetched after the rollback")
	})

	s.run(t, "Concurrent", func(t *testing.T, e *env[TTx]) {
		const total, workers, batch = 500, 5, 7
		jobs := make([]*driver.JobInsertParams, total)
		for i := range jobs {
			jobs[i] = jobParams()
		}
		n, err := e.exec.JobInsertCopy(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: jobs})
		requireNoError(t, err, "JobInsertCopy")
		requireEqual(t, n, total, "inserted")

		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			fetched = map[int64]string{}
			errs    []error
		)
		start := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := fmt.Sprintf("worker_%d", w)
				<-start
				for {
					got, err := e.exec.JobGetAvailable(e.ctx, &driver.JobGetAvailableParams{Schema: e.schema, Queue: "default", Max: batch, ClientID: client})
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
						mu.Unlock()
						return
					}
					for _, j := range got {
						if prev, dup := fetched[j.ID]; dup {
							errs = append(errs, fmt.Errorf("job %d fetched by %s and again by %s", j.ID, prev, client))
						}
						fetched[j.ID] = client
						if j.State != millracetype.JobStateRunning || j.Attempt != 1 || !slices.Equal(j.AttemptedBy, []string{client}) {
							errs = append(errs, fmt.Errorf("job %d fetched as state %s attempt %d attempted_by %v", j.ID, j.State, j.Attempt, j.AttemptedBy))
						}
					}
					mu.Unlock()
					// Empty means every remaining available job is taken or
					// being taken by another worker.
					if len(got) == 0 {
						return
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
		requireEqual(t, len(fetched), total, "distinct jobs fetched by all workers")
		for _, j := range e.allJobs(t) {
			if j.State != millracetype.JobStateRunning || fetched[j.ID] == "" {
				t.Fatalf("job %d: state %s, fetched by %q: every job must be fetched exactly once", j.ID, j.State, fetched[j.ID])
			}
		}
	})
}

func (s *suite[TTx]) testJobSetStateIfRunningMany(t *testing.T) {
	// The outcomes table, reading the changed rows back and (NoRows) not:
	// the rows written must be the same. Each also runs with ephemeral
	// outcomes (Delete) added to the batch, which takes another statement.
	for _, noRows := range []bool{false, true} {
		name := "Outcomes"
		if noRows {
			name = "OutcomesNoRows"
		}
		s.testJobSetStateOutcomes(t, name, noRows, false)
		s.testJobSetStateOutcomes(t, name+"Ephemeral", noRows, true)
	}
	s.testJobSetStateIfRunningManyMore(t)
	s.testJobSetStateEphemeral(t)   // job_set_state_delete.go
	s.testJobSetStateCompletions(t) // job_set_state_complete.go
}

// testJobSetStateOutcomes writes every kind of outcome in one call and
// checks each row; ephemeral adds outcomes that delete their rows.
func (s *suite[TTx]) testJobSetStateOutcomes(t *testing.T, name string, noRows, ephemeral bool) {
	s.run(t, name, func(t *testing.T, e *env[TTx]) {
		base := now()
		startedAt := base.Add(-time.Minute)
		finalizedAt := base.Add(-time.Second)
		later := base.Add(10 * time.Minute)
		soon := base.Add(2 * time.Second)
		cancelAttemptedAt := base.Add(-30 * time.Second).Format(time.RFC3339Nano)
		attemptErr := &millracetype.AttemptError{At: startedAt, Attempt: 1, Error: "boom", Trace: "trace"}

		withMeta := func(p *driver.JobInsertFullParams, meta string) *driver.JobInsertFullParams {
			p.Metadata = []byte(meta)
			return p
		}
		cancelled := `{"cancel_attempted_at":"` + cancelAttemptedAt + `","other":"kept"}`

		type check struct {
			state       millracetype.JobState
			finalizedAt *time.Time // nil: NULL
			finalNow    bool       // finalized_at is the database's now()
			scheduledAt *time.Time // nil: unchanged
			attempt     int
			errors      int
			metadata    map[string]any
			unreturned  bool // not changed, so not returned
			// deleted: the row is gone (an ephemeral completion), and
			// returned as completed with the fields above.
			deleted bool
		}
		cases := []struct {
			name    string
			initial *driver.JobInsertFullParams
			outcome driver.JobSetState
			want    check
		}{
			{"Completed", running(startedAt),
				driver.JobSetState{State: millracetype.JobStateCompleted, FinalizedAt: &finalizedAt},
				check{state: millracetype.JobStateCompleted, finalizedAt: &finalizedAt, attempt: 1, metadata: map[string]any{}}},
			{"Retryable", running(startedAt),
				driver.JobSetState{State: millracetype.JobStateRetryable, ScheduledAt: &later, Error: attemptErr},
				check{state: millracetype.JobStateRetryable, scheduledAt: &later, attempt: 1, errors: 1, metadata: map[string]any{}}},
			{"AvailableSoon", running(startedAt),
				driver.JobSetState{State: millracetype.JobStateAvailable, ScheduledAt: &soon, Error: attemptErr},
				check{state: millracetype.JobStateAvailable, scheduledAt: &soon, attempt: 1, errors: 1, metadata: map[string]any{}}},
			{"SnoozeScheduled", withMeta(running(startedAt), `{"snoozes":2,"keep":"x"}`),
				driver.JobSetState{State: millracetype.JobStateScheduled, ScheduledAt: &later, AttemptDecrement: true, SnoozeIncrement: true},
				check{state: millracetype.JobStateScheduled, scheduledAt: &later, attempt: 0, metadata: map[string]any{"snoozes": 3, "keep": "x"}}},
			{"SnoozeAvailable", running(startedAt),
				driver.JobSetState{State: millracetype.JobStateAvailable, ScheduledAt: &soon, AttemptDecrement: true, SnoozeIncrement: true},
				check{state: millracetype.JobStateAvailable, scheduledAt: &soon, attempt: 0, metadata: map[string]any{"snoozes": 1}}},
			{"SoftStop", running(startedAt),
				driver.JobSetState{State: millracetype.JobStateAvailable, ScheduledAt: &base, AttemptDecrement: true},
				check{state: millracetype.JobStateAvailable, scheduledAt: &base, attempt: 0, metadata: map[string]any{}}},
			{"Discarded", running(startedAt),
				driver.JobSetState{State: millracetype.JobStateDiscarded, FinalizedAt: &finalizedAt, Error: attemptErr},
				check{state: millracetype.JobStateDiscarded, finalizedAt: &finalizedAt, attempt: 1, errors: 1, metadata: map[string]any{}}},
			{"Cancelled", running(startedAt),
				driver.JobSetState{State: millracetype.JobStateCancelled, FinalizedAt: &finalizedAt,
					Error: &millracetype.AttemptError{At: startedAt, Attempt: 1, Error: "JobCancelError: stop"}},
				check{state: millracetype.JobStateCancelled, finalizedAt: &finalizedAt, attempt: 1, errors: 1, metadata: map[string]any{}}},
			{"MetadataMergedTopLevel", withMeta(running(startedAt), `{"a":1,"b":{"c":1}}`),
				driver.JobSetState{State: millracetype.JobStateCompleted, FinalizedAt: &finalizedAt,
					MetadataUpdates: []byte(`{"b":{"d":2},"output":{"r":1}}`)},
				check{state: millracetype.JobStateCompleted, finalizedAt: &finalizedAt, attempt: 1,
					metadata: map[string]any{"a": 1, "b": map[string]any{"d": 2}, "output": map[string]any{"r": 1}}}},
			// Discarded by the rescuer while it still ran: the late success
			// only adds its output.
			{"NotRunningMetadataStillMerged", withMeta(finalized(millracetype.JobStateDiscarded, startedAt), `{"a":1}`),
				driver.JobSetState{State: millracetype.JobStateCompleted, FinalizedAt: &finalizedAt, MetadataUpdates: []byte(`{"output":"late"}`)},
				check{state: millracetype.JobStateDiscarded, finalizedAt: &startedAt, attempt: 1, metadata: map[string]any{"a": 1, "output": "late"}}},
			// Made retryable by the rescuer: a late failure records nothing
			// but its metadata.
			{"NotRunningRescuedErrorNotRecorded", withMeta(&driver.JobInsertFullParams{State: millracetype.JobStateRetryable, Attempt: 1}, `{}`),
				driver.JobSetState{State: millracetype.JobStateDiscarded, FinalizedAt: &finalizedAt, Error: attemptErr, MetadataUpdates: []byte(`{"output":1}`)},
				check{state: millracetype.JobStateRetryable, attempt: 1, metadata: map[string]any{"output": 1}}},
			{"NotRunningScheduledAtKept", withMeta(&driver.JobInsertFullParams{State: millracetype.JobStateAvailable, Attempt: 1}, `{}`),
				driver.JobSetState{State: millracetype.JobStateScheduled, ScheduledAt: &later, AttemptDecrement: true, SnoozeIncrement: true,
					MetadataUpdates: []byte(`{"output":2}`)},
				check{state: millracetype.JobStateAvailable, attempt: 1, metadata: map[string]any{"output": 2}}},
			{"NotRunningUntouched", &driver.JobInsertFullParams{State: millracetype.JobStateAvailable},
				driver.JobSetState{State: millracetype.JobStateCompleted, FinalizedAt: &finalizedAt},
				check{state: millracetype.JobStateAvailable, attempt: 0, metadata: map[string]any{}, unreturned: true}},
			{"CancelAttemptedRetryable", withMeta(running(startedAt), cancelled),
				driver.JobSetState{State: millracetype.JobStateRetryable, ScheduledAt: &later, Error: attemptErr},
				check{state: millracetype.JobStateCancelled, finalNow: true, attempt: 1, errors: 1,
					metadata: map[string]any{"cancel_attempted_at": cancelAttemptedAt, "other": "kept"}}},
			{"CancelAttemptedAvailableSoon", withMeta(running(startedAt), cancelled),
				driver.JobSetState{State: millracetype.JobStateAvailable, ScheduledAt: &soon, Error: attemptErr},
				check{state: millracetype.JobStateCancelled, finalNow: true, attempt: 1, errors: 1,
					metadata: map[string]any{"cancel_attempted_at": cancelAttemptedAt, "other": "kept"}}},
			{"CancelAttemptedSnooze", withMeta(running(startedAt), cancelled),
				driver.JobSetState{State: millracetype.JobStateScheduled, ScheduledAt: &later, AttemptDecrement: true, SnoozeIncrement: true},
				check{state: millracetype.JobStateCancelled, finalNow: true, attempt: 1,
					metadata: map[string]any{"cancel_attempted_at": cancelAttemptedAt, "other": "kept"}}},
			{"CancelAttemptedSoftStop", withMeta(running(startedAt), cancelled),
				driver.JobSetState{State: millracetype.JobStateAvailable, ScheduledAt: &base, AttemptDecrement: true},
				check{state: millracetype.JobStateCancelled, finalNow: true, attempt: 1,
					metadata: map[string]any{"cancel_attempted_at": cancelAttemptedAt, "other": "kept"}}},
			{"CancelAttemptedCompleted", withMeta(running(startedAt), cancelled),
				driver.JobSetState{State: millracetype.JobStateCompleted, FinalizedAt: &finalizedAt},
				check{state: millracetype.JobStateCompleted, finalizedAt: &finalizedAt, attempt: 1,
					metadata: map[string]any{"cancel_attempted_at": cancelAttemptedAt, "other": "kept"}}},
			{"CancelAttemptedDiscarded", withMeta(running(startedAt), cancelled),
				driver.JobSetState{State: millracetype.JobStateDiscarded, FinalizedAt: &finalizedAt, Error: attemptErr},
				check{state: millracetype.JobStateDiscarded, finalizedAt: &finalizedAt, attempt: 1, errors: 1,
					metadata: map[string]any{"cancel_attempted_at": cancelAttemptedAt, "other": "kept"}}},
		}
		if ephemeral {
			completedDelete := func(o driver.JobSetState) driver.JobSetState {
				o.State, o.FinalizedAt, o.Delete = millracetype.JobStateCompleted, &finalizedAt, true
				return o
			}
			rescued := withMeta(running(startedAt), `{}`)
			rescued.State = millracetype.JobStateRetryable
			cases = append(cases, []struct {
				name    string
				initial *driver.JobInsertFullParams
				outcome driver.JobSetState
				want    check
			}{
				{"EphemeralCompleted", running(startedAt), completedDelete(driver.JobSetState{}),
					check{deleted: true, finalizedAt: &finalizedAt, attempt: 1, metadata: map[string]any{}}},
				{"EphemeralAttemptGiven", running(startedAt), completedDelete(driver.JobSetState{Attempt: 1}),
					check{deleted: true, finalizedAt: &finalizedAt, attempt: 1, metadata: map[string]any{}}},
				// The updates are dropped with the row, but the returned
				// row shows them merged, as the completion would have.
				{"EphemeralMetadataMerged", withMeta(running(startedAt), `{"a":1,"b":{"c":1}}`),
					completedDelete(driver.JobSetState{MetadataUpdates: []byte(`{"b":{"d":2},"output":{"r":1}}`)}),
					check{deleted: true, finalizedAt: &finalizedAt, attempt: 1,
						metadata: map[string]any{"a": 1, "b": map[string]any{"d": 2}, "output": map[string]any{"r": 1}}}},
				// A completion is written completed whatever
				// cancel_attempted_at says: so it deletes.
				{"EphemeralCancelAttempted", withMeta(running(startedAt), cancelled), completedDelete(driver.JobSetState{}),
					check{deleted: true, finalizedAt: &finalizedAt, attempt: 1,
						metadata: map[string]any{"cancel_attempted_at": cancelAttemptedAt, "other": "kept"}}},
				{"EphemeralOnlyIfRunning", running(startedAt), completedDelete(driver.JobSetState{Attempt: 1, OnlyIfRunning: true}),
					check{deleted: true, finalizedAt: &finalizedAt, attempt: 1, metadata: map[string]any{}}},
				{"EphemeralOddMetadataKept", withMeta(running(startedAt), `{"n":[1,2]}`), completedDelete(driver.JobSetState{}),
					check{deleted: true, finalizedAt: &finalizedAt, attempt: 1, metadata: map[string]any{"n": []any{1, 2}}}},
				// Rows that are not ours are never deleted: they get what
				// any late outcome gets.
				{"EphemeralOtherAttemptKept", running(startedAt),
					completedDelete(driver.JobSetState{Attempt: 2, MetadataUpdates: []byte(`{"output":"late"}`)}),
					check{state: millracetype.JobStateRunning, attempt: 1, metadata: map[string]any{}, unreturned: true}},
				{"EphemeralRescuedKept", rescued, completedDelete(driver.JobSetState{MetadataUpdates: []byte(`{"output":1}`)}),
					check{state: millracetype.JobStateRetryable, attempt: 1, metadata: map[string]any{"output": 1}}},
				{"EphemeralDiscardedKept", withMeta(finalized(millracetype.JobStateDiscarded, startedAt), `{"a":1}`),
					completedDelete(driver.JobSetState{MetadataUpdates: []byte(`{"output":"late"}`)}),
					check{state: millracetype.JobStateDiscarded, finalizedAt: &startedAt, attempt: 1, metadata: map[string]any{"a": 1, "output": "late"}}},
				{"EphemeralCancelledKept", withMeta(finalized(millracetype.JobStateCancelled, startedAt), cancelled),
					completedDelete(driver.JobSetState{}),
					check{state: millracetype.JobStateCancelled, finalizedAt: &startedAt, attempt: 1,
						metadata: map[string]any{"cancel_attempted_at": cancelAttemptedAt, "other": "kept"}, unreturned: true}},
				{"EphemeralNotRunningUntouched", &driver.JobInsertFullParams{State: millracetype.JobStateAvailable},
					completedDelete(driver.JobSetState{}),
					check{state: millracetype.JobStateAvailable, attempt: 0, metadata: map[string]any{}, unreturned: true}},
				// Completed in the worker's transaction, which committed.
				{"EphemeralOnlyIfRunningCompletedInTx", withMeta(finalized(millracetype.JobStateCompleted, startedAt), `{"done":"in tx"}`),
					completedDelete(driver.JobSetState{Attempt: 1, OnlyIfRunning: true, MetadataUpdates: []byte(`{"output":"x"}`)}),
					check{state: millracetype.JobStateCompleted, finalizedAt: &startedAt, attempt: 1,
						metadata: map[string]any{"done": "in tx"}, unreturned: true}},
			}...)
		}

		initial := make([]*millracetype.JobRow, len(cases))
		outcomes := make([]*driver.JobSetState, len(cases))
		for i, c := range cases {
			initial[i] = e.insertFull(t, c.initial)
			o := c.outcome
			o.ID = initial[i].ID
			outcomes[i] = &o
		}
		before := now()
		// All outcomes in one call.
		changed, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema, Jobs: outcomes,
			NoRows: noRows})
		after := now()
		requireNoError(t, err, "JobSetStateIfRunningMany")
		if noRows && changed != nil {
			t.Fatalf("NoRows: got %d rows back, want none", len(changed))
		}
		returned := map[int64]*millracetype.JobRow{}
		for _, j := range changed {
			returned[j.ID] = j
		}
		if len(returned) != len(changed) {
			t.Fatalf("a job returned twice among %v", jobIDs(changed))
		}

		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				was, w := initial[i], c.want
				if w.deleted {
					e.requireGone(t, was.ID)
					if noRows {
						return
					}
					r, ok := returned[was.ID]
					if !ok {
						t.Fatal("a deleted row was not returned")
					}
					// Returned as the completion would have left it.
					requireJSON(t, r.Metadata, w.metadata, "metadata of the returned row")
					want := *was
					want.State, want.FinalizedAt, want.Metadata = millracetype.JobStateCompleted, w.finalizedAt, r.Metadata
					requireSameJob(t, r, &want, "returned row of a deleted job")
					return
				}
				job := e.getJob(t, was.ID)
				if r, ok := returned[was.ID]; noRows {
					// Nothing returned to compare.
				} else if ok == w.unreturned {
					t.Fatalf("returned = %v, want %v (only changed rows are returned)", ok, !w.unreturned)
				} else if ok {
					requireSameJob(t, r, job, "returned row against the stored row")
				}
				requireEqual(t, job.State, w.state, "state")
				switch {
				case w.finalNow:
					if job.FinalizedAt == nil {
						t.Fatal("finalized_at: got nil, want now()")
					}
					requireBetween(t, *job.FinalizedAt, before, after, "finalized_at")
				case w.finalizedAt != nil:
					requireTimePtr(t, job.FinalizedAt, *w.finalizedAt, "finalized_at")
				default:
					requireNilTime(t, job.FinalizedAt, "finalized_at")
				}
				if w.scheduledAt != nil {
					requireTime(t, job.ScheduledAt, *w.scheduledAt, "scheduled_at")
				} else {
					requireTime(t, job.ScheduledAt, was.ScheduledAt, "scheduled_at (unchanged)")
				}
				requireEqual(t, job.Attempt, w.attempt, "attempt")
				requireEqual(t, len(job.Errors), w.errors, "number of errors")
				if w.errors == 1 {
					got, want := job.Errors[0], *c.outcome.Error
					if !got.At.Equal(want.At) || got.Attempt != want.Attempt || got.Error != want.Error || got.Trace != want.Trace {
						t.Fatalf("recorded error: got %+v, want %+v", got, want)
					}
				}
				requireJSON(t, job.Metadata, w.metadata, "metadata")
				// What the outcome must never touch.
				requireSameTimePtr(t, job.AttemptedAt, was.AttemptedAt, "attempted_at")
				requireEqual(t, job.AttemptedBy, was.AttemptedBy, "attempted_by")
				requireEqual(t, job.MaxAttempts, was.MaxAttempts, "max_attempts")
			})
		}
	})
}

func (s *suite[TTx]) testJobSetStateIfRunningManyMore(t *testing.T) {
	s.run(t, "ErrorStoredInRiversShape", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, running(now().Add(-time.Minute)))
		errs := []millracetype.AttemptError{
			{At: time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC), Attempt: 1, Error: "first failure", Trace: "main.f()\n\t/x.go:1\n"},
			{At: time.Date(2026, 3, 4, 5, 7, 0, 0, time.FixedZone("X", 3600)), Attempt: 2, Error: `quote " and unicode é`, Trace: ""},
		}
		for i := range errs {
			_, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema, Jobs: []*driver.JobSetState{{
				ID: job.ID, State: millracetype.JobStateRetryable, ScheduledAt: ptr(now()), Error: &errs[i],
			}}})
			requireNoError(t, err, "JobSetStateIfRunningMany")
			if i == 0 {
				// Back to running for the second attempt.
				e.rawExec(t, e.sql(`UPDATE `+e.table("river_job")+` SET state = 'running', attempt = 2 WHERE id = $1::bigint`,
					`UPDATE `+e.table("river_job")+` SET state = 'running', attempt = 2 WHERE id = ?`), job.ID)
			}
		}
		requireEqual(t, e.rawString(t, e.sql(`SELECT array_length(errors, 1) FROM `+e.table("river_job")+` WHERE id = $1::bigint`,
			`SELECT json_array_length(errors) FROM `+e.table("river_job")+` WHERE id = ?`), job.ID), "2", "stored errors")
		for i, want := range errs {
			raw := e.rawString(t, e.sql(fmt.Sprintf(`SELECT errors[%d] FROM %s WHERE id = $1::bigint`, i+1, e.table("river_job")),
				fmt.Sprintf(`SELECT errors -> %d FROM %s WHERE id = ?`, i, e.table("river_job"))), job.ID)
			requireEqual(t, e.rawString(t, e.sql(fmt.Sprintf(`SELECT jsonb_typeof(errors[%d]) FROM %s WHERE id = $1::bigint`, i+1, e.table("river_job")),
				fmt.Sprintf(`SELECT json_type(errors, '$[%d]') FROM %s WHERE id = ?`, i, e.table("river_job"))), job.ID),
				"object", "jsonb type of a stored error")
			var got map[string]any
			if err := json.Unmarshal([]byte(raw), &got); err != nil {
				t.Fatalf("stored error %d %q: %v", i, raw, err)
			}
			keys := make([]string, 0, len(got))
			for k := range got {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			requireEqual(t, keys, []string{"at", "attempt", "error", "trace"}, "keys of a stored error")
			at, ok := got["at"].(string)
			if !ok {
				t.Fatalf("stored error %d: at is %T, want an RFC 3339 string", i, got["at"])
			}
			parsed, err := time.Parse(time.RFC3339Nano, at)
			if err != nil {
				t.Fatalf("stored error %d: at %q is not RFC 3339: %v", i, at, err)
			}
			requireTime(t, parsed, want.At, "stored at (to the nanosecond)")
			requireEqual(t, got["attempt"], any(float64(want.Attempt)), "stored attempt (a JSON number)")
			requireEqual(t, got["error"], any(want.Error), "stored error message")
			requireEqual(t, got["trace"], any(want.Trace), "stored trace")
		}
	})

	s.run(t, "InvalidInput", func(t *testing.T, e *env[TTx]) {
		cases := []struct {
			name    string
			outcome driver.JobSetState
		}{
			{"FinalStateWithoutFinalizedAt", driver.JobSetState{State: millracetype.JobStateCompleted}},
			{"DiscardedWithoutFinalizedAt", driver.JobSetState{State: millracetype.JobStateDiscarded}},
			{"LiveStateWithFinalizedAt", driver.JobSetState{State: millracetype.JobStateRetryable, FinalizedAt: ptr(now()), ScheduledAt: ptr(now())}},
			{"UnknownState", driver.JobSetState{State: "exploded", FinalizedAt: ptr(now())}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				good := e.insertFull(t, running(now()))
				bad := e.insertFull(t, running(now()))
				o := c.outcome
				o.ID = bad.ID
				_, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema, Jobs: []*driver.JobSetState{
					{ID: good.ID, State: millracetype.JobStateCompleted, FinalizedAt: ptr(now())}, &o,
				}})
				if err == nil {
					t.Fatalf("invalid outcome %+v accepted", c.outcome)
				}
				requireSameJob(t, e.getJob(t, bad.ID), bad, "job of the invalid outcome")
				requireSameJob(t, e.getJob(t, good.ID), good, "job of the valid outcome in the refused call")
			})
		}
	})

	s.run(t, "Empty", func(t *testing.T, e *env[TTx]) {
		rows, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema})
		requireNoError(t, err, "JobSetStateIfRunningMany of nothing")
		requireEqual(t, len(rows), 0, "changed rows")
	})

	// An outcome that names its attempt moves the row only while it runs
	// that attempt: the late outcome of an attempt that was rescued, the
	// job fetched again since, leaves the new run alone, metadata updates
	// and all (a client presumed dead must change nothing of the new run).
	s.run(t, "AttemptFence", func(t *testing.T, e *env[TTx]) {
		p := running(now())
		p.Attempt = 2
		job := e.insertFull(t, p)
		set := func(o *driver.JobSetState) {
			t.Helper()
			o.ID = job.ID
			_, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema, Jobs: []*driver.JobSetState{o}})
			requireNoError(t, err, "JobSetStateIfRunningMany")
		}
		set(&driver.JobSetState{State: millracetype.JobStateRetryable, ScheduledAt: ptr(now()), Attempt: 1,
			Error: &millracetype.AttemptError{At: now(), Attempt: 1, Error: "late"}, AttemptDecrement: true})
		requireSameJob(t, e.getJob(t, job.ID), job, "job running attempt 2 after attempt 1's late outcome")
		set(&driver.JobSetState{State: millracetype.JobStateCompleted, FinalizedAt: ptr(now()), Attempt: 1,
			MetadataUpdates: []byte(`{"output":"late"}`)})
		requireSameJob(t, e.getJob(t, job.ID), job, "job running attempt 2 after attempt 1's late outcome with metadata updates")
		set(&driver.JobSetState{State: millracetype.JobStateCompleted, FinalizedAt: ptr(now()), Attempt: 2})
		requireEqual(t, e.getJob(t, job.ID).State, millracetype.JobStateCompleted, "state after the running attempt's outcome")

		other := e.insertFull(t, running(now()))
		_, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema, Jobs: []*driver.JobSetState{
			{ID: other.ID, State: millracetype.JobStateCompleted, FinalizedAt: ptr(now())}}})
		requireNoError(t, err, "JobSetStateIfRunningMany")
		requireEqual(t, e.getJob(t, other.ID).State, millracetype.JobStateCompleted, "state after an outcome without an attempt")
	})

	// Metadata written by hand may hold anything: the batch is still
	// written, and metadata with nothing to merge is left as it is.
	s.run(t, "OddMetadata", func(t *testing.T, e *env[TTx]) {
		var jobs []*millracetype.JobRow
		for _, meta := range []string{`{"snoozes":"many"}`, `{"snoozes":{"n":1}}`, `{"snoozes":2.7}`, `[1,2]`, `"text"`, `null`, `42`} {
			p := running(now())
			p.Metadata = []byte(meta)
			jobs = append(jobs, e.insertFull(t, p))
		}
		var outcomes []*driver.JobSetState
		for i, job := range jobs {
			if i < 3 {
				outcomes = append(outcomes, &driver.JobSetState{ID: job.ID, State: millracetype.JobStateAvailable,
					ScheduledAt: ptr(now()), AttemptDecrement: true, SnoozeIncrement: true})
			} else {
				outcomes = append(outcomes, &driver.JobSetState{ID: job.ID, State: millracetype.JobStateCompleted, FinalizedAt: ptr(now())})
			}
		}
		rows, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema, Jobs: outcomes})
		requireNoError(t, err, "JobSetStateIfRunningMany with odd metadata")
		requireEqual(t, len(rows), len(jobs), "changed rows")
		for i, want := range []string{`{"snoozes":1}`, `{"snoozes":1}`, `{"snoozes":3}`, `[1,2]`, `"text"`, `null`, `42`} {
			var w any
			if err := json.Unmarshal([]byte(want), &w); err != nil {
				t.Fatal(err)
			}
			requireJSON(t, e.getJob(t, jobs[i].ID).Metadata, w, "metadata "+want)
		}
	})
}
