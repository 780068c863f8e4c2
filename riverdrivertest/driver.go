package riverdrivertest

import (
	"context"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

func (s *suite[TTx]) testDriver(t *testing.T) {
	s.run(t, "Capabilities", func(t *testing.T, e *env[TTx]) {
		if !e.drv.PoolIsSet() {
			t.Fatal("PoolIsSet is false for a driver made on a pool")
		}
		l, err := e.drv.GetListener(e.schema)
		if e.drv.SupportsListener() {
			requireNoError(t, err, "GetListener of a driver that supports listening")
			if l == nil {
				t.Fatal("GetListener returned a nil listener")
			}
			requireClosed(t, l.Ping(e.ctx), "Ping of a listener never connected")
		} else if err == nil {
			t.Fatal("GetListener succeeded although SupportsListener is false")
		}
	})

	s.run(t, "UnwrapTxOfBegin", func(t *testing.T, e *env[TTx]) {
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(context.WithoutCancel(e.ctx)) }()
		native, err := e.drv.UnwrapTx(tx)
		requireNoError(t, err, "UnwrapTx of a transaction from Begin")
		// The native transaction is the same one: what an executor on it
		// writes, tx sees before the commit and the pool only after.
		job := e.insertFullWith(t, e.drv.UnwrapExecutor(native), &driver.JobInsertFullParams{})
		_, err = tx.JobGetByID(e.ctx, &driver.JobGetByIDParams{Schema: e.schema, ID: job.ID})
		requireNoError(t, err, "JobGetByID through the transaction")
		e.requireGone(t, job.ID)
		requireNoError(t, tx.Commit(e.ctx), "Commit")
		e.getJob(t, job.ID)
	})
}

// insertFullWith inserts a job through another executor (a transaction).
func (e *env[TTx]) insertFullWith(t *testing.T, exec driver.Executor, p *driver.JobInsertFullParams) *millracetype.JobRow {
	t.Helper()
	cp := *p
	cp.Schema = e.schema
	if cp.Kind == "" {
		cp.Kind = testKind
	}
	if cp.Args == nil {
		cp.Args = []byte(`{}`)
	}
	job, err := exec.JobInsertFull(e.ctx, &cp)
	requireNoError(t, err, "JobInsertFull")
	return job
}

