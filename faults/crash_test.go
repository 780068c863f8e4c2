package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetest"
)

// Crash scenarios run a client in a child process (this test binary run
// again, by millracetest.ShutdownUnderLoad) and SIGKILL it. The peer that
// survives uses a short RescueStuckJobsAfter and JobTimeout too, so River's
// rule would rescue what its heartbeat rescue missed.
const (
	crashRescueAfter = 5 * time.Second
	crashJobTimeout  = 5 * time.Second
)

// strandedBy returns the jobs left running by a client (its ID last in
// attempted_by). For a killed helper, call it once helper.kill returned:
// before, statements the process sent before it died may still commit.
func (e *env) strandedBy(id string) []int64 {
	var ids []int64
	e.scan("SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM "+e.job()+" WHERE state = 'running' AND attempted_by[cardinality(attempted_by)] = $1", []any{id}, &ids)
	return ids
}

// killRound returns round n of a two-round plan, a kill: the killed
// process must have left jobs running.
func killRound(t *testing.T, rep *millracetest.ShutdownReport, n int) *millracetest.RoundReport {
	t.Helper()
	if len(rep.Rounds) != 2 {
		t.Fatalf("%d rounds ran, want 2", len(rep.Rounds))
	}
	r := rep.Rounds[n-1]
	if len(r.Stranded) == 0 {
		t.Errorf("the killed process ran no job (%d were running just before the kill)", r.Running)
	}
	return r
}

// Scenario 4: a worker process (not the leader) is SIGKILLed mid-load
// while a peer client works alongside and leads (run through
// millracetest.ShutdownUnderLoad: a first round's client leads and stops
// gracefully, then a Kill round). The peer, with River's stuck-job rule
// short as well (crashRescueAfter, crashJobTimeout), rescues what the dead
// process left running; the harness's drain finishes everything. A job may
// run twice only if the dead process left it running. (The process is
// this test binary run again for this scenario only.)
func scenarioWorkerCrash(t *testing.T, sz sizes) tally {
	h := newHarnessRun(t, sz)
	cfg := h.config(&worker{}, []millracetest.Shutdown{{Method: millracetest.StopWithDeadline, AfterCompleted: sz.jobs / 20},
		{Method: millracetest.Kill, AfterCompleted: sz.jobs / 10}})
	cfg.Backlog = sz.jobs / 2 // per round
	cfg.StopDeadline = time.Minute
	peer := *cfg.Client
	peer.RescueStuckJobsAfter, peer.JobTimeout = crashRescueAfter, crashJobTimeout
	cfg.Peers, cfg.PeerClient = 1, &peer
	var leader string
	var rescuedBy []string
	cfg.AfterRound = func(schema string, r *millracetest.RoundReport) {
		if r.N == 1 {
			// The first client resigned as it stopped; the peer is elected.
			if !testwait.Poll(30*time.Second, func() bool {
				h.scan("SELECT coalesce((SELECT leader_id FROM "+leaderTable(schema)+" WHERE expires_at > now()), '')", nil, &leader)
				return strings.HasSuffix(leader, "_peer1")
			}) {
				t.Errorf("the peer does not lead after the first client stopped (leader %q)", leader)
			}
			return
		}
		h.scan("SELECT coalesce((SELECT leader_id FROM "+leaderTable(schema)+"), '')", nil, &leader)
		// Who rescued them: the rescue error names the rescuer.
		h.scan(`SELECT coalesce(array_agg(DISTINCT coalesce(substring(e->>'error' FROM 'rescued by ([^)]*)\)'), e->>'error')), '{}')
			FROM `+jobTable(schema)+` j, unnest(j.errors) e WHERE j.id = ANY($1)`, []any{r.Stranded}, &rescuedBy)
	}
	rep := millracetest.ShutdownUnderLoad(t, cfg) // in the child process, skips the test
	r := killRound(t, rep, 2)
	if !strings.HasSuffix(leader, "_peer1") {
		t.Errorf("the peer does not lead after the kill (leader %q)", leader)
	}
	if len(rescuedBy) != 1 || rescuedBy[0] != rep.Peers[0] {
		t.Errorf("the stranded jobs were rescued by %q, want the peer %s alone", rescuedBy, rep.Peers[0])
	}
	return tallyOf(t, rep, 0, fmt.Sprintf("SIGKILL left %d jobs running; the peer rescued %d, %v after the kill; %d duplicates, all left running by the killed process",
		len(r.Stranded), len(r.Rescued), r.RescuedIn.Round(time.Millisecond), len(rep.ReranAfterKill)))
}

