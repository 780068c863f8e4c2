package faults

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
)

// Concurrency limits across OS processes (issue 23): helper processes
// (limitHelperMain) work queue limQueue, whose jobs sleep for
// limitJobDuration; the test samples the database every 10 ms.

const (
	limQueue = "limited"
	limKind  = "lim_job"
)

type limJob struct {
	Customer int `json:"customer_id"`
	SleepMS  int `json:"sleep_ms"`
}

func (limJob) Kind() string { return limKind }

// limitHelperMain runs a helper of the limits scenarios. spec is "global"
// (a configured global limit of 3 on the queue) or "none" (no configured
// limit: the scenario sets one in the database).
func limitHelperMain(spec string) int {
	fail := helperFail(os.Getenv(helperID))
	var limits []client.ConcurrencyLimit
	switch spec {
	case "global":
		limits = []client.ConcurrencyLimit{{Global: 3}}
	case "none":
	default:
		return fail(fmt.Errorf("unknown limit spec %q", spec))
	}
	h, err := openSimpleHelper(slog.LevelWarn)
	if err != nil {
		return fail(err)
	}
	defer h.pool.Close()
	ws := client.NewWorkers()
	client.AddWorker(ws, client.WorkFunc(func(ctx context.Context, job *client.Job[limJob]) error {
		select {
		case <-time.After(time.Duration(job.Args.SleepMS) * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}))
	c, err := client.New(pgxv5.New(h.pool), &client.Config{
		ID: h.id, Schema: h.schema, Logger: h.logger, Workers: ws,
		Queues: map[string]client.QueueConfig{limQueue: {MaxWorkers: h.workers, Limits: limits}},
	})
	if err != nil {
		return fail(err)
	}
	return serveHelper(h.id, c, fail)
}

// runningSampler reads, every 10 ms, how many of the queue's jobs run in
// all and the most of one customer, keeping the maxima.
type runningSampler struct {
	stop, done         chan struct{}
	mu                 sync.Mutex
	samples            int
	maxTotal, maxGroup int
	err                error
}

func (e *env) sampleRunning() *runningSampler {
	s := &runningSampler{stop: make(chan struct{}), done: make(chan struct{})}
	q := `SELECT coalesce(sum(n), 0)::int, coalesce(max(n), 0)::int FROM (
		SELECT count(*) AS n FROM ` + e.job() + ` WHERE state = 'running' AND queue = $1 GROUP BY args -> 'customer_id') AS g`
	go func() {
		defer close(s.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			var total, group int
			if err := e.db.Pool.QueryRow(context.Background(), q, limQueue).Scan(&total, &group); err != nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
				return
			}
			s.mu.Lock()
			s.samples++
			s.maxTotal, s.maxGroup = max(s.maxTotal, total), max(s.maxGroup, group)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *runningSampler) finish(t *testing.T) (samples, maxTotal, maxGroup int) {
	t.Helper()
	close(s.stop)
	<-s.done
	if s.err != nil {
		t.Fatalf("sampler: %v", s.err)
	}
	return s.samples, s.maxTotal, s.maxGroup
}

// insertLimJobs inserts n jobs of customers 0..customers-1 (customer by
// customer: all of customer 0 first, the order that most tempts a fetch
// to fill up on one customer).
func (e *env) insertLimJobs(n, customers, sleepMS int) {
	e.t.Helper()
	var params []client.InsertManyParams
	perCustomer := (n + customers - 1) / customers
	for i := range n {
		params = append(params, client.InsertManyParams{Args: limJob{Customer: i / perCustomer, SleepMS: sleepMS},
			InsertOpts: &client.InsertOpts{Queue: limQueue}})
	}
	for len(params) > 0 {
		batch := params[:min(len(params), 1000)]
		params = params[len(batch):]
		if _, err := e.admin.InsertMany(context.Background(), batch); err != nil {
			e.t.Fatal(err)
		}
	}
}

// waitLimDone waits until every job of the queue is completed, failing
// after timeout.
func (e *env) waitLimDone(n int, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var done int
		e.scan(`SELECT count(*) FROM `+e.job()+` WHERE queue = $1 AND state = 'completed'`, []any{limQueue}, &done)
		if done == n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d of %d jobs completed after %v: %v", done, n, timeout, e.states())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConcurrencyLimitProcesses: helper processes of 50 workers each (4 for
// global, 5 for partition).
//
// global: a configured global limit of 3. The database never shows more
// than 3 running, every job completes, and the throughput is logged as a
// share of 3 / job duration (measured from the first job started to the
// last finished; jobs sleep, so it measures how promptly a freed place is
// taken, not CPU; the target is 90%). Reduced: 150 jobs of 250 ms (about 13 s); full
// (MILLRACE_FAULTS=full): 10,000 (about 14 min).
//
// partition: no configured limit; the scenario sets a limit of 2 per
// customer_id in the database (QueueLimitSet) before the helpers start,
// and inserts the jobs once they run. 100 customers, their jobs inserted
// customer by customer, 5 helpers of 50 workers: one more than the 200
// places of the limit need; each job sleeps 1 s, so the first wave has
// a second to fill every place (with 100 ms jobs, a fresh-clone CI run,
// its other test packages running alongside, never filled more than 140
// in three runs). The database never shows more than 2 of one
// customer running, and among the first half of the jobs started (by
// attempted_at, the fetch's time) every customer has one: with every
// place taken at once, the fetches serve each customer's first jobs
// before any customer's later ones (a run whose helpers never took every
// place is run again, at most 3 times: see below). A
// fetch that read its candidates in plain order (the fault FirstPerGroup
// fixed) serves about 65 customers in the first wave. (The test counted
// completions at half-time before; on a loaded machine one helper slow to
// run or record its first 50 jobs, of 25 customers, failed it though the
// fetches were right: the start order does not depend on how fast a
// process works.)
func TestConcurrencyLimitProcesses(t *testing.T) {
	t.Run("global", func(t *testing.T) {
		sz := loadSizes(t)
		n, sleepMS := 150, 250
		if sz.name == "full" {
			n = 10000
		}
		e := newEnv(t, sz)
		e.insertLimJobs(n, 1, sleepMS)
		s := e.sampleRunning()
		var hs []*helper
		for i := range 4 {
			hs = append(hs, e.startHelper(helperOpts{id: fmt.Sprintf("g%d", i), workers: 50, limit: "global"}))
		}
		e.waitLimDone(n, time.Duration(n)*time.Second)
		samples, maxTotal, _ := s.finish(t)
		for _, h := range hs {
			h.stop()
		}
		var span float64
		e.scan(`SELECT extract(epoch FROM max(finalized_at) - min(attempted_at))::float8 FROM `+e.job()+` WHERE queue = $1`,
			[]any{limQueue}, &span)
		var busy float64
		e.scan(`SELECT extract(epoch FROM avg(finalized_at - attempted_at))::float8 FROM `+e.job()+` WHERE queue = $1`,
			[]any{limQueue}, &busy)
		t.Logf("a job holds its place in the database for %.1f ms on average", busy*1000)
		rate, ideal := float64(n)/span, 3/(float64(sleepMS)/1000)
		t.Logf("%d jobs; %d samples, at most %d running; %.2f jobs/s, %.1f%% of 3 / job duration (%.1f/s)",
			n, samples, maxTotal, rate, 100*rate/ideal, ideal)
		if maxTotal > 3 {
			t.Errorf("the database showed %d jobs running at once, limit 3", maxTotal)
		}
		if maxTotal < 3 {
			t.Errorf("never more than %d running: the limit of 3 was not reached", maxTotal)
		}
		if samples < int(span*1000/10)/2 {
			t.Errorf("only %d samples over %.1f s", samples, span)
		}
		// Throughput is measured here, not asserted (the project's rule:
		// performance is measured in benchmarks; a shared machine's load
		// moves it): the figure logged above goes in the closing note.
	})

	t.Run("partition", func(t *testing.T) {
		sz := loadSizes(t)
		const customers, places = 100, 200
		n, sleepMS := 5*customers, 1000
		if sz.name == "full" {
			n = 50 * customers
		}
		type result struct{ progressed, samples, maxTotal, maxGroup int }
		run := func() result {
			e := newEnv(t, sz)
			if _, err := e.admin.QueueLimitSet(context.Background(), limQueue,
				client.ConcurrencyLimit{Kind: limKind, PerPartition: 2, PartitionByArgs: []string{"customer_id"}}); err != nil {
				t.Fatal(err)
			}
			s := e.sampleRunning()
			var hs []*helper
			for i := range 5 {
				hs = append(hs, e.startHelper(helperOpts{id: fmt.Sprintf("p%d", i), workers: 50, limit: "none"}))
			}
			// The jobs come once every process is up: a process started
			// first would otherwise work the first customers' jobs alone
			// (their later jobs come first in fetch order) for as long as
			// the others take to start, which measures start-up, not the
			// limit.
			e.insertLimJobs(n, customers, sleepMS)
			e.waitLimDone(n, 5*time.Minute)
			var r result
			// Customers among the first half of the jobs started. (A
			// fetch's jobs share its attempted_at: the order within one
			// fetch is by ID, which favours the first customers, but no
			// job of a later wave starts before the first wave's fetches.)
			e.scan(`SELECT count(DISTINCT args -> 'customer_id') FROM (SELECT args FROM `+e.job()+` WHERE queue = $1
				ORDER BY attempted_at, id LIMIT $2) AS first_half`, []any{limQueue, n / 2}, &r.progressed)
			r.samples, r.maxTotal, r.maxGroup = s.finish(t)
			for _, h := range hs {
				h.stop()
			}
			return r
		}
		// Only a first wave that fills every place serves every customer
		// at once: the fetches rank each customer's jobs among its jobs
		// still available, so once the first customers' first jobs have
		// run, their third and fourth jobs rank with the last customers'
		// first ones. On a loaded machine helpers may be slow to fetch,
		// and the places are never all taken; the scenario then runs
		// again, at most 3 times, and the last run is judged whatever
		// happened (a fetch that reads its candidates in plain order, the
		// fault FirstPerGroup fixed, leaves places empty every time: at
		// most 101 and 132 running in two runs, serving 65 and 67
		// customers).
		var r result
		for attempt := 1; ; attempt++ {
			if r = run(); r.maxTotal >= places || attempt == 3 {
				break
			}
			t.Logf("run %d: at most %d of the %d places taken (helpers slow to fetch); running the scenario again",
				attempt, r.maxTotal, places)
		}
		t.Logf("%d jobs of %d customers; %d samples, at most %d running, at most %d of one customer",
			n, customers, r.samples, r.maxTotal, r.maxGroup)
		if r.progressed != customers {
			t.Errorf("among the first %d jobs started, only %d of %d customers have one", n/2, r.progressed, customers)
		}
		if r.maxGroup > 2 {
			t.Errorf("the database showed %d jobs of one customer running at once, limit 2", r.maxGroup)
		}
		if r.maxGroup < 2 {
			t.Errorf("never more than %d of one customer running: the limit of 2 was not reached", r.maxGroup)
		}
	})
}
