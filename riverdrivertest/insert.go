package riverdrivertest

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// defaultUniqueStates is River's default unique_states: every state but
// cancelled and discarded.
const defaultUniqueStates byte = 0xF5

// minimalUniqueStates holds only the states River requires of a custom
// ByState (available, pending, running, scheduled): a retryable or
// completed job with it does not hold its key.
const minimalUniqueStates byte = 0xD1

// uniqueKey returns a 32-byte key as River computes them (SHA-256).
func uniqueKey(s string) []byte {
	k := sha256.Sum256([]byte(s))
	return k[:]
}

func (s *suite[TTx]) testJobInsertFull(t *testing.T) {
	s.run(t, "AllColumns", func(t *testing.T, e *env[TTx]) {
		attemptedAt := now().Add(-time.Minute)
		createdAt := now().Add(-time.Hour)
		scheduledAt := now().Add(-30 * time.Minute)
		finalizedAt := now().Add(-time.Second)
		errs := []millracetype.AttemptError{
			{At: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), Attempt: 1, Error: "first", Trace: "trace 1"},
			{At: time.Date(2026, 1, 2, 3, 5, 5, 0, time.UTC), Attempt: 2, Error: "second", Trace: ""},
		}
		key := uniqueKey("all-columns")
		job := e.insertFull(t, &driver.JobInsertFullParams{
			Args:         []byte(`{"a":"b","n":[1,2]}`),
			Attempt:      2,
			AttemptedAt:  &attemptedAt,
			AttemptedBy:  []string{"client_1", "client_2"},
			CreatedAt:    &createdAt,
			Errors:       errs,
			FinalizedAt:  &finalizedAt,
			Kind:         "full_kind",
			MaxAttempts:  3,
			Metadata:     []byte(`{"k":"v"}`),
			Priority:     4,
			Queue:        "queue_full",
			ScheduledAt:  &scheduledAt,
			State:        millracetype.JobStateDiscarded,
			Tags:         []string{"tag_a", "tag_b"},
			UniqueKey:    key,
			UniqueStates: defaultUniqueStates,
		})
		if job.ID <= 0 {
			t.Fatalf("got id %d, want a positive id", job.ID)
		}
		want := &millracetype.JobRow{
			ID: job.ID, Args: []byte(`{"a":"b","n":[1,2]}`), Attempt: 2, AttemptedAt: &attemptedAt,
			AttemptedBy: []string{"client_1", "client_2"}, CreatedAt: createdAt, Errors: errs,
			FinalizedAt: &finalizedAt, Kind: "full_kind", MaxAttempts: 3, Metadata: []byte(`{"k":"v"}`),
			Priority: 4, Queue: "queue_full", ScheduledAt: scheduledAt, State: millracetype.JobStateDiscarded,
			Tags: []string{"tag_a", "tag_b"}, UniqueKey: key, UniqueStates: defaultUniqueStates,
		}
		requireSameJob(t, job, want, "returned row")
		requireSameJob(t, e.getJob(t, job.ID), want, "stored row")
	})

	s.run(t, "Defaults", func(t *testing.T, e *env[TTx]) {
		before := now()
		job := e.insertFull(t, &driver.JobInsertFullParams{})
		after := now()
		requireEqual(t, job.State, millracetype.JobStateAvailable, "state")
		requireEqual(t, job.MaxAttempts, 25, "max_attempts")
		requireEqual(t, job.Priority, 1, "priority")
		requireEqual(t, job.Queue, "default", "queue")
		requireEqual(t, job.Attempt, 0, "attempt")
		requireJSON(t, job.Metadata, map[string]any{}, "metadata")
		requireEqual(t, len(job.Tags), 0, "number of tags")
		requireEqual(t, len(job.Errors), 0, "number of errors")
		requireNilTime(t, job.AttemptedAt, "attempted_at")
		requireNilTime(t, job.FinalizedAt, "finalized_at")
		requireBetween(t, job.CreatedAt, before, after, "created_at")
		requireTime(t, job.ScheduledAt, job.CreatedAt, "scheduled_at (the same now() as created_at)")
		if job.UniqueKey != nil || job.UniqueStates != 0 {
			t.Fatalf("got unique key %x states %#x, want none", job.UniqueKey, job.UniqueStates)
		}
	})

	s.run(t, "FinalizedAtCheckConstraint", func(t *testing.T, e *env[TTx]) {
		at := now()
		for _, state := range millracetype.JobStates() {
			t.Run(string(state), func(t *testing.T) {
				p := &driver.JobInsertFullParams{Schema: e.schema, Kind: testKind, Args: []byte(`{}`), State: state}
				if !state.Finalized() {
					// The other way round: finalized_at set on a live state.
					p.FinalizedAt = &at
				}
				if _, err := e.exec.JobInsertFull(e.ctx, p); err == nil {
					t.Fatalf("inserting a %s job with finalized_at %v succeeded; the CHECK constraint must refuse it",
						state, p.FinalizedAt)
				}
			})
		}
		requireEqual(t, len(e.allJobs(t)), 0, "jobs after refused inserts")
	})
}