// Scenario 5: the leader process is SIGKILLed mid-load (run through
// millracetest.ShutdownUnderLoad: the first round's client leads and is
// killed, with a peer working alongside; a second round's client then works
// with the peer for 8 s). The peer becomes leader and maintenance goes on:
// it takes the dead leader's term away within seconds (not when it would
// expire), rescues the dead leader's jobs, its scheduler makes jobs scheduled
// after the crash available, and the durable periodic job keeps being
// enqueued, each run once.
func scenarioLeaderCrash(t *testing.T, sz sizes) tally {
	h := newHarnessRun(t, sz)
	cfg := h.config(&worker{}, []millracetest.Shutdown{{Method: millracetest.Kill, AfterCompleted: sz.jobs / 10},
		{Method: millracetest.StopWithDeadline, After: 8 * time.Second}})
	cfg.Backlog = sz.jobs / 2 // per round
	cfg.StopDeadline = time.Minute
	cfg.Client.PeriodicJobs = []*client.PeriodicJob{client.NewPeriodicJob(client.PeriodicInterval(time.Second),
		func() (client.JobArgs, *client.InsertOpts) { return periodicArgs{}, nil }, &client.PeriodicJobOpts{ID: "tick"})}
	peer := *cfg.Client
	peer.RescueStuckJobsAfter, peer.JobTimeout = crashRescueAfter, crashJobTimeout
	// The scenario needs the leader to hold jobs when it is killed; a peer
	// with a fetch buffer took most of the backlog (1 CI run in 4: the
	// leader ran none at the kill). The leader keeps its buffer, so its
	// buffered jobs are among those rescued.
	peer.Queues = map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: h.sz.workers, FetchBuffer: -1}}
	cfg.Peers, cfg.PeerClient = 1, &peer

	const scheduled = 10
	var failover time.Duration
	var scheduledIDs []int64
	var leaderAfter string
	cfg.AfterRound = func(schema string, r *millracetest.RoundReport) {
		ctx := context.Background()
		switch r.N {
		case 1:
			var electedAt time.Time
			if !testwait.Poll(2*time.Minute, func() bool {
				h.scan("SELECT coalesce(max(leader_id), ''), coalesce(max(elected_at), 'epoch') FROM "+leaderTable(schema)+
					" WHERE expires_at > now()", nil, &leaderAfter, &electedAt)
				return strings.HasSuffix(leaderAfter, "_peer1")
			}) {
				t.Errorf("the peer never became leader after the leader was killed (leader %q)", leaderAfter)
				return
			}
			failover = electedAt.Sub(r.KilledAt)
			// The peer resigns the dead leader's term when it finds it dead
			// (heartbeat timeout 1 s here); waiting for the term to expire
			// would take 10-15 s (TTL 15 s, extended every 5 s).
			if failover > 8*time.Second {
				t.Errorf("the peer led %v after the leader was killed: the dead leader's term was not resigned, it expired", failover)
			}
			// The new leader enqueues the periodic job.
			if !testwait.Poll(30*time.Second, func() bool {
				var n int
				h.scan("SELECT count(*) FROM "+jobTable(schema)+" WHERE kind = $1 AND created_at > $2", []any{kindPeriodic, electedAt}, &n)
				return n >= 2
			}) {
				t.Error("the new leader enqueued no periodic job")
			}
			// Jobs due beyond the insert look-ahead are inserted
			// scheduled: only a live leader's scheduler makes them
			// available (the next round's client does not lead).
			ins, err := client.New(pgxv5.New(h.pool), &client.Config{Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			params := make([]client.InsertManyParams, scheduled)
			for i := range params {
				params[i] = client.InsertManyParams{Args: jobArgs{}, InsertOpts: &client.InsertOpts{ScheduledAt: time.Now().Add(6 * time.Second)}}
			}
			res, err := ins.InsertMany(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if r.Job.State != "scheduled" {
					t.Errorf("job %d inserted %s, want scheduled", r.Job.ID, r.Job.State)
				}
				scheduledIDs = append(scheduledIDs, r.Job.ID)
			}
		case 2:
			if !testwait.Poll(30*time.Second, func() bool {
				var n int
				h.scan("SELECT count(*) FROM "+jobTable(schema)+" WHERE id = ANY($1) AND state = 'completed'", []any{scheduledIDs}, &n)
				return n == scheduled
			}) {
				t.Errorf("the jobs scheduled after the crash were not all made available and worked while the peer led")
			}
		}
	}
	rep := millracetest.ShutdownUnderLoad(t, cfg) // in the child process, skips the test
	r := killRound(t, rep, 1)
	var periodic, runs int
	h.scan("SELECT count(*), count(DISTINCT "+runAtSQL+") FROM "+jobTable(rep.Schema)+" WHERE kind = $1", []any{kindPeriodic}, &periodic, &runs)
	if periodic != runs {
		t.Errorf("%d periodic jobs for %d run times: a run was enqueued twice", periodic, runs)
	}
	return tallyOf(t, rep, 0, fmt.Sprintf("SIGKILL of the leader left %d jobs running; the peer rescued %d, %v after the kill, "+
		"and led %v after it; %d periodic runs, none twice; %d jobs scheduled after the crash worked; %d duplicates, all left running by the killed process",
		len(r.Stranded), len(r.Rescued), r.RescuedIn.Round(time.Millisecond), failover.Round(100*time.Millisecond), periodic, scheduled,
		len(rep.ReranAfterKill)))
}
