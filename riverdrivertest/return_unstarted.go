package riverdrivertest

import (
	"slices"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// testJobReturnUnstarted checks the undoing of fetches: jobs fetched and
// never started go back to available as they were before the fetch
// (attempt, attempted_by, their place in the queue), a job cancelled
// meanwhile is cancelled, and a job no longer running that attempt for
// that client is left alone.
func (s *suite[TTx]) testJobReturnUnstarted(t *testing.T) {
	s.run(t, "BackAsBefore", func(t *testing.T, e *env[TTx]) {
		past := ptr(now().Add(-time.Minute))
		fresh := e.insertFull(t, &driver.JobInsertFullParams{Queue: "q", ScheduledAt: past, State: millracetype.JobStateAvailable})
		ranBefore := e.insertFull(t, &driver.JobInsertFullParams{Queue: "q", ScheduledAt: past, State: millracetype.JobStateAvailable,
			Attempt: 2, AttemptedAt: ptr(now().Add(-time.Hour)), AttemptedBy: []string{"a", "b"}})
		fetched := e.fetch(t, "q", 10)
		requireIDs(t, fetched, []int64{fresh.ID, ranBefore.ID}, "fetched")

		returned, err := e.exec.JobReturnUnstarted(e.ctx, &driver.JobReturnUnstartedParams{Schema: e.schema, ClientID: clientID,
			IDs: []int64{fetched[0].ID, fetched[1].ID}, Attempts: []int{fetched[0].Attempt, fetched[1].Attempt}})
		requireNoError(t, err, "JobReturnUnstarted")
		slices.SortFunc(returned, func(a, b *millracetype.JobRow) int { return int(a.ID - b.ID) })
		requireIDs(t, returned, []int64{fresh.ID, ranBefore.ID}, "returned rows")
		for _, r := range returned {
			requireEqual(t, r.State, millracetype.JobStateAvailable, "state of a returned job")
			requireSameJob(t, e.getJob(t, r.ID), r, "stored row of a returned job")
		}
		// The fresh job is as it was inserted (no attempt, no attempted_at).
		requireSameJob(t, returned[0], fresh, "returned fresh job")
		// The job that ran before keeps its earlier attempt and clients;
		// attempted_at is the fetch's (the earlier one is not known).
		want := *ranBefore
		want.AttemptedAt = returned[1].AttemptedAt
		requireSameJob(t, returned[1], &want, "returned job that ran before")
		// They are fetched again, in the same order, with the same attempts.
		again := e.fetch(t, "q", 10)
		requireIDs(t, again, []int64{fresh.ID, ranBefore.ID}, "fetched again")
		requireEqual(t, again[0].Attempt, 1, "attempt of the fresh job fetched again")
		requireEqual(t, again[1].Attempt, 3, "attempt of the other job fetched again")
		requireEqual(t, again[1].AttemptedBy, []string{"a", "b", clientID}, "attempted_by fetched again")
	})

	s.run(t, "OnlyOwnAttempt", func(t *testing.T, e *env[TTx]) {
		past := ptr(now().Add(-time.Minute))
		for range 3 {
			e.insertFull(t, &driver.JobInsertFullParams{Queue: "q", ScheduledAt: past, State: millracetype.JobStateAvailable})
		}
		fetched := e.fetch(t, "q", 10)
		requireEqual(t, len(fetched), 3, "fetched")
		// Another client's name, a wrong attempt, a job since finished:
		// none of them is touched.
		other, err := e.exec.JobReturnUnstarted(e.ctx, &driver.JobReturnUnstartedParams{Schema: e.schema, ClientID: "someone_else",
			IDs: []int64{fetched[0].ID}, Attempts: []int{fetched[0].Attempt}})
		requireNoError(t, err, "JobReturnUnstarted of another client")
		requireEqual(t, len(other), 0, "jobs returned for another client")
		wrong, err := e.exec.JobReturnUnstarted(e.ctx, &driver.JobReturnUnstartedParams{Schema: e.schema, ClientID: clientID,
			IDs: []int64{fetched[1].ID}, Attempts: []int{fetched[1].Attempt + 1}})
		requireNoError(t, err, "JobReturnUnstarted of a wrong attempt")
		requireEqual(t, len(wrong), 0, "jobs returned for a wrong attempt")
		_, err = e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: e.schema,
			Jobs: []*driver.JobSetState{{ID: fetched[2].ID, Attempt: fetched[2].Attempt, State: millracetype.JobStateCompleted, FinalizedAt: ptr(now())}}})
		requireNoError(t, err, "complete")
		finished, err := e.exec.JobReturnUnstarted(e.ctx, &driver.JobReturnUnstartedParams{Schema: e.schema, ClientID: clientID,
			IDs: []int64{fetched[2].ID}, Attempts: []int{fetched[2].Attempt}})
		requireNoError(t, err, "JobReturnUnstarted of a finished job")
		requireEqual(t, len(finished), 0, "finished jobs returned")
		for i, f := range fetched {
			got := e.getJob(t, f.ID)
			if i < 2 {
				requireSameJob(t, got, f, "job left alone")
			} else {
				requireEqual(t, got.State, millracetype.JobStateCompleted, "finished job's state")
			}
		}
		_, err = e.exec.JobReturnUnstarted(e.ctx, &driver.JobReturnUnstartedParams{Schema: e.schema, ClientID: clientID,
			IDs: []int64{fetched[0].ID}, Attempts: nil})
		if err == nil {
			t.Fatal("JobReturnUnstarted with IDs and Attempts of different lengths: no error")
		}
	})

	s.run(t, "CancelledMeanwhile", func(t *testing.T, e *env[TTx]) {
		past := ptr(now().Add(-time.Minute))
		job := e.insertFull(t, &driver.JobInsertFullParams{Queue: "q", ScheduledAt: past, State: millracetype.JobStateAvailable})
		fetched := e.fetch(t, "q", 1)
		requireIDs(t, fetched, []int64{job.ID}, "fetched")
		_, err := e.exec.JobCancel(e.ctx, &driver.JobCancelParams{Schema: e.schema, ID: job.ID, CancelAttemptedAt: now()})
		requireNoError(t, err, "JobCancel")
		before := now()
		returned, err := e.exec.JobReturnUnstarted(e.ctx, &driver.JobReturnUnstartedParams{Schema: e.schema, ClientID: clientID,
			IDs: []int64{job.ID}, Attempts: []int{fetched[0].Attempt}})
		requireNoError(t, err, "JobReturnUnstarted")
		requireIDs(t, returned, []int64{job.ID}, "returned")
		requireEqual(t, returned[0].State, millracetype.JobStateCancelled, "state of a job cancelled while buffered")
		if returned[0].FinalizedAt == nil || returned[0].FinalizedAt.Before(before.Add(-time.Second)) {
			t.Fatalf("finalized_at %v: want about now", returned[0].FinalizedAt)
		}
		requireEqual(t, returned[0].Attempt, 0, "attempt of a job cancelled before it started")
	})

	s.run(t, "Notifies", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicInsert)
		past := ptr(now().Add(-time.Minute))
		e.insertFull(t, &driver.JobInsertFullParams{Queue: "q", ScheduledAt: past, State: millracetype.JobStateAvailable})
		fetched := e.fetch(t, "q", 1)
		_, err := e.exec.JobReturnUnstarted(e.ctx, &driver.JobReturnUnstartedParams{Schema: e.schema, ClientID: clientID,
			IDs: []int64{fetched[0].ID}, Attempts: []int{fetched[0].Attempt}, NotifyQueue: "q"})
		requireNoError(t, err, "JobReturnUnstarted")
		n := e.next(t, l)
		requireEqual(t, *n, driver.Notification{Topic: driver.TopicInsert, Payload: driver.InsertNotifyPayload("q")}, "insert notification")
		// Nothing returned: no notification.
		_, err = e.exec.JobReturnUnstarted(e.ctx, &driver.JobReturnUnstartedParams{Schema: e.schema, ClientID: clientID,
			IDs: []int64{fetched[0].ID}, Attempts: []int{fetched[0].Attempt}, NotifyQueue: "q"})
		requireNoError(t, err, "JobReturnUnstarted of a job not running")
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)
	})
}
