package riverdrivertest

import (
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

func (s *suite[TTx]) testJobUpdate(t *testing.T) {
	s.run(t, "MetadataMergedTopLevel", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateCompleted, Attempt: 1,
			FinalizedAt: ptr(now()), Metadata: []byte(`{"a":1,"b":{"c":1},"keep":true}`)})
		got, err := e.exec.JobUpdate(e.ctx, &driver.JobUpdateParams{Schema: e.schema, ID: job.ID,
			MetadataMerge: []byte(`{"b":{"d":2},"n":null,"output":[1,2]}`)})
		requireNoError(t, err, "JobUpdate")
		want := map[string]any{"a": 1, "b": map[string]any{"d": 2}, "keep": true, "n": nil, "output": []int{1, 2}}
		requireJSON(t, got.Metadata, want, "returned metadata")
		stored := e.getJob(t, job.ID)
		requireSameJob(t, got, stored, "returned row against the stored row")
		// Nothing but the metadata changes.
		stored.Metadata, job.Metadata = nil, nil
		requireSameJob(t, stored, job, "the rest of the row")
	})

	s.run(t, "NilMergeChangesNothing", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, &driver.JobInsertFullParams{Metadata: []byte(`{"a":1}`)})
		got, err := e.exec.JobUpdate(e.ctx, &driver.JobUpdateParams{Schema: e.schema, ID: job.ID})
		requireNoError(t, err, "JobUpdate without changes")
		requireSameJob(t, got, job, "row")
	})

	s.run(t, "NotFound", func(t *testing.T, e *env[TTx]) {
		_, err := e.exec.JobUpdate(e.ctx, &driver.JobUpdateParams{Schema: e.schema, ID: 424242, MetadataMerge: []byte(`{"a":1}`)})
		requireErrorIs(t, err, millracetype.ErrNotFound, "JobUpdate of a missing job")
		_, err = e.exec.JobUpdate(e.ctx, &driver.JobUpdateParams{Schema: e.schema, ID: 424242, RunningAttempt: 1})
		requireErrorIs(t, err, millracetype.ErrNotFound, "JobUpdate with RunningAttempt of a missing job")
	})

	s.run(t, "RunningAttemptGuard", func(t *testing.T, e *env[TTx]) {
		at := now().Add(-time.Minute)
		run := e.insertFull(t, running(at)) // attempt 1
		got, err := e.exec.JobUpdate(e.ctx, &driver.JobUpdateParams{Schema: e.schema, ID: run.ID, RunningAttempt: 1,
			MetadataMerge: []byte(`{"step":"one"}`)})
		requireNoError(t, err, "JobUpdate of the running attempt")
		requireJSON(t, got.Metadata, map[string]any{"step": "one"}, "metadata")

		// Another attempt, or a job no longer running: nothing written.
		_, err = e.exec.JobUpdate(e.ctx, &driver.JobUpdateParams{Schema: e.schema, ID: run.ID, RunningAttempt: 2,
			MetadataMerge: []byte(`{"step":"two"}`)})
		requireErrorIs(t, err, millracetype.ErrJobNotRunning, "JobUpdate of another attempt")
		done := e.insertFull(t, finalized(millracetype.JobStateCompleted, at))
		_, err = e.exec.JobUpdate(e.ctx, &driver.JobUpdateParams{Schema: e.schema, ID: done.ID, RunningAttempt: 1,
			MetadataMerge: []byte(`{"step":"two"}`)})
		requireErrorIs(t, err, millracetype.ErrJobNotRunning, "JobUpdate of a completed job")
		requireJSON(t, e.getJob(t, run.ID).Metadata, map[string]any{"step": "one"}, "metadata after refused updates")
		requireJSON(t, e.getJob(t, done.ID).Metadata, map[string]any{}, "completed job's metadata")
	})

	s.run(t, "StoredMetadataNotAnObject", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, &driver.JobInsertFullParams{Metadata: []byte(`[1,2]`)})
		_, err := e.exec.JobUpdate(e.ctx, &driver.JobUpdateParams{Schema: e.schema, ID: job.ID, MetadataMerge: []byte(`{"a":1}`)})
		if err == nil {
			t.Fatal("JobUpdate merged into metadata that is not an object")
		}
		requireJSON(t, e.getJob(t, job.ID).Metadata, []int{1, 2}, "metadata left as it was")
	})

	s.run(t, "InsideTransaction", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, &driver.JobInsertFullParams{})
		for _, commit := range []bool{false, true} {
			tx, err := e.exec.Begin(e.ctx)
			requireNoError(t, err, "Begin")
			_, err = tx.JobUpdate(e.ctx, &driver.JobUpdateParams{Schema: e.schema, ID: job.ID, MetadataMerge: []byte(`{"tx":true}`)})
			requireNoError(t, err, "JobUpdate in a transaction")
			if commit {
				requireNoError(t, tx.Commit(e.ctx), "Commit")
				requireJSON(t, e.getJob(t, job.ID).Metadata, map[string]any{"tx": true}, "metadata after commit")
			} else {
				requireNoError(t, tx.Rollback(e.ctx), "Rollback")
				requireJSON(t, e.getJob(t, job.ID).Metadata, map[string]any{}, "metadata after rollback")
			}
		}
	})
}

