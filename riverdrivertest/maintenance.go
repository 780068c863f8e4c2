package riverdrivertest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// schedule runs JobSchedule and indexes its results by job id.
func (e *env[TTx]) schedule(t *testing.T, p driver.JobScheduleParams) map[int64]*driver.JobScheduleResult {
	t.Helper()
	p.Schema = e.schema
	res, err := e.exec.JobSchedule(e.ctx, &p)
	requireNoError(t, err, "JobSchedule")
	out := map[int64]*driver.JobScheduleResult{}
	for _, r := range res {
		if _, dup := out[r.Job.ID]; dup {
			t.Fatalf("JobSchedule returned job %d twice", r.Job.ID)
		}
		out[r.Job.ID] = r
		requireSameJob(t, e.getJob(t, r.Job.ID), r.Job, "stored row against the row JobSchedule returned")
	}
	return out
}

// resultIDs lists the ids of schedule results, ascending.
func resultIDs(res map[int64]*driver.JobScheduleResult) []int64 {
	ids := make([]int64, 0, len(res))
	for id := range res {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (s *suite[TTx]) testJobSchedule(t *testing.T) {
	s.run(t, "MovesDueJobs", func(t *testing.T, e *env[TTx]) {
		base := now()
		at := func(d time.Duration) *time.Time { return ptr(base.Add(d)) }
		scheduled := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateScheduled, ScheduledAt: at(-time.Minute)})
		retryable := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRetryable, ScheduledAt: at(-2 * time.Minute),
			Attempt: 1, Errors: []millracetype.AttemptError{{At: base, Attempt: 1, Error: "e"}}})
		soon := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateScheduled, ScheduledAt: at(2 * time.Second)})
		untouched := []*millracetype.JobRow{
			e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateScheduled, ScheduledAt: at(time.Hour)}),
			e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRetryable, ScheduledAt: at(time.Minute)}),
			e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStatePending, ScheduledAt: at(-time.Hour)}),
			e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateAvailable, ScheduledAt: at(-time.Hour), Queue: "other_q"}),
			e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRunning, ScheduledAt: at(-time.Hour), Attempt: 1, AttemptedAt: at(-time.Minute)}),
			e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateCompleted, ScheduledAt: at(-time.Hour), FinalizedAt: at(-time.Minute)}),
		}

		res := e.schedule(t, driver.JobScheduleParams{Max: 100, Now: base, Horizon: base.Add(5 * time.Second)})
		requireEqual(t, resultIDs(res), sortedIDs([]int64{scheduled.ID, retryable.ID, soon.ID}), "scheduled jobs")
		for _, was := range []*millracetype.JobRow{scheduled, retryable, soon} {
			r := res[was.ID]
			if r.ConflictDiscarded {
				t.Fatalf("job %d flagged as a conflict", was.ID)
			}
			want := *was
			want.State = millracetype.JobStateAvailable
			requireSameJob(t, r.Job, &want, "scheduled job (only its state changes)")
		}
		for _, u := range untouched {
			requireSameJob(t, e.getJob(t, u.ID), u, "job JobSchedule must leave alone")
		}
		// The job due in two seconds waits in the fetch filter.
		requireIDs(t, e.fetch(t, "default", 10), []int64{retryable.ID, scheduled.ID}, "jobs fetched right after scheduling")
		requireEqual(t, len(e.schedule(t, driver.JobScheduleParams{Max: 100, Now: base, Horizon: base.Add(5 * time.Second)})), 0,
			"jobs scheduled by a second call")
	})

	s.run(t, "UniqueConflictWithLiveJob", func(t *testing.T, e *env[TTx]) {
		base := now()
		past := base.Add(-time.Minute)
		// A retryable job whose mask leaves retryable out does not hold its
		// key, so another job took it meanwhile.
		retryableWithKey := func(key string, meta string) *millracetype.JobRow {
			return e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRetryable, ScheduledAt: &past, Attempt: 1,
				UniqueKey: uniqueKey(key), UniqueStates: minimalUniqueStates, Metadata: []byte(meta)})
		}
		conflicting := retryableWithKey("taken", `{"a":1}`)
		holder := e.insertMany(t, jobParams(func(p *driver.JobInsertParams) { p.UniqueKey, p.UniqueStates = uniqueKey("taken"), defaultUniqueStates }))[0]
		if holder.UniqueSkippedAsDuplicate {
			t.Fatal("the retryable job outside its mask held the key at insert")
		}
		free := retryableWithKey("free", `{}`)
		// A cancelled job does not hold its key under the default mask.
		freedByCancel := retryableWithKey("cancelled_holder", `{}`)
		e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateCancelled, FinalizedAt: &past,
			UniqueKey: uniqueKey("cancelled_holder"), UniqueStates: defaultUniqueStates})

		discardAt := base.Add(-time.Second)
		res := e.schedule(t, driver.JobScheduleParams{Max: 100, Now: discardAt, Horizon: base})
		requireEqual(t, resultIDs(res), []int64{conflicting.ID, free.ID, freedByCancel.ID}, "scheduled jobs")

		c := res[conflicting.ID]
		if !c.ConflictDiscarded {
			t.Fatal("job colliding with a live job not flagged ConflictDiscarded")
		}
		requireEqual(t, c.Job.State, millracetype.JobStateDiscarded, "state of the colliding job")
		requireTimePtr(t, c.Job.FinalizedAt, discardAt, "finalized_at (= Now)")
		requireJSON(t, c.Job.Metadata, map[string]any{"a": 1, "unique_key_conflict": "scheduler_discarded"}, "metadata")
		requireTime(t, c.Job.ScheduledAt, past, "scheduled_at (unchanged)")
		requireSameJob(t, e.getJob(t, holder.Job.ID), holder.Job, "the live job holding the key")

		for _, j := range []*millracetype.JobRow{free, freedByCancel} {
			r := res[j.ID]
			if r.ConflictDiscarded || r.Job.State != millracetype.JobStateAvailable {
				t.Fatalf("job %d: ConflictDiscarded %v state %s, want available", j.ID, r.ConflictDiscarded, r.Job.State)
			}
			requireJSON(t, r.Job.Metadata, map[string]any{}, "metadata of a job without conflict")
		}
	})

	s.run(t, "SameKeyWithinBatch", func(t *testing.T, e *env[TTx]) {
		base := now()
		job := func(key string, priority int, scheduledAt time.Duration) *millracetype.JobRow {
			return e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRetryable, Priority: priority,
				ScheduledAt: ptr(base.Add(scheduledAt)), Attempt: 1, UniqueKey: uniqueKey(key), UniqueStates: minimalUniqueStates})
		}
		// Inserted in the opposite order of the schedule order, so that
		// neither insertion order nor id decides.
		aSecond := job("a", 1, -time.Minute)
		aFirst := job("a", 1, -2*time.Minute)
		bSecond := job("b", 2, -time.Hour)
		bFirst := job("b", 1, -time.Minute)

		res := e.schedule(t, driver.JobScheduleParams{Max: 100, Now: base, Horizon: base})
		requireEqual(t, len(res), 4, "scheduled jobs")
		for _, first := range []*millracetype.JobRow{aFirst, bFirst} {
			r := res[first.ID]
			if r.ConflictDiscarded || r.Job.State != millracetype.JobStateAvailable {
				t.Fatalf("first job %d of its key: ConflictDiscarded %v state %s, want available", first.ID, r.ConflictDiscarded, r.Job.State)
			}
		}
		for _, second := range []*millracetype.JobRow{aSecond, bSecond} {
			r := res[second.ID]
			if !r.ConflictDiscarded || r.Job.State != millracetype.JobStateDiscarded {
				t.Fatalf("second job %d of its key: ConflictDiscarded %v state %s, want discarded", second.ID, r.ConflictDiscarded, r.Job.State)
			}
			requireTimePtr(t, r.Job.FinalizedAt, base, "finalized_at of the discarded job")
			requireJSON(t, r.Job.Metadata, map[string]any{"unique_key_conflict": "scheduler_discarded"}, "metadata of the discarded job")
		}
	})

	s.run(t, "Max", func(t *testing.T, e *env[TTx]) {
		base := now()
		job := func(priority int, scheduledAt time.Duration) *millracetype.JobRow {
			return e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateScheduled, Priority: priority,
				ScheduledAt: ptr(base.Add(scheduledAt))})
		}
		j3 := job(2, -3*time.Minute)
		j1 := job(1, -time.Minute)
		j4 := job(3, -4*time.Minute)
		j0 := job(1, -2*time.Minute)
		j2 := job(1, -time.Minute) // ties with j1 on priority and time
		order := [][]int64{{j0.ID, j1.ID}, {j2.ID, j3.ID}, {j4.ID}, {}}
		for i, want := range order {
			res := e.schedule(t, driver.JobScheduleParams{Max: 2, Now: base, Horizon: base})
			requireEqual(t, resultIDs(res), sortedIDs(want), fmt.Sprintf("jobs scheduled by call %d with Max 2", i+1))
		}
	})
}

