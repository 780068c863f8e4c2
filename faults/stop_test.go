package faults

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetest"
)

// stubbornArgs is scenario 3's stuck job, in a queue of its own that only
// the round's client (and the harness's drain) works.
type stubbornArgs struct{}

func (stubbornArgs) Kind() string { return "fault_stubborn" }

func (stubbornArgs) InsertOpts() client.InsertOpts { return client.InsertOpts{Queue: stubbornQueue} }

const stubbornQueue = "stubborn"

// stubbornError is what the stuck job's first attempt returns, late.
const stubbornError = "fault: the stubborn worker gave up late"

// Scenario 3: Stop with a deadline while a worker ignores its context,
// with a peer client (run through millracetest.ShutdownUnderLoad). Stop
// returns the deadline's error on time; the stuck job stays running, and
// the peer's rescuer, passing every 200 ms with RescueStuckJobsAfter and
// JobTimeout far below the job's age, leaves it alone while its client
// lives (it heartbeats while its shutdown waits). When the stubborn worker
// finally returns (an error), its outcome is written, the client stops,
// and the job is retried. (Late outcomes of a client presumed dead are
// fenced: faults/heartbeat_test.go.)
func scenarioStopDeadline(t *testing.T, sz sizes) tally {
	h := newHarnessRun(t, sz)
	const deadline = 500 * time.Millisecond
	const rescueAfter, jobTimeout = time.Second, 2 * time.Second
	// The stuck job holds, deaf to its context, until the stop began
	// 1.5 s ago, it is older than the peer's rescue thresholds by 2 s, and
	// the peer has led for 1 s (its rescuer passes every 200 ms).
	var stopBegan atomic.Int64 // unix ns
	var started atomic.Bool
	var held atomic.Int64        // ns
	var scratch atomic.Value     // the harness's schema (string)
	var peerLeads time.Time      // read and written by the stuck job's worker only
	peerLeading := func() bool { // on the worker's goroutine: no t.Fatal
		s, _ := scratch.Load().(string)
		if s == "" {
			return false
		}
		var leader string
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := h.pool.QueryRow(ctx, "SELECT coalesce((SELECT leader_id FROM "+leaderTable(s)+" WHERE expires_at > now()), '')").Scan(&leader)
		return err == nil && strings.HasSuffix(leader, "_peer1")
	}
	work := client.WorkFunc(func(ctx context.Context, job *client.Job[stubbornArgs]) error {
		if job.Attempt > 1 {
			return nil // the retry
		}
		started.Store(true)
		begin := time.Now()
		testwait.Poll(2*time.Minute, func() bool {
			if peerLeads.IsZero() && peerLeading() {
				peerLeads = time.Now()
			}
			sb := stopBegan.Load()
			return sb != 0 && time.Since(time.Unix(0, sb)) > 1500*time.Millisecond &&
				time.Since(*job.AttemptedAt) > max(rescueAfter, jobTimeout)+2*time.Second &&
				!peerLeads.IsZero() && time.Since(peerLeads) > time.Second
		})
		held.Store(int64(time.Since(begin)))
		return errors.New(stubbornError)
	})
	var first atomic.Bool
	cfg := h.config(&worker{}, []millracetest.Shutdown{{Method: millracetest.StopWithDeadline, AfterCompleted: sz.jobs / 4,
		When: func() bool {
			if !started.Load() {
				return false
			}
			stopBegan.Store(time.Now().UnixNano())
			return true
		}}})
	// The first job inserted is the stubborn one; the others are the
	// suite's usual jobs.
	normal := cfg.Mix[0].Args
	cfg.Mix[0].Args = func(rng *mrand.Rand) client.JobArgs {
		if first.CompareAndSwap(false, true) {
			return stubbornArgs{}
		}
		return normal(rng)
	}
	client.AddWorker[stubbornArgs](cfg.Workers, work)
	peer := *cfg.Client
	peer.Queues = map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: sz.workers}} // not the stubborn queue
	cfg.Client.Queues = map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: sz.workers}, stubbornQueue: {MaxWorkers: 1}}
	peer.RescueStuckJobsAfter, peer.JobTimeout = rescueAfter, jobTimeout
	cfg.OnSetup = func(s string) { scratch.Store(s) }
	cfg.Peers, cfg.PeerClient = 1, &peer
	cfg.MaintenanceInterval = 200 * time.Millisecond
	cfg.StopDeadline = deadline

	var round *millracetest.RoundReport
	cfg.AfterRound = func(schema string, r *millracetest.RoundReport) {
		round = r
		if !strings.Contains(r.StopErr, context.DeadlineExceeded.Error()) {
			t.Errorf("Stop with a %v deadline and a worker that ignores its context returned %q, want the deadline error", deadline, r.StopErr)
		}
		// The job of the live client was not rescued: its late error is
		// the only one recorded, on its first attempt, by its client.
		var state string
		var attempt int
		var by, errs []string
		h.scan(`SELECT state::text, attempt, attempted_by, coalesce(array_agg(e->>'error') FILTER (WHERE e IS NOT NULL), '{}')
			FROM `+jobTable(schema)+` j LEFT JOIN LATERAL unnest(j.errors) e ON true WHERE kind = 'fault_stubborn'
			GROUP BY j.id, j.state, j.attempt, j.attempted_by`, nil, &state, &attempt, &by, &errs)
		if (state != "retryable" && state != "available") || attempt != 1 || len(by) != 1 || by[0] != r.Client ||
			len(errs) != 1 || errs[0] != stubbornError {
			t.Errorf("the stuck job of the live client is %s at attempt %d, attempted by %v, errors %q; want retryable, attempt 1, by %s, only its late error",
				state, attempt, by, errs, r.Client)
		}
		var leader string
		h.scan("SELECT coalesce((SELECT leader_id FROM "+leaderTable(schema)+"), '')", nil, &leader)
		if !strings.HasSuffix(leader, "_peer1") {
			t.Errorf("the peer does not lead after the round (leader %q)", leader)
		}
	}
	rep := millracetest.ShutdownUnderLoad(t, cfg)
	if round == nil {
		t.Fatal("the harness ran no round")
	}
	if d := time.Duration(held.Load()); d < 3*time.Second {
		t.Errorf("the stuck job was held %v, want over 3 s (the peer's rescue thresholds and then some)", d)
	}
	return tallyOf(t, rep, 0, fmt.Sprintf("Stop returned the deadline error after %v (deadline %v); the live client's job, stuck %v, "+
		"left alone by the peer's rescuer; its late error recorded; client stopped %v after the stop call",
		round.Returned.Round(time.Millisecond), deadline, time.Duration(held.Load()).Round(100*time.Millisecond), round.Stopped.Round(100*time.Millisecond)))
}

// notify sends id on ch unless ch is full.
func notify(ch chan<- int64, id int64) {
	select {
	case ch <- id:
	default:
	}
}
