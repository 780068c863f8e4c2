package producer

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// FairFetch is the FetchStrategy of a fair queue: its partitions (by
// kind, by values of args keys) take turns, so that a partition with a
// million queued jobs does not starve one with ten.
//
// The partitions live in table millrace_fair_partition. Each fetch runs
// in one transaction (a savepoint inside a caller's): it registers the
// partitions of the queue's newest available jobs (FairNewest of them)
// and of the jobs the previous fetch took in plain order, takes the
// partitions it has just added (a new tenant's jobs start at once) and
// the next partitions of the turn after its cursor (at most
// FairPartitionsPerFetch in all), locks a share of the free slots from
// each (JobFairLock: each read planned with the partition's
// values, through River's GIN index on args when the partition is
// small), tops up to Max in plain fetch order, marks the jobs running
// (JobGetAvailableByID) and records which partitions came back empty
// (deleted once empty for FairEmptyGrace with no job left to run). A
// turn ends with a share in plain order: jobs whose partition is not yet
// registered (old jobs inserted by a River client, say) are fetched in
// queue order meanwhile, and registered when fetched.
//
// The cursor of the turn is this strategy's own (a fairness order, not a
// limit: two clients each take turns); the partition set is in the
// database. A fair fetch keeps no fetch buffer (BufferAllowed), since
// buffered jobs of a large partition would start before a small
// partition's jobs fetched later.
type FairFetch struct {
	schema, queue string
	keys          []string
	byKind        bool

	mu      sync.Mutex
	cursor  *driver.FairPartition // last partition of the turn so far; nil: a turn starts
	pending []int64               // jobs taken in plain order, to register
}

// Tuning of FairFetch.
const (
	// FairNewest is how many of the queue's newest available jobs every
	// fair fetch reads to register their partitions.
	FairNewest = 64
	// FairEmptyGrace is how long a partition must have been found empty
	// (and have no job left to run) before a fetch deletes it.
	FairEmptyGrace = 30 * time.Second
	// FairPartitionsPerFetch is how many partitions one fetch takes
	// shares from at most. Each costs a read (about 1 to 2 ms for a
	// partition of a few hundred jobs spread over a big queue), so more
	// would make the turn shorter but every fetch slower.
	FairPartitionsPerFetch = 8
	// maxFairPending bounds the jobs kept to register at the next fetch.
	maxFairPending = 1000
)

// NewFairFetch returns the strategy of queue in schema, partitioned by
// kind (byKind) and by the values of args keys (validated by the caller).
func NewFairFetch(schema, queue string, keys []string, byKind bool) *FairFetch {
	return &FairFetch{schema: schema, queue: queue, keys: slices.Clone(keys), byKind: byKind}
}

// BufferAllowed implements BufferAllower: no fetch buffer (see the type's
// doc).
func (*FairFetch) BufferAllowed() bool { return false }

