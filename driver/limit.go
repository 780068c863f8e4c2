package driver

import (
	"context"
	"time"

	"github.com/millrace/millrace/millracetype"
)

// Concurrency limits (table millrace_limit of migration line millrace, and
// the reads a limited fetch makes).

// LimitRow is a row of millrace_limit: a limit set at run time for a queue
// and kind ("" for the whole queue).
type LimitRow struct {
	Queue     string
	Limit     millracetype.ConcurrencyLimit
	CreatedAt time.Time
	UpdatedAt time.Time
}

// LimitGetManyParams selects limit rows.
type LimitGetManyParams struct {
	Schema string
	// Queue, when not empty, selects that queue's rows only.
	Queue string
}

// LimitSetParams inserts or replaces the row of (Queue, Limit.Kind).
type LimitSetParams struct {
	Schema string
	Queue  string
	Limit  millracetype.ConcurrencyLimit
}

// LimitDeleteParams deletes the row of (Queue, Kind).
type LimitDeleteParams struct {
	Schema string
	Queue  string
	Kind   string
}

// LimitLockReader is implemented by an ExecutorTx that can take a limited
// fetch's advisory lock and make the reads that follow it in one round
// trip: PGAdvisoryXactLock(LockKey), then LimitGetMany and LimitBoundGet
// of Queue, each read run once the lock is held (so that it sees what the
// lock's previous holder committed). A limited fetch holds the lock until
// it commits, and the limited fetches of a queue, of every client, wait
// for one another: each round trip saved under the lock shortens that
// wait. An ExecutorTx without it gets the three calls one after the
// other.
type LimitLockReader interface {
	LimitLockRead(ctx context.Context, params *LimitLockReadParams) (*LimitLockReadResult, error)
}

// LimitLockReadParams names the lock and the queue of LimitLockRead.
type LimitLockReadParams struct {
	Schema  string
	Queue   string
	LockKey int64
}

// LimitLockRead makes tx's LimitLockRead if it is a LimitLockReader, else
// the three calls one after the other.
func LimitLockRead(ctx context.Context, tx ExecutorTx, params *LimitLockReadParams) (*LimitLockReadResult, error) {
	if r, ok := tx.(LimitLockReader); ok {
		return r.LimitLockRead(ctx, params)
	}
	return LimitLockReadEach(ctx, tx, params)
}

// LimitLockReadEach is LimitLockRead made of the three calls, one round
// trip each: for a LimitLockReader that cannot batch them.
func LimitLockReadEach(ctx context.Context, tx ExecutorTx, params *LimitLockReadParams) (*LimitLockReadResult, error) {
	if err := tx.PGAdvisoryXactLock(ctx, params.LockKey); err != nil {
		return nil, err
	}
	limits, err := tx.LimitGetMany(ctx, &LimitGetManyParams{Schema: params.Schema, Queue: params.Queue})
	if err != nil {
		return nil, err
	}
	res := &LimitLockReadResult{Limits: limits}
	res.Bound, res.BoundOK, err = tx.LimitBoundGet(ctx, &LimitBoundParams{Schema: params.Schema, Queue: params.Queue})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// LimitLockReadResult is what LimitLockRead read: the queue's limit rows
// (as LimitGetMany) and its running-jobs bound (as LimitBoundGet: BoundOK
// is false when it has none).
type LimitLockReadResult struct {
	Limits  []*LimitRow
	Bound   int
	BoundOK bool
}

// TopicControl action sent by LimitSet and LimitDelete:
// {"action":"limits_changed","queue":<queue>}.
const ControlActionLimitsChanged = "limits_changed"

// JobLimitScanParams reads what a limited fetch decides from: the queue's
// running jobs, grouped, and its first available jobs.
type JobLimitScanParams struct {
	Schema string
	Queue  string
	// Keys are the args keys to read from each job (its Part), in order.
	Keys []string
	// Kinds, when not empty, are the only kinds of available jobs read
	// (running jobs of every kind are counted).
	Kinds []string
	// Candidates is how many available jobs to read at most (0: none).
	Candidates int
	// PerGroup is how many available jobs to read at most of each group of
	// equal kind and Part (0: no bound).
	PerGroup int
	// FirstPerGroup, when positive, puts the first FirstPerGroup jobs of
	// every group (in fetch order) before all the others, which follow in
	// fetch order: a fetch bound by a partitioned limit of N cannot take
	// more than N of a group anyway, and a queue's first groups must not
	// hide the others from a window of Candidates.
	FirstPerGroup int
}

// JobLimitGroup counts the running jobs of one kind and Part.
type JobLimitGroup struct {
	Kind string
	// Part holds the job's values of JobLimitScanParams.Keys, as JSON text
	// (Postgres' jsonb text form), "" where the key is missing or null.
	Part  []string
	Count int
}

// JobLimitCandidate is an available job a limited fetch may take.
type JobLimitCandidate struct {
	ID   int64
	Kind string
	Part []string // as JobLimitGroup.Part
}

// JobLimitScanResult is JobLimitScan's answer.
type JobLimitScanResult struct {
	// Running counts the running jobs of the queue by kind and Part, in no
	// particular order.
	Running []*JobLimitGroup
	// Available are due available jobs of the queue in fetch order
	// (priority, scheduled_at, id; see FirstPerGroup), at most Candidates, at most PerGroup of
	// each group.
	Available []*JobLimitCandidate
}

// JobGetAvailableByIDParams takes chosen jobs as a fetch would.
type JobGetAvailableByIDParams struct {
	Schema   string
	IDs      []int64
	ClientID string
}

// LimitBoundParams names a queue's row of millrace_limit_bound, an upper
// bound of its running jobs kept by limited fetches (see the migration).
type LimitBoundParams struct {
	Schema string
	Queue  string
	// Bound is the value LimitBoundSet stores.
	Bound int
}
