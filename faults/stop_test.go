package faults

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/internal/testwait"
)

// Scenario 3: Stop with a deadline while a worker ignores its context. Stop
// returns the deadline's error on time; the job stays running, and another
// client's rescuer leaves it alone while its client lives (it heartbeats
// while its shutdown waits), however old the job gets. When the stubborn
// worker finally returns (with an error), its outcome is written and the
// other client retries the job. (Late outcomes of a client presumed dead
// are fenced: faults/heartbeat_test.go.)
func scenarioStopDeadline(t *testing.T, sz sizes) tally {
	e := newEnv(t, sz)
	releaseX := make(chan struct{})
	xStarted := make(chan int64, 1)
	wx := &worker{stubborn: func(ctx context.Context, job *client.Job[jobArgs]) error {
		notify(xStarted, job.ID)
		<-releaseX // ignores ctx
		if err := e.wlog.record(job.ID, job.Attempt, "deadline-x", outcomeError); err != nil {
			return err
		}
		return errors.New("fault: the stubborn worker gave up late")
	}}
	// The second run waits for the test, whatever its context says (its
	// short JobTimeout must not end it while the test looks at the row).
	releaseY := make(chan struct{})
	yStarted := make(chan int64, 1)
	wy := &worker{stubborn: func(ctx context.Context, job *client.Job[jobArgs]) error {
		notify(yStarted, job.ID)
		<-releaseY
		return e.wlog.record(job.ID, job.Attempt, "deadline-y", outcomeOK)
	}}
	var releaseXOnce, releaseYOnce sync.Once
	freeX := func() { releaseXOnce.Do(func() { close(releaseX) }) }
	freeY := func() { releaseYOnce.Do(func() { close(releaseY) }) }

	stubborn := e.insertOne(jobArgs{Mode: modeStubborn}, nil)
	e.insertJobs(sz.jobs, nil)
	x, _ := e.startClient(clientOpts{id: "deadline-x", w: wx})
	t.Cleanup(freeX) // before the client's own cleanup stops it, should the test end early
	recvID(t, xStarted, "the stubborn job to start in the first client")
	e.waitOK(sz.jobs/2, 3*time.Minute)

	const deadline = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	begin := time.Now()
	err := x.Stop(ctx)
	took := time.Since(begin)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with a %v deadline and a worker that ignores its context returned %v, want the deadline error", deadline, err)
	}
	if took > deadline+500*time.Millisecond {
		t.Errorf("Stop returned %v after it was called, %v after its deadline", took, took-deadline)
	}

	// The other jobs the first client had started are recorded; only the
	// stubborn one is left running, and the client gave up leadership.
	if !testwait.Poll(30*time.Second, func() bool {
		var n int
		e.scan("SELECT count(*) FROM "+e.job()+" WHERE state = 'running' AND id <> $1", []any{stubborn}, &n)
		return n == 0
	}) {
		t.Fatalf("jobs other than the stubborn one still running after the stopping client drained: %v", e.states())
	}
	var state string
	e.scan("SELECT state::text FROM "+e.job()+" WHERE id = $1", []any{stubborn}, &state)
	if state != "running" {
		t.Fatalf("stubborn job is %s, want running", state)
	}
	if !testwait.Poll(10*time.Second, func() bool { return e.leader() == "" }) {
		t.Errorf("the stopping client still leads (%q)", e.leader())
	}

	// The second client leads at once. Its rescuer leaves the stubborn
	// job alone although it is older than RescueStuckJobsAfter and
	// JobTimeout: the first client is alive (it heartbeats while its
	// shutdown waits for the job), and a live client's jobs are never
	// rescued (issue 22). Its rescuer passes as it becomes leader; the
	// job must still be the first client's a while after that.
	const rescueAfter, jobTimeout = time.Second, 2 * time.Second
	if !testwait.Poll(time.Minute, func() bool {
		var old bool
		e.scan("SELECT attempted_at < now() - $2::interval FROM "+e.job()+" WHERE id = $1",
			[]any{stubborn, (jobTimeout + 500*time.Millisecond).String()}, &old)
		return old
	}) {
		t.Fatal("stubborn job's attempted_at never got old enough")
	}
	y, _ := e.startClient(clientOpts{id: "deadline-y", w: wy, tweak: func(cfg *client.Config) {
		cfg.RescueStuckJobsAfter, cfg.JobTimeout = rescueAfter, jobTimeout
	}})
	t.Cleanup(freeY)
	if !testwait.Poll(30*time.Second, func() bool { return e.leader() == "deadline-y" }) {
		t.Fatalf("deadline-y never became leader (leader %q)", e.leader())
	}
	select {
	case id := <-yStarted:
		t.Fatalf("the second client rescued and ran job %d while the first client, alive, still ran it", id)
	case <-time.After(3 * time.Second): // the absence of a rescue can only be waited for
	}
	var attempt int
	var lastBy string
	e.scan("SELECT state::text, attempt, attempted_by[cardinality(attempted_by)] FROM "+e.job()+" WHERE id = $1",
		[]any{stubborn}, &state, &attempt, &lastBy)
	if state != "running" || attempt != 1 || lastBy != "deadline-x" {
		t.Errorf("the stubborn job of a live client is %s (attempt %d, last attempted by %s); want running, attempt 1, deadline-x",
			state, attempt, lastBy)
	}

	// Now the stubborn worker returns (an error): the first client writes
	// its outcome, finishes its shutdown and removes its row; the job is
	// retried, by the second client.
	freeX()
	stopClient(t, x, time.Minute)
	retriedAt := time.Now()
	recvID(t, yStarted, "the retried job to run in the second client")
	retriedAfter := time.Since(retriedAt)
	freeY()
	e.waitFinished(time.Minute)
	stopClient(t, y, time.Minute)

	var errs []string
	e.scan("SELECT state::text, coalesce(array_agg(e->>'error') FILTER (WHERE e IS NOT NULL), '{}') FROM "+e.job()+
		" j LEFT JOIN LATERAL unnest(j.errors) e ON true WHERE j.id = $1 GROUP BY j.state", []any{stubborn}, &state, &errs)
	if state != "completed" || len(errs) != 1 || errs[0] != "fault: the stubborn worker gave up late" {
		t.Errorf("stubborn job ended %s with errors %q; want completed with only the first client's error recorded", state, errs)
	}
	row, _ := e.finish(fmt.Sprintf("Stop returned the deadline error after %v (deadline %v); the stuck job of the live client left alone, "+
		"its late error recorded, retried by the other client %v after",
		took.Round(time.Millisecond), deadline, retriedAfter.Round(100*time.Millisecond)))
	e.noDuplicates(row)
	return row
}

// notify sends id on ch unless ch is full.
func notify(ch chan<- int64, id int64) {
	select {
	case ch <- id:
	default:
	}
}

// recvID receives from ch within a minute or fails the test.
func recvID(t *testing.T, ch <-chan int64, what string) int64 {
	t.Helper()
	select {
	case id := <-ch:
		return id
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
		return 0
	}
}
