package faults

import (
	"context"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/millracetest"
)

// The Stop, StopAndCancel and SIGKILL-and-restart scenarios run through
// millracetest.ShutdownUnderLoad, the harness users run on their own
// workers: it checks what every scenario must (nothing lost or left
// running, no attempt completed twice, a job run twice only when a kill
// explains it, state and Work calls agreeing, interrupted jobs given back,
// a killed client's jobs rescued, no connection or goroutine leaked), and
// each scenario adds its own checks. The harness makes its own schema;
// the scenarios make none (a killed child process runs the scenario again
// and would leave it behind).

// harnessRun is one scenario's run of the harness.
type harnessRun struct {
	t    *testing.T
	sz   sizes
	pool *pgxpool.Pool
	logs *logSink
}

func newHarnessRun(t *testing.T, sz sizes) *harnessRun {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testdb.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	h := &harnessRun{t: t, sz: sz, pool: pool, logs: &logSink{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client logs of %s (last lines):\n%s", t.Name(), h.logs.tail())
		}
	})
	return h
}

// config is the harness's config for the suite's worker w: sz.jobs fault
// jobs of 0..maxMS ms (and others from extra), clients of sz.workers.
func (h *harnessRun) config(w *worker, plan []millracetest.Shutdown, extra ...millracetest.JobMix) *millracetest.ShutdownConfig {
	mix := append([]millracetest.JobMix{{Args: func(rng *mrand.Rand) client.JobArgs {
		return jobArgs{MS: rng.IntN(h.sz.maxMS + 1)}
	}, Weight: 1}}, extra...)
	return &millracetest.ShutdownConfig{
		Pool:    h.pool,
		Workers: w.workers(),
		Client: &client.Config{
			Queues: map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: h.sz.workers}},
			Logger: newLogger(h.logs, "harness"),
		},
		Mix:          mix,
		Backlog:      h.sz.jobs,
		Plan:         plan,
		StopWait:     time.Minute,
		DrainTimeout: 3 * time.Minute,
	}
}

// scan runs a one-row query, failing the test on error.
func (h *harnessRun) scan(sql string, args []any, dest ...any) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.pool.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
}

func jobTable(schema string) string { return pgx.Identifier{schema, "river_job"}.Sanitize() }

func leaderTable(schema string) string { return pgx.Identifier{schema, "river_leader"}.Sanitize() }

// tallyOf turns the harness's report into the scenario's table row; every
// job must have completed but those listed in allowPending.
func tallyOf(t *testing.T, rep *millracetest.ShutdownReport, allowPending int, notes ...string) tally {
	t.Helper()
	dup := slices.Concat(rep.WorkedTwice, rep.AttemptTwice, rep.ReranAfterKill)
	slices.Sort(dup)
	row := tally{
		Inserted:           rep.Inserted,
		Completed:          rep.Completed,
		Pending:            rep.Pending,
		CancelledDiscarded: rep.Cancelled + rep.Discarded,
		Lost:               len(rep.Lost),
		Duplicated:         len(slices.Compact(dup)),
		Notes: strings.Join(append(notes, fmt.Sprintf("harness: stop p50 %v p99 %v, %d problems", rep.StopP50.Round(time.Millisecond),
			rep.StopP99.Round(time.Millisecond), len(rep.Problems))), "; "),
	}
	if rep.Pending > allowPending || row.CancelledDiscarded != 0 {
		t.Errorf("%d jobs pending (at most %d expected), %d cancelled or discarded, of %d", rep.Pending, allowPending, row.CancelledDiscarded, rep.Inserted)
	}
	return row
}

// Scenario 1: a graceful Stop in the middle of the load. Every job the
// client started is completed, once; nothing is left running; the rest
// stay available, untouched; a second client finishes them.
func scenarioGracefulStop(t *testing.T, sz sizes) tally {
	h := newHarnessRun(t, sz)
	cfg := h.config(&worker{}, []millracetest.Shutdown{{Method: millracetest.StopWithDeadline, AfterCompleted: sz.jobs / 2}})
	cfg.StopDeadline = time.Minute
	var fetched int
	cfg.AfterRound = func(schema string, r *millracetest.RoundReport) {
		var running, completedOnce, untouched int
		h.scan(`SELECT count(*) FILTER (WHERE state = 'running'),
				count(*) FILTER (WHERE $1 = ANY(attempted_by)),
				count(*) FILTER (WHERE state = 'completed' AND attempt = 1 AND attempted_by = ARRAY[$1]),
				count(*) FILTER (WHERE state = 'available' AND attempt = 0 AND coalesce(cardinality(attempted_by), 0) = 0)
			FROM `+jobTable(schema), []any{r.Client}, &running, &fetched, &completedOnce, &untouched)
		if r.StopErr != "" {
			t.Errorf("Stop with a minute's deadline returned %s", r.StopErr)
		}
		if running != 0 {
			t.Errorf("%d jobs left running after a graceful Stop", running)
		}
		if completedOnce != fetched {
			t.Errorf("the client started %d jobs but %d are completed (on their first attempt, by it)", fetched, completedOnce)
		}
		if completedOnce+untouched != sz.jobs {
			t.Errorf("%d completed + %d untouched available != %d jobs", completedOnce, untouched, sz.jobs)
		}
	}
	rep := millracetest.ShutdownUnderLoad(t, cfg)
	r := rep.Rounds[0]
	return tallyOf(t, rep, 0, fmt.Sprintf("Stop at %d/%d done took %v; second client did the rest", fetched, sz.jobs, r.Returned.Round(time.Millisecond)))
}

