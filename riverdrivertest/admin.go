package riverdrivertest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

func (s *suite[TTx]) testJobGetByID(t *testing.T) {
	s.run(t, "Found", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, &driver.JobInsertFullParams{Args: []byte(`{"a":1}`), Tags: []string{"tag_x"}})
		e.insertFull(t, &driver.JobInsertFullParams{})
		requireSameJob(t, e.getJob(t, job.ID), job, "JobGetByID")
	})

	s.run(t, "NotFound", func(t *testing.T, e *env[TTx]) {
		_, err := e.exec.JobGetByID(e.ctx, &driver.JobGetByIDParams{Schema: e.schema, ID: 123456})
		requireErrorIs(t, err, millracetype.ErrNotFound, "JobGetByID of a missing job")
	})

	s.run(t, "Many", func(t *testing.T, e *env[TTx]) {
		var jobs []*millracetype.JobRow
		for range 4 {
			jobs = append(jobs, e.insertFull(t, &driver.JobInsertFullParams{}))
		}
		got, err := e.exec.JobGetByIDMany(e.ctx, &driver.JobGetByIDManyParams{Schema: e.schema,
			IDs: []int64{jobs[3].ID, 987654, jobs[0].ID, jobs[2].ID}})
		requireNoError(t, err, "JobGetByIDMany")
		requireIDs(t, got, []int64{jobs[0].ID, jobs[2].ID, jobs[3].ID}, "jobs found, ordered by id")
		for i, j := range []*millracetype.JobRow{jobs[0], jobs[2], jobs[3]} {
			requireSameJob(t, got[i], j, "JobGetByIDMany row")
		}

		got, err = e.exec.JobGetByIDMany(e.ctx, &driver.JobGetByIDManyParams{Schema: e.schema, IDs: []int64{987654}})
		requireNoError(t, err, "JobGetByIDMany of missing jobs")
		requireEqual(t, len(got), 0, "jobs found")
	})
}

