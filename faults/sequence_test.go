package faults

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// Sequences across OS processes (issue 23): helper processes
// (seqHelperMain) work queue seqQueue, whose jobs fail at random and are
// retried at once; one helper is SIGKILLed while it runs jobs.

const (
	seqQueue = "sequenced"
	seqKind  = "seq_job"
)

type seqJob struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

func (seqJob) Kind() string { return seqKind }

// seqStarted is a sequenced job's output: when its attempt began, in
// microseconds since the epoch.
type seqStarted struct {
	Micros int64 `json:"started_us"`
}

type retryAtOnce struct{}

func (retryAtOnce) NextRetry(*millracetype.JobRow) time.Time {
	return time.Now().Add(10 * time.Millisecond)
}

// seqHelperMain runs a helper of the sequences test: spec is the
// percentage of attempts that fail.
func seqHelperMain(spec string) int {
	fail := helperFail(os.Getenv(helperID))
	pct, err := strconv.Atoi(spec)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", helperSeq, err))
	}
	h, err := openSimpleHelper(slog.LevelWarn)
	if err != nil {
		return fail(err)
	}
	defer h.pool.Close()
	ws := client.NewWorkers()
	client.AddWorker(ws, client.WorkFunc(func(ctx context.Context, job *client.Job[seqJob]) error {
		// The attempt's start by this process's clock, which is the clock
		// the previous job's finalized_at was read from (the completing
		// client's): attempted_at is the fetch transaction's start, which
		// a loaded server may take before it sees the job available.
		if err := client.RecordOutput(ctx, seqStarted{Micros: time.Now().UnixMicro()}); err != nil {
			return err
		}
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		if rand.IntN(100) < pct {
			return errors.New("a random failure")
		}
		return nil
	}))
	c, err := client.New(pgxv5.New(h.pool), &client.Config{
		ID: h.id, Schema: h.schema, Logger: h.logger, Workers: ws, RetryPolicy: retryAtOnce{},
		Queues: map[string]client.QueueConfig{seqQueue: {MaxWorkers: h.workers}},
	})
	if err != nil {
		return fail(err)
	}
	return serveHelper(h.id, c, fail)
}

// seqSampler reads, every 10 ms, the most jobs of one sequence running at
// once.
type seqSampler struct {
	stop, done chan struct{}
	mu         sync.Mutex
	samples    int
	maxKey     int
	err        error
}

func (e *env) sampleSequences() *seqSampler {
	s := &seqSampler{stop: make(chan struct{}), done: make(chan struct{})}
	q := `SELECT coalesce(max(n), 0)::int FROM (
		SELECT count(*) AS n FROM ` + e.job() + ` WHERE state = 'running' AND queue = $1 GROUP BY args ->> 'key') AS g`
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
			var n int
			err := e.db.Pool.QueryRow(context.Background(), q, seqQueue).Scan(&n)
			s.mu.Lock()
			if err != nil {
				s.err = err
				s.mu.Unlock()
				return
			}
			s.samples++
			s.maxKey = max(s.maxKey, n)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *seqSampler) finish(t *testing.T) (samples, maxKey int) {
	t.Helper()
	close(s.stop)
	<-s.done
	if s.err != nil {
		t.Fatalf("sampler: %v", s.err)
	}
	return s.samples, s.maxKey
}

