package millracetest

import (
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// ShutdownReport is what ShutdownUnderLoad found. Problems lists every
// check that failed, in words; the other fields give the figures.
type ShutdownReport struct {
	// Seed reproduces the random choices; Schema is the scratch schema
	// (dropped when the test ends).
	Seed   uint64
	Schema string
	Rounds []*RoundReport
	// Peers are the IDs of the peer clients (ShutdownConfig.Peers).
	Peers []string
	// Inserted jobs; Completed of them, and Pending (retryable or
	// scheduled for after the drain's deadline) at the end.
	Inserted, Completed, Pending int
	// Cancelled and Discarded count the inserted jobs that ended so (by
	// their workers' doing, or their attempts running out); Unworked are
	// those the drain should have worked but did not: available (or in
	// River's state pending), or retryable or scheduled for before the
	// drain's deadline. A problem.
	Cancelled, Discarded int
	Unworked             []int64
	// Lost are the inserted jobs missing from the table or still running
	// once every client had stopped.
	Lost []int64
	// AttemptTwice are jobs one attempt of which Work completed twice;
	// WorkedTwice jobs Work completed more than once, other than those a
	// killed process left running (its outcome was never written).
	AttemptTwice, WorkedTwice []int64
	// ReranAfterKill are the jobs a killed process left running that
	// Work completed more than once (the dead process's outcome was never
	// written): expected, and not a problem.
	ReranAfterKill []int64
	// Mismatched are jobs whose final state disagrees with the Work calls:
	// completed without a call that succeeded, or not completed although
	// the call of their last attempt succeeded (but for jobs a killed
	// process left running: their outcome was never written).
	Mismatched []int64
	// Overlapped are jobs two Work calls of which ran at the same time
	// (the job ran in two places at once): never while both clients are
	// alive and connected, whatever their workers do. (A call cut short
	// by a SIGKILL is never seen, so a rescued job's second run does not
	// count.)
	Overlapped []int64
	// Panics are jobs whose Work panicked.
	Panics []int64
	// IgnoredContext are jobs whose Work returned more than
	// ShutdownConfig.IgnoredContextAfter after its context ended.
	IgnoredContext []int64
	// Calls is how many Work calls were seen.
	Calls int
	// LeakedConns are connections left acquired from its pool, or other
	// sessions left open, by a client once it had stopped; LeakedSessions
	// the sessions of the run's clients still open at the end, once their
	// pools were closed; LeakedGoroutines the goroutines the run started
	// (carrying its pprof label) still running after it, and
	// LeakedGoroutineStacks their stacks (grouped, as runtime/pprof prints
	// them with debug=1).
	LeakedConns           int
	LeakedSessions        int
	LeakedGoroutines      int
	LeakedGoroutineStacks []string
	// StopP50 and StopP99 are percentiles of the time from a stop call to
	// the client stopped, over the in-process rounds.
	StopP50, StopP99 time.Duration
	// Took is the whole run.
	Took time.Duration
	// Problems are the failed checks.
	Problems []string

	apps []string // application_names of the working clients' sessions
}

// OK reports whether no check failed.
func (r *ShutdownReport) OK() bool { return len(r.Problems) == 0 }

func (r *ShutdownReport) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Table renders the report as a table, one line per round, then the
// totals and the problems.
func (r *ShutdownReport) Table() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "round\tmethod\tafter\trunning\treturned\tstopped\tovershoot\tleft running\tinterrupted\tnot given back\tstranded\trescued\tproblems")
	for _, x := range r.Rounds {
		rescued := "-"
		if x.Method == KillAndRestart || x.Method == Kill {
			rescued = fmt.Sprintf("%d in %v", len(x.Rescued), x.RescuedIn.Round(time.Millisecond))
		}
		fmt.Fprintf(tw, "%d\t%v\t%v\t%d\t%v\t%v\t%v\t%d\t%d\t%d\t%d\t%s\t%d\n", x.N, x.Method, x.After.Round(time.Millisecond), x.Running,
			x.Returned.Round(time.Millisecond), x.Stopped.Round(time.Millisecond), x.Overshoot.Round(time.Millisecond),
			len(x.LeftRunning), len(x.Interrupted), len(x.NotGivenBack), len(x.Stranded), rescued, len(x.Problems))
	}
	_ = tw.Flush()
	fmt.Fprintf(&b, "jobs: %d inserted, %d completed, %d pending, %d cancelled, %d discarded, %d left unworked, %d lost; %d Work calls\n",
		r.Inserted, r.Completed, r.Pending, r.Cancelled, r.Discarded, len(r.Unworked), len(r.Lost), r.Calls)
	fmt.Fprintf(&b, "completed twice: %d attempts, %d jobs (and %d re-run after a kill); run twice at once: %d; state/outcome mismatches: %d; panics: %d; ignored context: %d\n",
		len(r.AttemptTwice), len(r.WorkedTwice), len(r.ReranAfterKill), len(r.Overlapped), len(r.Mismatched), len(r.Panics), len(r.IgnoredContext))
	if len(r.Peers) > 0 {
		fmt.Fprintf(&b, "peers working alongside the rounds: %d\n", len(r.Peers))
	}
	fmt.Fprintf(&b, "stop to stopped: p50 %v, p99 %v; leaked: %d connections, %d sessions, %d goroutines; seed %d; took %v\n",
		r.StopP50.Round(time.Millisecond), r.StopP99.Round(time.Millisecond), r.LeakedConns, r.LeakedSessions, r.LeakedGoroutines, r.Seed,
		r.Took.Round(time.Millisecond))
	if len(r.Problems) == 0 {
		b.WriteString("no problem found\n")
	} else {
		fmt.Fprintf(&b, "%d problems:\n", len(r.Problems))
		for _, p := range r.Problems {
			b.WriteString("  - " + p + "\n")
		}
	}
	return b.String()
}