func (s *suite[TTx]) testExecutorTx(t *testing.T) {
	s.run(t, "CommitAndRollback", func(t *testing.T, e *env[TTx]) {
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		job := e.insertFullWith(t, tx, &driver.JobInsertFullParams{})
		e.requireGone(t, job.ID) // invisible to the pool until the commit
		requireNoError(t, tx.Commit(e.ctx), "Commit")
		e.getJob(t, job.ID)
		requireNoError(t, tx.Rollback(e.ctx), "Rollback after Commit (a no-op)")
		e.getJob(t, job.ID)

		tx, err = e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		gone := e.insertFullWith(t, tx, &driver.JobInsertFullParams{})
		requireNoError(t, tx.Rollback(e.ctx), "Rollback")
		e.requireGone(t, gone.ID)
	})

	s.run(t, "NestedBeginIsASavepoint", func(t *testing.T, e *env[TTx]) {
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = tx.Rollback(context.WithoutCancel(e.ctx)) }()
		outer := e.insertFullWith(t, tx, &driver.JobInsertFullParams{})

		inner, err := tx.Begin(e.ctx)
		requireNoError(t, err, "nested Begin")
		rolledBack := e.insertFullWith(t, inner, &driver.JobInsertFullParams{Kind: "rolled_back"})
		requireNoError(t, inner.Rollback(e.ctx), "nested Rollback")

		inner, err = tx.Begin(e.ctx)
		requireNoError(t, err, "nested Begin")
		kept := e.insertFullWith(t, inner, &driver.JobInsertFullParams{})
		requireNoError(t, inner.Commit(e.ctx), "nested Commit")

		e.requireGone(t, kept.ID) // the outer transaction is still open
		requireNoError(t, tx.Commit(e.ctx), "Commit")
		all := e.allJobs(t)
		requireIDs(t, all, []int64{outer.ID, kept.ID}, "jobs after the commit")
		// By kind, not id: a database may give the rolled-back job's id
		// to a later insert (SQLite does; Postgres' sequences never).
		for _, j := range all {
			if j.Kind == rolledBack.Kind {
				t.Fatalf("job %d of the rolled-back savepoint exists", j.ID)
			}
		}
	})

	s.run(t, "UnwrapExecutor", func(t *testing.T, e *env[TTx]) {
		l := e.listen(t, e.schema, driver.TopicInsert)
		outer, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		defer func() { _ = outer.Rollback(context.WithoutCancel(e.ctx)) }()
		native, err := e.drv.UnwrapTx(outer)
		requireNoError(t, err, "UnwrapTx")

		user := e.drv.UnwrapExecutor(native)
		res, err := user.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: []*driver.JobInsertParams{jobParams()},
			NotifyQueues: []string{"default"}})
		requireNoError(t, err, "JobInsertMany in the user's transaction")
		first := res[0].Job
		e.requireGone(t, first.ID)
		// The notification waits for the commit too.
		e.requireQuiet(t, l, e.schema, driver.TopicInsert)

		// Commit and Rollback of an unwrapped executor leave the user's
		// transaction alone.
		requireNoError(t, user.Commit(e.ctx), "Commit of the unwrapped executor")
		e.requireGone(t, first.ID)
		second := e.insertFullWith(t, user, &driver.JobInsertFullParams{})
		requireNoError(t, user.Rollback(e.ctx), "Rollback of the unwrapped executor")
		_, err = user.JobGetByID(e.ctx, &driver.JobGetByIDParams{Schema: e.schema, ID: second.ID})
		requireNoError(t, err, "JobGetByID in the user's transaction after the unwrapped Rollback")

		// UnwrapTx of an unwrapped executor gives back the same transaction.
		again, err := e.drv.UnwrapTx(user)
		requireNoError(t, err, "UnwrapTx of an unwrapped executor")
		_, err = e.drv.UnwrapExecutor(again).JobGetByID(e.ctx, &driver.JobGetByIDParams{Schema: e.schema, ID: first.ID})
		requireNoError(t, err, "JobGetByID through the re-unwrapped transaction")

		requireNoError(t, outer.Commit(e.ctx), "Commit of the user's transaction")
		e.getJob(t, first.ID)
		e.getJob(t, second.ID)
		e.requireNext(t, l, driver.TopicInsert, map[string]any{"queue": "default"})
	})

	s.run(t, "UnwrapExecutorRollback", func(t *testing.T, e *env[TTx]) {
		outer, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		native, err := e.drv.UnwrapTx(outer)
		requireNoError(t, err, "UnwrapTx")
		user := e.drv.UnwrapExecutor(native)
		res, err := user.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: []*driver.JobInsertParams{jobParams()}})
		requireNoError(t, err, "JobInsertMany in the user's transaction")
		n, err := user.JobInsertCopy(e.ctx, &driver.JobInsertManyParams{Schema: e.schema, Jobs: []*driver.JobInsertParams{jobParams(), jobParams()}})
		requireNoError(t, err, "JobInsertCopy in the user's transaction")
		requireEqual(t, n, 2, "copied jobs")
		requireNoError(t, outer.Rollback(e.ctx), "Rollback of the user's transaction")
		e.requireGone(t, res[0].Job.ID)
		requireEqual(t, len(e.allJobs(t)), 0, "jobs after the rollback")
	})

	s.run(t, "MaintenanceInTransaction", func(t *testing.T, e *env[TTx]) {
		// Methods that open their own transaction on the pool must work
		// inside one too, and roll back with it.
		tx, err := e.exec.Begin(e.ctx)
		requireNoError(t, err, "Begin")
		l, err := tx.LeaderAttemptElect(e.ctx, &driver.LeaderElectParams{Schema: e.schema, LeaderID: "tx_leader", TTL: time.Minute})
		requireNoError(t, err, "LeaderAttemptElect in a transaction")
		if l == nil {
			t.Fatal("not elected in a transaction of an empty schema")
		}
		_, err = e.exec.LeaderGetElected(e.ctx, e.schema)
		requireErrorIs(t, err, millracetype.ErrNotFound, "LeaderGetElected outside the open transaction")
		requireNoError(t, tx.Rollback(e.ctx), "Rollback")
		_, err = e.exec.LeaderGetElected(e.ctx, e.schema)
		requireErrorIs(t, err, millracetype.ErrNotFound, "LeaderGetElected after the rollback")
	})
}

