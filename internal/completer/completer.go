// Package completer records job outcomes in batches: workers hand it one
// outcome each, and it writes everything that has accumulated in one
// statement (driver.Executor.JobSetStateIfRunningMany), so the number of
// round trips per job falls as load rises.
//
// Batching is natural, with a floor: while one batch is being written, new
// outcomes queue up and form the next batch, and two writes start at
// least MinWriteInterval (5 ms) apart unless a full batch waits. An idle
// system writes an outcome at once; a busy one writes hundreds or
// thousands per statement instead of the few that arrive during one
// short write.
//
// Back-pressure: when MaxPending outcomes wait, Complete blocks, which
// keeps a worker's slot busy until the database catches up; every
// blocked Complete wakes when a batch is taken for writing.
//
// Stop writes everything still pending before it returns, retrying a failed
// write, so a graceful shutdown leaves no finished job in running.
package completer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
	"github.com/millrace/millrace/startstop"
)

// Defaults for Config.
const (
	DefaultMaxBatch         = 2000
	DefaultMaxPending       = 10000
	DefaultMinWriteInterval = 5 * time.Millisecond
	DefaultRetryBackoff     = 100 * time.Millisecond
	DefaultMaxRetryWait     = 5 * time.Second
	DefaultStopFlushLimit   = 30 * time.Second
)

// Result is handed to the subscriber after a batch is written: the outcome
// asked for and the row as it is now (nil if the update did not touch it,
// e.g. the job was deleted meanwhile; for an outcome that deleted the row,
// driver.JobSetState.Delete, the row as completed).
type Result struct {
	SetState *driver.JobSetState
	// Meta is what the caller passed to Complete with the outcome.
	Meta any
	Job  *millracetype.JobRow
}

// Config configures a Completer.
type Config struct {
	// Schema is where river_job lives.
	Schema string
	// Logger defaults to discarding.
	Logger *slog.Logger
	// MaxBatch is the most outcomes written in one statement (default 2000).
	MaxBatch int
	// MaxPending is how many outcomes may wait before Complete blocks
	// (default 10000).
	MaxPending int
	// OnWritten, if set, is called after each successful write with its
	// results, from the completer's goroutine. It must not block for long.
	OnWritten func(results []Result)
	// WantRows, if set, is asked before each write whether OnWritten needs
	// the written rows; when it says no, the rows are not read back (a
	// large part of a write's cost) and OnWritten is not called for that
	// write. Default: the rows are read whenever OnWritten is set.
	WantRows func() bool
	// Promote, if set, is called after a successful write with the IDs of
	// the jobs of the batch that belong to a sequence (JobSetState.Sequenced)
	// and were finalized, from the completer's goroutine (see
	// driver.Executor.SequencePromote). It must not block for long.
	Promote func(ctx context.Context, ids []int64)
	// MinWriteInterval is the shortest time between the starts of two
	// writes, unless MaxBatch outcomes wait (default 5 ms; negative: none).
	// A write that follows a quiet spell starts at once.
	MinWriteInterval time.Duration
	// RetryBackoff is the first wait after a failed write (default 100 ms);
	// it doubles up to 5 s.
	RetryBackoff time.Duration
	// StopFlushLimit bounds how long Stop keeps retrying to write what is
	// pending when the database is unreachable (default 30 s); what is still
	// unwritten then is logged and left running, for the rescuer.
	StopFlushLimit time.Duration
}

// Completer batches outcomes; see the package doc.
type Completer struct {
	startstop.BaseStartStop

	exec driver.Executor
	cfg  Config

	mu      sync.Mutex
	pending []item
	wake    chan struct{} // signalled when the writer must look at pending
	// listening is set while the writer waits for a wake-up to look at
	// pending again (nothing was pending when it last looked). Otherwise
	// it looks again by itself (after its write, or when its interval
	// timer fires), so Complete wakes it only when a full batch waits: a
	// busy completer is not woken once per outcome. Guarded by mu.
	listening bool
	// space, when not nil, is closed (and set to nil) when pending
	// shrinks: every Complete blocked on a full completer waits on it, and
	// all of them must wake, since a batch written makes room for many.
	// Guarded by mu.
	space chan struct{}
	// queued and done count outcomes handed to Complete and outcomes
	// written (or given up on), in order; progress is closed and replaced
	// whenever done grows (see Flush). Guarded by mu.
	queued, done uint64
	progress     chan struct{}
	// abandoned counts outcomes given up on at Stop (never written).
	abandoned atomic.Int64
	// writing is the batch being written (guarded by mu).
	writing []item
}

// Holds reports whether the outcome of job id waits to be written or is
// being written.
func (c *Completer) Holds(id int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, list := range [2][]item{c.pending, c.writing} {
		for _, it := range list {
			if it.s.ID == id {
				return true
			}
		}
	}
	return false
}