// account checks the jobs and calls once every client has stopped.
func (h *harness) account() {
	rep := h.rep
	for _, r := range rep.Rounds {
		for _, p := range r.Problems {
			rep.problem("round %d (%v): %s", r.N, r.Method, p)
		}
	}
	var stops []time.Duration
	for _, r := range rep.Rounds {
		if r.Method != KillAndRestart && r.Method != Kill && r.Stopped > 0 {
			stops = append(stops, r.Stopped)
		}
	}
	rep.StopP50, rep.StopP99 = percentile(stops, 50), percentile(stops, 99)

	h.mu.Lock()
	ids := slices.Clone(h.inserted)
	h.mu.Unlock()
	rep.Inserted = len(ids)
	rows, err := h.jobs(context.Background(), ids)
	if err != nil {
		rep.problem("accounting: %v", err)
		return
	}
	for _, id := range ids {
		j := rows[id]
		switch {
		case j == nil || j.State == millracetype.JobStateRunning:
			rep.Lost = append(rep.Lost, id)
		case j.State == millracetype.JobStateCompleted:
			rep.Completed++
		case (j.State == millracetype.JobStateRetryable || j.State == millracetype.JobStateScheduled) &&
			(h.drainDeadline.IsZero() || !j.ScheduledAt.Before(h.drainDeadline)):
			rep.Pending++
		case j.State == millracetype.JobStateCancelled:
			rep.Cancelled++
		case j.State == millracetype.JobStateDiscarded:
			rep.Discarded++
		default: // available, pending, or retryable or scheduled and due
			rep.Unworked = append(rep.Unworked, id)
		}
	}
	if len(rep.Lost) > 0 {
		rep.problem("%d jobs lost (missing, or running with every client stopped): %v", len(rep.Lost), sample(rep.Lost))
	}
	if len(rep.Unworked) > 0 {
		j := rows[rep.Unworked[0]]
		rep.problem("%d jobs left unworked after the drain (job %d is %s, scheduled at %v): %v", len(rep.Unworked), j.ID, j.State,
			j.ScheduledAt.Format(time.RFC3339Nano), sample(rep.Unworked))
	}

	calls := h.rec.snapshot()
	rep.Calls = len(calls)
	type key struct {
		id      int64
		attempt int
	}
	okByAttempt := map[key]int{}
	okByJob := map[int64]int{}
	ignored, panicked := map[int64]bool{}, map[int64]bool{}
	for _, c := range calls {
		if c.OK {
			okByAttempt[key{c.JobID, c.Attempt}]++
			okByJob[c.JobID]++
		}
		if c.Panicked {
			panicked[c.JobID] = true
		}
		if !c.CtxEnded.IsZero() && c.End.Sub(c.CtxEnded) > h.cfg.IgnoredContextAfter {
			ignored[c.JobID] = true
		}
	}
	for k, n := range okByAttempt {
		if n > 1 {
			rep.AttemptTwice = append(rep.AttemptTwice, k.id)
		}
	}
	for id, n := range okByJob {
		switch {
		case n > 1 && h.stranded[id]:
			rep.ReranAfterKill = append(rep.ReranAfterKill, id)
		case n > 1:
			rep.WorkedTwice = append(rep.WorkedTwice, id)
		}
	}
	for id := range panicked {
		rep.Panics = append(rep.Panics, id)
	}
	rep.Overlapped = overlapping(calls)
	for id := range ignored {
		rep.IgnoredContext = append(rep.IgnoredContext, id)
	}
	for _, id := range ids {
		j := rows[id]
		if j == nil {
			continue
		}
		completed := j.State == millracetype.JobStateCompleted
		switch {
		case completed && okByJob[id] == 0:
			rep.Mismatched = append(rep.Mismatched, id)
		case !completed && j.State != millracetype.JobStateRunning && okByAttempt[key{id, j.Attempt}] > 0 && !h.stranded[id]:
			rep.Mismatched = append(rep.Mismatched, id)
		}
	}
	for _, l := range [][]int64{rep.AttemptTwice, rep.WorkedTwice, rep.ReranAfterKill, rep.Panics, rep.IgnoredContext, rep.Mismatched} {
		slices.Sort(l)
	}
	if len(rep.AttemptTwice) > 0 {
		rep.problem("%d jobs had an attempt completed twice by Work: %v", len(rep.AttemptTwice), sample(rep.AttemptTwice))
	}
	if len(rep.WorkedTwice) > 0 {
		rep.problem("%d jobs were completed by Work more than once without a crash to explain it: %v", len(rep.WorkedTwice), sample(rep.WorkedTwice))
	}
	if len(rep.Overlapped) > 0 {
		rep.problem("%d jobs ran in two Work calls at the same time: %v", len(rep.Overlapped), sample(rep.Overlapped))
	}
	if len(rep.Mismatched) > 0 {
		id := rep.Mismatched[0]
		rep.problem("%d jobs end in a state their Work calls do not explain (job %d is %s at attempt %d; its attempts that succeeded: %d): %v",
			len(rep.Mismatched), id, rows[id].State, rows[id].Attempt, okByJob[id], sample(rep.Mismatched))
	}
	if len(rep.Panics) > 0 {
		rep.problem("Work panicked on %d jobs: %v", len(rep.Panics), sample(rep.Panics))
	}
	if len(rep.IgnoredContext) > 0 {
		rep.problem("Work ignored its context on %d jobs (returned more than %v after it ended): %v", len(rep.IgnoredContext),
			h.cfg.IgnoredContextAfter, sample(rep.IgnoredContext))
	}
}