func (s *suite[TTx]) testJobInsertMany(t *testing.T) {
	s.run(t, "Defaults", func(t *testing.T, e *env[TTx]) {
		before := now()
		res := e.insertMany(t, jobParams(), jobParams())
		after := now()
		for i, r := range res {
			job := r.Job
			if r.UniqueSkippedAsDuplicate {
				t.Fatalf("job %d: flagged as duplicate", i)
			}
			requireEqual(t, job.State, millracetype.JobStateAvailable, "state")
			requireBetween(t, job.CreatedAt, before, after, "created_at")
			requireTime(t, job.ScheduledAt, job.CreatedAt, "scheduled_at (the same now() as created_at)")
			requireJSON(t, job.Metadata, map[string]any{}, "metadata")
			requireEqual(t, len(job.Tags), 0, "number of tags")
			requireEqual(t, job.Attempt, 0, "attempt")
			requireNilTime(t, job.AttemptedAt, "attempted_at")
			requireNilTime(t, job.FinalizedAt, "finalized_at")
			requireEqual(t, len(job.Errors), 0, "number of errors")
			// What River reads: real empty values, not NULLs.
			requireEqual(t, e.rawString(t, e.sql(`SELECT metadata FROM `+e.table("river_job")+` WHERE id = $1::bigint`,
				`SELECT metadata FROM `+e.table("river_job")+` WHERE id = ?`), job.ID), "{}", "stored metadata")
			requireEqual(t, e.rawString(t, e.sql(`SELECT tags FROM `+e.table("river_job")+` WHERE id = $1::bigint`,
				`SELECT tags FROM `+e.table("river_job")+` WHERE id = ?`), job.ID), e.sql("{}", "[]"), "stored tags")
			if v, ok := e.rawValue(t, e.sql(`SELECT unique_states FROM `+e.table("river_job")+` WHERE id = $1::bigint`,
				`SELECT unique_states FROM `+e.table("river_job")+` WHERE id = ?`), job.ID); ok {
				t.Fatalf("stored unique_states: got %q, want NULL", v)
			}
			requireSameJob(t, e.getJob(t, job.ID), job, "stored row")
		}
		requireTime(t, res[1].Job.CreatedAt, res[0].Job.CreatedAt, "created_at of the second job of the statement")
	})

	s.run(t, "AllFields", func(t *testing.T, e *env[TTx]) {
		// Times in other zones are instants like any other.
		createdAt := now().Add(-time.Hour).In(time.FixedZone("west", -5*3600))
		scheduledAt := now().Add(time.Hour).In(time.FixedZone("east", 9*3600+1800))
		res := e.insertMany(t,
			jobParams(func(p *driver.JobInsertParams) {
				p.Args = []byte(`{"x":"y"}`)
				p.CreatedAt = &createdAt
				p.Kind = "other_kind"
				p.MaxAttempts = 7
				p.Metadata = []byte(`{"m":1}`)
				p.Priority = 3
				p.Queue = "queue_a"
				p.ScheduledAt = &scheduledAt
				p.State = millracetype.JobStateScheduled
				p.Tags = []string{"t_one", "t_two"}
			}),
			jobParams(func(p *driver.JobInsertParams) { p.State = millracetype.JobStatePending }),
		)
		job := res[0].Job
		requireJSON(t, job.Args, map[string]any{"x": "y"}, "args")
		requireTime(t, job.CreatedAt, createdAt, "created_at")
		requireEqual(t, job.Kind, "other_kind", "kind")
		requireEqual(t, job.MaxAttempts, 7, "max_attempts")
		requireJSON(t, job.Metadata, map[string]any{"m": 1}, "metadata")
		requireEqual(t, job.Priority, 3, "priority")
		requireEqual(t, job.Queue, "queue_a", "queue")
		requireTime(t, job.ScheduledAt, scheduledAt, "scheduled_at")
		requireEqual(t, job.State, millracetype.JobStateScheduled, "state")
		requireEqual(t, job.Tags, []string{"t_one", "t_two"}, "tags")
		requireEqual(t, res[1].Job.State, millracetype.JobStatePending, "state of the pending job")
	})

	s.run(t, "InputOrder", func(t *testing.T, e *env[TTx]) {
		var jobs []*driver.JobInsertParams
		for i := range 30 {
			jobs = append(jobs, jobParams(func(p *driver.JobInsertParams) {
				p.Args = []byte(`{"i":` + strconv.Itoa(i) + `}`)
				p.Kind = fmt.Sprintf("kind_%d", i%4)
				p.Priority = 4 - i%4
			}))
		}
		res := e.insertMany(t, jobs...)
		var prev int64
		for i, r := range res {
			requireJSON(t, r.Job.Args, map[string]any{"i": i}, fmt.Sprintf("args of result %d", i))
			requireEqual(t, r.Job.Kind, fmt.Sprintf("kind_%d", i%4), fmt.Sprintf("kind of result %d", i))
			if r.Job.ID <= prev {
				t.Fatalf("result %d: id %d not above the previous %d: ids must follow input order", i, r.Job.ID, prev)
			}
			prev = r.Job.ID
		}
	})

	s.run(t, "Empty", func(t *testing.T, e *env[TTx]) {
		res, err := e.exec.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: e.schema})
		requireNoError(t, err, "JobInsertMany of no jobs")
		requireEqual(t, len(res), 0, "results")
	})

	s.run(t, "UniqueConflictWithExisting", func(t *testing.T, e *env[TTx]) {
		key := uniqueKey("conflict")
		first := e.insertMany(t, jobParams(func(p *driver.JobInsertParams) {
			p.UniqueKey, p.UniqueStates = key, defaultUniqueStates
			p.Args = []byte(`{"first":true}`)
		}))[0]
		if first.UniqueSkippedAsDuplicate {
			t.Fatal("first unique insert flagged as duplicate")
		}
		res := e.insertMany(t,
			jobParams(func(p *driver.JobInsertParams) {
				p.UniqueKey, p.UniqueStates = key, defaultUniqueStates
				p.Args = []byte(`{"first":false}`)
			}),
			jobParams(),
		)
		if !res[0].UniqueSkippedAsDuplicate {
			t.Fatal("second insert of the same unique key not flagged as duplicate")
		}
		requireSameJob(t, res[0].Job, first.Job, "row returned for the duplicate")
		if res[1].UniqueSkippedAsDuplicate {
			t.Fatal("non-unique job of the same batch flagged as duplicate")
		}
		requireIDs(t, e.allJobs(t), []int64{first.Job.ID, res[1].Job.ID}, "jobs in the table")
	})

	s.run(t, "UniqueDuplicateWithinBatch", func(t *testing.T, e *env[TTx]) {
		unique := func(key string, n int) *driver.JobInsertParams {
			return jobParams(func(p *driver.JobInsertParams) {
				p.UniqueKey, p.UniqueStates = uniqueKey(key), defaultUniqueStates
				p.Args = []byte(`{"n":` + strconv.Itoa(n) + `}`)
			})
		}
		res := e.insertMany(t, unique("a", 0), jobParams(), unique("a", 2), unique("b", 3), unique("a", 4))
		for i, dup := range []bool{false, false, true, false, true} {
			if res[i].UniqueSkippedAsDuplicate != dup {
				t.Fatalf("result %d: UniqueSkippedAsDuplicate = %v, want %v", i, res[i].UniqueSkippedAsDuplicate, dup)
			}
		}
		requireSameJob(t, res[2].Job, res[0].Job, "duplicate's row (the first of its key)")
		requireSameJob(t, res[4].Job, res[0].Job, "second duplicate's row")
		requireJSON(t, res[0].Job.Args, map[string]any{"n": 0}, "args of the inserted unique job")
		requireIDs(t, e.allJobs(t), sortedIDs([]int64{res[0].Job.ID, res[1].Job.ID, res[3].Job.ID}), "jobs in the table")
	})

	s.run(t, "UniqueStatesMask", func(t *testing.T, e *env[TTx]) {
		// With River's default mask, a key is held by a job in any state
		// but cancelled and discarded.
		for _, state := range millracetype.JobStates() {
			t.Run(string(state), func(t *testing.T) {
				key := uniqueKey("mask-" + string(state))
				p := inState(state, now())
				p.UniqueKey, p.UniqueStates = key, defaultUniqueStates
				existing := e.insertFull(t, p)
				res := e.insertMany(t, jobParams(func(p *driver.JobInsertParams) {
					p.UniqueKey, p.UniqueStates = key, defaultUniqueStates
				}))[0]
				wantDup := state != millracetype.JobStateCancelled && state != millracetype.JobStateDiscarded
				if res.UniqueSkippedAsDuplicate != wantDup {
					t.Fatalf("existing job %s: UniqueSkippedAsDuplicate = %v, want %v", state, res.UniqueSkippedAsDuplicate, wantDup)
				}
				if wantDup {
					requireEqual(t, res.Job.ID, existing.ID, "id of the row returned for the duplicate")
				} else if res.Job.ID == existing.ID {
					t.Fatal("no new row inserted next to a job outside the mask")
				}
			})
		}
	})

	s.run(t, "UniqueKeyFreedByCancel", func(t *testing.T, e *env[TTx]) {
		key := uniqueKey("cancel-frees")
		withKey := func(p *driver.JobInsertParams) { p.UniqueKey, p.UniqueStates = key, defaultUniqueStates }
		first := e.insertMany(t, jobParams(withKey))[0].Job
		if !e.insertMany(t, jobParams(withKey))[0].UniqueSkippedAsDuplicate {
			t.Fatal("second insert while the first job is available not flagged as duplicate")
		}
		_, err := e.exec.JobCancel(e.ctx, &driver.JobCancelParams{Schema: e.schema, ID: first.ID, CancelAttemptedAt: now()})
		requireNoError(t, err, "JobCancel")
		res := e.insertMany(t, jobParams(withKey))[0]
		if res.UniqueSkippedAsDuplicate || res.Job.ID == first.ID {
			t.Fatalf("insert after the holder was cancelled: duplicate %v id %d, want a new row", res.UniqueSkippedAsDuplicate, res.Job.ID)
		}
	})

	s.run(t, "UniqueStatesRoundTrip", func(t *testing.T, e *env[TTx]) {
		cases := []struct {
			mask byte
			bits string // as Postgres prints the bit(8), River's order
		}{
			{defaultUniqueStates, "11110101"},
			{minimalUniqueStates, "11010001"},
			{millracetype.UniqueStatesMask(millracetype.JobStateAvailable), "00000001"},
			{millracetype.UniqueStatesMask(millracetype.JobStateScheduled), "10000000"},
		}
		for i, c := range cases {
			key := uniqueKey(fmt.Sprintf("round-trip-%d", i))
			job := e.insertMany(t, jobParams(func(p *driver.JobInsertParams) { p.UniqueKey, p.UniqueStates = key, c.mask }))[0].Job
			requireEqual(t, job.UniqueStates, c.mask, "unique_states read back")
			requireEqual(t, job.UniqueKey, key, "unique_key read back")
			// SQLite stores the mask as an integer whose bit 0 is
			// available, the bit River's bit(8) has last.
			requireEqual(t, e.rawString(t, e.sql(`SELECT unique_states FROM `+e.table("river_job")+` WHERE id = $1::bigint`,
				`SELECT unique_states FROM `+e.table("river_job")+` WHERE id = ?`), job.ID),
				e.sql(c.bits, fmt.Sprint(c.mask)), fmt.Sprintf("stored unique_states of mask %#x", c.mask))
			requireEqual(t, e.rawString(t, e.sql(`SELECT encode(unique_key, 'hex') FROM `+e.table("river_job")+` WHERE id = $1::bigint`,
				`SELECT lower(hex(unique_key)) FROM `+e.table("river_job")+` WHERE id = ?`), job.ID),
				fmt.Sprintf("%x", key), "stored unique_key")
		}
	})

	s.run(t, "Notify", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicInsert)
		_, err := e.exec.JobInsertMany(e.ctx, &driver.JobInsertManyParams{
			Schema:       e.schema,
			Jobs:         []*driver.JobInsertParams{jobParams(func(p *driver.JobInsertParams) { p.Queue = "q_one" }), jobParams(func(p *driver.JobInsertParams) { p.Queue = "q_two" }), jobParams(func(p *driver.JobInsertParams) { p.Queue = "q_three" })},
			NotifyQueues: []string{"q_one", "q_two"},
		})
		requireNoError(t, err, "JobInsertMany")
		got := map[string]bool{}
		for range 2 {
			n := e.next(t, l)
			requireEqual(t, n.Topic, driver.TopicInsert, "topic")
			// Byte for byte what River sends, spacing included.
			var queue string
			for _, q := range []string{"q_one", "q_two"} {
				if n.Payload == `{"queue": "`+q+`"}` {
					queue = q
				}
			}
			if queue == "" || got[queue] {
				t.Fatalf("unexpected insert notification payload %s (have %v)", n.Payload, got)
			}
			got[queue] = true
		}
		// q_three was not listed: the caller decides what to notify.
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)

		e.insertMany(t, jobParams())
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)
	})
}