// Abandoned returns how many outcomes were given up on (the database stayed
// unreachable for StopFlushLimit after Stop): their jobs are still running
// in the database.
func (c *Completer) Abandoned() int { return int(c.abandoned.Load()) }

// New returns a completer writing through exec.
func New(exec driver.Executor, cfg *Config) *Completer {
	c := &Completer{exec: exec, wake: make(chan struct{}, 1), progress: make(chan struct{}), listening: true}
	if cfg != nil {
		c.cfg = *cfg
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if c.cfg.MaxBatch <= 0 {
		c.cfg.MaxBatch = DefaultMaxBatch
	}
	if c.cfg.MaxPending <= 0 {
		c.cfg.MaxPending = DefaultMaxPending
	}
	if c.cfg.MinWriteInterval == 0 {
		c.cfg.MinWriteInterval = DefaultMinWriteInterval
	}
	if c.cfg.RetryBackoff <= 0 {
		c.cfg.RetryBackoff = DefaultRetryBackoff
	}
	if c.cfg.StopFlushLimit <= 0 {
		c.cfg.StopFlushLimit = DefaultStopFlushLimit
	}
	return c
}

// item is one queued outcome.
type item struct {
	s    *driver.JobSetState
	meta any
}

// Complete queues one outcome, with meta handed back in its Result. It
// blocks while MaxPending outcomes wait, until there is room or ctx ends.
// Outcomes queued before Stop are written before Stop returns.
func (c *Completer) Complete(ctx context.Context, s *driver.JobSetState, meta any) error {
	for {
		c.mu.Lock()
		if len(c.pending) < c.cfg.MaxPending {
			c.pending = append(c.pending, item{s, meta})
			c.queued++
			wake := c.listening || len(c.pending) >= c.cfg.MaxBatch
			c.listening = false
			c.mu.Unlock()
			if wake {
				signal(c.wake)
			}
			return nil
		}
		if c.space == nil {
			c.space = make(chan struct{})
		}
		space := c.space
		c.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return fmt.Errorf("complete job %d: %w", s.ID, context.Cause(ctx))
		}
	}
}

// Start starts the writing goroutine.
func (c *Completer) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := c.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	go func() {
		defer stopped()
		started()
		c.run(ctx)
	}()
	return nil
}

// WaitIdle blocks until every outcome queued so far is written (or given
// up on at Stop).
func (c *Completer) WaitIdle() { _ = c.Flush(context.Background()) }

func (c *Completer) run(ctx context.Context) {
	// Writes never use the service context: a Stop must not cut a write in
	// half. They use writeCtx, which ends only StopFlushLimit after Stop, so
	// a database that stays unreachable cannot hold Stop forever.
	writeCtx, giveUp := context.WithCancel(context.WithoutCancel(ctx))
	defer giveUp()
	var deadline atomic.Pointer[time.Timer]
	stopAfter := context.AfterFunc(ctx, func() {
		deadline.Store(time.AfterFunc(c.cfg.StopFlushLimit, giveUp))
	})
	defer func() {
		stopAfter()
		if t := deadline.Load(); t != nil {
			t.Stop()
		}
	}()
	// Writes start at least MinWriteInterval apart unless a full batch
	// waits: a write right after another would carry only the few outcomes
	// that arrived while the first ran, and a statement's fixed cost is
	// most of the cost of a small batch.
	interval := time.NewTimer(time.Hour)
	interval.Stop()
	defer interval.Stop()
	var lastWrite time.Time
	armed := false
	for {
		select {
		case <-c.wake:
		case <-interval.C:
			armed = false
		case <-ctx.Done():
			c.writeAll(writeCtx)
			return
		}
		// Write batch after batch while full ones wait or the interval
		// allows; what is left waits for the timer (or for more outcomes
		// to make a full batch).
		for {
			n := c.pendingLenListen()
			if n == 0 {
				break
			}
			if wait := c.cfg.MinWriteInterval - time.Since(lastWrite); wait > 0 && n < c.cfg.MaxBatch {
				if !armed {
					interval.Reset(wait)
					armed = true
				}
				break
			}
			lastWrite = time.Now()
			c.writeOne(writeCtx)
		}
	}
}

// pendingLenListen returns how many outcomes wait to be written and,
// when none do, sets listening: the writer is about to wait for a wake-up.
func (c *Completer) pendingLenListen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.pending)
	c.listening = n == 0
	return n
}

// writeAll writes batches until nothing is pending.
func (c *Completer) writeAll(ctx context.Context) {
	for c.writeOne(ctx) {
	}
}

