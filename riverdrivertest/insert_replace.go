package riverdrivertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// everyStateMask is a unique_states mask of all eight states, so that a
// finished job holds its key too.
const everyStateMask byte = 0xFF

// replacing returns a mod that gives a job key k (with mask) and the
// replace flags.
func replacing(k []byte, mask byte, args, sched bool) func(p *driver.JobInsertParams) {
	return func(p *driver.JobInsertParams) {
		p.UniqueKey, p.UniqueStates = k, mask
		p.ReplaceArgs, p.ReplaceScheduledAt = args, sched
	}
}

func (s *suite[TTx]) testJobInsertManyReplace(t *testing.T) {
	// A duplicate that has not started takes the args, run time and state
	// asked for, and nothing else; a pending one keeps its state.
	s.run(t, "NotStartedIsReplaced", func(t *testing.T, e *env[TTx]) {
		oldAt := now().Add(-time.Minute)
		newAt := now().Add(time.Hour)
		for _, state := range []millracetype.JobState{millracetype.JobStateAvailable, millracetype.JobStatePending,
			millracetype.JobStateRetryable, millracetype.JobStateScheduled} {
			t.Run(string(state), func(t *testing.T) {
				key := uniqueKey("replace-" + string(state))
				p := inState(state, oldAt)
				p.UniqueKey, p.UniqueStates = key, defaultUniqueStates
				p.Args, p.ScheduledAt, p.Priority = []byte(`{"v":"old"}`), &oldAt, 2
				p.Metadata = []byte(`{"m":"old"}`)
				existing := e.insertFull(t, p)
				res := e.insertMany(t, jobParams(replacing(key, defaultUniqueStates, true, true), func(p *driver.JobInsertParams) {
					p.Args, p.ScheduledAt, p.State, p.Priority = []byte(`{"v":"new"}`), &newAt, millracetype.JobStateScheduled, 4
					p.Metadata = []byte(`{"m":"new"}`)
				}))[0]
				if !res.UniqueReplaced || res.UniqueSkippedAsDuplicate {
					t.Fatalf("existing job %s: UniqueReplaced %v UniqueSkippedAsDuplicate %v, want true false",
						state, res.UniqueReplaced, res.UniqueSkippedAsDuplicate)
				}
				requireEqual(t, res.Job.ID, existing.ID, "id of the replaced job")
				row := e.getJob(t, existing.ID)
				requireSameJob(t, res.Job, row, "returned row against the stored one")
				requireJSON(t, row.Args, map[string]any{"v": "new"}, "replaced args")
				requireTime(t, row.ScheduledAt, newAt, "replaced scheduled_at")
				wantState := millracetype.JobStateScheduled
				if state == millracetype.JobStatePending {
					wantState = millracetype.JobStatePending
				}
				requireEqual(t, row.State, wantState, "state after the replacement")
				requireEqual(t, row.Priority, 2, "priority (not replaced)")
				requireJSON(t, row.Metadata, map[string]any{"m": "old"}, "metadata (not replaced)")
				requireEqual(t, row.Attempt, existing.Attempt, "attempt (not replaced)")
				var withKey []*millracetype.JobRow
				for _, j := range e.allJobs(t) {
					if string(j.UniqueKey) == string(key) {
						withKey = append(withKey, j)
					}
				}
				requireIDs(t, withKey, []int64{existing.ID}, "jobs with the key")
			})
		}
	})

	s.run(t, "OnlyWhatIsAsked", func(t *testing.T, e *env[TTx]) {
		oldAt := now().Add(time.Hour)
		newAt := now()
		insertOld := func(name string) *millracetype.JobRow {
			return e.insertMany(t, jobParams(func(p *driver.JobInsertParams) {
				p.UniqueKey, p.UniqueStates = uniqueKey(name), defaultUniqueStates
				p.Args, p.ScheduledAt, p.State = []byte(`{"v":"old"}`), &oldAt, millracetype.JobStateScheduled
			}))[0].Job
		}
		again := func(name string, args, sched bool) *driver.JobInsertResult {
			return e.insertMany(t, jobParams(replacing(uniqueKey(name), defaultUniqueStates, args, sched), func(p *driver.JobInsertParams) {
				p.Args, p.ScheduledAt, p.State = []byte(`{"v":"new"}`), &newAt, millracetype.JobStateAvailable
			}))[0]
		}

		argsOnly := insertOld("args-only")
		res := again("args-only", true, false)
		requireEqual(t, res.UniqueReplaced, true, "UniqueReplaced (args only)")
		row := e.getJob(t, argsOnly.ID)
		requireJSON(t, row.Args, map[string]any{"v": "new"}, "args (replaced)")
		requireTime(t, row.ScheduledAt, oldAt, "scheduled_at (not replaced)")
		requireEqual(t, row.State, millracetype.JobStateScheduled, "state (not replaced)")

		schedOnly := insertOld("sched-only")
		res = again("sched-only", false, true)
		requireEqual(t, res.UniqueReplaced, true, "UniqueReplaced (scheduled_at only)")
		row = e.getJob(t, schedOnly.ID)
		requireJSON(t, row.Args, map[string]any{"v": "old"}, "args (not replaced)")
		requireTime(t, row.ScheduledAt, newAt, "scheduled_at (replaced)")
		requireEqual(t, row.State, millracetype.JobStateAvailable, "state (replaced with the run time)")

		// Without flags in a batch that has some, a duplicate is skipped.
		plain := insertOld("no-flags")
		res = e.insertMany(t,
			jobParams(func(p *driver.JobInsertParams) {
				p.UniqueKey, p.UniqueStates, p.Args = uniqueKey("no-flags"), defaultUniqueStates, []byte(`{"v":"new"}`)
			}),
			jobParams(replacing(uniqueKey("other-key"), defaultUniqueStates, true, false)))[0]
		if !res.UniqueSkippedAsDuplicate || res.UniqueReplaced {
			t.Fatalf("job without flags: UniqueSkippedAsDuplicate %v UniqueReplaced %v, want true false", res.UniqueSkippedAsDuplicate, res.UniqueReplaced)
		}
		requireSameJob(t, e.getJob(t, plain.ID), plain, "duplicate inserted without flags")
	})

	// A running or finished duplicate (one that holds its key by the
	// mask) is left as it was; one that does not hold it by the mask
	// gets a new job next to it.
	s.run(t, "StartedOrFinishedLeftAlone", func(t *testing.T, e *env[TTx]) {
		at := now().Add(-time.Minute)
		newAt := now().Add(time.Hour)
		for _, state := range []millracetype.JobState{millracetype.JobStateRunning, millracetype.JobStateCompleted,
			millracetype.JobStateCancelled, millracetype.JobStateDiscarded} {
			for _, mask := range []byte{defaultUniqueStates, everyStateMask} {
				t.Run(fmt.Sprintf("%s/%08b", state, mask), func(t *testing.T) {
					key := uniqueKey(fmt.Sprintf("left-alone-%s-%d", state, mask))
					p := inState(state, at)
					p.UniqueKey, p.UniqueStates, p.Args = key, mask, []byte(`{"v":"old"}`)
					existing := e.insertFull(t, p)
					res := e.insertMany(t, jobParams(replacing(key, mask, true, true), func(p *driver.JobInsertParams) {
						p.Args, p.ScheduledAt, p.State = []byte(`{"v":"new"}`), &newAt, millracetype.JobStateScheduled
					}))[0]
					requireSameJob(t, e.getJob(t, existing.ID), existing, "existing job after the replacing insert")
					holds := mask&millracetype.UniqueStatesMask(state) != 0
					if res.UniqueReplaced {
						t.Fatalf("existing job %s: flagged replaced", state)
					}
					if holds {
						requireEqual(t, res.UniqueSkippedAsDuplicate, true, "UniqueSkippedAsDuplicate")
						requireSameJob(t, res.Job, existing, "row returned for the duplicate")
						return
					}
					requireEqual(t, res.UniqueSkippedAsDuplicate, false, "UniqueSkippedAsDuplicate (the mask frees the key)")
					if res.Job.ID == existing.ID {
						t.Fatal("no new row next to a job outside the mask")
					}
					requireJSON(t, res.Job.Args, map[string]any{"v": "new"}, "args of the new job")
				})
			}
		}
	})

	// Jobs of one key in one batch act as if inserted one after another.
	s.run(t, "WithinBatch", func(t *testing.T, e *env[TTx]) {
		at := now().Add(time.Hour)
		a := uniqueKey("batch-a")
		first := jobParams(func(p *driver.JobInsertParams) {
			p.UniqueKey, p.UniqueStates, p.Args = a, defaultUniqueStates, []byte(`{"n":0}`)
		})
		res := e.insertMany(t,
			first,
			jobParams(),
			jobParams(replacing(a, defaultUniqueStates, true, false), func(p *driver.JobInsertParams) { p.Args = []byte(`{"n":2}`) }),
			jobParams(replacing(a, defaultUniqueStates, false, true), func(p *driver.JobInsertParams) {
				p.Args, p.ScheduledAt, p.State = []byte(`{"n":3}`), &at, millracetype.JobStateScheduled
			}),
			jobParams(func(p *driver.JobInsertParams) {
				p.UniqueKey, p.UniqueStates, p.Args = a, defaultUniqueStates, []byte(`{"n":4}`)
			}),
		)
		for i, want := range []struct{ skipped, replaced bool }{{false, false}, {false, false}, {false, true}, {false, true}, {true, false}} {
			if res[i].UniqueSkippedAsDuplicate != want.skipped || res[i].UniqueReplaced != want.replaced {
				t.Fatalf("result %d: UniqueSkippedAsDuplicate %v UniqueReplaced %v, want %v %v",
					i, res[i].UniqueSkippedAsDuplicate, res[i].UniqueReplaced, want.skipped, want.replaced)
			}
		}
		row := e.getJob(t, res[0].Job.ID)
		for _, i := range []int{2, 3, 4} {
			requireSameJob(t, res[i].Job, row, fmt.Sprintf("row of result %d", i))
		}
		requireJSON(t, row.Args, map[string]any{"n": 2}, "args (from the last job replacing them)")
		requireTime(t, row.ScheduledAt, at, "scheduled_at (from the last job replacing it)")
		requireEqual(t, row.State, millracetype.JobStateScheduled, "state (with the run time)")
		requireJSON(t, first.Args, map[string]any{"n": 0}, "the caller's params (must not change)")
		requireIDs(t, e.allJobs(t), []int64{res[0].Job.ID, res[1].Job.ID}, "jobs in the table")

		// Against a row that exists: the first job of the key, without
		// flags, is skipped; the later one, with, replaces.
		res = e.insertMany(t,
			jobParams(func(p *driver.JobInsertParams) {
				p.UniqueKey, p.UniqueStates, p.Args = a, defaultUniqueStates, []byte(`{"n":5}`)
			}),
			jobParams(replacing(a, defaultUniqueStates, true, false), func(p *driver.JobInsertParams) { p.Args = []byte(`{"n":6}`) }),
		)
		if !res[0].UniqueSkippedAsDuplicate || res[0].UniqueReplaced || res[1].UniqueSkippedAsDuplicate || !res[1].UniqueReplaced {
			t.Fatalf("second batch: results %+v %+v, want skipped then replaced", *res[0], *res[1])
		}
		requireJSON(t, e.getJob(t, row.ID).Args, map[string]any{"n": 6}, "args after the second batch")

		// Against a running row: every job of the key is skipped.
		r := uniqueKey("batch-running")
		p := running(now())
		p.UniqueKey, p.UniqueStates, p.Args = r, defaultUniqueStates, []byte(`{"n":0}`)
		run := e.insertFull(t, p)
		res = e.insertMany(t,
			jobParams(replacing(r, defaultUniqueStates, true, true), func(p *driver.JobInsertParams) { p.Args = []byte(`{"n":1}`) }),
			jobParams(replacing(r, defaultUniqueStates, true, false), func(p *driver.JobInsertParams) { p.Args = []byte(`{"n":2}`) }),
		)
		for i := range res {
			if !res[i].UniqueSkippedAsDuplicate || res[i].UniqueReplaced {
				t.Fatalf("running duplicate, result %d: %+v, want skipped", i, *res[i])
			}
		}
		requireSameJob(t, e.getJob(t, run.ID), run, "running job after the batch")

		// A pending job and a later one replacing its run time with
		// another state cannot be sent as one row.
		pk := uniqueKey("batch-pending")
		_, err := e.exec.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: []*driver.JobInsertParams{
			jobParams(func(p *driver.JobInsertParams) {
				p.UniqueKey, p.UniqueStates, p.State = pk, defaultUniqueStates, millracetype.JobStatePending
			}),
			jobParams(replacing(pk, defaultUniqueStates, false, true)),
		}})
		if err == nil {
			t.Fatal("a pending job and a later one of its key replacing its run time: accepted")
		}
	})

	// A fetch that takes the row first (it is running when the insert
	// gets its lock) leaves it alone.
	s.run(t, "WaitsForAFetchHoldingTheRow", func(t *testing.T, e *env[TTx]) {
		e.requireRowLocks(t)
		key := uniqueKey("fetched")
		job := e.insertMany(t, jobParams(func(p *driver.JobInsertParams) {
			p.UniqueKey, p.UniqueStates, p.Args = key, defaultUniqueStates, []byte(`{"v":"old"}`)
		}))[0].Job
		var res *driver.JobInsertResult // written by second, read after race returns
		r := e.race(t, func(tx driver.ExecutorTx) error {
			got, err := tx.JobGetAvailable(e.ctx, &driver.JobGetAvailableParams{Schema: e.schema, Queue: "default", Max: 1,
				ClientID: "client_a"})
			if err == nil && len(got) != 1 {
				err = fmt.Errorf("fetched %d jobs, want 1", len(got))
			}
			return err
		}, func(exec driver.Executor) (*millracetype.JobRow, error) {
			out, err := exec.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: []*driver.JobInsertParams{
				jobParams(replacing(key, defaultUniqueStates, true, true), func(p *driver.JobInsertParams) { p.Args = []byte(`{"v":"new"}`) }),
			}})
			if err != nil {
				return nil, err
			}
			res = out[0]
			return res.Job, nil
		})
		requireNoError(t, r.err, "JobInsertMany behind the fetch")
		if !res.UniqueSkippedAsDuplicate || res.UniqueReplaced {
			t.Fatalf("insert behind a fetch: %+v, want skipped", *res)
		}
		e.requireReturnedIsStored(t, r, "insert behind a fetch")
		row := e.getJob(t, job.ID)
		requireEqual(t, row.State, millracetype.JobStateRunning, "state of the fetched job")
		requireJSON(t, row.Args, map[string]any{"v": "old"}, "args of the fetched job")
	})

	s.run(t, "Notifies", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicInsert)
		key := uniqueKey("notify")
		for range 2 {
			_, err := e.exec.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, NotifyQueues: []string{"default"},
				Jobs: []*driver.JobInsertParams{jobParams(replacing(key, defaultUniqueStates, true, true))}})
			requireNoError(t, err, "JobInsertMany")
			e.requireNext(t, l, driver.TopicInsert, map[string]any{"queue": "default"})
		}
		_, err := e.exec.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: e.schema,
			Jobs: []*driver.JobInsertParams{jobParams(replacing(key, defaultUniqueStates, true, true))}})
		requireNoError(t, err, "JobInsertMany without NotifyQueues")
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)
	})

	s.run(t, "Refused", func(t *testing.T, e *env[TTx]) {
		for _, mod := range []func(p *driver.JobInsertParams){
			func(p *driver.JobInsertParams) { p.ReplaceArgs = true },
			func(p *driver.JobInsertParams) { p.ReplaceScheduledAt = true },
			func(p *driver.JobInsertParams) { p.ReplaceArgs, p.UniqueKey = true, uniqueKey("no-states") },
		} {
			_, err := e.exec.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: []*driver.JobInsertParams{jobParams(mod)}})
			if err == nil {
				t.Fatal("JobInsertMany accepted a replacing job without a unique key and states")
			}
		}
		_, err := e.exec.JobInsertCopy(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: []*driver.JobInsertParams{
			jobParams(), jobParams(replacing(uniqueKey("copy"), defaultUniqueStates, true, false))}})
		if err == nil {
			t.Fatal("JobInsertCopy accepted a replacing job")
		}
		requireIDs(t, e.allJobs(t), nil, "jobs in the table")
	})
}
