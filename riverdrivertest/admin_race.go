package riverdrivertest

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// raceHolderSeq makes the application_name of each holding transaction
// unique across the suite's parallel subtests.
var raceHolderSeq atomic.Int64

// adminResult is what a single-job admin call returned.
type adminResult struct {
	job *millracetype.JobRow
	err error
}

// race makes two calls on one job race deterministically: first runs in a
// transaction left open (holding the row lock it took), second runs on the
// pool in a goroutine; once second is seen waiting for the first's
// transaction (pg_stat_activity, through pg_blocking_pids), the
// transaction commits and second's result is returned. The test waits for
// the lock wait itself, never for a fixed time.
func (e *env[TTx]) race(t *testing.T, first func(tx driver.ExecutorTx) error,
	second func(exec driver.Executor) (*millracetype.JobRow, error)) adminResult {
	t.Helper()
	e.requireRowLocks(t)
	tx, err := e.exec.Begin(e.ctx)
	requireNoError(t, err, "Begin")
	defer func() { _ = tx.Rollback(context.WithoutCancel(e.ctx)) }()
	holder := "millrace_race_" + strconv.FormatInt(time.Now().UnixNano(), 36) + "_" +
		strconv.FormatInt(raceHolderSeq.Add(1), 10)
	requireNoError(t, tx.Exec(e.ctx, "SET LOCAL application_name = '"+holder+"'"), "name the holding transaction")
	requireNoError(t, first(tx), "the first call, in the transaction")

	done := make(chan adminResult, 1)
	go func() {
		job, err := second(e.exec)
		done <- adminResult{job, err}
	}()
	e.awaitBlockedBy(t, holder, done)
	requireNoError(t, tx.Commit(e.ctx), "Commit the first call")
	select {
	case r := <-done:
		return r
	case <-e.ctx.Done():
		t.Fatalf("the second call did not return after the first committed: %v", e.ctx.Err())
		return adminResult{}
	}
}

