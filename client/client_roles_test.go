package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// TestInsertOnlyClient: a client without queues inserts and administers
// jobs; Start refuses with ErrNoQueues and starts nothing: no producer, no
// notifier, no elector, no queue row, no leader row.
func TestInsertOnlyClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	if err := c.Start(ctx); !errors.Is(err, ErrNoQueues) {
		t.Fatalf("Start: %v", err)
	}
	res, err := c.Insert(ctx, noopArgs{N: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.JobCancel(ctx, res.Job.ID); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	started := c.notifier != nil || c.elector != nil || c.completer != nil || len(c.producers) != 0
	c.mu.Unlock()
	if started {
		t.Fatal("an insert-only client built services")
	}
	if c.IsLeader() {
		t.Fatal("an insert-only client leads")
	}
	if _, err := db.Exec().LeaderGetElected(ctx, db.Schema); !errors.Is(err, ErrNotFound) {
		t.Fatalf("leader row: %v", err)
	}
	if qs, err := c.QueueList(ctx, 0); err != nil || len(qs) != 0 {
		t.Fatalf("queues registered: %v %v", qs, err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop of an insert-only client: %v", err)
	}
}

// TestLeaderElectionDisabled: a worker-only client works jobs but never
// takes part in the election, even when no one else leads; a normal client
// beside it leads.
func TestLeaderElectionDisabled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	worker := newClient(t, db, &Config{Queues: oneQueue(2), Workers: gateWorkers(nil, nil), LeaderElectionDisabled: true})
	worker.config.leaderTTL, worker.config.electInterval = 2*time.Second, 10*time.Millisecond
	start(t, worker)
	res, err := worker.Insert(ctx, noopArgs{N: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
	worker.mu.Lock()
	el := worker.elector
	worker.mu.Unlock()
	select {
	case <-el.Started():
		t.Fatal("the elector of a client without leader election started")
	default:
	}
	if _, err := db.Exec().LeaderGetElected(ctx, db.Schema); !errors.Is(err, ErrNotFound) {
		t.Fatalf("leader row with only a worker-only client: %v", err)
	}

	leader := newClient(t, db, &Config{Queues: oneQueue(1), Workers: gateWorkers(nil, nil)})
	leader.config.leaderTTL, leader.config.electInterval = 2*time.Second, 10*time.Millisecond
	start(t, leader)
	testwait.For(t, 10*time.Second, "the normal client to lead", leader.IsLeader)
	if l, err := db.Exec().LeaderGetElected(ctx, db.Schema); err != nil || l.LeaderID != leader.ID() {
		t.Fatalf("leader %+v %v", l, err)
	}
	if worker.IsLeader() {
		t.Fatal("worker-only client leads")
	}
}

// TestLeaderElectionDisabledPeriodic: periodic jobs need a client that can
// lead.
func TestLeaderElectionDisabledPeriodic(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	job := NewPeriodicJob(PeriodicInterval(time.Hour), func() (JobArgs, *InsertOpts) { return noopArgs{}, nil }, nil)
	_, err := New(db.Driver, &Config{Schema: db.Schema, LeaderElectionDisabled: true, PeriodicJobs: []*PeriodicJob{job}})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with periodic jobs and no leader election: %v", err)
	}
	c := newClient(t, db, &Config{LeaderElectionDisabled: true})
	if _, err := c.PeriodicJobs().Add(job); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("PeriodicJobs().Add: %v", err)
	}
}

// TestFetchUnknownKinds: by default a job of a kind without a worker here
// is never fetched; with FetchUnknownKinds it is fetched, gets an error
// recorded and a retry, with the attempt given back.
func TestFetchUnknownKinds(t *testing.T) {
	t.Parallel()
	for _, fetchUnknown := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "fetch unknown"}[fetchUnknown], func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := testfixture.New(t)
			c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: gateWorkers(nil, nil), FetchUnknownKinds: fetchUnknown})
			start(t, c)
			unknown, err := c.Insert(ctx, unknownArgs{}, &InsertOpts{MaxAttempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			known, err := c.Insert(ctx, noopArgs{N: 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			waitState(t, db, known.Job.ID, millracetype.JobStateCompleted)
			if !fetchUnknown {
				// Inserted first and passed over by the fetch that took the
				// known job.
				if u := db.Job(t, unknown.Job.ID); u.State != millracetype.JobStateAvailable || u.Attempt != 0 || len(u.Errors) != 0 {
					t.Fatalf("unknown kind: state %s attempt %d errors %v", u.State, u.Attempt, u.Errors)
				}
				return
			}
			u := waitJob(t, db, unknown.Job.ID, "errored", func(j *millracetype.JobRow) bool { return len(j.Errors) > 0 })
			if u.State.Finalized() || u.State == millracetype.JobStateRunning || u.Attempt != 0 ||
				!strings.Contains(u.Errors[0].Error, `job kind "nobody_works_this" is not registered`) {
				t.Fatalf("unknown kind: state %s attempt %d errors %v", u.State, u.Attempt, u.Errors)
			}
		})
	}
}
