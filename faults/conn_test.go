package faults

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testwait"
)

// Connection scenarios use a long RescueStuckJobsAfter: a fetch whose reply
// is lost with its connection (after the database committed it) strands
// its jobs running until a rescue, and that must still happen within the
// test, but no job whose outcome is merely delayed by the outage may be
// rescued while its outcome is on its way.
func connTweak(cfg *client.Config) {
	cfg.RescueStuckJobsAfter = 20 * time.Second
	cfg.JobTimeout = 20 * time.Second
}

// Scenario 6: every connection of the clients (pools and listeners) is
// terminated with pg_terminate_backend mid-load, twice. The clients recover
// by themselves and finish every job, each once.
func scenarioLostConnections(t *testing.T, sz sizes) tally {
	e := newEnv(t, sz)
	c1, _ := e.startClient(clientOpts{id: "conn-1", workers: sz.workers / 2, tweak: connTweak})
	c2, _ := e.startClient(clientOpts{id: "conn-2", workers: sz.workers / 2, tweak: connTweak})
	e.insertJobs(sz.jobs/2, nil)
	e.waitOK(sz.jobs/5, 3*time.Minute)
	if n := e.listeners(); n != 2 {
		t.Fatalf("%d LISTEN connections before the kill, want 2", n)
	}
	first := e.terminate()
	// Inserted while the clients reconnect: their notifications may be
	// lost, polling must find them.
	e.insertJobs(sz.jobs-sz.jobs/2, nil)
	e.waitOK(sz.jobs*3/5, 3*time.Minute)
	second := e.terminate()
	if len(first) < 4 || len(second) < 2 {
		t.Errorf("terminated %d then %d connections; expected every client connection (at least the listeners and a pool connection each)",
			len(first), len(second))
	}
	done := e.waitFinished(3 * time.Minute)
	if !done {
		t.Errorf("not finished 3 min after the second kill: %v", e.states())
	}
	if !testwait.Poll(30*time.Second, func() bool { return e.listeners() == 2 }) {
		t.Errorf("%d LISTEN connections after the kills, want 2 (the clients re-listen)", e.listeners())
	}
	stopClient(t, c1, time.Minute)
	stopClient(t, c2, time.Minute)
	row, _ := e.finish(fmt.Sprintf("terminated %d then %d connections", len(first), len(second)))
	e.noDuplicates(row)
	return row
}

