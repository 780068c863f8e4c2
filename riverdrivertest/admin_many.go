package riverdrivertest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// manyFixture inserts one job in every state (twice, in queues q_a and
// q_b) with tags and times that the filters below tell apart, and returns
// them as stored, by id.
func (e *env[TTx]) manyFixture(t *testing.T) []*millracetype.JobRow {
	t.Helper()
	base := now().Add(-time.Hour)
	var jobs []*millracetype.JobRow
	for i := range 2 {
		for k, state := range millracetype.JobStates() {
			n := i*len(millracetype.JobStates()) + k
			p := inState(state, base.Add(time.Duration(n)*time.Minute))
			p.Queue = []string{"q_a", "q_b"}[i]
			p.Tags = [][]string{{"red"}, {"red", "blue"}, {"blue"}, {}}[n%4]
			p.CreatedAt = ptr(base.Add(time.Duration(n) * time.Minute))
			p.ScheduledAt = ptr(base.Add(time.Duration(20-n) * time.Minute))
			p.Metadata = []byte(fmt.Sprintf(`{"n":%d}`, n))
			if state == millracetype.JobStateScheduled || state == millracetype.JobStateRetryable {
				p.ScheduledAt = ptr(now().Add(time.Hour)) // not due
			}
			jobs = append(jobs, e.insertFull(t, p))
		}
	}
	return jobs
}

// idsWhere returns the IDs of the jobs keep keeps, in order.
func idsWhere(jobs []*millracetype.JobRow, keep func(*millracetype.JobRow) bool) []int64 {
	var out []int64
	for _, j := range jobs {
		if keep(j) {
			out = append(out, j.ID)
		}
	}
	return out
}

func (s *suite[TTx]) testJobListMoreFilters(t *testing.T) {
	s.run(t, "TagsAndTimes", func(t *testing.T, e *env[TTx]) {
		jobs := e.manyFixture(t)
		base := jobs[0].CreatedAt
		mid := base.Add(5 * time.Minute)
		hasTag := func(j *millracetype.JobRow, tag string) bool { return slices.Contains(j.Tags, tag) }
		inRange := func(v *time.Time, from, before *time.Time) bool {
			return v != nil && (from == nil || !v.Before(*from)) && (before == nil || v.Before(*before))
		}
		cases := []struct {
			name   string
			params driver.JobListParams
			keep   func(*millracetype.JobRow) bool
		}{
			{"TagsAny", driver.JobListParams{TagsAny: []string{"blue", "green"}},
				func(j *millracetype.JobRow) bool { return hasTag(j, "blue") }},
			{"TagsAll", driver.JobListParams{TagsAll: []string{"red", "blue"}},
				func(j *millracetype.JobRow) bool { return hasTag(j, "red") && hasTag(j, "blue") }},
			{"TagsAnyAndAll", driver.JobListParams{TagsAny: []string{"red"}, TagsAll: []string{"blue"}},
				func(j *millracetype.JobRow) bool { return hasTag(j, "red") && hasTag(j, "blue") }},
			{"TagsAllUnknown", driver.JobListParams{TagsAll: []string{"red", "green"}},
				func(*millracetype.JobRow) bool { return false }},
			{"CreatedFrom", driver.JobListParams{CreatedAt: driver.TimeRange{From: &mid}},
				func(j *millracetype.JobRow) bool { return inRange(&j.CreatedAt, &mid, nil) }},
			{"CreatedBefore", driver.JobListParams{CreatedAt: driver.TimeRange{Before: &mid}},
				func(j *millracetype.JobRow) bool { return inRange(&j.CreatedAt, nil, &mid) }},
			{"ScheduledBetween", driver.JobListParams{ScheduledAt: driver.TimeRange{From: ptr(base.Add(10 * time.Minute)), Before: ptr(base.Add(15 * time.Minute))}},
				func(j *millracetype.JobRow) bool {
					return inRange(&j.ScheduledAt, ptr(base.Add(10*time.Minute)), ptr(base.Add(15*time.Minute)))
				}},
			{"AttemptedFrom", driver.JobListParams{AttemptedAt: driver.TimeRange{From: &base}},
				func(j *millracetype.JobRow) bool { return inRange(j.AttemptedAt, &base, nil) }},
			{"FinalizedBefore", driver.JobListParams{FinalizedAt: driver.TimeRange{Before: ptr(base.Add(10 * time.Minute))}},
				func(j *millracetype.JobRow) bool { return inRange(j.FinalizedAt, nil, ptr(base.Add(10*time.Minute))) }},
			{"Everything", driver.JobListParams{TagsAny: []string{"red"}, Queues: []string{"q_b"},
				CreatedAt: driver.TimeRange{From: &base, Before: ptr(base.Add(time.Hour))}},
				func(j *millracetype.JobRow) bool { return hasTag(j, "red") && j.Queue == "q_b" }},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				p := c.params
				p.Schema, p.Limit = e.schema, 1000
				got, err := e.exec.JobList(e.ctx, &p)
				requireNoError(t, err, "JobList")
				want := idsWhere(jobs, c.keep)
				requireIDs(t, got, want, "listed jobs")
				if c.name != "TagsAllUnknown" && (len(want) == 0 || len(want) == len(jobs)) {
					t.Fatalf("fixture does not exercise filter %s: %d of %d jobs", c.name, len(want), len(jobs))
				}
			})
		}
	})

	s.run(t, "BadFilters", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, &driver.JobInsertFullParams{Priority: 1})
		at := now()
		for name, p := range map[string]driver.JobListParams{
			"PriorityWrapsToValid": {Priorities: []int{65537}},
			"PriorityZero":         {Priorities: []int{0}},
			"InvertedRange":        {CreatedAt: driver.TimeRange{From: ptr(at.Add(time.Second)), Before: &at}},
			"EmptyRange":           {FinalizedAt: driver.TimeRange{From: &at, Before: &at}},
		} {
			p.Schema, p.Limit = e.schema, 10
			if _, err := e.exec.JobList(e.ctx, &p); err == nil {
				t.Errorf("JobList with filter %s accepted", name)
			}
		}
		requireIDs(t, e.allJobs(t), []int64{job.ID}, "jobs")
	})
}