// awaitBlockedBy waits until some backend is blocked by the backend whose
// application_name is holder. done is the blocked call's result: a call
// that returns before it ever waited fails the test (it did not see the
// lock at all).
func (e *env[TTx]) awaitBlockedBy(t *testing.T, holder string, done <-chan adminResult) {
	t.Helper()
	query := `SELECT count(*) FROM pg_stat_activity AS w, pg_stat_activity AS h
WHERE h.application_name = '` + holder + `' AND h.pid = ANY(pg_blocking_pids(w.pid))`
	for {
		if e.rawString(t, query) != "0" {
			return
		}
		select {
		case r := <-done:
			t.Fatalf("the second call returned without waiting for the first's row lock: job %v, error %v", r.job, r.err)
		case <-e.ctx.Done():
			t.Fatalf("the second call never waited for the first's row lock: %v", e.ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// requireReturnedIsStored checks that an admin call returned the row as it
// is stored now: its own effect or the winner's, never a row from before.
func (e *env[TTx]) requireReturnedIsStored(t *testing.T, r adminResult, what string) {
	t.Helper()
	if r.job == nil {
		t.Fatalf("%s: no row returned (error %v)", what, r.err)
	}
	requireSameJob(t, r.job, e.getJob(t, r.job.ID), what+": returned row against the stored row")
}

// testAdminRace makes the single-job admin calls (JobCancel, JobRetry,
// JobDelete) wait for a concurrent change of their row and checks that they
// judge and return the row as it is once they hold its lock.
func (s *suite[TTx]) testAdminRace(t *testing.T) {
	cancelAt := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	cancel := func(e *env[TTx], exec driver.Executor, id int64) (*millracetype.JobRow, error) {
		return exec.JobCancel(e.ctx, &driver.JobCancelParams{Schema: e.schema, ID: id, CancelAttemptedAt: cancelAt})
	}
	retry := func(e *env[TTx], exec driver.Executor, id int64) (*millracetype.JobRow, error) {
		return exec.JobRetry(e.ctx, &driver.JobRetryParams{Schema: e.schema, ID: id})
	}
	del := func(e *env[TTx], exec driver.Executor, id int64) (*millracetype.JobRow, error) {
		return exec.JobDelete(e.ctx, &driver.JobDeleteParams{Schema: e.schema, ID: id})
	}
	firstOf := func(e *env[TTx], call func(*env[TTx], driver.Executor, int64) (*millracetype.JobRow, error), id int64) func(driver.ExecutorTx) error {
		return func(tx driver.ExecutorTx) error {
			_, err := call(e, tx, id)
			return err
		}
	}
	secondOf := func(e *env[TTx], call func(*env[TTx], driver.Executor, int64) (*millracetype.JobRow, error), id int64) func(driver.Executor) (*millracetype.JobRow, error) {
		return func(exec driver.Executor) (*millracetype.JobRow, error) { return call(e, exec, id) }
	}

	// A due available job: a retry alone would leave it as it is. The
	// cancel wins; the retry then finds it cancelled and retries it.
	s.run(t, "CancelThenRetry", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, inState(millracetype.JobStateAvailable, now().Add(-time.Minute)))
		r := e.race(t, firstOf(e, cancel, job.ID), secondOf(e, retry, job.ID))
		requireNoError(t, r.err, "JobRetry after the cancel")
		e.requireReturnedIsStored(t, r, "JobRetry after the cancel")
		requireEqual(t, r.job.State, millracetype.JobStateAvailable, "state (the cancelled job retried)")
		requireNilTime(t, r.job.FinalizedAt, "finalized_at")
		requireJSON(t, r.job.Metadata, map[string]any{}, "metadata (cancel_attempted_at removed by the retry)")
	})

	// A discarded job: a cancel alone would leave it as it is. The retry
	// wins; the cancel then finds it available and cancels it.
	s.run(t, "RetryThenCancel", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, finalized(millracetype.JobStateDiscarded, now().Add(-time.Hour)))
		r := e.race(t, firstOf(e, retry, job.ID), secondOf(e, cancel, job.ID))
		requireNoError(t, r.err, "JobCancel after the retry")
		e.requireReturnedIsStored(t, r, "JobCancel after the retry")
		requireEqual(t, r.job.State, millracetype.JobStateCancelled, "state (the retried job cancelled)")
		requireJSON(t, r.job.Metadata, map[string]any{"cancel_attempted_at": cancelAt.Format(time.RFC3339Nano)}, "metadata")
	})

	// A running job: the cancel only marks it (it stays running), so the
	// delete is refused, and must show the mark.
	s.run(t, "CancelThenDelete", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, running(now().Add(-time.Minute)))
		r := e.race(t, firstOf(e, cancel, job.ID), secondOf(e, del, job.ID))
		requireErrorIs(t, r.err, millracetype.ErrJobRunning, "JobDelete of the running job after the cancel")
		e.requireReturnedIsStored(t, r, "JobDelete refused after the cancel")
		requireJSON(t, r.job.Metadata, map[string]any{"cancel_attempted_at": cancelAt.Format(time.RFC3339Nano)}, "metadata")
	})

	// The fetch wins: the delete finds the job running.
	s.run(t, "FetchThenDelete", func(t *testing.T, e *env[TTx]) {
		p := inState(millracetype.JobStateAvailable, now().Add(-time.Minute))
		p.Queue = "race_q"
		job := e.insertFull(t, p)
		fetch := func(tx driver.ExecutorTx) error {
			jobs, err := tx.JobGetAvailable(e.ctx, &driver.JobGetAvailableParams{Schema: e.schema, Queue: "race_q",
				Max: 1, ClientID: "race_client"})
			if err == nil && len(jobs) != 1 {
				err = fmt.Errorf("fetched %d jobs, want 1", len(jobs))
			}
			return err
		}
		r := e.race(t, fetch, secondOf(e, del, job.ID))
		requireErrorIs(t, r.err, millracetype.ErrJobRunning, "JobDelete of the job fetched meanwhile")
		e.requireReturnedIsStored(t, r, "JobDelete refused after the fetch")
		requireEqual(t, r.job.State, millracetype.JobStateRunning, "state")
	})

	// The delete wins: the other calls find no job.
	for _, c := range []struct {
		name string
		call func(*env[TTx], driver.Executor, int64) (*millracetype.JobRow, error)
	}{{"DeleteThenCancel", cancel}, {"DeleteThenRetry", retry}, {"DeleteThenDelete", del}} {
		s.run(t, c.name, func(t *testing.T, e *env[TTx]) {
			job := e.insertFull(t, finalized(millracetype.JobStateCompleted, now().Add(-time.Hour)))
			r := e.race(t, firstOf(e, del, job.ID), secondOf(e, c.call, job.ID))
			requireErrorIs(t, r.err, millracetype.ErrNotFound, c.name+": the second call on the deleted job")
			if r.job != nil {
				t.Fatalf("%s: the second call returned a row of the deleted job: %+v", c.name, r.job)
			}
			e.requireGone(t, job.ID)
		})
	}
}