// TestSequenceProcesses is the acceptance test of sequences: keys
// x jobs per key, inserted round-robin over the keys, 10% of attempts
// failing (retried), 4 processes of 20 workers, one SIGKILLed while it
// runs jobs of some sequences. Each sequence's jobs complete in insertion
// order and never overlap: the database never shows two of a key running
// (sampled every 10 ms), and each job's last attempt started (by the
// worker's clock, recorded as its output) after the previous job of its
// key was finalized. Reduced: 20 keys x 25 jobs; full
// (MILLRACE_FAULTS=full): 50 x 200.
func TestSequenceProcesses(t *testing.T) {
	sz := loadSizes(t)
	keys, perKey := 20, 25
	if sz.name == "full" {
		keys, perKey = 50, 200
	}
	e := newEnv(t, sz)
	ctx := context.Background()
	var params []client.InsertManyParams
	for n := range perKey {
		for k := range keys {
			key := fmt.Sprintf("k%02d", k)
			params = append(params, client.InsertManyParams{Args: seqJob{Key: key, N: n},
				InsertOpts: &client.InsertOpts{Queue: seqQueue, Sequence: client.SequenceOpts{Key: key}}})
		}
	}
	total := keys * perKey
	s := e.sampleSequences()
	var hs []*helper
	for i := range 4 {
		hs = append(hs, e.startHelper(helperOpts{id: fmt.Sprintf("s%d", i), workers: 20, seq: "10"}))
	}
	// The jobs come once every process runs: inserted before, a reduced
	// run's no-op jobs were all done by the first process before the last
	// had started, and no helper was left running jobs to be killed in.
	began := time.Now()
	for len(params) > 0 {
		batch := params[:min(len(params), 1000)]
		params = params[len(batch):]
		if _, err := e.admin.InsertMany(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	completed := func() int {
		var n int
		e.scan(`SELECT count(*) FROM `+e.job()+` WHERE queue = $1 AND state = 'completed'`, []any{seqQueue}, &n)
		return n
	}
	// Once the first job of every key is done, kill the helper that holds
	// the most running jobs at that moment (any of the four: on a loaded
	// machine one may get few jobs). Early, since a reduced run's no-op
	// jobs take a second or two in all; one query reads both, so no
	// completion slips between the two reads.
	var (
		victim     string
		held, done int
	)
	if !testwait.Poll(5*time.Minute, func() bool {
		victim, held = "", 0
		err := e.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+e.job()+` WHERE queue = $1 AND state = 'completed'),
			coalesce(r.client, ''), coalesce(r.n, 0)
			FROM (SELECT 1) AS one LEFT JOIN (
				SELECT attempted_by[array_upper(attempted_by, 1)] AS client, count(*) AS n FROM `+e.job()+`
				WHERE queue = $1 AND state = 'running' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1) AS r ON true`,
			seqQueue).Scan(&done, &victim, &held)
		if err != nil {
			t.Fatal(err)
		}
		return (done >= keys && held > 0) || done == total
	}) {
		t.Fatalf("%d jobs not done after 5 min: %v", keys, e.states())
	}
	if held == 0 {
		t.Fatalf("no helper ran a job to be killed in between %d jobs done and the end: %v", keys, e.states())
	}
	killed := slices.IndexFunc(hs, func(h *helper) bool { return h.id == victim })
	if killed < 0 {
		t.Fatalf("the running jobs' client %q is none of the helpers", victim)
	}
	hs[killed].kill()
	t.Logf("killed helper %s at %d of %d completed, holding %d running jobs", victim, completed(), total, held)
	if !testwait.Poll(10*time.Minute, func() bool { return completed() == total }) {
		t.Fatalf("%d of %d completed after 10 min: %v", completed(), total, e.states())
	}
	took := time.Since(began)
	samples, maxKey := s.finish(t)
	for i, h := range hs {
		if i != killed {
			h.stop()
		}
	}

	// Per key, in insertion order (n): finalized one after another, each
	// job's last attempt started after the previous one's end.
	rows, err := e.db.Pool.Query(ctx, `SELECT args ->> 'key', (args ->> 'n')::int, id, attempt,
			coalesce((metadata -> 'output' ->> 'started_us')::bigint, 0), attempted_at, finalized_at
		FROM `+e.job()+` WHERE queue = $1 ORDER BY args ->> 'key', (args ->> 'n')::int`, seqQueue)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		key            string
		n, attempt     int
		id             int64
		startedUs      int64
		started, ended time.Time
		fetchBegan     time.Time
	}
	var prev *rec
	retried, bad, earlyTx := 0, 0, 0
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.key, &r.n, &r.id, &r.attempt, &r.startedUs, &r.fetchBegan, &r.ended); err != nil {
			t.Fatal(err)
		}
		if r.startedUs == 0 {
			t.Fatalf("key %s: job %d (n=%d) completed without recording its start", r.key, r.id, r.n)
		}
		r.started = time.UnixMicro(r.startedUs)
		if r.attempt > 1 {
			retried++
		}
		if prev != nil && prev.key == r.key {
			if r.n != prev.n+1 {
				t.Errorf("key %s: job %d (n=%d) follows n=%d: a job is missing", r.key, r.id, r.n, prev.n)
			}
			if r.fetchBegan.Before(prev.ended) {
				earlyTx++
			}
			if r.started.Before(prev.ended) && bad < 10 {
				bad++
				t.Errorf("key %s: n=%d started at %v, before n=%d was finalized at %v", r.key, r.n, r.started, prev.n, prev.ended)
			}
		} else if r.n != 0 {
			t.Errorf("key %s starts at n=%d", r.key, r.n)
		}
		prev = &r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d keys x %d jobs in %v by 4 processes (one killed); %d jobs retried; %d samples, at most %d of a key running",
		keys, perKey, took.Round(time.Millisecond), retried, samples, maxKey)
	if earlyTx > 0 {
		t.Logf("%d jobs were fetched by a transaction that began before the previous job of their key was finalized (and saw it available later)", earlyTx)
	}
	if maxKey > 1 {
		t.Errorf("the database showed %d jobs of one sequence running at once", maxKey)
	}
	if retried == 0 {
		t.Error("no job was retried: the failures did not happen")
	}
	var left int
	e.scan(`SELECT count(*) FROM `+pgx.Identifier{e.schema, "millrace_sequence"}.Sanitize(), nil, &left)
	if left != 0 {
		t.Errorf("%d sequences left after every job completed", left)
	}
}