func (s *suite[TTx]) testJobDeleteMany(t *testing.T) {
	del := func(e *env[TTx], exec driver.Executor, p driver.JobListParams) ([]*millracetype.JobRow, error) {
		p.Schema = e.schema
		if p.Limit == 0 {
			p.Limit = 1000
		}
		return exec.JobDeleteMany(e.ctx, &driver.JobDeleteManyParams{JobListParams: p})
	}

	s.run(t, "FiltersAndNeverRunning", func(t *testing.T, e *env[TTx]) {
		jobs := e.manyFixture(t)
		got, err := del(e, e.exec, driver.JobListParams{Queues: []string{"q_a"}})
		requireNoError(t, err, "JobDeleteMany")
		want := idsWhere(jobs, func(j *millracetype.JobRow) bool {
			return j.Queue == "q_a" && j.State != millracetype.JobStateRunning
		})
		requireIDs(t, got, want, "deleted jobs")
		for _, g := range got {
			requireSameJob(t, g, jobs[slices.IndexFunc(jobs, func(j *millracetype.JobRow) bool { return j.ID == g.ID })], "returned row (as it was)")
			e.requireGone(t, g.ID)
		}
		// Naming running jobs by state deletes nothing.
		got, err = del(e, e.exec, driver.JobListParams{States: []millracetype.JobState{millracetype.JobStateRunning}})
		requireNoError(t, err, "JobDeleteMany of running jobs")
		requireEqual(t, len(got), 0, "running jobs deleted")
		requireIDs(t, e.allJobs(t), idsWhere(jobs, func(j *millracetype.JobRow) bool {
			return j.Queue == "q_b" || j.State == millracetype.JobStateRunning
		}), "jobs left")
	})

	s.run(t, "BatchOrderAndLimit", func(t *testing.T, e *env[TTx]) {
		jobs := e.manyFixture(t)
		// Oldest scheduled first, 3 at a time.
		p := driver.JobListParams{OrderBy: driver.JobListOrderByScheduledAt, Limit: 3,
			States: []millracetype.JobState{millracetype.JobStateAvailable, millracetype.JobStateCompleted, millracetype.JobStateDiscarded}}
		var want []*millracetype.JobRow
		for _, j := range jobs {
			if slices.Contains(p.States, j.State) {
				want = append(want, j)
			}
		}
		slices.SortFunc(want, func(a, b *millracetype.JobRow) int {
			if c := a.ScheduledAt.Compare(b.ScheduledAt); c != 0 {
				return c
			}
			return int(a.ID - b.ID)
		})
		var walked []*millracetype.JobRow
		for batch := 0; ; batch++ {
			if batch > len(jobs) {
				t.Fatal("batches do not end")
			}
			got, err := del(e, e.exec, p)
			requireNoError(t, err, "JobDeleteMany")
			if len(got) > p.Limit {
				t.Fatalf("batch of %d over the limit %d", len(got), p.Limit)
			}
			walked = append(walked, got...)
			if len(got) < p.Limit {
				break
			}
		}
		requireIDs(t, walked, jobIDs(want), "jobs deleted batch after batch, oldest scheduled first")
	})

	s.run(t, "UnknownIDs", func(t *testing.T, e *env[TTx]) {
		a := e.insertFull(t, &driver.JobInsertFullParams{})
		b := e.insertFull(t, &driver.JobInsertFullParams{})
		_, err := del(e, e.exec, driver.JobListParams{IDs: []int64{a.ID, 987654, b.ID, 987653}})
		requireErrorIs(t, err, millracetype.ErrNotFound, "JobDeleteMany naming missing jobs")
		if !strings.Contains(err.Error(), "987653, 987654") {
			t.Fatalf("error %q does not name the missing IDs", err)
		}
		requireIDs(t, e.allJobs(t), []int64{a.ID, b.ID}, "jobs left (none deleted)")
		// IDs that exist but are filtered out are no error.
		r := e.insertFull(t, running(now()))
		got, err := del(e, e.exec, driver.JobListParams{IDs: []int64{r.ID}})
		requireNoError(t, err, "JobDeleteMany of a running job by id")
		requireEqual(t, len(got), 0, "jobs deleted")
	})

	s.run(t, "SkipsLockedRows", func(t *testing.T, e *env[TTx]) {
		e.requireRowLocks(t)
		a := e.insertFull(t, &driver.JobInsertFullParams{})
		b := e.insertFull(t, &driver.JobInsertFullParams{})
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(context.WithoutCancel(e.ctx)) }()
		requireNoError(t, tx.Exec(e.ctx, "SELECT 1 FROM "+e.table("river_job")+" WHERE id = $1 FOR UPDATE", a.ID), "lock a row")
		got, err := del(e, e.exec, driver.JobListParams{IDs: []int64{a.ID, b.ID}})
		requireNoError(t, err, "JobDeleteMany")
		requireIDs(t, got, []int64{b.ID}, "jobs deleted (the locked one skipped)")
		requireNoError(t, tx.Rollback(e.ctx), "Rollback")
		requireIDs(t, e.allJobs(t), []int64{a.ID}, "jobs left")
	})

	s.run(t, "InTransaction", func(t *testing.T, e *env[TTx]) {
		jobs := e.manyFixture(t)
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		got, err := del(e, tx, driver.JobListParams{Queues: []string{"q_a", "q_b"}})
		requireNoError(t, err, "JobDeleteMany in a transaction")
		requireEqual(t, len(got), len(jobs)-2, "jobs deleted (all but the running ones)")
		requireEqual(t, len(e.allJobs(t)), len(jobs), "jobs seen outside before the commit")
		requireNoError(t, tx.Rollback(e.ctx), "Rollback")
		requireIDs(t, e.allJobs(t), jobIDs(jobs), "jobs after the rollback")
	})

	s.run(t, "BadInput", func(t *testing.T, e *env[TTx]) {
		job := e.insertFull(t, &driver.JobInsertFullParams{})
		for name, p := range map[string]driver.JobListParams{
			"Cursor":       {IDs: []int64{job.ID}, AfterID: ptr(int64(0))},
			"UnknownState": {States: []millracetype.JobState{"gone"}},
			"LimitTooBig":  {Limit: 10001},
			"BadOrder":     {OrderBy: "id; DELETE FROM river_job"},
		} {
			if _, err := del(e, e.exec, p); err == nil {
				t.Errorf("JobDeleteMany with %s accepted", name)
			}
		}
		requireIDs(t, e.allJobs(t), []int64{job.ID}, "jobs left")
	})
}