// Scenario 7: the LISTEN connection is killed, and killed again each time
// it comes back, for a few seconds. Meanwhile the client keeps working by
// polling: no job waits longer than the poll interval, and a cancel whose
// notification was lost is still seen within the poll-only control
// interval. The notifier reconnects with backoff (a handful of attempts,
// not a busy loop), and once left alone it listens again.
func scenarioNotifierLoss(t *testing.T, sz sizes) tally {
	e := newEnv(t, sz)
	const poll = time.Second
	interrupted := make(chan int64, 1)
	c, _ := e.startClient(clientOpts{id: "notify-1", w: &worker{onInterrupted: func(id int64) { notify(interrupted, id) }},
		tweak: func(cfg *client.Config) { cfg.FetchPollInterval = poll }})
	e.insertJobs(sz.jobs/2, nil)

	// With the listener up, an insert wakes the producer at once.
	healthy := e.pickups(5)
	if median(healthy) > 300*time.Millisecond {
		t.Errorf("with notifications, jobs waited %v to be fetched (median); want far less than the %v poll", healthy, poll)
	}
	long := e.insertOne(jobArgs{Mode: modeLong}, nil)
	if !testwait.Poll(30*time.Second, func() bool {
		var state string
		e.scan("SELECT state::text FROM "+e.job()+" WHERE id = $1", []any{long}, &state)
		return state == "running"
	}) {
		t.Fatal("the long job never started")
	}

	// Kill the LISTEN connection whenever it shows up, for a while.
	const outage = 5 * time.Second
	kills := make(chan int32, 100)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(kills)
		for {
			pids, err := e.tryTerminate(true)
			if err != nil {
				t.Errorf("terminate the listener: %v", err)
			}
			for _, pid := range pids {
				kills <- pid
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond): // polling interval
			}
		}
	}()
	outageBegin := time.Now()
	var killed []int32
	// After three kills the reconnection backoff is long enough that the
	// cancel's notification surely finds no listener.
	for len(killed) < 3 {
		select {
		case pid := <-kills:
			killed = append(killed, pid)
		case <-time.After(30 * time.Second):
			t.Fatalf("the listener was killed %d times, then never came back within 30 s", len(killed))
		}
	}
	cancelAt := time.Now()
	if _, err := e.admin.JobCancel(context.Background(), long); err != nil {
		t.Fatal(err)
	}
	var cancelSeen time.Duration
	// The jobs inserted during the outage, and when each became visible:
	// the database's clock read once its insert had returned, committed.
	// (created_at is the insert's start; its commit may wait for a slow
	// WAL flush on a busy machine, and until then no fetch can see it.)
	var during []int64
	var visible []time.Time
	for time.Since(outageBegin) < outage {
		during = append(during, e.insertOne(jobArgs{}, nil))
		var at time.Time
		e.scan("SELECT clock_timestamp()", nil, &at)
		visible = append(visible, at)
		// Spacing of the inserts during the outage, watching for the
		// cancel to reach the job.
		select {
		case <-interrupted:
			cancelSeen = time.Since(cancelAt)
		case <-time.After(300 * time.Millisecond):
		}
	}
	close(stop)
	for pid := range kills {
		killed = append(killed, pid)
	}
	wg.Wait()
	if cancelSeen == 0 {
		select {
		case <-interrupted:
			cancelSeen = time.Since(cancelAt)
		case <-time.After(time.Minute):
		}
	}
	// The poll-only control interval is 2 s; allow a little for the poll
	// itself.
	if cancelSeen == 0 || cancelSeen > 2500*time.Millisecond {
		t.Errorf("a running job cancelled while the listener was down had its context cancelled after %v; want within the 2 s poll-only interval", cancelSeen)
	}
	if !testwait.Poll(30*time.Second, func() bool {
		var state string
		e.scan("SELECT state::text FROM "+e.job()+" WHERE id = $1", []any{long}, &state)
		return state == "cancelled"
	}) {
		t.Error("the job cancelled while the listener was down never became cancelled")
	}
	if len(killed) > 12 {
		t.Errorf("the listener reconnected %d times in %v: no backoff", len(killed), outage)
	}
	if !testwait.Poll(30*time.Second, func() bool { return e.listeners() == 1 }) {
		t.Fatal("the listener never came back after the outage")
	}
	// Listening again: inserts wake the producer at once again.
	again := e.pickups(5)
	if median(again) > 300*time.Millisecond {
		t.Errorf("after the listener came back, jobs waited %v to be fetched (median); notifications not used again", again)
	}
	e.insertJobs(sz.jobs-sz.jobs/2, nil)
	if !e.waitFinished(3 * time.Minute) {
		t.Errorf("not finished: %v", e.states())
	}
	stopClient(t, c, time.Minute)

	// Jobs inserted during the outage were found by polling: each was
	// fetched (attempted_at, the fetch's start) at most a poll interval
	// after it became visible. The bound is late by at most the round
	// trip that read the clock.
	var ids []int64
	var created []time.Time
	var attempted []*time.Time
	e.scan("SELECT coalesce(array_agg(id ORDER BY id), '{}'), coalesce(array_agg(created_at ORDER BY id), '{}'), coalesce(array_agg(attempted_at ORDER BY id), '{}')"+
		" FROM "+e.job()+" WHERE id = ANY($1)", []any{during}, &ids, &created, &attempted)
	visibleAt := make(map[int64]time.Time, len(during))
	for i, id := range during {
		visibleAt[id] = visible[i]
	}
	worstWait, insertWait := time.Duration(-1), time.Duration(-1)
	var timeline strings.Builder // each job's times, in ms after the first insert
	for i, id := range ids {
		vis := visibleAt[id]
		insertWait = max(insertWait, vis.Sub(created[i]))
		fetched := "never"
		if attempted[i] != nil {
			worstWait = max(worstWait, attempted[i].Sub(vis))
			fetched = fmt.Sprint(attempted[i].Sub(created[0]).Milliseconds())
		}
		fmt.Fprintf(&timeline, "\n  job %d: inserted %d, visible %d, fetched %s",
			id, created[i].Sub(created[0]).Milliseconds(), vis.Sub(created[0]).Milliseconds(), fetched)
	}
	// The poll has up to 10% jitter; allow 400 ms for the fetch itself on a
	// loaded machine.
	if worstWait < 0 || worstWait > poll+poll/10+400*time.Millisecond {
		t.Errorf("a job inserted while the listener was down waited %v after its insert committed to be fetched; want at most the %v poll interval (slowest insert to commit: %v)",
			worstWait, poll, insertWait)
		t.Logf("jobs inserted during the outage (ms after the first insert):%s", timeline.String())
	}
	row, _ := e.finish(fmt.Sprintf("listener killed %d times in %v; waits then at most %v (poll %v; inserts visible after at most %v); lost cancel seen after %v; pickups with LISTEN %v / again %v",
		len(killed), outage, worstWait.Round(time.Millisecond), poll, insertWait.Round(time.Millisecond), cancelSeen.Round(time.Millisecond), median(healthy).Round(time.Millisecond), median(again).Round(time.Millisecond)))
	e.noDuplicates(row)
	return row
}