func (s *suite[TTx]) testEmptySchema(t *testing.T) {
	// The factory's connections have search_path set to the schema, so ""
	// must resolve to it; e.name is used only to look from outside.
	unqualified := func(t *testing.T, e *env[TTx]) *env[TTx] {
		t.Helper()
		u := *e
		u.schema = ""
		return &u
	}

	s.run(t, "JobRoundTrip", func(t *testing.T, named *env[TTx]) {
		e := unqualified(t, named)
		byName := e.listen(t, named.name, driver.TopicInsert) // channel "<schema>.river_insert"
		bySearchPath := e.listen(t, "", driver.TopicInsert)   // current_schema() of its connection

		res, err := e.exec.JobInsertMany(e.ctx, &driver.JobInsertManyParams{Schema: "", Jobs: []*driver.JobInsertParams{jobParams()},
			NotifyQueues: []string{"default"}})
		requireNoError(t, err, "JobInsertMany with schema \"\"")
		job := res[0].Job
		e.requireNext(t, byName, driver.TopicInsert, map[string]any{"queue": "default"})
		e.requireNext(t, bySearchPath, driver.TopicInsert, map[string]any{"queue": "default"})

		fetched := e.fetch(t, "default", 10)
		requireIDs(t, fetched, []int64{job.ID}, "jobs fetched with schema \"\"")
		done, err := e.exec.JobSetStateIfRunningMany(e.ctx, &driver.JobSetStateIfRunningManyParams{Schema: "", Jobs: []*driver.JobSetState{
			{ID: job.ID, State: millracetype.JobStateCompleted, FinalizedAt: ptr(now())},
		}})
		requireNoError(t, err, "JobSetStateIfRunningMany with schema \"\"")
		requireIDs(t, done, []int64{job.ID}, "completed jobs")

		// Seen from outside, it all happened in the named schema.
		stored := named.getJob(t, job.ID)
		requireEqual(t, stored.State, millracetype.JobStateCompleted, "state in the named schema")
		requireEqual(t, named.rawString(t, named.sql(`SELECT state FROM `+named.table("river_job")+` WHERE id = $1::bigint`,
			`SELECT state FROM `+named.table("river_job")+` WHERE id = ?`), job.ID), "completed",
			"state read with raw SQL in the named schema")

		n, err := e.exec.JobInsertCopy(e.ctx, &driver.JobInsertManyParams{Schema: "", Jobs: []*driver.JobInsertParams{jobParams()},
			NotifyQueues: []string{"copy_q"}})
		requireNoError(t, err, "JobInsertCopy with schema \"\"")
		requireEqual(t, n, 1, "copied jobs")
		e.requireNext(t, byName, driver.TopicInsert, map[string]any{"queue": "copy_q"})
		requireEqual(t, len(named.allJobs(t)), 2, "jobs in the named schema")
	})

	s.run(t, "ControlAndLeadership", func(t *testing.T, named *env[TTx]) {
		e := unqualified(t, named)
		control := e.listen(t, named.name, driver.TopicControl)
		leadership := e.listen(t, named.name, driver.TopicLeadership)

		_, err := e.exec.QueueCreateOrSetUpdatedAt(e.ctx, &driver.QueueCreateParams{Name: "q_empty"})
		requireNoError(t, err, "QueueCreateOrSetUpdatedAt")
		requireNoError(t, e.exec.QueuePause(e.ctx, &driver.QueuePauseParams{Name: "q_empty"}), "QueuePause")
		e.requireNext(t, control, driver.TopicControl, map[string]any{"action": "pause", "queue": "q_empty"})

		job := e.insertFull(t, running(now()))
		_, err = e.exec.JobCancel(e.ctx, &driver.JobCancelParams{ID: job.ID, CancelAttemptedAt: now()})
		requireNoError(t, err, "JobCancel")
		e.requireNext(t, control, driver.TopicControl, map[string]any{"action": "cancel", "job_id": job.ID, "queue": "default"})

		l, err := e.exec.LeaderAttemptElect(e.ctx, &driver.LeaderElectParams{LeaderID: "leader_e", TTL: time.Minute})
		requireNoError(t, err, "LeaderAttemptElect")
		if l == nil {
			t.Fatal("not elected")
		}
		ok, err := e.exec.LeaderResign(e.ctx, &driver.LeaderResignParams{LeaderID: "leader_e", ElectedAt: l.ElectedAt})
		requireNoError(t, err, "LeaderResign")
		if !ok {
			t.Fatal("resignation deleted nothing")
		}
		e.requireNext(t, leadership, driver.TopicLeadership, map[string]any{"leader_id": "leader_e", "action": "resigned"})
	})
}