func (s *suite[TTx]) testJobList(t *testing.T) {
	// listFixture inserts a varied set of jobs and returns them as stored.
	listFixture := func(t *testing.T, e *env[TTx]) []*millracetype.JobRow {
		t.Helper()
		base := now().Add(-time.Hour)
		kinds := []string{"alpha", "beta", "gamma"}
		queues := []string{"q_a", "q_b"}
		states := millracetype.JobStates()
		var jobs []*millracetype.JobRow
		for i := range 17 {
			state := states[i%len(states)]
			p := inState(state, base.Add(time.Duration(i%6)*time.Minute))
			p.Kind = kinds[i%len(kinds)]
			p.Queue = queues[i%len(queues)]
			p.Priority = 1 + i%4
			p.ScheduledAt = ptr(base.Add(time.Duration(i%5) * time.Minute)) // ties on purpose
			p.CreatedAt = ptr(base.Add(-time.Duration(i%3) * time.Minute))
			p.Metadata = []byte(fmt.Sprintf(`{"i":%d,"even":%v}`, i, i%2 == 0))
			if i%3 == 0 && p.AttemptedAt == nil {
				p.AttemptedAt = ptr(base.Add(time.Duration(i%4) * time.Second))
			}
			jobs = append(jobs, e.insertFull(t, p))
		}
		return jobs
	}
	list := func(t *testing.T, e *env[TTx], p driver.JobListParams) []*millracetype.JobRow {
		t.Helper()
		p.Schema = e.schema
		jobs, err := e.exec.JobList(e.ctx, &p)
		requireNoError(t, err, fmt.Sprintf("JobList %+v", p))
		return jobs
	}

	s.run(t, "Filters", func(t *testing.T, e *env[TTx]) {
		jobs := listFixture(t, e)
		cases := []struct {
			name   string
			params driver.JobListParams
			match  func(i int, j *millracetype.JobRow) bool
		}{
			{"None", driver.JobListParams{}, func(int, *millracetype.JobRow) bool { return true }},
			{"IDs", driver.JobListParams{IDs: []int64{jobs[5].ID, jobs[1].ID, 99999999}},
				func(i int, _ *millracetype.JobRow) bool { return i == 1 || i == 5 }},
			{"Kinds", driver.JobListParams{Kinds: []string{"alpha", "gamma"}},
				func(_ int, j *millracetype.JobRow) bool { return j.Kind == "alpha" || j.Kind == "gamma" }},
			{"Queues", driver.JobListParams{Queues: []string{"q_b"}},
				func(_ int, j *millracetype.JobRow) bool { return j.Queue == "q_b" }},
			{"States", driver.JobListParams{States: []millracetype.JobState{millracetype.JobStateCompleted, millracetype.JobStatePending}},
				func(_ int, j *millracetype.JobRow) bool {
					return j.State == millracetype.JobStateCompleted || j.State == millracetype.JobStatePending
				}},
			{"Priorities", driver.JobListParams{Priorities: []int{2, 4}},
				func(_ int, j *millracetype.JobRow) bool { return j.Priority == 2 || j.Priority == 4 }},
			{"MetadataContains", driver.JobListParams{MetadataContains: []byte(`{"even":true}`)},
				func(i int, _ *millracetype.JobRow) bool { return i%2 == 0 }},
			{"Combined", driver.JobListParams{Kinds: []string{"alpha"}, Queues: []string{"q_a"}, Priorities: []int{1, 3}},
				func(_ int, j *millracetype.JobRow) bool {
					return j.Kind == "alpha" && j.Queue == "q_a" && (j.Priority == 1 || j.Priority == 3)
				}},
			{"NoMatch", driver.JobListParams{Kinds: []string{"alpha"}, Queues: []string{"q_none"}},
				func(int, *millracetype.JobRow) bool { return false }},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var want []int64
				for i, j := range jobs {
					if c.match(i, j) {
						want = append(want, j.ID)
					}
				}
				p := c.params
				p.Limit = 100
				got := list(t, e, p)
				requireIDs(t, got, want, "listed jobs")
				for _, g := range got {
					requireSameJob(t, g, jobs[slices.IndexFunc(jobs, func(j *millracetype.JobRow) bool { return j.ID == g.ID })], "listed row")
				}
			})
		}
	})

	s.run(t, "OrderAndPages", func(t *testing.T, e *env[TTx]) {
		jobs := listFixture(t, e)
		value := func(by driver.JobListOrderBy, j *millracetype.JobRow) *time.Time {
			switch by {
			case driver.JobListOrderByScheduledAt:
				return &j.ScheduledAt
			case driver.JobListOrderByCreatedAt:
				return &j.CreatedAt
			case driver.JobListOrderByAttemptedAt:
				return j.AttemptedAt
			case driver.JobListOrderByFinalizedAt:
				return j.FinalizedAt
			}
			return nil
		}
		orders := []driver.JobListOrderBy{"", driver.JobListOrderByID, driver.JobListOrderByScheduledAt,
			driver.JobListOrderByCreatedAt, driver.JobListOrderByAttemptedAt, driver.JobListOrderByFinalizedAt}
		for _, by := range orders {
			for _, desc := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s_desc_%v", cmp.Or(string(by), "default"), desc), func(t *testing.T) {
					byTime := by != "" && by != driver.JobListOrderByID
					// Expected order, computed here: nullable columns list only
					// rows that have a value; ties are broken by id.
					var want []*millracetype.JobRow
					for _, j := range jobs {
						if !byTime || value(by, j) != nil {
							want = append(want, j)
						}
					}
					slices.SortFunc(want, func(a, b *millracetype.JobRow) int {
						c := 0
						if byTime {
							c = value(by, a).Compare(*value(by, b))
						}
						c = cmp.Or(c, cmp.Compare(a.ID, b.ID))
						if desc {
							c = -c
						}
						return c
					})
					if byTime && len(want) == len(jobs) && by != driver.JobListOrderByScheduledAt && by != driver.JobListOrderByCreatedAt {
						t.Fatalf("fixture has no NULL %s; the test would not check their exclusion", by)
					}

					requireIDs(t, list(t, e, driver.JobListParams{OrderBy: by, Desc: desc, Limit: 1000}), jobIDs(want), "one page")

					// Keyset pagination: pages of 3 continue after the last
					// row of the previous page, without gaps or repeats.
					var walked []*millracetype.JobRow
					p := driver.JobListParams{OrderBy: by, Desc: desc, Limit: 3}
					for page := 0; ; page++ {
						if page > len(jobs) {
							t.Fatal("pagination does not end")
						}
						got := list(t, e, p)
						walked = append(walked, got...)
						if len(got) < p.Limit {
							break
						}
						last := got[len(got)-1]
						p.AfterID = &last.ID
						if byTime {
							p.AfterValue = value(by, last)
						}
					}
					requireIDs(t, walked, jobIDs(want), "jobs walked page by page")
				})
			}
		}
	})

	s.run(t, "Limit", func(t *testing.T, e *env[TTx]) {
		for range 3 {
			e.insertFull(t, &driver.JobInsertFullParams{})
		}
		requireEqual(t, len(list(t, e, driver.JobListParams{Limit: 2})), 2, "jobs listed with limit 2")
		requireEqual(t, len(list(t, e, driver.JobListParams{Limit: 10000})), 3, "jobs listed with limit 10000")
		for _, limit := range []int{0, -1, 10001} {
			_, err := e.exec.JobList(e.ctx, &driver.JobListParams{Schema: e.schema, Limit: limit})
			if err == nil {
				t.Fatalf("JobList with limit %d accepted; the limit must be 1..10000", limit)
			}
		}
	})

	s.run(t, "BadInput", func(t *testing.T, e *env[TTx]) {
		e.insertFull(t, &driver.JobInsertFullParams{})
		_, err := e.exec.JobList(e.ctx, &driver.JobListParams{Schema: e.schema, Limit: 10, States: []millracetype.JobState{"available", "bogus"}})
		if err == nil {
			t.Fatal("JobList with an unknown state accepted")
		}
		_, err = e.exec.JobList(e.ctx, &driver.JobListParams{Schema: e.schema, Limit: 10, OrderBy: "kind; DROP TABLE river_job"})
		if err == nil {
			t.Fatal("JobList with an unknown order accepted")
		}
		requireEqual(t, len(e.allJobs(t)), 1, "jobs still listed")
	})
}

