package jobexec

import (
	"context"
	"sync"
	"time"
)

// A job with a timeout used to get a context.WithTimeout of its own: a
// context, a timer, and a map and a channel in its parent, about half the
// allocations of a no-op job's run, for a timer that almost never fires.
// Jobs that start together with the same timeout now share one deadline
// context, made when the first of them starts with a deadline a little
// later than its own (deadlineSlack), and each job's own context (the one
// its producer cancels with a cause) is made below it: a job whose
// timeout passes sees exactly what a context.WithTimeout of its own would
// have shown (Err and Cause DeadlineExceeded, on contexts derived from it
// too), with a deadline at most deadlineSlack later than its start plus
// its timeout. A shared context is cancelled, its timer stopped, once no
// job uses it and a newer one has taken its place.

// maxDeadlineSlack bounds how much later than its start plus its timeout
// a job's deadline may be.
const maxDeadlineSlack = 10 * time.Millisecond

// deadlineSlack is how much later than its start plus its timeout a job's
// deadline may be: 1/64 of the timeout, at most maxDeadlineSlack.
func deadlineSlack(timeout time.Duration) time.Duration {
	return min(timeout/64, maxDeadlineSlack)
}

// deadlineGroup is a deadline context shared by jobs with one parent and
// one timeout.
type deadlineGroup struct {
	ctx      context.Context
	cancel   context.CancelFunc
	parent   context.Context
	timeout  time.Duration
	deadline time.Time
	// refs counts the jobs using it; current is set while it is the one
	// new jobs of its parent and timeout get. Both guarded by
	// deadlines.mu.
	refs    int
	current bool
}

// deadlines hands out deadlineGroups. The zero value is ready.
type deadlines struct {
	mu sync.Mutex
	// current are the groups new jobs get, one per parent and timeout (a
	// client has a few parents: one per run, or per queue when queues are
	// ephemeral; and a few timeouts).
	current []*deadlineGroup
}

// maxCurrentGroups bounds deadlines.current; past it, the oldest one is
// retired.
const maxCurrentGroups = 16

// acquire returns the group a job starting now below parent with timeout
// (positive) is to run in; release must be called once the job is done.
func (d *deadlines) acquire(parent context.Context, timeout time.Duration) *deadlineGroup {
	now := time.Now()
	due := now.Add(timeout)
	d.mu.Lock()
	idx := -1
	for i, g := range d.current {
		if g.parent == parent && g.timeout == timeout {
			if !g.deadline.Before(due) {
				g.refs++
				d.mu.Unlock()
				return g
			}
			idx = i
			break
		}
	}
	deadline := due.Add(deadlineSlack(timeout))
	ctx, cancel := context.WithDeadline(parent, deadline)
	g := &deadlineGroup{ctx: ctx, cancel: cancel, parent: parent, timeout: timeout, deadline: deadline, refs: 1, current: true}
	var retired *deadlineGroup
	switch {
	case idx >= 0:
		retired, d.current[idx] = d.current[idx], g
	case len(d.current) == maxCurrentGroups:
		retired = d.current[0]
		copy(d.current, d.current[1:])
		d.current[len(d.current)-1] = g
	default:
		d.current = append(d.current, g)
	}
	if retired != nil {
		retired.current = false
		if retired.refs > 0 {
			retired = nil // its last job cancels it
		}
	}
	d.mu.Unlock()
	if retired != nil {
		retired.cancel()
	}
	return g
}

// release ends a job's use of g.
func (d *deadlines) release(g *deadlineGroup) {
	d.mu.Lock()
	g.refs--
	done := g.refs == 0 && !g.current
	d.mu.Unlock()
	if done {
		g.cancel()
	}
}