// testJobSetStateOnlyIfRunning checks JobSetState.OnlyIfRunning: the
// outcome applies to a row still running its attempt, and touches nothing
// (not even the metadata) of a row that moved on.
func (s *suite[TTx]) testJobSetStateOnlyIfRunning(t *testing.T) {
	s.run(t, "OnlyIfRunning", func(t *testing.T, e *env[TTx]) {
		at := now().Add(-time.Minute)
		stillRunning := e.insertFull(t, running(at))
		otherAttempt := e.insertFull(t, running(at))
		e.rawExec(t, e.sql(`UPDATE `+e.table("river_job")+` SET attempt = 2 WHERE id = $1::bigint`,
			`UPDATE `+e.table("river_job")+` SET attempt = 2 WHERE id = ?`), otherAttempt.ID)
		otherAttempt = e.getJob(t, otherAttempt.ID)
		completed := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateCompleted, Attempt: 1,
			FinalizedAt: &at, Metadata: []byte(`{"done":"in tx"}`)})
		// A plain late outcome for comparison: it merges its metadata.
		plain := e.insertFull(t, finalized(millracetype.JobStateCompleted, at))
		// A plain late outcome of an attempt the row has moved past (it
		// was rescued and runs again): nothing at all.
		plainOtherAttempt := e.insertFull(t, running(at))
		e.rawExec(t, e.sql(`UPDATE `+e.table("river_job")+` SET attempt = 2 WHERE id = $1::bigint`,
			`UPDATE `+e.table("river_job")+` SET attempt = 2 WHERE id = ?`), plainOtherAttempt.ID)
		plainOtherAttempt = e.getJob(t, plainOtherAttempt.ID)

		outcome := func(id int64, only bool) *driver.JobSetState {
			return &driver.JobSetState{ID: id, State: millracetype.JobStateRetryable, ScheduledAt: ptr(now().Add(time.Hour)),
				Error:           &millracetype.AttemptError{At: at, Attempt: 1, Error: "late"},
				MetadataUpdates: []byte(`{"output":"late"}`), Attempt: 1, OnlyIfRunning: only}
		}
		changed, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema,
			Jobs: []*driver.JobSetState{outcome(stillRunning.ID, true), outcome(otherAttempt.ID, true),
				outcome(completed.ID, true), outcome(plain.ID, false), outcome(plainOtherAttempt.ID, false)}})
		requireNoError(t, err, "JobSetStateIfRunningMany")
		requireEqual(t, sortedIDs(jobIDs(changed)), sortedIDs([]int64{stillRunning.ID, plain.ID}), "changed rows")

		got := e.getJob(t, stillRunning.ID)
		requireEqual(t, got.State, millracetype.JobStateRetryable, "state of the running job")
		requireEqual(t, len(got.Errors), 1, "errors of the running job")
		requireJSON(t, got.Metadata, map[string]any{"output": "late"}, "metadata of the running job")
		requireSameJob(t, e.getJob(t, otherAttempt.ID), otherAttempt, "a row running another attempt")
		requireSameJob(t, e.getJob(t, completed.ID), completed, "a row completed meanwhile")
		requireJSON(t, e.getJob(t, plain.ID).Metadata, map[string]any{"output": "late"}, "metadata of the plain late outcome")
		requireSameJob(t, e.getJob(t, plainOtherAttempt.ID), plainOtherAttempt, "a row running another attempt, after a plain late outcome")
	})
}

// testJobMarkRunning checks the test harness's fetch of a chosen job.
func (s *suite[TTx]) testJobMarkRunning(t *testing.T) {
	s.run(t, "MarksAsAFetchWould", func(t *testing.T, e *env[TTx]) {
		for _, state := range []millracetype.JobState{millracetype.JobStateAvailable, millracetype.JobStateScheduled,
			millracetype.JobStateRetryable, millracetype.JobStateCompleted} {
			p := inState(state, now().Add(-time.Minute))
			p.AttemptedBy = []string{"before"}
			job := e.insertFull(t, p)
			got, err := e.exec.JobMarkRunning(e.ctx, &driver.JobMarkRunningParams{Schema: e.schema, ID: job.ID, ClientID: "harness"})
			requireNoError(t, err, "JobMarkRunning of a "+string(state)+" job")
			want := *job
			want.State = millracetype.JobStateRunning
			want.Attempt = job.Attempt + 1
			want.AttemptedBy = []string{"before", "harness"}
			want.AttemptedAt = got.AttemptedAt
			want.FinalizedAt = nil
			requireBetween(t, *got.AttemptedAt, now().Add(-time.Minute), now().Add(time.Minute), "attempted_at (the database's now())")
			requireSameJob(t, got, &want, "the job marked running")
			requireSameJob(t, e.getJob(t, job.ID), got, "the stored row against the returned one")
		}
	})
	s.run(t, "RunningOrMissing", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, running(now()))
		_, err := e.exec.JobMarkRunning(e.ctx, &driver.JobMarkRunningParams{Schema: e.schema, ID: job.ID, ClientID: "harness"})
		requireErrorIs(t, err, millracetype.ErrJobRunning, "JobMarkRunning of a running job")
		requireSameJob(t, e.getJob(t, job.ID), job, "the running job after the refusal")
		_, err = e.exec.JobMarkRunning(e.ctx, &driver.JobMarkRunningParams{Schema: e.schema, ID: job.ID + 1000, ClientID: "harness"})
		requireErrorIs(t, err, millracetype.ErrNotFound, "JobMarkRunning of a missing job")
		_, err = e.exec.JobMarkRunning(e.ctx, &driver.JobMarkRunningParams{Schema: e.schema, ID: job.ID})
		if err == nil {
			t.Fatal("JobMarkRunning without a client ID: no error")
		}
	})
}