func (s *suite[TTx]) testJobCancel(t *testing.T) {
	cancelAt := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	cancel := func(t *testing.T, e *env[TTx], id int64) (*millracetype.JobRow, error) {
		t.Helper()
		return e.exec.JobCancel(e.ctx, &driver.JobCancelParams{Schema: e.schema, ID: id, CancelAttemptedAt: cancelAt})
	}
	controlPayload := func(j *millracetype.JobRow) map[string]any {
		return map[string]any{"action": "cancel", "job_id": j.ID, "queue": j.Queue}
	}

	s.run(t, "Running", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		p := running(now().Add(-time.Minute))
		p.Queue, p.Metadata = "cancel_q", []byte(`{"mine":"kept"}`)
		job := e.insertFull(t, p)
		got, err := cancel(t, e, job.ID)
		requireNoError(t, err, "JobCancel")

		requireEqual(t, got.State, millracetype.JobStateRunning, "state (the client running it finishes the cancel)")
		requireNilTime(t, got.FinalizedAt, "finalized_at")
		requireJSON(t, got.Metadata, map[string]any{"mine": "kept", "cancel_attempted_at": cancelAt.Format(time.RFC3339Nano)}, "metadata")
		requireSameJob(t, e.getJob(t, job.ID), got, "stored row against the returned row")
		e.requireNext(t, l, driver.TopicControl, controlPayload(job))
	})

	s.run(t, "NotRunning", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		for _, state := range []millracetype.JobState{millracetype.JobStateAvailable, millracetype.JobStateScheduled,
			millracetype.JobStateRetryable, millracetype.JobStatePending} {
			t.Run(string(state), func(t *testing.T) {
				p := inState(state, now())
				p.Queue = "q_" + string(state)
				p.ScheduledAt = ptr(now().Add(time.Hour))
				job := e.insertFull(t, p)
				before := now()
				got, err := cancel(t, e, job.ID)
				after := now()
				requireNoError(t, err, "JobCancel")
				requireEqual(t, got.State, millracetype.JobStateCancelled, "state")
				if got.FinalizedAt == nil {
					t.Fatal("finalized_at not set")
				}
				requireBetween(t, *got.FinalizedAt, before, after, "finalized_at")
				requireJSON(t, got.Metadata, map[string]any{"cancel_attempted_at": cancelAt.Format(time.RFC3339Nano)}, "metadata")
				requireTime(t, got.ScheduledAt, job.ScheduledAt, "scheduled_at (unchanged)")
				requireSameJob(t, e.getJob(t, job.ID), got, "stored row against the returned row")
				e.requireNext(t, l, driver.TopicControl, controlPayload(job))
			})
		}
	})

	s.run(t, "Finalized", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		for _, state := range []millracetype.JobState{millracetype.JobStateCompleted, millracetype.JobStateCancelled, millracetype.JobStateDiscarded} {
			job := e.insertFull(t, finalized(state, now().Add(-time.Hour)))
			got, err := cancel(t, e, job.ID)
			requireNoError(t, err, "JobCancel of a "+string(state)+" job")
			requireSameJob(t, got, job, "returned row")
			requireSameJob(t, e.getJob(t, job.ID), job, "stored row")
		}
		e.requireQuiet(t, l, e.schema, driver.TopicControl)
	})

	s.run(t, "NotFound", func(t *testing.T, e *env[TTx]) {
		_, err := cancel(t, e, 424242)
		requireErrorIs(t, err, millracetype.ErrNotFound, "JobCancel of a missing job")
	})

	s.run(t, "PayloadIsJSON", func(t *testing.T, e *env[TTx]) {
		// A queue name that needs escaping still yields valid JSON.
		l := e.listen(t, e.schema, driver.TopicControl)
		p := running(now())
		p.Queue = `odd"queue\`
		job := e.insertFull(t, p)
		_, err := cancel(t, e, job.ID)
		requireNoError(t, err, "JobCancel")
		n := e.next(t, l)
		var payload map[string]any
		if err := json.Unmarshal([]byte(n.Payload), &payload); err != nil {
			t.Fatalf("cancel payload %q is not JSON: %v", n.Payload, err)
		}
		requireEqual(t, payload["queue"], any(p.Queue), "queue in the payload")
	})
}

func (s *suite[TTx]) testJobRetry(t *testing.T) {
	s.run(t, "States", func(t *testing.T, e *env[TTx]) {
		base := now()
		retryNow := base.Add(time.Second)
		past := base.Add(-time.Hour)
		future := base.Add(time.Hour)
		oldErr := millracetype.AttemptError{At: past, Attempt: 1, Error: "old", Trace: ""}
		cases := []struct {
			name      string
			initial   *driver.JobInsertFullParams
			untouched bool
			maxBump   bool
		}{
			{"DiscardedOutOfAttempts", &driver.JobInsertFullParams{State: millracetype.JobStateDiscarded, FinalizedAt: &past,
				Attempt: 25, MaxAttempts: 25, Errors: []millracetype.AttemptError{oldErr}}, false, true},
			{"CompletedWithAttemptsLeft", &driver.JobInsertFullParams{State: millracetype.JobStateCompleted, FinalizedAt: &past,
				Attempt: 1, MaxAttempts: 25}, false, false},
			{"CancelledOutOfAttempts", &driver.JobInsertFullParams{State: millracetype.JobStateCancelled, FinalizedAt: &past,
				Attempt: 3, MaxAttempts: 3}, false, true},
			{"RetryableFuture", &driver.JobInsertFullParams{State: millracetype.JobStateRetryable, ScheduledAt: &future,
				Attempt: 2, MaxAttempts: 5, Errors: []millracetype.AttemptError{oldErr}}, false, false},
			{"ScheduledFuture", &driver.JobInsertFullParams{State: millracetype.JobStateScheduled, ScheduledAt: &future}, false, false},
			{"Pending", &driver.JobInsertFullParams{State: millracetype.JobStatePending}, false, false},
			{"AvailableFuture", &driver.JobInsertFullParams{State: millracetype.JobStateAvailable, ScheduledAt: &future}, false, false},
			{"AvailableDue", &driver.JobInsertFullParams{State: millracetype.JobStateAvailable, ScheduledAt: &past}, true, false},
			{"Running", &driver.JobInsertFullParams{State: millracetype.JobStateRunning, Attempt: 1, AttemptedAt: &past,
				Metadata: []byte(`{"cancel_attempted_at":"2026-01-01T00:00:00Z"}`)}, true, false},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				p := *c.initial
				if p.Metadata == nil {
					p.Metadata = []byte(`{"cancel_attempted_at":"` + past.Format(time.RFC3339Nano) + `","k":"v"}`)
				}
				job := e.insertFull(t, &p)
				got, err := e.exec.JobRetry(e.ctx, &driver.JobRetryParams{Schema: e.schema, ID: job.ID, Now: &retryNow})
				requireNoError(t, err, "JobRetry")
				requireSameJob(t, e.getJob(t, job.ID), got, "stored row against the returned row")
				if c.untouched {
					requireSameJob(t, got, job, "job that JobRetry must leave alone")
					return
				}
				requireEqual(t, got.State, millracetype.JobStateAvailable, "state")
				requireTime(t, got.ScheduledAt, retryNow, "scheduled_at (= Now)")
				requireNilTime(t, got.FinalizedAt, "finalized_at")
				requireJSON(t, got.Metadata, map[string]any{"k": "v"}, "metadata (cancel_attempted_at removed)")
				requireEqual(t, got.Attempt, job.Attempt, "attempt (kept)")
				requireEqual(t, len(got.Errors), len(job.Errors), "number of errors (kept)")
				wantMax := job.MaxAttempts
				if c.maxBump {
					wantMax++
				}
				requireEqual(t, got.MaxAttempts, wantMax, "max_attempts")
			})
		}
	})

	s.run(t, "DatabaseNow", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, finalized(millracetype.JobStateCompleted, now().Add(-time.Hour)))
		before := now()
		got, err := e.exec.JobRetry(e.ctx, &driver.JobRetryParams{Schema: e.schema, ID: job.ID})
		after := now()
		requireNoError(t, err, "JobRetry")
		requireEqual(t, got.State, millracetype.JobStateAvailable, "state")
		requireBetween(t, got.ScheduledAt, before, after, "scheduled_at (now())")
	})

	s.run(t, "NoInsertNotification", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicInsert)
		job := e.insertFull(t, finalized(millracetype.JobStateDiscarded, now()))
		_, err := e.exec.JobRetry(e.ctx, &driver.JobRetryParams{Schema: e.schema, ID: job.ID})
		requireNoError(t, err, "JobRetry")
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)
	})

	s.run(t, "NotFound", func(t *testing.T, e *env[TTx]) {
		_, err := e.exec.JobRetry(e.ctx, &driver.JobRetryParams{Schema: e.schema, ID: 31337})
		requireErrorIs(t, err, millracetype.ErrNotFound, "JobRetry of a missing job")
	})
}

func (s *suite[TTx]) testJobDelete(t *testing.T) {
	s.run(t, "Deleted", func(t *testing.T, e *env[TTx]) {
		keep := e.insertFull(t, &driver.JobInsertFullParams{})
		for _, state := range millracetype.JobStates() {
			if state == millracetype.JobStateRunning {
				continue
			}
			job := e.insertFull(t, inState(state, now()))
			got, err := e.exec.JobDelete(e.ctx, &driver.JobDeleteParams{Schema: e.schema, ID: job.ID})
			requireNoError(t, err, "JobDelete of a "+string(state)+" job")
			requireSameJob(t, got, job, "returned row")
			e.requireGone(t, job.ID)
		}
		requireIDs(t, e.allJobs(t), []int64{keep.ID}, "jobs left")
	})

	s.run(t, "Running", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, running(now()))
		_, err := e.exec.JobDelete(e.ctx, &driver.JobDeleteParams{Schema: e.schema, ID: job.ID})
		requireErrorIs(t, err, millracetype.ErrJobRunning, "JobDelete of a running job")
		requireSameJob(t, e.getJob(t, job.ID), job, "running job after the refused delete")
	})

	s.run(t, "NotFound", func(t *testing.T, e *env[TTx]) {
		_, err := e.exec.JobDelete(e.ctx, &driver.JobDeleteParams{Schema: e.schema, ID: 777})
		requireErrorIs(t, err, millracetype.ErrNotFound, "JobDelete of a missing job")
	})
}
