package client

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testlog"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// TestScheduledJobsRun: the leader's scheduler makes scheduled jobs
// available, a past one at once and a near one when due.
func TestScheduledJobsRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	ranAt := make(chan time.Time, 2)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { ranAt <- time.Now(); return nil }))
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers, FetchPollInterval: time.Hour})
	start(t, c)
	// A job scheduled beyond the look-ahead is written scheduled; the
	// scheduler promotes it (here: the row is moved into the past by hand).
	far, err := c.Insert(ctx, noopArgs{N: 1}, &InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if far.Job.State != millracetype.JobStateScheduled {
		t.Fatalf("a ScheduledAt an hour ahead inserted %s, want scheduled", far.Job.State)
	}
	if _, err := db.Pool.Exec(ctx, "UPDATE "+db.Schema+".river_job SET scheduled_at = now() - interval '1 second' WHERE id = $1", far.Job.ID); err != nil {
		t.Fatal(err)
	}
	// The scheduler runs every 5 s; the next pass picks it up.
	waitState(t, db, far.Job.ID, millracetype.JobStateCompleted)
	<-ranAt
	due := time.Now().Add(1500 * time.Millisecond)
	soon, err := c.Insert(ctx, noopArgs{N: 2}, &InsertOpts{ScheduledAt: due})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, db, soon.Job.ID, millracetype.JobStateCompleted)
	at := <-ranAt
	if at.Before(due) {
		t.Fatalf("job due at %s ran early at %s", due, at)
	}
	// FetchPollInterval is an hour: the scheduler's wake-up started it.
	if late := at.Sub(due); late > 2*time.Second {
		t.Fatalf("job due at %s ran %s late", due, late)
	}
}

// TestOneLeaderAndFailover: of two clients exactly one leads; when it
// stops, the other takes over at once (the resignation is announced).
func TestOneLeaderAndFailover(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil }))
	a := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	b := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	start(t, a)
	start(t, b)
	testwait.For(t, 15*time.Second, "a leader", func() bool { return a.IsLeader() || b.IsLeader() })
	if a.IsLeader() && b.IsLeader() {
		t.Fatal("two leaders")
	}
	leader, follower := a, b
	if b.IsLeader() {
		leader, follower = b, a
	}
	stopped := time.Now()
	if err := leader.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "the follower to take over", follower.IsLeader)
	if took := time.Since(stopped); took > time.Second {
		t.Fatalf("failover took %s (the follower waited for its poll interval)", took)
	}
	l, err := db.Exec().LeaderGetElected(context.Background(), db.Schema)
	if err != nil || l.LeaderID != follower.ID() {
		t.Fatalf("leader row %+v, %v; want %s", l, err, follower.ID())
	}
}

// TestStuckJobRescued: a job left running by a dead client is rescued by
// the leader and then worked.
func TestStuckJobRescued(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	attempted := time.Now().Add(-3 * time.Hour)
	stuck := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "noop", State: millracetype.JobStateRunning, Attempt: 1,
		AttemptedAt: &attempted, AttemptedBy: []string{"dead-client"}})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil }))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers})
	c.config.maintenanceInterval = 100 * time.Millisecond
	start(t, c)
	done := waitState(t, db, stuck.ID, millracetype.JobStateCompleted)
	if len(done.Errors) != 1 || done.Errors[0].Error != "Stuck job rescued by JobRescuer" || done.Attempt != 2 {
		t.Fatalf("rescued job: attempt %d errors %+v", done.Attempt, done.Errors)
	}
}

// TestPendingListsMergedByLeader: the leader merges the GIN pending lists
// the inserts grew (maintenance.PendingListCleaner); with
// SkipPendingListCleaner it leaves them as they are.
func TestPendingListsMergedByLeader(t *testing.T) {
	t.Parallel()
	for _, skip := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "skipped"}[skip], func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := testfixture.New(t)
			pl := db.Exec().(driver.PendingListCleaner)
			db.InsertJobs(t, 2000, "other_kind", "other_queue") // no worker takes them: only the inserts grow the lists
			logs := &testlog.Buffer{}
			workers := NewWorkers()
			AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil }))
			c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, Logger: logs.Logger(), SkipPendingListCleaner: skip})
			c.config.maintenanceInterval = 50 * time.Millisecond
			start(t, c)
			testwait.For(t, 15*time.Second, "leadership", c.IsLeader)
			if !skip {
				testwait.For(t, 15*time.Second, "the leader's merge", func() bool {
					return strings.Contains(logs.String(), "merged GIN pending lists")
				})
				return
			}
			// Ten intervals of a cleaner that would have run.
			time.Sleep(500 * time.Millisecond)
			if strings.Contains(logs.String(), "pending list") {
				t.Fatalf("a pending-list cleaner ran with SkipPendingListCleaner:\n%s", logs.String())
			}
			res, err := pl.PendingListClean(ctx, &driver.PendingListCleanParams{Schema: db.Schema})
			if err != nil || res.Pages == 0 {
				t.Fatalf("lists left to merge: %+v, %v; want the inserts' pages", res, err)
			}
		})
	}
}
