package millracetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// RoundReport is what one shutdown round did.
type RoundReport struct {
	N      int
	Method ShutdownMethod
	// Client is the ID of the round's client (for a kill, the killed
	// one's; Restarted is the other's).
	Client, Restarted string
	// After is how long the client worked before the shutdown (in the
	// first round with peers, including the wait for it to lead).
	After time.Duration
	// Running is how many jobs the client ran when the shutdown began.
	Running int
	// Returned is how long the stop call took to return (for a kill,
	// until the process was gone); Stopped, until the client had
	// completely stopped (Client.Stopped).
	Returned, Stopped time.Duration
	// StopErr is what the stop call returned.
	StopErr string
	// Overshoot is how long after its deadline Stop returned (0 when it
	// returned before).
	Overshoot time.Duration
	// LeftRunning are the client's jobs still running once it had
	// stopped (a kill leaves some: see Stranded).
	LeftRunning []int64
	// Interrupted are the jobs the shutdown interrupted (their Work
	// returned an error after the stop cancelled their context), and
	// NotGivenBack those of them not given back: back in available with
	// their attempt given back, or (a peer took one at once) run again by
	// another client at the same attempt.
	Interrupted, NotGivenBack []int64
	// Stranded, for a kill, are the jobs the dead process left running;
	// Rescued those of them rescued (by the restarted client or a peer),
	// RescuedIn the time from the kill until the last was.
	Stranded, Rescued []int64
	RescuedIn         time.Duration
	// KilledAt, for a kill, is when the SIGKILL was sent.
	KilledAt time.Time
	// Problems are what went wrong in this round.
	Problems []string

	afterCompleted int         // Shutdown.AfterCompleted
	when           func() bool // Shutdown.When
}

func (r *RoundReport) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// workingClient is a client of the harness in this process.
type workingClient struct {
	id     string
	app    string
	pool   *pgxpool.Pool
	client *client.Client[pgx.Tx]
}

// newWorkingClient makes a client with a pool of its own (a peer's
// config when peer is true).
func (h *harness) newWorkingClient(id string, peer bool) (*workingClient, error) {
	app := h.app + "_" + id
	configOf := h.cfg.clientConfig
	if peer {
		configOf = h.cfg.peerConfig
	}
	cc, err := configOf(h.app+"_"+id, h.schema, h.rec.middleware(h.app+"_"+id))
	if err != nil {
		return nil, fmt.Errorf("client config: %w", err)
	}
	pool, err := newClientPool(h.cfg.Pool.Config(), app)
	if err != nil {
		return nil, fmt.Errorf("open a pool: %w", err)
	}
	h.rep.apps = append(h.rep.apps, app, app+"_pool")
	var drv driver.Driver[pgx.Tx] = pgxv5.New(pool)
	if h.cfg.wrapDriver != nil {
		drv = h.cfg.wrapDriver(drv)
	}
	c, err := client.New(drv, cc)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("new client: %w", err)
	}
	return &workingClient{id: h.app + "_" + id, app: app, pool: pool, client: c}, nil
}

// connGrace is how long a stopped client's connections may take to be
// released and its sessions to end: pgxpool destroys a broken connection in
// a goroutine of its own (counted acquired until closed), and a server
// backend ends a moment after its client closed the connection.
const connGrace = 2 * time.Second

// closeClient checks that the stopped client holds no connection (its
// pool's are all idle, its listener closed), then closes its pool.
func (h *harness) closeClient(w *workingClient, r *RoundReport) {
	var acquired int32
	testwait.Poll(connGrace, func() bool {
		acquired = w.pool.Stat().AcquiredConns()
		return acquired == 0
	})
	if acquired != 0 {
		h.rep.LeakedConns += int(acquired)
		r.problem("%d connections still acquired from the pool %v after the client had stopped", acquired, connGrace)
	}
	var n int
	var err error
	testwait.Poll(connGrace, func() bool {
		n, err = h.sessions(w.app)
		return err == nil && n == 0
	})
	if err != nil {
		r.problem("count sessions: %v", err)
	} else if n != 0 {
		h.rep.LeakedConns += n
		r.problem("%d sessions of the client (not its pool's) still open %v after it had stopped", n, connGrace)
	}
	if acquired != 0 {
		// Close waits until every connection is released, which may be
		// never: the harness does not wait (the goroutine shows as leaked).
		go w.pool.Close()
		return
	}
	w.pool.Close()
}