func (s *suite[TTx]) testJobGetStuck(t *testing.T) {
	s.run(t, "Stuck", func(t *testing.T, e *env[TTx]) {
		base := now()
		horizon := base.Add(-10 * time.Minute)
		recent := e.insertFull(t, running(base.Add(-20*time.Minute)))
		older := e.insertFull(t, running(base.Add(-time.Hour))) // attempted earlier, larger id
		e.insertFull(t, running(base.Add(-5*time.Minute)))      // not stuck yet
		e.insertFull(t, running(horizon))                       // exactly at the horizon: not before it
		notRunning := &driver.JobInsertFullParams{State: millracetype.JobStateAvailable, Attempt: 1, AttemptedAt: ptr(base.Add(-time.Hour))}
		e.insertFull(t, notRunning)
		e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateCompleted, FinalizedAt: &base, AttemptedAt: ptr(base.Add(-time.Hour))})

		get := func(max int) []*millracetype.JobRow {
			jobs, err := e.exec.JobGetStuck(e.ctx, &driver.JobGetStuckParams{Schema: e.schema, StuckHorizon: horizon, Max: max})
			requireNoError(t, err, "JobGetStuck")
			return jobs
		}
		got := get(10)
		requireIDs(t, got, []int64{recent.ID, older.ID}, "stuck jobs, by id")
		requireSameJob(t, got[1], older, "stuck row")
		requireIDs(t, get(1), []int64{recent.ID}, "stuck jobs with Max 1")

		after := func(afterID int64) []*millracetype.JobRow {
			jobs, err := e.exec.JobGetStuck(e.ctx, &driver.JobGetStuckParams{Schema: e.schema, StuckHorizon: horizon,
				Max: 10, AfterID: afterID})
			requireNoError(t, err, "JobGetStuck after an id")
			return jobs
		}
		requireIDs(t, after(recent.ID), []int64{older.ID}, "stuck jobs after the first one")
		requireIDs(t, after(older.ID), nil, "stuck jobs after the last one")

		_, err := e.exec.JobGetStuck(e.ctx, &driver.JobGetStuckParams{Schema: e.schema, StuckHorizon: horizon})
		if err == nil {
			t.Fatal("JobGetStuck with Max 0 accepted")
		}
	})
}

