package riverdrivertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// testSequence checks sequences: appended jobs get the next positions of
// their sequences and only each sequence's head leaves pending; a head
// finalized (or gone) lets the next pending job through, in position
// order, unless it is retried, still running, or blocks on failure.
func (s *suite[TTx]) testSequence(t *testing.T) {
	// seqJobs inserts pending jobs of queue with the keys given, in order,
	// and appends them.
	seqJobs := func(t *testing.T, e *env[TTx], queue string, keys ...string) ([]int64, *driver.SequencePromoteResult) {
		t.Helper()
		var params []*driver.JobInsertParams
		for _, k := range keys {
			params = append(params, jobParams(func(p *driver.JobInsertParams) {
				p.Queue, p.State = queue, millracetype.JobStatePending
				p.Metadata = []byte(fmt.Sprintf(`{%q:{"key":%q}}`, driver.SequenceMetadataKey, k))
			}))
		}
		res := e.insertMany(t, params...)
		ids := make([]int64, len(res))
		var app []driver.SequenceJob
		for i, r := range res {
			ids[i] = r.Job.ID
			app = append(app, driver.SequenceJob{Queue: queue, Key: keys[i], ID: r.Job.ID})
		}
		pr, err := e.exec.SequenceAppend(e.ctx, &driver.SequenceAppendParams{Schema: e.schema, Jobs: app})
		requireNoError(t, err, "SequenceAppend")
		return ids, pr
	}
	states := func(t *testing.T, e *env[TTx], ids ...int64) []millracetype.JobState {
		t.Helper()
		out := make([]millracetype.JobState, len(ids))
		for i, id := range ids {
			out[i] = e.getJob(t, id).State
		}
		return out
	}
	const (
		av = millracetype.JobStateAvailable
		pe = millracetype.JobStatePending
	)
	setState := func(t *testing.T, e *env[TTx], id int64, state string) {
		t.Helper()
		fin := "NULL"
		if state == "completed" || state == "cancelled" || state == "discarded" {
			fin = e.sql("now()", liteAgo(0))
		}
		e.rawExec(t, "UPDATE "+e.table("river_job")+" SET state = '"+state+"', finalized_at = "+fin+" WHERE id = "+e.sql("$1", "?"), id)
	}
	promoteHeads := func(t *testing.T, e *env[TTx], ids ...int64) *driver.SequencePromoteResult {
		t.Helper()
		r, err := e.exec.SequencePromote(e.ctx, &driver.SequencePromoteParams{Schema: e.schema, HeadIDs: ids})
		requireNoError(t, err, "SequencePromote")
		return r
	}

	s.run(t, "AppendMakesHeads", func(t *testing.T, e *env[TTx]) {
		ids, res := seqJobs(t, e, "q", "a", "b", "a", "a", "b")
		requireEqual(t, states(t, e, ids...), []millracetype.JobState{av, av, pe, pe, pe}, "states after append")
		requireEqual(t, res.Promoted, 2, "promoted")
		requireEqual(t, res.Moved, []driver.SequenceMoved{{ID: ids[0], State: av}, {ID: ids[1], State: av}}, "jobs moved")
		requireEqual(t, res.Queues, []string{"q"}, "queues with jobs made available")
		// Another queue's sequence of the same key is a sequence of its own.
		other, res := seqJobs(t, e, "q2", "a")
		requireEqual(t, states(t, e, other...), []millracetype.JobState{av}, "state in another queue")
		requireEqual(t, res.Queues, []string{"q2"}, "queues")
		// A later append waits behind the head.
		more, res := seqJobs(t, e, "q", "a")
		requireEqual(t, states(t, e, more...), []millracetype.JobState{pe}, "state of a job appended later")
		requireEqual(t, res.Promoted, 0, "promoted by the later append")

		rows, err := e.exec.SequenceGetMany(e.ctx, &driver.SequenceGetManyParams{Schema: e.schema, Limit: 10})
		requireNoError(t, err, "SequenceGetMany")
		requireEqual(t, len(rows), 3, "sequences")
		requireEqual(t, *rows[0], driver.SequenceRow{Queue: "q", Key: "a", HeadID: ids[0], HeadState: "available", Waiting: 3}, "q/a")
		requireEqual(t, *rows[1], driver.SequenceRow{Queue: "q", Key: "b", HeadID: ids[1], HeadState: "available", Waiting: 1}, "q/b")
		requireEqual(t, *rows[2], driver.SequenceRow{Queue: "q2", Key: "a", HeadID: other[0], HeadState: "available"}, "q2/a")
		page, err := e.exec.SequenceGetMany(e.ctx, &driver.SequenceGetManyParams{Schema: e.schema, Queue: "q", After: "a", Limit: 10})
		requireNoError(t, err, "SequenceGetMany after a")
		requireEqual(t, len(page), 1, "sequences of q after a")
		requireEqual(t, page[0].Key, "b", "key after a")
	})

	s.run(t, "InOrderThroughOutcomes", func(t *testing.T, e *env[TTx]) {
		ids, _ := seqJobs(t, e, "q", "k", "k", "k", "k", "k")
		// A head that runs, then waits for a retry, holds the sequence.
		for _, st := range []string{"running", "retryable", "scheduled"} {
			setState(t, e, ids[0], st)
			requireEqual(t, promoteHeads(t, e, ids[0]).Promoted, 0, "promoted while the head is "+st)
			requireEqual(t, states(t, e, ids[1:]...), []millracetype.JobState{pe, pe, pe, pe}, "others while the head is "+st)
		}
		// A sweep of the queue does not even lock (write) a sequence whose
		// head is not done (on a single writer, which locks nothing: does
		// not write it).
		rowVersion := e.sql("SELECT xmax::text FROM "+e.table("millrace_sequence"), "SELECT updated_at FROM "+e.table("millrace_sequence"))
		xmax := e.rawString(t, rowVersion)
		for _, all := range []bool{false, true} {
			p := &driver.SequencePromoteParams{Schema: e.schema, Queue: "q", SkipLocked: true}
			if all {
				p.Queue, p.All = "", true
			}
			r0, err := e.exec.SequencePromote(e.ctx, p)
			requireNoError(t, err, "SequencePromote sweep")
			requireEqual(t, r0.Promoted, 0, "promoted by a sweep while the head waits")
			requireEqual(t, e.rawString(t, rowVersion), xmax, "xmax (SQLite: updated_at) of a sequence after a sweep")
		}
		setState(t, e, ids[0], "completed")
		res := promoteHeads(t, e, ids[0])
		requireEqual(t, res.Promoted, 1, "promoted after completion")
		requireEqual(t, res.Queues, []string{"q"}, "queues")
		requireEqual(t, states(t, e, ids[1:]...), []millracetype.JobState{av, pe, pe, pe}, "after the first completed")
		// Promoting the same finished head again changes nothing.
		requireEqual(t, promoteHeads(t, e, ids[0]).Promoted, 0, "promoted twice")
		// A discarded head (not blocking) lets the next through; a job
		// cancelled while pending is passed over.
		setState(t, e, ids[2], "cancelled")
		setState(t, e, ids[1], "discarded")
		promoteHeads(t, e, ids[1])
		requireEqual(t, states(t, e, ids[3:]...), []millracetype.JobState{av, pe}, "after a discard, passing a cancelled job")
		// A deleted head lets the next through (selected by queue).
		e.rawExec(t, "DELETE FROM "+e.table("river_job")+" WHERE id = "+e.sql("$1", "?"), ids[3])
		r, err := e.exec.SequencePromote(e.ctx, &driver.SequencePromoteParams{Schema: e.schema, Queue: "q"})
		requireNoError(t, err, "SequencePromote by queue")
		requireEqual(t, r.Promoted, 1, "promoted after a delete")
		requireEqual(t, states(t, e, ids[4]), []millracetype.JobState{av}, "last job")
		// The last one done, the sequence is gone; a new job starts at once.
		setState(t, e, ids[4], "completed")
		r, err = e.exec.SequencePromote(e.ctx, &driver.SequencePromoteParams{Schema: e.schema, All: true})
		requireNoError(t, err, "SequencePromote all")
		requireEqual(t, r.Promoted, 0, "promoted when nothing waits")
		requireEqual(t, e.rawString(t, "SELECT count(*) FROM "+e.table("millrace_sequence")), "0", "sequences left")
		requireEqual(t, e.rawString(t, "SELECT count(*) FROM "+e.table("millrace_sequence_job")), "0", "sequence jobs left")
		again, _ := seqJobs(t, e, "q", "k")
		requireEqual(t, states(t, e, again...), []millracetype.JobState{av}, "a job of a new run of the sequence")
	})

	s.run(t, "BlockOnFailure", func(t *testing.T, e *env[TTx]) {
		params := []*driver.JobInsertParams{}
		for _, block := range []bool{true, false} {
			params = append(params, jobParams(func(p *driver.JobInsertParams) {
				p.Queue, p.State = "q", millracetype.JobStatePending
				p.Metadata = []byte(fmt.Sprintf(`{%q:{"key":"k","block":%t}}`, driver.SequenceMetadataKey, block))
			}))
		}
		res := e.insertMany(t, params...)
		_, err := e.exec.SequenceAppend(e.ctx, &driver.SequenceAppendParams{Schema: e.schema, Jobs: []driver.SequenceJob{
			{Queue: "q", Key: "k", ID: res[0].Job.ID}, {Queue: "q", Key: "k", ID: res[1].Job.ID}}})
		requireNoError(t, err, "SequenceAppend")
		head, next := res[0].Job.ID, res[1].Job.ID
		for _, st := range []string{"discarded", "cancelled"} {
			setState(t, e, head, st)
			requireEqual(t, promoteHeads(t, e, head).Promoted, 0, "promoted after a blocking head was "+st)
			rows, err := e.exec.SequenceGetMany(e.ctx, &driver.SequenceGetManyParams{Schema: e.schema, Limit: 10})
			requireNoError(t, err, "SequenceGetMany")
			requireEqual(t, *rows[0], driver.SequenceRow{Queue: "q", Key: "k", HeadID: head, HeadState: st, Waiting: 1, Blocked: true}, "blocked sequence")
		}
		// Retried and completed, the head lets the next through.
		setState(t, e, head, "available")
		requireEqual(t, promoteHeads(t, e, head).Promoted, 0, "promoted while the head is retried")
		setState(t, e, head, "completed")
		requireEqual(t, promoteHeads(t, e, head).Promoted, 1, "promoted after the retried head completed")
		requireEqual(t, states(t, e, next), []millracetype.JobState{av}, "next")
	})

	s.run(t, "FutureJobScheduled", func(t *testing.T, e *env[TTx]) {
		later := now().Add(time.Hour)
		res := e.insertMany(t, jobParams(func(p *driver.JobInsertParams) {
			p.Queue, p.State, p.ScheduledAt = "q", millracetype.JobStatePending, &later
		}))
		r, err := e.exec.SequenceAppend(e.ctx, &driver.SequenceAppendParams{Schema: e.schema,
			Jobs: []driver.SequenceJob{{Queue: "q", Key: "k", ID: res[0].Job.ID}}})
		requireNoError(t, err, "SequenceAppend")
		requireEqual(t, r.Promoted, 1, "promoted")
		requireEqual(t, r.Moved, []driver.SequenceMoved{{ID: res[0].Job.ID, State: millracetype.JobStateScheduled}}, "job moved")
		requireEqual(t, len(r.Queues), 0, "queues with jobs made available")
		requireEqual(t, states(t, e, res[0].Job.ID), []millracetype.JobState{millracetype.JobStateScheduled}, "state of a future head")
	})

	s.run(t, "LockedByInsert", func(t *testing.T, e *env[TTx]) {
		ids, _ := seqJobs(t, e, "q", "k", "k")
		setState(t, e, ids[0], "completed")
		// An insert into the sequence, not committed, holds it.
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(context.WithoutCancel(e.ctx)) }()
		res, err := tx.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: []*driver.JobInsertParams{
			jobParams(func(p *driver.JobInsertParams) { p.Queue, p.State = "q", millracetype.JobStatePending })}})
		requireNoError(t, err, "JobInsertMany in tx")
		_, err = tx.SequenceAppend(e.ctx, &driver.SequenceAppendParams{Schema: e.schema,
			Jobs: []driver.SequenceJob{{Queue: "q", Key: "k", ID: res[0].Job.ID}}})
		requireNoError(t, err, "SequenceAppend in tx")
		// It promoted the sequence itself (the next one, not its own).
		inTx, err := tx.JobGetByID(e.ctx, &driver.JobGetByIDParams{Schema: e.schema, ID: ids[1]})
		requireNoError(t, err, "JobGetByID in tx")
		requireEqual(t, inTx.State, av, "promoted by the insert (seen in its transaction)")
		requireNoError(t, tx.Rollback(e.ctx), "Rollback")
		setState(t, e, ids[1], "completed")
		if !driver.IsSingleWriter(e.drv) {
			// A promotion skipping locks passes over a held sequence (a
			// single writer has no row locks to skip).
			tx2, err := e.exec.Begin(e.ctx)
			requireNoError(t, err, "Begin")
			defer func() { _ = tx2.Rollback(context.WithoutCancel(e.ctx)) }()
			requireNoError(t, tx2.Exec(e.ctx, "SELECT 1 FROM "+e.table("millrace_sequence")+" FOR UPDATE"), "lock")
			r, err := e.exec.SequencePromote(e.ctx, &driver.SequencePromoteParams{Schema: e.schema, Queue: "q", SkipLocked: true})
			requireNoError(t, err, "SequencePromote skipping locks")
			requireEqual(t, r.Promoted, 0, "promoted past a lock")
			requireNoError(t, tx2.Rollback(e.ctx), "Rollback")
		}
		// Free again, the sequence is emptied (its insert rolled back).
		r, err := e.exec.SequencePromote(e.ctx, &driver.SequencePromoteParams{Schema: e.schema, Queue: "q", SkipLocked: true})
		requireNoError(t, err, "SequencePromote")
		requireEqual(t, r.Promoted, 0, "promoted after rollback")
		requireEqual(t, e.rawString(t, "SELECT count(*) FROM "+e.table("millrace_sequence")), "0", "sequences left")
	})

	s.run(t, "Notifies", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicInsert)
		ids, _ := seqJobs(t, e, "q", "k", "k")
		e.requireNext(t, l, driver.TopicInsert, map[string]any{"queue": "q"})
		setState(t, e, ids[0], "completed")
		promoteHeads(t, e, ids[0])
		e.requireNext(t, l, driver.TopicInsert, map[string]any{"queue": "q"})
		setState(t, e, ids[1], "completed")
		promoteHeads(t, e, ids[1])
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)
	})

	s.run(t, "BadParams", func(t *testing.T, e *env[TTx]) {
		_, err := e.exec.SequencePromote(e.ctx, &driver.SequencePromoteParams{Schema: e.schema})
		if err == nil {
			t.Fatal("SequencePromote without a selector: no error")
		}
		_, err = e.exec.SequencePromote(e.ctx, &driver.SequencePromoteParams{Schema: e.schema, Queue: "q", All: true})
		if err == nil {
			t.Fatal("SequencePromote with two selectors: no error")
		}
		_, err = e.exec.SequenceAppend(e.ctx, &driver.SequenceAppendParams{Schema: e.schema, Jobs: []driver.SequenceJob{{Queue: "q", ID: 1}}})
		if err == nil {
			t.Fatal("SequenceAppend without a key: no error")
		}
		_, err = e.exec.SequenceGetMany(e.ctx, &driver.SequenceGetManyParams{Schema: e.schema})
		if err == nil {
			t.Fatal("SequenceGetMany without a limit: no error")
		}
	})
}