// inProcessRound runs a round with a client in this process.
func (h *harness) inProcessRound(r *RoundReport) error {
	w, err := h.newWorkingClient(fmt.Sprintf("r%d", r.N), false)
	if err != nil {
		return err
	}
	r.Client = w.id
	closed := false
	defer func() {
		if !closed { // an error, or a callback's FailNow: stop it all the same
			h.abandon(w)
		}
	}()
	startCtx, cancelStart := context.WithCancel(context.Background())
	defer cancelStart()
	finishLoad := h.startLoad()
	defer finishLoad()
	if err := w.client.Start(startCtx); err != nil {
		return fmt.Errorf("start client: %w", err)
	}
	h.waitForPoint(r, w.id)
	if err := finishLoad(); err != nil {
		r.problem("load: %v", err)
	}
	running, err := h.runningBy(context.Background(), w.id)
	if err != nil {
		return err
	}
	r.Running = len(running)

	// Stopped gives the channel of the current run: taken before the stop.
	stopped := w.client.Stopped()
	stopAt := time.Now()
	h.shutdownInProcess(r, w, stopped, cancelStart, stopAt)
	select {
	case <-stopped:
		r.Stopped = time.Since(stopAt)
	case <-time.After(h.cfg.StopWait):
		r.problem("the client had not stopped %v after the shutdown began", h.cfg.StopWait)
		// What can still be done: cancel its jobs and wait for them.
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StopWait)
		err := w.client.StopAndCancel(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("the client never stopped (its workers still run): %w", err)
		}
		r.Stopped = time.Since(stopAt)
	}
	if err := h.afterStop(r, w.id, stopAt); err != nil {
		return err
	}
	closed = true
	h.closeClient(w, r)
	return nil
}

// startLoad runs the load on a goroutine of its own and returns the
// function that stops it and returns its error (once; later calls return
// the same).
func (h *harness) startLoad() func() error {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() { done <- err }() // sent even if the goroutine exits early
		err = h.load(ctx)
	}()
	return sync.OnceValue(func() error {
		stop()
		return <-done
	})
}

// abandon stops a client the harness gives up on (an error, a callback
// that stopped the test): its jobs are cancelled, within StopWait, and its
// pool closed without waiting for connections it may never release.
func (h *harness) abandon(w *workingClient) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StopWait)
	defer cancel()
	_ = w.client.StopAndCancel(ctx)
	go w.pool.Close()
}

// shutdownInProcess shuts w down by r.Method and notes what the stop
// calls did.
func (h *harness) shutdownInProcess(r *RoundReport, w *workingClient, stopped <-chan struct{}, cancelStart context.CancelFunc, stopAt time.Time) {
	deadline := h.cfg.StopDeadline
	stop := func(cancel bool) (error, time.Duration) {
		ctx, done := context.WithTimeout(context.Background(), deadline)
		defer done()
		var err error
		if cancel {
			err = w.client.StopAndCancel(ctx)
		} else {
			err = w.client.Stop(ctx)
		}
		return err, time.Since(stopAt)
	}
	check := func(err error, took time.Duration) {
		r.Returned = max(r.Returned, took)
		if err != nil {
			r.StopErr = err.Error()
			if !errors.Is(err, context.DeadlineExceeded) {
				r.problem("stop returned %v, want nil or its deadline's error", err)
			}
			r.Overshoot = max(r.Overshoot, took-deadline)
			if took > deadline+h.cfg.DeadlineTolerance {
				r.problem("stop with a %v deadline returned after %v (%v late)", deadline, took.Round(time.Millisecond),
					(took - deadline).Round(time.Millisecond))
			}
			return
		}
		if took > deadline+h.cfg.DeadlineTolerance {
			r.problem("stop with a %v deadline returned nil after %v", deadline, took.Round(time.Millisecond))
		}
		select {
		case <-stopped:
		default:
			r.problem("stop returned nil before the client had stopped")
		}
	}
	switch r.Method {
	case StopWithDeadline:
		check(stop(false))
	case StopAndCancel:
		check(stop(true))
	case CancelStartContext:
		cancelStart()
		select {
		case <-stopped:
		case <-time.After(h.cfg.StopWait):
		}
		r.Returned = time.Since(stopAt)
	case DoubleStop:
		type result struct {
			err  error
			took time.Duration
		}
		results := make(chan result, 2)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				err, took := stop(false)
				results <- result{err, took}
			})
		}
		wg.Wait()
		close(results)
		for res := range results {
			check(res.err, res.took)
		}
	}
}