func (s *suite[TTx]) testJobRescueMany(t *testing.T) {
	s.run(t, "Rescue", func(t *testing.T, e *env[TTx]) {
		base := now()
		stuckSince := base.Add(-2 * time.Hour)
		retry := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRunning, Attempt: 1, AttemptedAt: &stuckSince,
			Metadata: []byte(`{"k":"v"}`)})
		discard := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRunning, Attempt: 25, MaxAttempts: 25,
			AttemptedAt: &stuckSince, Metadata: []byte(`{"river:rescue_count":4}`)})
		// Finished between JobGetStuck and JobRescueMany: left alone.
		finished := e.insertFull(t, finalized(millracetype.JobStateCompleted, base))

		rescueErr := func(attempt int) millracetype.AttemptError {
			return millracetype.AttemptError{At: base, Attempt: attempt, Error: "Stuck job rescued by JobRescuer", Trace: ""}
		}
		retryAt := base.Add(-time.Second)
		n, err := e.exec.JobRescueMany(e.ctx, &driver.JobRescueManyParams{Schema: e.schema, Jobs: []*driver.JobRescue{
			{ID: retry.ID, State: millracetype.JobStateRetryable, ScheduledAt: retryAt, Error: rescueErr(1)},
			{ID: discard.ID, State: millracetype.JobStateDiscarded, ScheduledAt: discard.ScheduledAt, FinalizedAt: &base, Error: rescueErr(25)},
			{ID: finished.ID, State: millracetype.JobStateRetryable, ScheduledAt: retryAt, Error: rescueErr(1)},
		}})
		requireNoError(t, err, "JobRescueMany")
		requireEqual(t, n, 2, "rescued jobs")

		got := e.getJob(t, retry.ID)
		requireEqual(t, got.State, millracetype.JobStateRetryable, "state")
		requireTime(t, got.ScheduledAt, retryAt, "scheduled_at")
		requireNilTime(t, got.FinalizedAt, "finalized_at")
		requireEqual(t, len(got.Errors), 1, "errors")
		requireEqual(t, got.Errors[0].Error, "Stuck job rescued by JobRescuer", "error message")
		requireTime(t, got.Errors[0].At, base, "error at")
		requireJSON(t, got.Metadata, map[string]any{"k": "v", "river:rescue_count": 1}, "metadata")
		requireEqual(t, got.Attempt, 1, "attempt")

		got = e.getJob(t, discard.ID)
		requireEqual(t, got.State, millracetype.JobStateDiscarded, "state")
		requireTimePtr(t, got.FinalizedAt, base, "finalized_at")
		requireJSON(t, got.Metadata, map[string]any{"river:rescue_count": 5}, "metadata")

		requireSameJob(t, e.getJob(t, finished.ID), finished, "job no longer running")

		// The rescued job runs again, gets stuck again and is rescued a
		// second time: the count goes on.
		requireEqual(t, len(e.schedule(t, driver.JobScheduleParams{Max: 10, Now: base, Horizon: base})), 1, "jobs scheduled")
		requireIDs(t, e.fetch(t, "default", 10), []int64{retry.ID}, "jobs fetched")
		n, err = e.exec.JobRescueMany(e.ctx, &driver.JobRescueManyParams{Schema: e.schema, Jobs: []*driver.JobRescue{
			{ID: retry.ID, State: millracetype.JobStateRetryable, ScheduledAt: retryAt, Error: rescueErr(2)},
		}})
		requireNoError(t, err, "second JobRescueMany")
		requireEqual(t, n, 1, "rescued jobs")
		got = e.getJob(t, retry.ID)
		requireJSON(t, got.Metadata, map[string]any{"k": "v", "river:rescue_count": 2}, "metadata after the second rescue")
		requireEqual(t, len(got.Errors), 2, "errors after the second rescue")
		requireEqual(t, got.Errors[1].Attempt, 2, "attempt of the second error")
	})

	// A job attempted after the horizon it was found stuck with finished
	// and was fetched again meanwhile: it is not stuck.
	s.run(t, "StuckHorizon", func(t *testing.T, e *env[TTx]) {
		horizon := now().Add(-time.Hour)
		stuck := e.insertFull(t, running(horizon.Add(-time.Minute)))
		again := e.insertFull(t, running(now()))
		rescue := func(id int64) *driver.JobRescue {
			return &driver.JobRescue{ID: id, State: millracetype.JobStateRetryable, ScheduledAt: now(),
				Error: millracetype.AttemptError{At: now(), Attempt: 1, Error: "Stuck job rescued by JobRescuer"}}
		}
		n, err := e.exec.JobRescueMany(e.ctx, &driver.JobRescueManyParams{Schema: e.schema, StuckHorizon: &horizon,
			Jobs: []*driver.JobRescue{rescue(stuck.ID), rescue(again.ID)}})
		requireNoError(t, err, "JobRescueMany")
		requireEqual(t, n, 1, "rescued jobs")
		requireEqual(t, e.getJob(t, stuck.ID).State, millracetype.JobStateRetryable, "state of the stuck job")
		requireSameJob(t, e.getJob(t, again.ID), again, "job attempted after the horizon")
	})

	// Metadata written by hand may hold anything under river:rescue_count:
	// the batch is still rescued.
	s.run(t, "OddRescueCount", func(t *testing.T, e *env[TTx]) {
		var jobs []*driver.JobRescue
		for _, meta := range []string{`{"river:rescue_count":"x"}`, `{"river:rescue_count":[1]}`, `{"river:rescue_count":1}`} {
			p := running(now().Add(-time.Hour))
			p.Metadata = []byte(meta)
			job := e.insertFull(t, p)
			jobs = append(jobs, &driver.JobRescue{ID: job.ID, State: millracetype.JobStateRetryable, ScheduledAt: now(),
				Error: millracetype.AttemptError{At: now(), Attempt: 1, Error: "Stuck job rescued by JobRescuer"}})
		}
		n, err := e.exec.JobRescueMany(e.ctx, &driver.JobRescueManyParams{Schema: e.schema, Jobs: jobs})
		requireNoError(t, err, "JobRescueMany with odd rescue counts")
		requireEqual(t, n, 3, "rescued jobs")
		for i, want := range []float64{1, 1, 2} {
			requireJSON(t, e.getJob(t, jobs[i].ID).Metadata, map[string]any{"river:rescue_count": want}, "metadata")
		}
	})

	s.run(t, "InvalidInput", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, running(now().Add(-time.Hour)))
		_, err := e.exec.JobRescueMany(e.ctx, &driver.JobRescueManyParams{Schema: e.schema, Jobs: []*driver.JobRescue{
			{ID: job.ID, State: millracetype.JobStateDiscarded, ScheduledAt: now(), Error: millracetype.AttemptError{At: now(), Attempt: 1, Error: "x"}},
		}})
		if err == nil {
			t.Fatal("JobRescueMany to discarded without finalized_at accepted")
		}
		requireSameJob(t, e.getJob(t, job.ID), job, "job of the refused rescue")
	})

	s.run(t, "Empty", func(t *testing.T, e *env[TTx]) {
		n, err := e.exec.JobRescueMany(e.ctx, &driver.JobRescueManyParams{Schema: e.schema})
		requireNoError(t, err, "JobRescueMany of nothing")
		requireEqual(t, n, 0, "rescued jobs")
	})
}