// Scenario 2: StopAndCancel under load. Workers that honour their context
// stop at once: StopAndCancel returns within 1 s. A job interrupted that
// way goes back to available without using an attempt and without an error
// (River's soft stop); jobs that finished are completed; a second client
// finishes the rest.
func scenarioStopAndCancel(t *testing.T, sz sizes) tally {
	h := newHarnessRun(t, sz)
	// Half the worker slots get a job that runs for a minute unless
	// cancelled, spread through the queue; in the second client (the
	// harness's drain) long jobs are short.
	longJobs := sz.workers / 2
	every := sz.jobs / longJobs
	var longRunning atomic.Int64
	var short atomic.Bool
	w := &worker{longFn: func() time.Duration {
		if short.Load() {
			return time.Millisecond
		}
		return time.Minute
	}, onLong: func(int64) { longRunning.Add(1) }}
	cfg := h.config(w, []millracetest.Shutdown{{Method: millracetest.StopAndCancel, AfterCompleted: sz.jobs / 3,
		When: func() bool { return longRunning.Load() >= int64(longJobs/2) }}},
		millracetest.JobMix{Args: func(*mrand.Rand) client.JobArgs { return jobArgs{Mode: modeLong} }})
	cfg.Mix[0].Weight = every - 1
	cfg.StopDeadline = 30 * time.Second
	var took time.Duration
	var interrupted int
	cfg.AfterRound = func(schema string, r *millracetest.RoundReport) {
		short.Store(true)
		took, interrupted = r.Returned, len(r.Interrupted)
		if n := longRunning.Load(); n < int64(longJobs/2) {
			t.Errorf("only %d long jobs had started when StopAndCancel was called, want at least %d", n, longJobs/2)
		}
		if r.StopErr != "" {
			t.Errorf("StopAndCancel returned %s", r.StopErr)
		}
		if took > time.Second {
			t.Errorf("StopAndCancel took %v with workers that honour their context; want at most 1 s", took)
		}
		if interrupted == 0 {
			t.Errorf("no job was interrupted by StopAndCancel (%d long jobs had started)", longRunning.Load())
		}
		var withErrors int
		h.scan("SELECT count(*) FROM "+jobTable(schema)+" WHERE id = ANY($1) AND coalesce(cardinality(errors), 0) > 0",
			[]any{r.Interrupted}, &withErrors)
		if withErrors != 0 {
			t.Errorf("%d of %d interrupted jobs have an error recorded", withErrors, interrupted)
		}
	}
	rep := millracetest.ShutdownUnderLoad(t, cfg)
	return tallyOf(t, rep, 0, fmt.Sprintf("StopAndCancel took %v; %d interrupted jobs went back to available (attempt given back, no error)",
		took.Round(time.Millisecond), interrupted))
}

// Scenario 10: a worker process is SIGKILLed mid-load, then started again:
// the restarted process rescues what the dead one left running (its
// heartbeat stopped) and, with the harness's last client, finishes
// everything. A job may run twice only if the dead process left it
// running. (The process is this test binary run again for this scenario
// only: see millracetest.ShutdownUnderLoad.)
func scenarioKillRestart(t *testing.T, sz sizes) tally {
	h := newHarnessRun(t, sz)
	cfg := h.config(&worker{}, []millracetest.Shutdown{{Method: millracetest.KillAndRestart, AfterCompleted: sz.jobs * 3 / 10}})
	rep := millracetest.ShutdownUnderLoad(t, cfg) // in the child process, skips the test
	r := rep.Rounds[0]
	if len(r.Stranded) == 0 {
		t.Errorf("the killed process ran no job (%d were running just before the kill)", r.Running)
	}
	return tallyOf(t, rep, 0, fmt.Sprintf("SIGKILL left %d jobs running; %d rescued %v after the kill; %d duplicates, all left running by the killed process",
		len(r.Stranded), len(r.Rescued), r.RescuedIn.Round(time.Millisecond), len(rep.ReranAfterKill)))
}