func (s *suite[TTx]) testJobCancelMany(t *testing.T) {
	cancelAt := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	cancelMany := func(e *env[TTx], exec driver.Executor, p driver.JobListParams) ([]*millracetype.JobRow, error) {
		p.Schema = e.schema
		if p.Limit == 0 {
			p.Limit = 1000
		}
		return exec.JobCancelMany(e.ctx, &driver.JobCancelManyParams{JobListParams: p, CancelAttemptedAt: cancelAt})
	}

	s.run(t, "States", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		jobs := e.manyFixture(t)
		before := now()
		got, err := cancelMany(e, e.exec, driver.JobListParams{Queues: []string{"q_a", "q_b"}})
		after := now()
		requireNoError(t, err, "JobCancelMany")
		requireIDs(t, got, idsWhere(jobs, func(j *millracetype.JobRow) bool { return !j.State.Finalized() }), "jobs changed")
		for _, g := range got {
			old := jobs[slices.IndexFunc(jobs, func(j *millracetype.JobRow) bool { return j.ID == g.ID })]
			requireSameJob(t, e.getJob(t, g.ID), g, "stored row against the returned row")
			var meta map[string]any
			if err := json.Unmarshal(old.Metadata, &meta); err != nil {
				t.Fatalf("fixture metadata %s: %v", old.Metadata, err)
			}
			meta["cancel_attempted_at"] = cancelAt.Format(time.RFC3339Nano)
			requireJSON(t, g.Metadata, meta, "metadata")
			if old.State == millracetype.JobStateRunning {
				requireEqual(t, g.State, millracetype.JobStateRunning, "state of a running job")
				requireNilTime(t, g.FinalizedAt, "finalized_at of a running job")
				continue
			}
			requireEqual(t, g.State, millracetype.JobStateCancelled, "state of a "+string(old.State)+" job")
			if g.FinalizedAt == nil {
				t.Fatal("finalized_at not set")
			}
			requireBetween(t, *g.FinalizedAt, before, after, "finalized_at")
		}
		for _, j := range jobs {
			if j.State.Finalized() {
				requireSameJob(t, e.getJob(t, j.ID), j, "finalized job (untouched)")
			}
		}
		// One notification per running job, and no other.
		var wantPayloads, gotPayloads []string
		for _, j := range jobs {
			if j.State == millracetype.JobStateRunning {
				wantPayloads = append(wantPayloads, fmt.Sprintf(`{"action":"cancel","job_id":%d,"queue":%q}`, j.ID, j.Queue))
				n := e.next(t, l)
				requireEqual(t, n.Topic, driver.TopicControl, "notification topic")
				var payload struct {
					Action string `json:"action"`
					JobID  int64  `json:"job_id"`
					Queue  string `json:"queue"`
				}
				if err := json.Unmarshal([]byte(n.Payload), &payload); err != nil {
					t.Fatalf("payload %q: %v", n.Payload, err)
				}
				gotPayloads = append(gotPayloads, fmt.Sprintf(`{"action":%q,"job_id":%d,"queue":%q}`, payload.Action, payload.JobID, payload.Queue))
			}
		}
		slices.Sort(wantPayloads)
		slices.Sort(gotPayloads)
		requireEqual(t, gotPayloads, wantPayloads, "cancel notifications")
		e.requireQuiet(t, l, e.schema, driver.TopicControl)

		// A second call finds nothing: running jobs were already asked.
		got, err = cancelMany(e, e.exec, driver.JobListParams{Queues: []string{"q_a", "q_b"}})
		requireNoError(t, err, "second JobCancelMany")
		requireEqual(t, len(got), 0, "jobs changed by the second call")
		e.requireQuiet(t, l, e.schema, driver.TopicControl)
	})

	s.run(t, "UnknownIDs", func(t *testing.T, e *env[TTx]) {
		a := e.insertFull(t, &driver.JobInsertFullParams{})
		_, err := cancelMany(e, e.exec, driver.JobListParams{IDs: []int64{a.ID, 555555}})
		requireErrorIs(t, err, millracetype.ErrNotFound, "JobCancelMany naming a missing job")
		requireSameJob(t, e.getJob(t, a.ID), a, "job named with a missing one (untouched)")
	})

	s.run(t, "InTransaction", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicControl)
		job := e.insertFull(t, running(now()))
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		got, err := cancelMany(e, tx, driver.JobListParams{IDs: []int64{job.ID}})
		requireNoError(t, err, "JobCancelMany in a transaction")
		requireIDs(t, got, []int64{job.ID}, "jobs changed")
		requireNoError(t, tx.Rollback(e.ctx), "Rollback")
		requireSameJob(t, e.getJob(t, job.ID), job, "job after the rollback")
		e.requireQuiet(t, l, e.schema, driver.TopicControl)
	})
}

