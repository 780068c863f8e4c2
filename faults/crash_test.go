package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/maintenance"
	"github.com/millrace/millrace/millracetest"
)

// Crash scenarios run their clients in helper processes (this test binary
// run again) and SIGKILL one of them. The survivors use a short
// RescueStuckJobsAfter and JobTimeout, so the leader's rescuer (every 30 s,
// and when a client becomes leader) rescues the jobs the dead process held.
const (
	crashRescueAfter = 5 * time.Second
	crashJobTimeout  = 5 * time.Second
)

// crashAccounting checks what a crash may and may not explain, job by job.
// stranded are the jobs the killed process left running (strandedBy after
// helper.kill). Each of them is rescued: nothing else moves a running job
// whose client is dead. A job whose Work succeeded twice must be one of
// them: the dead process worked it but its outcome was never written.
func crashAccounting(e *env, row tally, killed string, stranded []int64) string {
	t := e.t
	t.Helper()
	var unexplained, notRescued []int64
	e.scan(`SELECT coalesce(array_agg(job_id ORDER BY job_id), '{}') FROM (SELECT job_id FROM `+e.wlog.table+
		` WHERE outcome = 'ok' GROUP BY job_id HAVING count(*) > 1) d WHERE NOT job_id = ANY($1)`, []any{stranded}, &unexplained)
	// Rescued by the dead client's missing heartbeat (within seconds), or
	// by River's rule (the leader's rescuer).
	e.scan(`SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM unnest($1::bigint[]) AS s(id)
		WHERE NOT EXISTS (SELECT 1 FROM `+e.job()+` j, unnest(j.errors) e WHERE j.id = s.id
			AND (e->>'error' = $2 OR starts_with(e->>'error', $3)))`,
		[]any{stranded, maintenance.RescueErrorMessage, client.HeartbeatRescueMessage}, &notRescued)
	if len(unexplained) != 0 {
		t.Errorf("%d jobs worked twice that the killed process %s did not leave running: %v", len(unexplained), killed, sample(unexplained))
	}
	if row.Duplicated > len(stranded) {
		t.Errorf("%d jobs worked twice, more than the %d the killed process left running", row.Duplicated, len(stranded))
	}
	rescued := len(stranded) - len(notRescued)
	if len(notRescued) != 0 {
		t.Errorf("the killed process left %d jobs running but only %d were rescued; never rescued: %v", len(stranded), rescued, sample(notRescued))
	}
	return fmt.Sprintf("SIGKILL left %d jobs running; %d rescued; %d duplicates, all left running by the killed process", len(stranded), rescued, row.Duplicated)
}

// sample returns the first IDs of a list, for an error message.
func sample(ids []int64) []int64 {
	return ids[:min(len(ids), 20)]
}

// strandedBy returns the jobs left running by a client (its ID last in
// attempted_by). For a killed helper, call it once helper.kill returned:
// before, statements the process sent before it died may still commit.
func (e *env) strandedBy(id string) []int64 {
	var ids []int64
	e.scan("SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM "+e.job()+" WHERE state = 'running' AND attempted_by[cardinality(attempted_by)] = $1", []any{id}, &ids)
	return ids
}

// Scenario 4: a worker process is SIGKILLed mid-load while a peer client
// works alongside (run through millracetest.ShutdownUnderLoad, with a Kill
// round). The peer, with River's stuck-job rule short as well
// (crashRescueAfter, crashJobTimeout), rescues what the dead process left
// running; the harness's drain finishes everything. A job may run twice
// only if the dead process left it running. (The process is this test
// binary run again for this scenario only.)
func scenarioWorkerCrash(t *testing.T, sz sizes) tally {
	h := newHarnessRun(t, sz)
	cfg := h.config(&worker{}, []millracetest.Shutdown{{Method: millracetest.Kill, AfterCompleted: sz.jobs / 10}})
	peer := *cfg.Client
	peer.RescueStuckJobsAfter, peer.JobTimeout = crashRescueAfter, crashJobTimeout
	cfg.Peers, cfg.PeerClient = 1, &peer
	var leader string
	var rescuedBy []string
	cfg.AfterRound = func(schema string, r *millracetest.RoundReport) {
		h.scan("SELECT coalesce((SELECT leader_id FROM "+leaderTable(schema)+"), '')", nil, &leader)
		// Who rescued them: the rescue error names the rescuer.
		h.scan(`SELECT coalesce(array_agg(DISTINCT coalesce(substring(e->>'error' FROM 'rescued by ([^)]*)\)'), e->>'error')), '{}')
			FROM `+jobTable(schema)+` j, unnest(j.errors) e WHERE j.id = ANY($1)`, []any{r.Stranded}, &rescuedBy)
	}
	rep := millracetest.ShutdownUnderLoad(t, cfg) // in the child process, skips the test
	r := rep.Rounds[0]
	if len(r.Stranded) == 0 {
		t.Errorf("the killed process ran no job (%d were running just before the kill)", r.Running)
	}
	if !strings.HasSuffix(leader, "_peer1") {
		t.Errorf("the peer does not lead after the kill (leader %q)", leader)
	}
	if len(rescuedBy) != 1 || rescuedBy[0] != rep.Peers[0] {
		t.Errorf("the stranded jobs were rescued by %q, want the peer %s alone", rescuedBy, rep.Peers[0])
	}
	return tallyOf(t, rep, 0, fmt.Sprintf("SIGKILL left %d jobs running; the peer rescued %d, %v after the kill; %d duplicates, all left running by the killed process",
		len(r.Stranded), len(r.Rescued), r.RescuedIn.Round(time.Millisecond), len(rep.ReranAfterKill)))
}