// overlapping returns the jobs (sorted) two calls of which overlap in time.
func overlapping(calls []call) []int64 {
	byJob := map[int64][]call{}
	for _, c := range calls {
		byJob[c.JobID] = append(byJob[c.JobID], c)
	}
	var out []int64
	for id, cs := range byJob {
		if len(cs) < 2 {
			continue
		}
		slices.SortFunc(cs, func(a, b call) int { return a.Start.Compare(b.Start) })
		end := cs[0].End
		for _, c := range cs[1:] {
			if c.Start.Before(end) {
				out = append(out, id)
				break
			}
			if c.End.After(end) {
				end = c.End
			}
		}
	}
	slices.Sort(out)
	return out
}

// percentile returns the p-th percentile of ds (nearest rank).
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(i, 0)]
}

// checkSessions checks that no session of the working clients is left.
func (h *harness) checkSessions() {
	if h.admin == nil || len(h.rep.apps) == 0 {
		return
	}
	var n int
	var err error
	if !testwait.Poll(5*time.Second, func() bool {
		n, err = h.sessions(h.rep.apps...)
		return err == nil && n == 0
	}) {
		h.rep.LeakedSessions = n
		h.rep.problem("%d database sessions of the stopped clients are still open (%v)", n, err)
	}
}

// goroutineLabel is the pprof label on the goroutines of a run: the
// harness runs under it, so every goroutine it starts, and every goroutine
// those start, carries it (runtime/pprof labels are inherited).
const goroutineLabel = "millracetest_shutdown"

// labelledGoroutines returns the stacks (grouped, with their counts) of
// the goroutines labelled with run, and how many there are.
func labelledGoroutines(run string) (n int, stacks []string) {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	want := fmt.Sprintf("%q:%q", goroutineLabel, run)
	_, groups, _ := strings.Cut(buf.String(), "\n") // after the header line
	for g := range strings.SplitSeq(groups, "\n\n") {
		lines := strings.SplitN(g, "\n", 3)
		if len(lines) < 2 || !strings.HasPrefix(lines[1], "# labels:") || !strings.Contains(lines[1], want) {
			continue
		}
		count, _, _ := strings.Cut(lines[0], " ")
		k, err := strconv.Atoi(count)
		if err != nil {
			continue
		}
		n += k
		stacks = append(stacks, g)
	}
	return n, stacks
}

// checkGoroutines reports the goroutines the run started that still run,
// once those ending have had 5 s to end. Call it from outside the labelled
// region (the harness's own goroutine carries the label inside it).
func (h *harness) checkGoroutines(run string) {
	var n int
	var left []string
	testwait.Poll(5*time.Second, func() bool {
		n, left = labelledGoroutines(run)
		return n == 0
	})
	if n > 0 {
		h.rep.LeakedGoroutines, h.rep.LeakedGoroutineStacks = n, left
		h.rep.problem("%d goroutines started by the run still run after it, the first:\n%s", n, left[0])
	}
}