// afterStop checks the jobs once the client clientID has stopped: none
// left running, the interrupted ones given back.
func (h *harness) afterStop(r *RoundReport, clientID string, stopAt time.Time) error {
	ctx := context.Background()
	left, err := h.runningBy(ctx, clientID)
	if err != nil {
		return err
	}
	for _, j := range left {
		r.LeftRunning = append(r.LeftRunning, j.ID)
	}
	if len(left) > 0 {
		r.problem("%d jobs left running after the client stopped: %v", len(left), sample(r.LeftRunning))
	}
	type key struct {
		id      int64
		attempt int
	}
	interrupted := map[key]bool{}
	for _, c := range h.rec.snapshot() {
		if c.Client == clientID && !c.OK && !c.Panicked && !c.CtxEnded.IsZero() && !c.Timeout && !c.CtxEnded.Before(stopAt) {
			interrupted[key{c.JobID, c.Attempt}] = true
		}
	}
	var ids []int64
	for k := range interrupted {
		ids = append(ids, k.id)
	}
	slices.Sort(ids)
	rows, err := h.jobs(ctx, ids)
	if err != nil {
		return err
	}
	for k := range interrupted {
		r.Interrupted = append(r.Interrupted, k.id)
		j := rows[k.id]
		if j == nil {
			r.NotGivenBack = append(r.NotGivenBack, k.id)
			continue
		}
		// Given back: available again at the attempt before, or (a peer
		// has fetched it since) run again by another client at the
		// same attempt. Not given back, its next run would count one
		// more. (The round's own checks run before its next client
		// starts; only peers work meanwhile.)
		last := ""
		if n := len(j.AttemptedBy); n > 0 {
			last = j.AttemptedBy[n-1]
		}
		givenBack := (j.State == millracetype.JobStateAvailable && j.Attempt == k.attempt-1) ||
			(j.Attempt == k.attempt && last != clientID)
		if !givenBack {
			r.NotGivenBack = append(r.NotGivenBack, k.id)
		}
	}
	slices.Sort(r.Interrupted)
	slices.Sort(r.NotGivenBack)
	if len(r.NotGivenBack) > 0 {
		detail := ""
		if j := rows[r.NotGivenBack[0]]; j != nil {
			detail = fmt.Sprintf(" (job %d is %s at attempt %d)", j.ID, j.State, j.Attempt)
		}
		r.problem("%d of %d interrupted jobs are not back in available with their attempt given back: %v%s",
			len(r.NotGivenBack), len(r.Interrupted), sample(r.NotGivenBack), detail)
	}
	return nil
}

// waitForPoint starts the peers in the first round (joinPeers), then waits
// until the shutdown point of the round: After, or
// AfterCompleted successful calls of the client clientID, then When.
// r.After becomes the time waited.
func (h *harness) waitForPoint(r *RoundReport, clientID string) {
	begin := time.Now()
	h.joinPeers(r, clientID)
	if r.afterCompleted == 0 {
		time.Sleep(r.After) // the chosen point of the shutdown
	} else if !testwait.Poll(h.cfg.StopWait, func() bool { return h.rec.succeeded(clientID) >= r.afterCompleted }) {
		r.problem("only %d of the %d Work calls to wait for succeeded within %v", h.rec.succeeded(clientID), r.afterCompleted, h.cfg.StopWait)
	}
	if r.when != nil && !testwait.Poll(h.cfg.StopWait, r.when) {
		r.problem("the plan's When condition did not hold within %v", h.cfg.StopWait)
	}
	r.After = time.Since(begin)
}

// sample returns the first IDs of a list, for a message.
func sample(ids []int64) []int64 { return ids[:min(len(ids), 10)] }