// writeOne writes one batch of what is pending (at most MaxBatch); it
// reports false when nothing was pending.
func (c *Completer) writeOne(ctx context.Context) bool {
	c.mu.Lock()
	n := min(len(c.pending), c.cfg.MaxBatch)
	if n == 0 {
		c.mu.Unlock()
		return false
	}
	batch := make([]item, n)
	copy(batch, c.pending)
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.pending = nil // let the backing array go
	}
	if c.space != nil {
		close(c.space)
		c.space = nil
	}
	c.writing = batch
	c.mu.Unlock()

	c.writeBatch(ctx, batch)
	c.mu.Lock()
	c.writing = nil
	c.mu.Unlock()
	c.advance(len(batch))
	return true
}

// writeBatch writes one batch, retrying with backoff while the database
// fails, until ctx ends (StopFlushLimit after Stop).
func (c *Completer) writeBatch(ctx context.Context, batch []item) {
	states := make([]*driver.JobSetState, len(batch))
	for i, it := range batch {
		states[i] = it.s
	}
	wait := c.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		wantRows := c.cfg.OnWritten != nil && (c.cfg.WantRows == nil || c.cfg.WantRows())
		applied := 0
		rows, err := c.exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: c.cfg.Schema, Jobs: states,
			NoRows: !wantRows, Applied: &applied})
		if err == nil {
			if applied >= 0 && applied < len(batch) {
				c.logDropped(ctx, states, rows, wantRows, len(batch)-applied)
			}
			if wantRows {
				c.report(batch, rows)
			}
			c.promote(ctx, states)
			return
		}
		if ctx.Err() != nil {
			c.cfg.Logger.Error("completer: giving up writing job outcomes after stop; the jobs stay running until rescued",
				"jobs", len(batch), "error", err)
			c.abandoned.Add(int64(len(batch)))
			return
		}
		c.cfg.Logger.Warn("completer: writing job outcomes failed; retrying",
			"jobs", len(batch), "attempt", attempt, "retry_in", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		wait = min(wait*2, DefaultMaxRetryWait)
	}
}

// promote hands the finalized sequenced jobs of a written batch to
// Config.Promote.
func (c *Completer) promote(ctx context.Context, states []*driver.JobSetState) {
	if c.cfg.Promote == nil {
		return
	}
	var ids []int64
	for _, s := range states {
		if s.Sequenced && s.State.Finalized() {
			ids = append(ids, s.ID)
		}
	}
	if len(ids) > 0 {
		c.cfg.Promote(ctx, ids)
	}
}

// logDropped logs outcomes the database refused because their rows had
// moved on: most often a late outcome of a client presumed dead, whose job
// was rescued and run again meanwhile (the attempt fences it out), or a job
// deleted while it ran. It names the jobs it can: from the returned rows
// when there are some, else from a read of the batch's rows (jobs now gone,
// or running or past another attempt).
func (c *Completer) logDropped(ctx context.Context, states []*driver.JobSetState, rows []*millracetype.JobRow, haveRows bool, n int) {
	var dropped []int64
	if haveRows {
		written := make(map[int64]bool, len(rows))
		for _, r := range rows {
			written[r.ID] = true
		}
		for _, s := range states {
			if !written[s.ID] {
				dropped = append(dropped, s.ID)
			}
		}
	} else {
		ids := make([]int64, len(states))
		for i, s := range states {
			ids[i] = s.ID
		}
		now, err := c.exec.JobGetByIDMany(ctx, &driver.JobGetByIDManyParams{Schema: c.cfg.Schema, IDs: ids})
		if err == nil {
			byID := make(map[int64]*millracetype.JobRow, len(now))
			for _, r := range now {
				byID[r.ID] = r
			}
			for _, s := range states {
				if movedOn(s, byID[s.ID]) {
					dropped = append(dropped, s.ID)
				}
			}
		}
	}
	c.cfg.Logger.Warn("completer: job outcomes not recorded: their jobs had moved on (rescued after this client was presumed dead and run again, or deleted, cancelled or finalized meanwhile); the database keeps the newer state",
		"outcomes", n, "jobs", dropped[:min(len(dropped), 20)])
}

// movedOn tells, from a job's row after a write, that the outcome s was not
// the one applied: the row is gone, or it runs (or ran) another attempt.
func movedOn(s *driver.JobSetState, row *millracetype.JobRow) bool {
	switch {
	case row == nil:
		return !s.Delete
	case row.State == millracetype.JobStateRunning:
		return true
	case s.Attempt == 0:
		return false
	}
	return row.Attempt != s.Attempt && !(s.AttemptDecrement && row.Attempt == s.Attempt-1)
}

func (c *Completer) report(batch []item, rows []*millracetype.JobRow) {
	byID := make(map[int64]*millracetype.JobRow, len(rows))
	for _, r := range rows {
		byID[r.ID] = r
	}
	results := make([]Result, len(batch))
	for i, it := range batch {
		results[i] = Result{SetState: it.s, Meta: it.meta, Job: byID[it.s.ID]}
	}
	c.cfg.OnWritten(results)
}

// signal does a non-blocking send on a wake-up channel of capacity one.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
