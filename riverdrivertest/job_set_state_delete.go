package riverdrivertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// testJobSetStateEphemeral checks outcomes that delete their rows
// (JobSetState.Delete) beyond the outcomes table: bad input, unique keys,
// big mixed batches and rows that change while the statement waits.
func (s *suite[TTx]) testJobSetStateEphemeral(t *testing.T) {
	completedDelete := func(id int64) *driver.JobSetState {
		return &driver.JobSetState{ID: id, State: millracetype.JobStateCompleted, FinalizedAt: ptr(now()), Attempt: 1, Delete: true}
	}

	s.run(t, "EphemeralInvalid", func(t *testing.T, e *env[TTx]) {
		for _, state := range []millracetype.JobState{millracetype.JobStateAvailable, millracetype.JobStateRetryable,
			millracetype.JobStateScheduled, millracetype.JobStateDiscarded, millracetype.JobStateCancelled} {
			t.Run(string(state), func(t *testing.T) {
				good := e.insertFull(t, running(now()))
				bad := e.insertFull(t, running(now()))
				o := &driver.JobSetState{ID: bad.ID, State: state, Delete: true, ScheduledAt: ptr(now())}
				if state.Finalized() {
					o.ScheduledAt, o.FinalizedAt = nil, ptr(now())
				}
				_, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema,
					Jobs: []*driver.JobSetState{completedDelete(good.ID), o}})
				if err == nil {
					t.Fatalf("Delete with state %s accepted", state)
				}
				requireSameJob(t, e.getJob(t, bad.ID), bad, "job of the invalid outcome")
				requireSameJob(t, e.getJob(t, good.ID), good, "job of the valid outcome in the refused call")
			})
		}
	})

	// A completed unique job holds its key (completed is among the default
	// unique states); a deleted one frees it at once.
	s.run(t, "EphemeralFreesUniqueKey", func(t *testing.T, e *env[TTx]) {
		unique := func(key string) *driver.JobInsertParams {
			return jobParams(func(p *driver.JobInsertParams) {
				p.UniqueKey, p.UniqueStates = []byte(key), defaultUniqueStates
			})
		}
		for _, del := range []bool{false, true} {
			key := fmt.Sprintf("unique-key-delete-%v", del)
			first := e.insertMany(t, unique(key))[0].Job
			fetched := e.fetch(t, "default", 1)
			requireIDs(t, fetched, []int64{first.ID}, "fetched")
			o := completedDelete(first.ID)
			o.Delete = del
			_, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema,
				Jobs: []*driver.JobSetState{o}, NoRows: true})
			requireNoError(t, err, "JobSetStateIfRunningMany")
			again := e.insertMany(t, unique(key))[0]
			requireEqual(t, again.UniqueSkippedAsDuplicate, !del, fmt.Sprintf("duplicate of a job completed with Delete=%v", del))
			if del {
				e.requireGone(t, first.ID)
				if again.Job.ID == first.ID {
					t.Fatal("the new job has the deleted job's id")
				}
			} else {
				requireEqual(t, again.Job.ID, first.ID, "the duplicate's existing job")
			}
			// Leave the queue empty for the next round.
			_, err = e.exec.JobDelete(e.ctx, &driver.JobDeleteParams{Schema: e.schema, ID: again.Job.ID})
			requireNoError(t, err, "JobDelete")
		}
	})

	// A batch as big as the completer's (2000), mixing deletes, plain
	// completions and failures, rows returned and not.
	s.run(t, "EphemeralLargeMixedBatch", func(t *testing.T, e *env[TTx]) {
		for _, noRows := range []bool{false, true} {
			const n = 2000
			jobs := make([]*driver.JobInsertParams, n)
			for i := range jobs {
				jobs[i] = jobParams()
			}
			e.insertMany(t, jobs...)
			fetched := e.fetch(t, "default", n)
			requireEqual(t, len(fetched), n, "fetched")
			outcomes := make([]*driver.JobSetState, n)
			wantState := map[int64]millracetype.JobState{}
			for i, job := range fetched {
				switch i % 3 {
				case 0:
					outcomes[i] = completedDelete(job.ID)
					wantState[job.ID] = ""
				case 1:
					outcomes[i] = &driver.JobSetState{ID: job.ID, State: millracetype.JobStateCompleted, FinalizedAt: ptr(now()), Attempt: 1}
					wantState[job.ID] = millracetype.JobStateCompleted
				default:
					outcomes[i] = &driver.JobSetState{ID: job.ID, State: millracetype.JobStateRetryable, ScheduledAt: ptr(now().Add(time.Hour)),
						Error: &millracetype.AttemptError{At: now(), Attempt: 1, Error: "boom"}, Attempt: 1}
					wantState[job.ID] = millracetype.JobStateRetryable
				}
			}
			rows, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema,
				Jobs: outcomes, NoRows: noRows})
			requireNoError(t, err, "JobSetStateIfRunningMany")
			if noRows {
				requireEqual(t, len(rows), 0, "rows returned with NoRows")
			} else {
				requireEqual(t, len(rows), n, "rows returned")
				for _, r := range rows {
					want := wantState[r.ID]
					if want == "" {
						want = millracetype.JobStateCompleted
					}
					requireEqual(t, r.State, want, fmt.Sprintf("returned state of job %d", r.ID))
				}
			}
			left := map[int64]millracetype.JobState{}
			for _, j := range e.allJobs(t) {
				left[j.ID] = j.State
			}
			for id, want := range wantState {
				got, ok := left[id]
				if want == "" {
					if ok {
						t.Fatalf("job %d: %s, want deleted", id, got)
					}
					continue
				}
				requireEqual(t, got, want, fmt.Sprintf("state of job %d", id))
			}
			// Clear the schema for the next round.
			e.rawExec(t, `DELETE FROM `+e.table("river_job"))
		}
	})

	// Every outcome of a batch deletes its row: the rows still ours go,
	// the others stay as they are, and Applied counts exactly, rows
	// returned or not.
	s.run(t, "EphemeralAllDeletes", func(t *testing.T, e *env[TTx]) {
		for _, noRows := range []bool{true, false} {
			t.Run(fmt.Sprintf("NoRows=%v", noRows), func(t *testing.T) {
				ours := e.insertFull(t, running(now()))
				oursMeta := e.insertFull(t, running(now()))
				// Rescued and fetched again (attempt 2), and rescued (back
				// to retryable), while their outcomes waited.
				again := running(now())
				again.Attempt = 2
				retried := e.insertFull(t, again)
				rescued := e.insertFull(t, &driver.JobInsertFullParams{State: millracetype.JobStateRetryable, Attempt: 1,
					AttemptedAt: ptr(now()), AttemptedBy: []string{"client_a"}})

				meta := completedDelete(oursMeta.ID)
				meta.MetadataUpdates, meta.OnlyIfRunning = []byte(`{"output":"done"}`), true
				lateMeta := completedDelete(rescued.ID)
				lateMeta.MetadataUpdates, lateMeta.OnlyIfRunning = []byte(`{"output":"late"}`), true
				applied := -2
				rows, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema,
					Jobs:   []*driver.JobSetState{completedDelete(ours.ID), meta, completedDelete(retried.ID), lateMeta},
					NoRows: noRows, Applied: &applied})
				requireNoError(t, err, "JobSetStateIfRunningMany")
				requireEqual(t, applied, 2, "Applied")
				e.requireGone(t, ours.ID)
				e.requireGone(t, oursMeta.ID)
				requireSameJob(t, e.getJob(t, retried.ID), retried, "job run again meanwhile")
				requireSameJob(t, e.getJob(t, rescued.ID), rescued, "job rescued meanwhile")
				if noRows {
					requireEqual(t, len(rows), 0, "rows returned with NoRows")
					return
				}
				requireEqual(t, len(rows), 2, "rows returned")
				for _, r := range rows {
					requireEqual(t, r.State, millracetype.JobStateCompleted, fmt.Sprintf("returned state of job %d", r.ID))
					if r.ID == oursMeta.ID {
						requireJSON(t, r.Metadata, map[string]any{"output": "done"}, "returned metadata")
					}
				}
			})
		}
	})

	// A row locked by another transaction is judged as it is once that
	// transaction ends: rescued meanwhile (committed), it is kept and
	// treated as any row that moved on; if the rescue rolls back, it is
	// still ours and deleted. With metadata updates to merge into a row
	// that moved on, a batch of deletes is written by the mixed
	// statement; without, by the DELETE alone.
	for _, tc := range []struct {
		commit, metadata bool
	}{{true, true}, {false, true}, {true, false}, {false, false}} {
		commit := tc.commit
		name := "EphemeralRescuedWhileWaitingRolledBack"
		if commit {
			name = "EphemeralRescuedWhileWaitingCommitted"
		}
		if !tc.metadata {
			name += "NoMetadata"
		}
		s.run(t, name, func(t *testing.T, e *env[TTx]) {
			e.requireRowLocks(t)
			job := e.insertFull(t, running(now().Add(-time.Hour)))
			o := completedDelete(job.ID)
			if tc.metadata {
				o.MetadataUpdates = []byte(`{"output":"late"}`)
			}
			rows := e.setStateWhileRescued(t, job, o, `DELETE FROM "`+e.name+`".river_job`, commit)
			if commit && !tc.metadata {
				// Nothing to merge into the row that moved on: it is
				// left exactly as the rescue left it.
				requireEqual(t, len(rows), 0, "rows returned for a row that moved on")
				got := e.getJob(t, job.ID)
				requireEqual(t, got.State, millracetype.JobStateRetryable, "state of the row rescued meanwhile")
				requireEqual(t, string(got.Metadata), string(job.Metadata), "metadata of the row rescued meanwhile")
				return
			}
			requireEqual(t, len(rows), 1, "rows returned")
			if !commit {
				e.requireGone(t, job.ID)
				requireEqual(t, rows[0].State, millracetype.JobStateCompleted, "state of the returned row")
				return
			}
			got := e.getJob(t, job.ID)
			requireEqual(t, got.State, millracetype.JobStateRetryable, "state of the row rescued meanwhile")
			requireJSON(t, got.Metadata, map[string]any{"output": "late"}, "metadata of the row rescued meanwhile")
			requireSameJob(t, rows[0], got, "returned row")
		})
	}
}
