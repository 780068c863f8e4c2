package producer

import (
	"context"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// FetchStrategy is how a producer takes jobs: the producer's loop decides
// when to fetch and how many slots are free, the strategy which jobs to
// lock (and whether to lock as many as asked). See "Fetch strategies" in the
// package doc.
type FetchStrategy interface {
	// Fetch locks at most req.Max jobs of req.Queue (marking them running
	// for req.ClientID) and returns them in the order they should start.
	// A strategy must return every job it may have locked, even with an
	// error: the producer then starts those the database confirms it has
	// running for this fetch (the statement may have committed or rolled
	// back), and retries after a backoff.
	//
	// The producer's two fetcher goroutines may call Fetch at the same
	// time. ctx carries the fetch's timeout but not the producer's stop:
	// jobs locked while the producer stops are still started. req belongs
	// to the producer and is reused: a strategy must not keep it (or
	// req.Kinds) once Fetch returns, but a decorator may change it for the
	// strategy it wraps (lower Max, say), since the producer fills it in
	// afresh for every fetch.
	Fetch(ctx context.Context, exec driver.Executor, req *FetchRequest) (FetchResult, error)
}

// FetchRequest is what the producer asks a FetchStrategy for.
type FetchRequest struct {
	// Schema is where the tables are.
	Schema string
	// Queue is the producer's queue.
	Queue string
	// ClientID is recorded in the fetched jobs' attempted_by.
	ClientID string
	// Kinds, when not empty, are the only kinds the client can work.
	Kinds []string
	// Max is the producer's free slots (at least 1): the most jobs the
	// strategy may return.
	Max int
	// After, when set, is the place in the fetch order of the last job the
	// previous fetch took, while a queue drains: the fetch may continue
	// after it rather than scan the queue from the front (see
	// driver.JobGetAvailableParams.After). A strategy may ignore it.
	After *driver.JobFetchKey
}

// FetchResult is a FetchStrategy's answer.
type FetchResult struct {
	// Jobs are the jobs locked, at most FetchRequest.Max.
	Jobs []*millracetype.JobRow

	// Limited reports that the strategy returned fewer jobs than the
	// queue may hold because a limit of its own held them back (a
	// concurrency or rate limit), not because the queue ran short. The
	// producer then does not take a short fetch for an empty queue, nor
	// a full one for a deep queue: it fetches again when one of its jobs
	// finishes, after NextFetch, and on its usual notifications and
	// polls.
	Limited bool

	// NextFetch, when positive, asks for another fetch after this long at
	// the latest (for example when a rate limit frees up again). The
	// latest hint replaces an earlier one.
	NextFetch time.Duration
}

// JobFinishedObserver is implemented by a FetchStrategy that needs to hear
// when a job it fetched has finished (its outcome handed to the work
// function's recording), for example to release a concurrency limit. The
// producer calls JobFinished once for each job, including jobs finishing
// while it stops and buffered jobs returned unstarted: from the worker
// goroutine that ran the job (before the producer counts the job's slot
// free), or from its loop for a returned job. Calls come from many
// goroutines at once, and concurrently with Fetch: JobFinished must be
// safe for that and return quickly.
type JobFinishedObserver interface {
	JobFinished(job *millracetype.JobRow)
}

// LimitsObserver is implemented by a FetchStrategy that reads limits
// from the database and wants to hear when they change: the producer calls
// LimitsChanged (from the notifier's goroutine) on a limits_changed
// control notification for its queue, then fetches.
type LimitsObserver interface {
	LimitsChanged()
}

// BufferAllower is implemented by a FetchStrategy that lets the producer
// keep a fetch buffer (Config.FetchBuffer): jobs fetched beyond the free
// worker slots, started as slots free up. The producer asks before every
// fetch; a strategy that does not implement it gets no buffer, since a
// buffered job is running in the table from its fetch on and would break
// a limit that counts jobs started (a rate limit, say) or an order
// between jobs.
type BufferAllower interface {
	BufferAllowed() bool
}

// DefaultFetch is the default FetchStrategy: one statement locks up to
// Max available jobs of the queue, in priority, scheduled_at and id order,
// with no limit beyond the producer's own slots.
type DefaultFetch struct{}

// Fetch locks up to req.Max jobs with driver.Executor.JobGetAvailable.
func (DefaultFetch) Fetch(ctx context.Context, exec driver.Executor, req *FetchRequest) (FetchResult, error) {
	jobs, err := exec.JobGetAvailable(ctx, &driver.JobGetAvailableParams{
		Schema: req.Schema, Queue: req.Queue, Max: req.Max, ClientID: req.ClientID, Kinds: req.Kinds, After: req.After})
	return FetchResult{Jobs: jobs}, err
}

// BufferAllowed implements BufferAllower: the default fetch has no limit
// a buffer could break.
func (DefaultFetch) BufferAllowed() bool { return true }