// Scenario 5: the leader process is SIGKILLed mid-load. The other process
// becomes leader and maintenance goes on: it rescues the dead leader's
// jobs, its scheduler makes jobs scheduled after the crash available, and
// the periodic job keeps being enqueued, each run once.
func scenarioLeaderCrash(t *testing.T, sz sizes) tally {
	e := newEnv(t, sz)
	opts := helperOpts{rescueAfter: crashRescueAfter, jobTimeout: crashJobTimeout, periodic: time.Second}
	opts.id = "leader-a"
	a := e.startHelper(opts)
	if !testwait.Poll(30*time.Second, func() bool { return e.leader() == "leader-a" }) {
		t.Fatalf("leader-a never became leader (leader %q)", e.leader())
	}
	opts.id = "leader-b"
	b := e.startHelper(opts)
	e.insertJobs(sz.jobs, nil)
	e.waitOK(sz.jobs*3/10, 3*time.Minute)
	killedAt := time.Now()
	a.kill() // returns once its sessions have ended too
	stranded := e.strandedBy("leader-a")

	// Jobs due beyond the insert look-ahead are inserted scheduled: only a
	// live leader's scheduler makes them available.
	const scheduled = 10
	for range scheduled {
		e.insertOne(jobArgs{}, &client.InsertOpts{ScheduledAt: time.Now().Add(6 * time.Second)})
	}
	if n := e.states()["scheduled"]; n < scheduled {
		t.Errorf("%d jobs scheduled, want at least %d", n, scheduled)
	}
	var electedAt time.Time
	if !testwait.Poll(2*time.Minute, func() bool {
		var id string
		e.scan("SELECT coalesce(max(leader_id), ''), coalesce(max(elected_at), 'epoch') FROM "+pgx.Identifier{e.schema, "river_leader"}.Sanitize()+" WHERE expires_at > now()",
			nil, &id, &electedAt)
		return id == "leader-b"
	}) {
		t.Fatalf("leader-b never became leader after leader-a was killed (leader %q)", e.leader())
	}
	failover := time.Since(killedAt)
	// The new leader enqueues the periodic job.
	if !testwait.Poll(30*time.Second, func() bool {
		var n int
		e.scan("SELECT count(*) FROM "+e.job()+" WHERE kind = $1 AND created_at > $2", []any{kindPeriodic, electedAt}, &n)
		return n >= 2
	}) {
		t.Error("the new leader enqueued no periodic job")
	}
	b.send("stop-periodic")
	if !b.waitLine("helper-ack stop-periodic", 30*time.Second) {
		t.Fatal("leader-b did not acknowledge stop-periodic")
	}
	if !e.waitFinished(3 * time.Minute) {
		t.Errorf("not finished 3 min after the crash: %v", e.states())
	}
	recovered := time.Since(killedAt)
	b.stop()

	var periodic, runs int
	e.scan("SELECT count(*), count(DISTINCT scheduled_at) FROM "+e.job()+" WHERE kind = $1", []any{kindPeriodic}, &periodic, &runs)
	if periodic != runs {
		t.Errorf("%d periodic jobs for %d run times: a run was enqueued twice", periodic, runs)
	}
	row, _ := e.finish()
	row.Notes = crashAccounting(e, row, "leader-a", stranded) + fmt.Sprintf("; new leader after %v; %d periodic runs, none twice; all done %v after the kill",
		failover.Round(100*time.Millisecond), periodic, recovered.Round(time.Second))
	return row
}