func (s *suite[TTx]) testJobRetryMany(t *testing.T) {
	retryMany := func(e *env[TTx], exec driver.Executor, p driver.JobListParams, at *time.Time) ([]*millracetype.JobRow, error) {
		p.Schema = e.schema
		if p.Limit == 0 {
			p.Limit = 1000
		}
		return exec.JobRetryMany(e.ctx, &driver.JobRetryManyParams{JobListParams: p, Now: at})
	}

	s.run(t, "States", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicInsert)
		jobs := e.manyFixture(t)
		// Out of attempts, with a cancel request to clear.
		spent := finalized(millracetype.JobStateDiscarded, now().Add(-time.Minute))
		spent.Attempt, spent.MaxAttempts, spent.Queue = 3, 3, "q_a"
		spent.Metadata = []byte(`{"cancel_attempted_at":"2026-01-01T00:00:00Z","k":"v"}`)
		jobs = append(jobs, e.insertFull(t, spent))
		retryAt := now().Add(time.Second)
		got, err := retryMany(e, e.exec, driver.JobListParams{Queues: []string{"q_a", "q_b"}}, &retryAt)
		requireNoError(t, err, "JobRetryMany")
		// The fixture's available jobs are due; running ones are left alone.
		requireIDs(t, got, idsWhere(jobs, func(j *millracetype.JobRow) bool {
			return j.State != millracetype.JobStateRunning && j.State != millracetype.JobStateAvailable
		}), "jobs changed")
		for _, g := range got {
			old := jobs[slices.IndexFunc(jobs, func(j *millracetype.JobRow) bool { return j.ID == g.ID })]
			requireSameJob(t, e.getJob(t, g.ID), g, "stored row against the returned row")
			requireEqual(t, g.State, millracetype.JobStateAvailable, "state")
			requireTime(t, g.ScheduledAt, retryAt, "scheduled_at (= Now)")
			requireNilTime(t, g.FinalizedAt, "finalized_at")
			requireEqual(t, g.Attempt, old.Attempt, "attempt (kept)")
			wantMax := old.MaxAttempts
			if old.Attempt == old.MaxAttempts {
				wantMax++
			}
			requireEqual(t, g.MaxAttempts, wantMax, "max_attempts")
			if strings.Contains(string(g.Metadata), "cancel_attempted_at") {
				t.Fatalf("metadata %s still has cancel_attempted_at", g.Metadata)
			}
		}
		requireJSON(t, got[len(got)-1].Metadata, map[string]any{"k": "v"}, "metadata of the spent job")
		requireEqual(t, got[len(got)-1].MaxAttempts, 4, "max_attempts of the spent job")
		for _, j := range jobs {
			if j.State == millracetype.JobStateRunning || j.State == millracetype.JobStateAvailable {
				requireSameJob(t, e.getJob(t, j.ID), j, "running or due job (untouched)")
			}
		}
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)

		// Retried jobs are available and due: a second call finds nothing.
		got, err = retryMany(e, e.exec, driver.JobListParams{Queues: []string{"q_a", "q_b"}}, ptr(retryAt.Add(time.Second)))
		requireNoError(t, err, "second JobRetryMany")
		requireEqual(t, len(got), 0, "jobs changed by the second call")
	})

	s.run(t, "OrderOfTheBatch", func(t *testing.T, e *env[TTx]) {
		// Returned in the order selected, by the values before the retry.
		base := now().Add(-time.Hour)
		var jobs []*millracetype.JobRow
		for i := range 5 {
			p := finalized(millracetype.JobStateCompleted, base.Add(time.Duration(i)*time.Minute))
			p.ScheduledAt = ptr(base.Add(-time.Duration(i) * time.Minute))
			jobs = append(jobs, e.insertFull(t, p))
		}
		got, err := retryMany(e, e.exec, driver.JobListParams{States: []millracetype.JobState{millracetype.JobStateCompleted},
			OrderBy: driver.JobListOrderByScheduledAt, Limit: 4}, nil)
		requireNoError(t, err, "JobRetryMany")
		requireIDs(t, got, []int64{jobs[4].ID, jobs[3].ID, jobs[2].ID, jobs[1].ID}, "jobs retried, oldest scheduled first")
		got, err = retryMany(e, e.exec, driver.JobListParams{States: []millracetype.JobState{millracetype.JobStateAvailable},
			OrderBy: driver.JobListOrderByScheduledAt, Desc: true, Limit: 4}, nil)
		requireNoError(t, err, "JobRetryMany of due jobs")
		requireEqual(t, len(got), 0, "due available jobs retried")
	})

	s.run(t, "UnknownIDs", func(t *testing.T, e *env[TTx]) {
		a := e.insertFull(t, finalized(millracetype.JobStateCompleted, now()))
		_, err := retryMany(e, e.exec, driver.JobListParams{IDs: []int64{a.ID, 444444}}, nil)
		requireErrorIs(t, err, millracetype.ErrNotFound, "JobRetryMany naming a missing job")
		requireSameJob(t, e.getJob(t, a.ID), a, "job named with a missing one (untouched)")
	})
}