// testAdminManyRace pins why the bulk admin calls (JobCancelMany,
// JobRetryMany, JobDeleteMany) cannot return a row from before a
// concurrent change: they never wait for a row lock. A row another
// transaction holds is skipped (left for a later batch), and the rows
// they return are the ones they changed, as their change left them.
func (s *suite[TTx]) testAdminManyRace(t *testing.T) {
	for _, c := range []struct {
		name string
		call func(e *env[TTx], ids []int64) ([]*millracetype.JobRow, error)
	}{
		{"CancelMany", func(e *env[TTx], ids []int64) ([]*millracetype.JobRow, error) {
			return e.exec.JobCancelMany(e.ctx, &driver.JobCancelManyParams{
				JobListParams: driver.JobListParams{Schema: e.schema, IDs: ids, Limit: 10}, CancelAttemptedAt: now()})
		}},
		{"RetryMany", func(e *env[TTx], ids []int64) ([]*millracetype.JobRow, error) {
			return e.exec.JobRetryMany(e.ctx, &driver.JobRetryManyParams{
				JobListParams: driver.JobListParams{Schema: e.schema, IDs: ids, Limit: 10}})
		}},
		{"DeleteMany", func(e *env[TTx], ids []int64) ([]*millracetype.JobRow, error) {
			return e.exec.JobDeleteMany(e.ctx, &driver.JobDeleteManyParams{
				JobListParams: driver.JobListParams{Schema: e.schema, IDs: ids, Limit: 10}})
		}},
	} {
		s.run(t, c.name+"SkipsHeldRow", func(t *testing.T, e *env[TTx]) {
			e.requireRowLocks(t)
			// Scheduled jobs: each of the three calls changes them.
			free := e.insertFull(t, inState(millracetype.JobStateScheduled, now()))
			held := e.insertFull(t, inState(millracetype.JobStateScheduled, now()))
			tx, err := e.exec.Begin(e.ctx)
			requireNoError(t, err, "Begin")
			defer func() { _ = tx.Rollback(context.WithoutCancel(e.ctx)) }()
			_, err = tx.JobRetry(e.ctx, &driver.JobRetryParams{Schema: e.schema, ID: held.ID})
			requireNoError(t, err, "JobRetry holding the row")

			// With the holder still open: a call that waited would hang
			// until the subtest's deadline.
			got, err := c.call(e, []int64{free.ID, held.ID})
			requireNoError(t, err, c.name)
			requireIDs(t, got, []int64{free.ID}, c.name+": jobs changed (the held one skipped)")
			if c.name == "DeleteMany" {
				e.requireGone(t, free.ID)
			} else {
				requireSameJob(t, got[0], e.getJob(t, free.ID), c.name+": returned row against the stored row")
			}
			requireNoError(t, tx.Commit(e.ctx), "Commit the holder")
			requireEqual(t, e.getJob(t, held.ID).State, millracetype.JobStateAvailable, "held job (the holder's retry)")
		})
	}
}