// pickups inserts n jobs one after another and returns how long each
// waited between its insert and its fetch.
func (e *env) pickups(n int) []time.Duration {
	e.t.Helper()
	var waits []time.Duration
	for range n {
		id := e.insertOne(jobArgs{}, nil)
		var secs float64
		if !testwait.Poll(30*time.Second, func() bool {
			e.scan("SELECT coalesce(extract(epoch FROM attempted_at - created_at), -1) FROM "+e.job()+" WHERE id = $1", []any{id}, &secs)
			return secs >= 0
		}) {
			e.t.Fatalf("job %d never fetched", id)
		}
		waits = append(waits, time.Duration(secs*float64(time.Second)))
	}
	return waits
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// Scenario 8: the database restarts (pg_ctl restart of the throwaway
// cluster) mid-load. The clients ride it out and finish every job, each
// once, and listen again.
func scenarioDatabaseRestart(t *testing.T, sz sizes) tally {
	if !testdb.IsThrowaway() {
		t.Fatal("the restart scenario runs on a throwaway cluster only (TestFaults runs it in a child process otherwise)")
	}
	e := newEnv(t, sz)
	c1, _ := e.startClient(clientOpts{id: "restart-1", workers: sz.workers / 2, tweak: connTweak})
	c2, _ := e.startClient(clientOpts{id: "restart-2", workers: sz.workers / 2, tweak: connTweak})
	e.insertJobs(sz.jobs, nil)
	e.waitOK(sz.jobs*3/10, 3*time.Minute)
	before := e.okRuns()
	var startedBefore, startedAfter time.Time
	e.scan("SELECT pg_postmaster_start_time()", nil, &startedBefore)
	begin := time.Now()
	testdb.Restart(t)
	restart := time.Since(begin)
	e.scan("SELECT pg_postmaster_start_time()", nil, &startedAfter)
	if !startedAfter.After(startedBefore) {
		t.Fatalf("the server was not restarted (started at %v, then %v)", startedBefore, startedAfter)
	}
	if n := e.okRuns(); n >= sz.jobs {
		t.Errorf("every job was done before the restart finished (%d); it did not happen mid-load", n)
	}
	if !e.waitFinished(3 * time.Minute) {
		t.Errorf("not finished 3 min after the restart: %v", e.states())
	}
	recovered := time.Since(begin)
	if !testwait.Poll(30*time.Second, func() bool { return e.listeners() == 2 }) {
		t.Errorf("%d LISTEN connections after the restart, want 2", e.listeners())
	}
	stopClient(t, c1, time.Minute)
	stopClient(t, c2, time.Minute)
	row, _ := e.finish(fmt.Sprintf("restart at %d/%d done took %v; all done %v after it began", before, sz.jobs,
		restart.Round(100*time.Millisecond), recovered.Round(100*time.Millisecond)))
	e.noDuplicates(row)
	return row
}
