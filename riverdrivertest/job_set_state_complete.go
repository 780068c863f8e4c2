package riverdrivertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// testJobSetStateCompletions checks batches whose every outcome is a plain
// completion (no error, metadata, snooze or delete), the outcome of nearly
// every job of a busy queue, which a driver may write by a statement of
// their own: judged row by row exactly as in a mixed batch, with Applied
// exact.
func (s *suite[TTx]) testJobSetStateCompletions(t *testing.T) {
	completed := func(id int64, attempt int) *driver.JobSetState {
		return &driver.JobSetState{ID: id, State: millracetype.JobStateCompleted, FinalizedAt: ptr(now()), Attempt: attempt}
	}

	s.run(t, "CompletionsAlone", func(t *testing.T, e *env[TTx]) {
		for _, noRows := range []bool{true, false} {
			t.Run(fmt.Sprintf("NoRows=%v", noRows), func(t *testing.T) {
				ours := e.insertFull(t, running(now()))
				anyAttempt := e.insertFull(t, running(now())) // outcome with attempt 0
				withCancel := running(now())
				withCancel.Metadata = []byte(`{"cancel_attempted_at":"2026-01-01T00:00:00Z"}`)
				cancelAttempted := e.insertFull(t, withCancel)
				// Rescued and fetched again (attempt 2), rescued (back to
				// retryable), discarded by the rescuer, and never run, while
				// their outcomes waited.
				again := running(now())
				again.Attempt = 2
				retried := e.insertFull(t, again)
				rescued := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRetryable, Attempt: 1,
					AttemptedAt: ptr(now()), AttemptedBy: []string{"client_a"}})
				discarded := e.insertFull(t, finalized(millracetype.JobStateDiscarded, now().Add(-time.Minute)))
				available := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateAvailable})

				outcomes := []*driver.JobSetState{completed(ours.ID, 1), completed(anyAttempt.ID, 0), completed(cancelAttempted.ID, 1),
					completed(retried.ID, 1), completed(rescued.ID, 1), completed(discarded.ID, 1), completed(available.ID, 0)}
				applied := -2
				rows, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema,
					Jobs: outcomes, NoRows: noRows, Applied: &applied})
				requireNoError(t, err, "JobSetStateIfRunningMany")
				requireEqual(t, applied, 3, "Applied")
				for i, was := range []*millracetype.JobRow{ours, anyAttempt, cancelAttempted} {
					got := e.getJob(t, was.ID)
					requireEqual(t, got.State, millracetype.JobStateCompleted, fmt.Sprintf("state of job %d", was.ID))
					requireTimePtr(t, got.FinalizedAt, *outcomes[i].FinalizedAt, fmt.Sprintf("finalized_at of job %d", was.ID))
					requireEqual(t, got.Attempt, was.Attempt, fmt.Sprintf("attempt of job %d", was.ID))
					requireEqual(t, string(got.Metadata), string(was.Metadata), fmt.Sprintf("metadata of job %d", was.ID))
					requireEqual(t, len(got.Errors), 0, fmt.Sprintf("errors of job %d", was.ID))
					requireTime(t, got.ScheduledAt, was.ScheduledAt, fmt.Sprintf("scheduled_at of job %d", was.ID))
				}
				requireSameJob(t, e.getJob(t, retried.ID), retried, "job run again meanwhile")
				requireSameJob(t, e.getJob(t, rescued.ID), rescued, "job rescued meanwhile")
				requireSameJob(t, e.getJob(t, discarded.ID), discarded, "job discarded meanwhile")
				requireSameJob(t, e.getJob(t, available.ID), available, "job never run")
				if noRows {
					requireEqual(t, len(rows), 0, "rows returned with NoRows")
					return
				}
				requireEqual(t, len(rows), 3, "rows returned")
				for _, r := range rows {
					requireSameJob(t, r, e.getJob(t, r.ID), "returned row")
				}
			})
		}
	})

	// A row locked by another transaction is judged as it is once that
	// transaction ends: rescued meanwhile (committed), it is left as the
	// rescue left it; if the rescue rolls back, it is still ours and
	// completed.
	for _, commit := range []bool{true, false} {
		name := "CompletionRescuedWhileWaitingRolledBack"
		if commit {
			name = "CompletionRescuedWhileWaitingCommitted"
		}
		s.run(t, name, func(t *testing.T, e *env[TTx]) {
			e.requireRowLocks(t)
			job := e.insertFull(t, running(now().Add(-time.Hour)))
			rows := e.setStateWhileRescued(t, job, completed(job.ID, 1), `UPDATE "`+e.name+`".river_job`, commit)
			got := e.getJob(t, job.ID)
			if commit {
				requireEqual(t, len(rows), 0, "rows returned for a row that moved on")
				requireEqual(t, got.State, millracetype.JobStateRetryable, "state of the row rescued meanwhile")
				requireEqual(t, got.FinalizedAt == nil, true, "finalized_at of the row rescued meanwhile is NULL")
				return
			}
			requireEqual(t, len(rows), 1, "rows returned")
			requireEqual(t, got.State, millracetype.JobStateCompleted, "state of the row")
			requireSameJob(t, rows[0], got, "returned row")
		})
	}
}