func (s *suite[TTx]) testJobDeleteBefore(t *testing.T) {
	deleteBefore := func(t *testing.T, e *env[TTx], p driver.JobDeleteBeforeParams) int {
		t.Helper()
		p.Schema = e.schema
		n, err := e.exec.JobDeleteBefore(e.ctx, &p)
		requireNoError(t, err, "JobDeleteBefore")
		return n
	}

	s.run(t, "Horizons", func(t *testing.T, e *env[TTx]) {
		base := now()
		ago := func(d time.Duration) time.Time { return base.Add(-d) }
		completedOld := e.insertFull(t, finalized(millracetype.JobStateCompleted, ago(2*time.Hour)))
		completedNew := e.insertFull(t, finalized(millracetype.JobStateCompleted, ago(10*time.Minute)))
		cancelledOld := e.insertFull(t, finalized(millracetype.JobStateCancelled, ago(2*time.Hour)))
		cancelledNew := e.insertFull(t, finalized(millracetype.JobStateCancelled, ago(10*time.Minute)))
		discardedOld := e.insertFull(t, finalized(millracetype.JobStateDiscarded, ago(8*24*time.Hour)))
		discardedNew := e.insertFull(t, finalized(millracetype.JobStateDiscarded, ago(2*time.Hour)))
		live := []int64{
			e.insertFull(t, &driver.JobInsertFullParams{CreatedAt: ptr(ago(30 * 24 * time.Hour))}).ID,
			e.insertFull(t, running(ago(30*24*time.Hour))).ID,
			e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRetryable, ScheduledAt: ptr(ago(30 * 24 * time.Hour))}).ID,
		}

		n := deleteBefore(t, e, driver.JobDeleteBeforeParams{
			CompletedFinalizedAtBefore: ptr(ago(time.Hour)),
			CancelledFinalizedAtBefore: ptr(ago(time.Hour)),
			DiscardedFinalizedAtBefore: ptr(ago(7 * 24 * time.Hour)),
			Max:                        100,
		})
		requireEqual(t, n, 3, "deleted jobs")
		for _, id := range []int64{completedOld.ID, cancelledOld.ID, discardedOld.ID} {
			e.requireGone(t, id)
		}
		requireIDs(t, e.allJobs(t), sortedIDs(append([]int64{completedNew.ID, cancelledNew.ID, discardedNew.ID}, live...)), "jobs left")

		// nil keeps a state whatever its age.
		n = deleteBefore(t, e, driver.JobDeleteBeforeParams{CancelledFinalizedAtBefore: &base, Max: 100})
		requireEqual(t, n, 1, "deleted jobs with only a cancelled horizon")
		e.requireGone(t, cancelledNew.ID)
		requireIDs(t, e.allJobs(t), sortedIDs(append([]int64{completedNew.ID, discardedNew.ID}, live...)), "jobs left")
		requireEqual(t, deleteBefore(t, e, driver.JobDeleteBeforeParams{Max: 100}), 0, "deleted jobs with no horizon")
	})

	s.run(t, "Max", func(t *testing.T, e *env[TTx]) {
		base := now()
		var ids []int64
		for i := range 5 {
			// Newer ids finalized earlier: the order is by id, not by age.
			ids = append(ids, e.insertFull(t, finalized(millracetype.JobStateCompleted, base.Add(-time.Duration(i+1)*time.Hour))).ID)
		}
		p := driver.JobDeleteBeforeParams{CompletedFinalizedAtBefore: &base, Max: 2}
		requireEqual(t, deleteBefore(t, e, p), 2, "deleted by the first call")
		requireIDs(t, e.allJobs(t), ids[2:], "jobs left (lowest ids deleted first)")
		requireEqual(t, deleteBefore(t, e, p), 2, "deleted by the second call")
		requireEqual(t, deleteBefore(t, e, p), 1, "deleted by the third call")
		requireEqual(t, deleteBefore(t, e, p), 0, "deleted by the fourth call")
	})
}