// drain works what the plan left, with a client in this process, until no
// job is available, it runs none and none is retryable or scheduled for
// before its deadline, then stops it gracefully.
func (h *harness) drain() {
	w, err := h.newWorkingClient("drain", false)
	if err != nil {
		h.rep.problem("drain: %v", err)
		return
	}
	if err := w.client.Start(context.Background()); err != nil {
		w.pool.Close()
		h.rep.problem("drain: start client: %v", err)
		return
	}
	// Done when no job is available, none is retryable or scheduled for
	// before the drain's deadline, and the drain client runs none (jobs
	// left running by an earlier client are that round's finding), all
	// read in one statement: a job moving between these states (made
	// available by the scheduler, failed by the drain) is seen in one.
	var left int64
	var state string
	var err2 error
	deadline := time.Now().Add(h.cfg.DrainTimeout)
	h.drainDeadline = deadline
	q := `SELECT coalesce((SELECT id FROM ` + pgx.Identifier{h.schema, "river_job"}.Sanitize() + `
		WHERE state = 'available'
			OR (state IN ('retryable', 'scheduled') AND scheduled_at < $1)
			OR (state = 'running' AND attempted_by[cardinality(attempted_by)] = $2)
		ORDER BY id LIMIT 1), 0)`
	if !testwait.Poll(h.cfg.DrainTimeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err2 = h.admin.QueryRow(ctx, q, deadline, w.id).Scan(&left); err2 != nil || left == 0 {
			return err2 == nil
		}
		err2 = h.admin.QueryRow(ctx, "SELECT state::text FROM "+pgx.Identifier{h.schema, "river_job"}.Sanitize()+" WHERE id = $1", left).Scan(&state)
		return false
	}) {
		if err2 != nil {
			h.rep.problem("drain: %v", err2)
		} else {
			h.rep.problem("drain: jobs still to work %v after the plan (job %d is %s)", h.cfg.DrainTimeout, left, state)
		}
	}
	h.stopGracefully(w, "drain")
}

// stopGracefully stops w (the drain's client or a peer) with Stop,
// checks it as a round's client is checked, and closes it; problems are
// reported with label.
func (h *harness) stopGracefully(w *workingClient, label string) {
	r := &RoundReport{N: len(h.rep.Rounds) + 1, Client: w.id}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StopWait)
	defer cancel()
	stopAt := time.Now()
	if err := w.client.Stop(ctx); err != nil {
		h.rep.problem("%s: stop: %v", label, err)
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StopWait)
		defer cancel()
		_ = w.client.StopAndCancel(ctx)
	}
	if err := h.afterStop(r, w.id, stopAt); err != nil {
		h.rep.problem("%s: %v", label, err)
	}
	h.closeClient(w, r)
	for _, p := range r.Problems {
		h.rep.problem("%s: %s", label, p)
	}
}

// joinPeers starts the peers once the first round's client, clientID,
// leads (see ShutdownConfig.Peers); in other rounds it does nothing.
// What goes wrong is the round's problem.
func (h *harness) joinPeers(r *RoundReport, clientID string) {
	if r.N != 1 || h.cfg.Peers == 0 {
		return
	}
	if h.cfg.Client == nil || !h.cfg.Client.LeaderElectionDisabled {
		var leader string
		var err error
		q := "SELECT coalesce((SELECT leader_id FROM " + pgx.Identifier{h.schema, "river_leader"}.Sanitize() + " WHERE expires_at > now()), '')"
		if !testwait.Poll(h.cfg.StopWait, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = h.admin.QueryRow(ctx, q).Scan(&leader)
			return err == nil && leader == clientID
		}) {
			r.problem("the first round's client did not lead within %v (leader %q, %v); the peers start anyway", h.cfg.StopWait, leader, err)
		}
	}
	if err := h.startPeers(); err != nil {
		r.problem("start the peers: %v", err)
	}
}

// startPeers starts ShutdownConfig.Peers clients in this process.
func (h *harness) startPeers() error {
	for i := range h.cfg.Peers {
		w, err := h.newWorkingClient(fmt.Sprintf("peer%d", i+1), true)
		if err != nil {
			return err
		}
		if err := w.client.Start(context.Background()); err != nil {
			w.pool.Close()
			return fmt.Errorf("start peer %s: %w", w.id, err)
		}
		h.peers = append(h.peers, w)
		h.rep.Peers = append(h.rep.Peers, w.id)
	}
	return nil
}

// stopPeers stops the peers gracefully, checking each.
func (h *harness) stopPeers() {
	for _, w := range h.peers {
		h.stopGracefully(w, "peer "+w.id)
	}
	h.peers = nil
}

// stopPeersNow stops the peers without checks (the test was stopped).
func (h *harness) stopPeersNow() {
	for _, w := range h.peers {
		h.abandon(w)
	}
	h.peers = nil
}