// Fetch implements FetchStrategy.
func (f *FairFetch) Fetch(ctx context.Context, exec driver.Executor, req *FetchRequest) (res FetchResult, err error) {
	tx, err := exec.Begin(ctx)
	if err != nil {
		return FetchResult{}, err
	}
	defer func() {
		if tx != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()

	f.mu.Lock()
	after, pending := f.cursor, f.pending
	f.pending = nil
	f.mu.Unlock()
	added, err := tx.FairPartitionDiscover(ctx, &driver.FairPartitionDiscoverParams{Schema: f.schema, Queue: f.queue,
		Keys: f.keys, ByKind: f.byKind, Newest: FairNewest, IDs: pending})
	if err != nil {
		return FetchResult{}, err
	}
	n := min(req.Max, FairPartitionsPerFetch, driver.MaxFairShares)
	// A partition just found gets a share at once (up to half the
	// partitions of a fetch), rather than waiting for its place in the
	// turn: a new tenant's first jobs start with the next fetch however
	// many tenants there are.
	var parts []*driver.FairPartition
	for _, p := range added {
		if len(parts) < max(n/2, 1) && (p.Kind == "" || len(req.Kinds) == 0 || slices.Contains(req.Kinds, p.Kind)) {
			parts = append(parts, p)
		}
	}
	fresh := len(parts)
	turn, err := tx.FairPartitionList(ctx, &driver.FairPartitionListParams{Schema: f.schema, Queue: f.queue, After: after,
		Limit: n - fresh, Kinds: req.Kinds})
	if err != nil {
		return FetchResult{}, err
	}
	for _, p := range turn {
		if !slices.ContainsFunc(parts[:fresh], func(q *driver.FairPartition) bool { return samePartition(p, q) }) {
			parts = append(parts, p)
		}
	}
	// The turn's end (fewer partitions than asked) gives plain order a
	// share too; it always gets what the partitions leave.
	units := len(parts)
	turnEnds := len(turn) < n-fresh
	if turnEnds {
		units++
	}
	shares := make([]*driver.FairShare, len(parts))
	for i, p := range parts {
		share := req.Max / units
		if i < req.Max%units {
			share++
		}
		shares[i] = &driver.FairShare{Kind: p.Kind, Args: p.Args, Max: share}
	}
	locked, err := tx.JobFairLock(ctx, &driver.JobFairLockParams{Schema: f.schema, Queue: f.queue, Kinds: req.Kinds,
		Shares: shares, Max: req.Max})
	if err != nil {
		return FetchResult{}, err
	}
	byID := make(map[int64]*driver.FairLocked, len(locked))
	ids := make([]int64, len(locked))
	took := make([]int, len(parts))
	var plain []int64
	for i, l := range locked {
		byID[l.ID], ids[i] = l, l.ID
		if l.Share >= 0 {
			took[l.Share]++
		} else {
			plain = append(plain, l.ID)
		}
	}
	jobs, err := tx.JobGetAvailableByID(ctx, &driver.JobGetAvailableByIDParams{Schema: f.schema, IDs: ids, ClientID: req.ClientID})
	if err == nil {
		upd := &driver.FairPartitionUpdateParams{Schema: f.schema, Queue: f.queue, Grace: FairEmptyGrace}
		for i, p := range parts {
			switch {
			case took[i] > 0 && p.EmptySince != nil:
				upd.Found = append(upd.Found, p)
			case took[i] == 0 && (p.EmptySince == nil || time.Since(*p.EmptySince) > FairEmptyGrace):
				upd.Empty = append(upd.Empty, p)
			}
		}
		_, err = tx.FairPartitionUpdate(ctx, upd)
	}
	if err == nil {
		err = tx.Commit(ctx)
		tx = nil
	}
	// Round robin within each priority: every partition's first job,
	// then every partition's second, plain order last in each round.
	slices.SortStableFunc(jobs, func(a, b *millracetype.JobRow) int {
		la, lb := byID[a.ID], byID[b.ID]
		if la == nil || lb == nil {
			return 0
		}
		if la.Priority != lb.Priority {
			return la.Priority - lb.Priority
		}
		if la.Rank != lb.Rank {
			return la.Rank - lb.Rank
		}
		return shareOrder(la.Share) - shareOrder(lb.Share)
	})
	if err == nil {
		f.mu.Lock()
		switch {
		case turnEnds:
			f.cursor = nil
		case len(turn) > 0:
			f.cursor = turn[len(turn)-1]
		}
		if len(f.pending)+len(plain) <= maxFairPending {
			f.pending = append(f.pending, plain...)
		}
		f.mu.Unlock()
	}
	// Jobs come back even with an error: the producer confirms them.
	return FetchResult{Jobs: jobs}, err
}

// samePartition reports whether two rows name one partition (the jsonb
// text Postgres returns is canonical).
func samePartition(a, b *driver.FairPartition) bool {
	return a.Kind == b.Kind && string(a.Args) == string(b.Args)
}

// shareOrder puts plain order (-1) after every partition's share.
func shareOrder(share int) int {
	if share < 0 {
		return driver.MaxFairShares
	}
	return share
}