// testPendingListClean: a driver.PendingListCleaner merges the pending
// lists its inserts grew, reports how many pages, and finds them empty
// the next time; the empty schema resolves through the search_path.
func (s *suite[TTx]) testPendingListClean(t *testing.T) {
	grow := func(t *testing.T, e *env[TTx]) {
		t.Helper()
		jobs := make([]*driver.JobInsertParams, 1000)
		for i := range jobs {
			jobs[i] = &driver.JobInsertParams{Args: []byte(`{"n": 1}`), Kind: "k", MaxAttempts: 25, Priority: 1,
				Queue: "default", State: millracetype.JobStateAvailable, Metadata: []byte(`{"m": 1}`)}
		}
		e.insertMany(t, jobs...)
	}
	clean := func(t *testing.T, e *env[TTx], schema string) *driver.PendingListCleanResult {
		t.Helper()
		pl, ok := e.exec.(driver.PendingListCleaner)
		if !ok {
			t.Skipf("driver's executor (%T) is not a driver.PendingListCleaner (no GIN indexes)", e.exec)
		}
		res, err := pl.PendingListClean(e.ctx, &driver.PendingListCleanParams{Schema: schema})
		requireNoError(t, err, "PendingListClean")
		if res.LimitBytes <= 0 {
			t.Fatalf("PendingListClean: limit %d B, want the session's gin_pending_list_limit", res.LimitBytes)
		}
		return res
	}
	s.run(t, "MergesAndEmpties", func(t *testing.T, e *env[TTx]) {
		clean(t, e, e.schema)
		grow(t, e)
		if res := clean(t, e, e.schema); res.Pages <= 0 {
			t.Fatalf("PendingListClean after 1,000 inserts merged %d pages, want some", res.Pages)
		}
		if res := clean(t, e, e.schema); res.Pages != 0 {
			t.Fatalf("PendingListClean right after another merged %d pages, want 0", res.Pages)
		}
	})
	s.run(t, "EmptySchema", func(t *testing.T, e *env[TTx]) {
		clean(t, e, "")
		grow(t, e)
		if res := clean(t, e, ""); res.Pages <= 0 {
			t.Fatalf("PendingListClean(\"\") after 1,000 inserts merged %d pages, want some (the search_path's schema)", res.Pages)
		}
	})
	s.run(t, "MissingIndexes", func(t *testing.T, e *env[TTx]) {
		if res := clean(t, e, e.schema+"_none"); res.Pages != 0 {
			t.Fatalf("PendingListClean of a schema without the indexes merged %d pages, want 0", res.Pages)
		}
	})
}