func (s *suite[TTx]) testJobInsertCopy(t *testing.T) {
	s.run(t, "Inserts", func(t *testing.T, e *env[TTx]) {
		createdAt := now().Add(-time.Hour)
		scheduledAt := now().Add(time.Hour)
		key := uniqueKey("copy")
		jobs := []*driver.JobInsertParams{
			jobParams(),
			jobParams(func(p *driver.JobInsertParams) {
				p.Args = []byte(`{"x":"y"}`)
				p.CreatedAt = &createdAt
				p.Kind = "copy_kind"
				p.MaxAttempts = 5
				p.Metadata = []byte(`{"m":true}`)
				p.Priority = 2
				p.Queue = "copy_queue"
				p.ScheduledAt = &scheduledAt
				p.State = millracetype.JobStateScheduled
				p.Tags = []string{"tag_c"}
				p.UniqueKey, p.UniqueStates = key, defaultUniqueStates
			}),
			jobParams(func(p *driver.JobInsertParams) { p.State = millracetype.JobStatePending }),
		}
		before := now()
		n, err := e.exec.JobInsertCopy(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: jobs})
		after := now()
		requireNoError(t, err, "JobInsertCopy")
		requireEqual(t, n, 3, "inserted count")

		rows := e.allJobs(t)
		requireEqual(t, len(rows), 3, "rows in the table")
		plain, full, pending := rows[0], rows[1], rows[2]
		requireEqual(t, plain.State, millracetype.JobStateAvailable, "state of the first job")
		requireBetween(t, plain.CreatedAt, before, after, "default created_at")
		requireTime(t, plain.ScheduledAt, plain.CreatedAt, "default scheduled_at")
		requireJSON(t, plain.Metadata, map[string]any{}, "default metadata")
		requireEqual(t, len(plain.Tags), 0, "default tags")
		requireEqual(t, e.rawString(t, e.sql(`SELECT tags FROM `+e.table("river_job")+` WHERE id = $1::bigint`,
			`SELECT tags FROM `+e.table("river_job")+` WHERE id = ?`), plain.ID), e.sql("{}", "[]"), "stored tags")
		if v, ok := e.rawValue(t, e.sql(`SELECT unique_states FROM `+e.table("river_job")+` WHERE id = $1::bigint`,
			`SELECT unique_states FROM `+e.table("river_job")+` WHERE id = ?`), plain.ID); ok {
			t.Fatalf("stored unique_states of a non-unique job: got %q, want NULL", v)
		}

		requireJSON(t, full.Args, map[string]any{"x": "y"}, "args")
		requireTime(t, full.CreatedAt, createdAt, "created_at")
		requireEqual(t, full.Kind, "copy_kind", "kind")
		requireEqual(t, full.MaxAttempts, 5, "max_attempts")
		requireJSON(t, full.Metadata, map[string]any{"m": true}, "metadata")
		requireEqual(t, full.Priority, 2, "priority")
		requireEqual(t, full.Queue, "copy_queue", "queue")
		requireTime(t, full.ScheduledAt, scheduledAt, "scheduled_at")
		requireEqual(t, full.State, millracetype.JobStateScheduled, "state")
		requireEqual(t, full.Tags, []string{"tag_c"}, "tags")
		requireEqual(t, full.UniqueKey, key, "unique_key")
		requireEqual(t, full.UniqueStates, defaultUniqueStates, "unique_states")
		requireEqual(t, e.rawString(t, e.sql(`SELECT unique_states FROM `+e.table("river_job")+` WHERE id = $1::bigint`,
			`SELECT unique_states FROM `+e.table("river_job")+` WHERE id = ?`), full.ID),
			e.sql("11110101", fmt.Sprint(0b11110101)), "stored unique_states")

		requireEqual(t, pending.State, millracetype.JobStatePending, "state of the pending job")

		// The copied unique job holds its key for JobInsertMany too.
		if !e.insertMany(t, jobParams(func(p *driver.JobInsertParams) { p.UniqueKey, p.UniqueStates = key, defaultUniqueStates }))[0].UniqueSkippedAsDuplicate {
			t.Fatal("JobInsertMany of a key inserted by COPY not flagged as duplicate")
		}
	})

	s.run(t, "Empty", func(t *testing.T, e *env[TTx]) {
		n, err := e.exec.JobInsertCopy(e.ctx, &driver.JobInsertManyParams{Schema: e.schema})
		requireNoError(t, err, "JobInsertCopy of no jobs")
		requireEqual(t, n, 0, "inserted count")
	})

	s.run(t, "UniqueConflictFailsAll", func(t *testing.T, e *env[TTx]) {
		key := uniqueKey("copy-conflict")
		withKey := func(p *driver.JobInsertParams) { p.UniqueKey, p.UniqueStates = key, defaultUniqueStates }
		existing := e.insertMany(t, jobParams(withKey))[0].Job

		l := e.listen(t, e.schema, driver.TopicInsert)
		_, err := e.exec.JobInsertCopy(e.ctx, &driver.JobInsertManyParams{
			Schema: e.schema, Jobs: []*driver.JobInsertParams{jobParams(), jobParams(withKey), jobParams()},
			NotifyQueues: []string{"default"},
		})
		if err == nil {
			t.Fatal("JobInsertCopy with a key held by a live job succeeded; it must fail")
		}
		requireIDs(t, e.allJobs(t), []int64{existing.ID}, "jobs after the failed copy")
		// The failed call notified nobody either.
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)

		// Two jobs of one key in the same copy fail the same way.
		other := func(p *driver.JobInsertParams) {
			p.UniqueKey, p.UniqueStates = uniqueKey("copy-twice"), defaultUniqueStates
		}
		_, err = e.exec.JobInsertCopy(e.ctx, &driver.JobInsertManyParams{
			Schema: e.schema, Jobs: []*driver.JobInsertParams{jobParams(other), jobParams(other)},
		})
		if err == nil {
			t.Fatal("JobInsertCopy with one key twice succeeded; it must fail")
		}
		requireIDs(t, e.allJobs(t), []int64{existing.ID}, "jobs after the second failed copy")
	})

	s.run(t, "Notify", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicInsert)
		n, err := e.exec.JobInsertCopy(e.ctx, &driver.JobInsertManyParams{
			Schema:       e.schema,
			Jobs:         []*driver.JobInsertParams{jobParams(func(p *driver.JobInsertParams) { p.Queue = "copy_q" }), jobParams()},
			NotifyQueues: []string{"copy_q"},
		})
		requireNoError(t, err, "JobInsertCopy")
		requireEqual(t, n, 2, "inserted count")
		e.requireNext(t, l, driver.TopicInsert, map[string]any{"queue": "copy_q"})
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)

		_, err = e.exec.JobInsertCopy(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: []*driver.JobInsertParams{jobParams()}})
		requireNoError(t, err, "JobInsertCopy without NotifyQueues")
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)
	})
}
