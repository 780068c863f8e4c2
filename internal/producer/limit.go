package producer

import (
	"context"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// LimitFetch is the FetchStrategy of a queue that may have concurrency
// limits: those of the client's configuration, replaced per kind by the
// rows of table millrace_limit (set at run time from any client).
//
// While no limit applies it is its inner strategy (DefaultFetch unless
// made with NewLimitFetchOver), plus a look at the table
// every LimitRefresh and when told of a change (LimitsChanged, from the
// limits_changed control notification). With limits it works in one
// transaction that first takes an advisory lock on the schema and queue,
// so the limited fetches of every client are serialized and none can
// overshoot: it reads the table again (a change applies at the next
// fetch), counts the queue's running jobs (JobLimitScan) and takes only
// what fits. With only global limits of the whole queue it counts only
// when it must: the table millrace_limit_bound keeps an upper bound of the
// queue's running jobs (the last count plus every job taken since under
// the lock), and while that bound leaves room for a full fetch the limit
// cannot bind. Limits are counted from the jobs in state running, so they
// survive any client's crash: a killed client's jobs count until they are
// rescued. Jobs taken without the lock (by a River client, or a millrace
// client that has not yet seen a limit added at run time) are counted but
// not held back.
//
// Local limits count the jobs this strategy handed out and has not heard
// finish (JobFinished); a fetch with only local limits takes no lock.
type LimitFetch struct {
	schema, queue string
	config        []millracetype.ConcurrencyLimit
	lockKey       int64
	inner         FetchStrategy // takes the jobs while no limit applies, or only queue-wide ones

	stale atomic.Bool // a limits_changed notification arrived

	mu      sync.Mutex
	table   []millracetype.ConcurrencyLimit // rows of millrace_limit for the queue
	readAt  time.Time                       // when table was read; zero: never
	own     map[int64]string                // jobs handed out and not finished: id → kind
	backoff time.Duration                   // the NextFetch of the next fetch held back to nothing
}

// Timing of LimitFetch.
const (
	// LimitRefresh is how often the limits table is read while no limit
	// applies (limits added at run time are also announced by a
	// notification, which applies them at once).
	LimitRefresh = 10 * time.Second
	// limitRecheckMin and limitRecheckMax bound the NextFetch of a fetch
	// held back by a limit that other clients' jobs count against (they
	// finish unseen). It doubles while fetches come back empty, and starts
	// again from limitRecheckMin once one of this client's jobs finishes
	// (the completer writes the outcome a few milliseconds later).
	limitRecheckMin = 5 * time.Millisecond
	limitRecheckMax = 100 * time.Millisecond
)

// NewLimitFetch returns the strategy of queue in schema with the limits of
// the configuration (already validated).
func NewLimitFetch(schema, queue string, config []millracetype.ConcurrencyLimit) *LimitFetch {
	return NewLimitFetchOver(schema, queue, config, nil)
}

// NewLimitFetchOver is NewLimitFetch whose jobs, while no limit applies or
// only limits of the whole queue (Global, Local) do, are taken by inner
// (DefaultFetch when nil) with Max lowered to the room left, inside the
// limit's transaction. Limits by kind or partition choose their jobs
// themselves, and inner is not called.
func NewLimitFetchOver(schema, queue string, config []millracetype.ConcurrencyLimit, inner FetchStrategy) *LimitFetch {
	if inner == nil {
		inner = DefaultFetch{}
	}
	h := fnv.New64a()
	h.Write([]byte("millrace_limit\x00" + schema + "\x00" + queue))
	f := &LimitFetch{schema: schema, queue: queue, config: slices.Clone(config), lockKey: int64(h.Sum64()),
		inner: inner, own: map[int64]string{}, backoff: limitRecheckMin}
	f.stale.Store(true)
	return f
}

// LimitsChanged marks the table as changed: the next fetch reads it.
func (f *LimitFetch) LimitsChanged() { f.stale.Store(true) }

// JobFinished implements JobFinishedObserver.
func (f *LimitFetch) JobFinished(job *millracetype.JobRow) {
	f.mu.Lock()
	delete(f.own, job.ID)
	f.backoff = limitRecheckMin
	f.mu.Unlock()
}

// Limits returns the limits in force as last read, by kind ("" first).
func (f *LimitFetch) Limits() []millracetype.ConcurrencyLimit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.effective()
}

// effective merges the configuration and the table (the caller holds mu).
func (f *LimitFetch) effective() []millracetype.ConcurrencyLimit {
	if len(f.table) == 0 {
		return f.config
	}
	byKind := map[string]millracetype.ConcurrencyLimit{}
	for _, l := range f.config {
		byKind[l.Kind] = l
	}
	for _, l := range f.table {
		byKind[l.Kind] = l
	}
	out := make([]millracetype.ConcurrencyLimit, 0, len(byKind))
	for _, l := range byKind {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b millracetype.ConcurrencyLimit) int { return strings.Compare(a.Kind, b.Kind) })
	return out
}

// readTable reads the queue's rows of millrace_limit with exec and
// returns the limits in force.
func (f *LimitFetch) readTable(ctx context.Context, exec driver.Executor) ([]millracetype.ConcurrencyLimit, error) {
	f.stale.Store(false) // before the read: a change announced during it is read next time
	rows, err := exec.LimitGetMany(ctx, &driver.LimitGetManyParams{Schema: f.schema, Queue: f.queue})
	return f.tableRead(rows, err)
}

// tableRead takes the outcome of a read of the table (made after
// f.stale was cleared) and returns the limits in force.
func (f *LimitFetch) tableRead(rows []*driver.LimitRow, err error) ([]millracetype.ConcurrencyLimit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.stale.Store(true)
		return nil, err
	}
	f.table = f.table[:0]
	for _, r := range rows {
		f.table = append(f.table, r.Limit)
	}
	f.readAt = time.Now()
	return f.effective(), nil
}

// Fetch implements FetchStrategy.
func (f *LimitFetch) Fetch(ctx context.Context, exec driver.Executor, req *FetchRequest) (FetchResult, error) {
	f.mu.Lock()
	lims, due := f.effective(), f.readAt.IsZero() || time.Since(f.readAt) >= LimitRefresh
	f.mu.Unlock()
	if due || f.stale.Load() {
		var err error
		if lims, err = f.readTable(ctx, exec); err != nil {
			return FetchResult{}, err
		}
	}
	switch {
	case len(lims) == 0:
		// Unlimited: jobs are not even tracked (a local limit set at
		// run time counts the jobs fetched from then on).
		return f.inner.Fetch(ctx, exec, req)
	case !needsLock(lims):
		return f.fetchLimited(ctx, exec, req, lims, false)
	default:
		return f.fetchLimited(ctx, exec, req, lims, true)
	}
}

// BufferAllowed implements BufferAllower: a fetch buffer while no limit
// applies or only limits of the whole queue do (Global, Local), as last
// read. Those count buffered jobs like started ones (a buffered job is
// running in the table, and handed out for a local limit), so they hold
// with a buffer too; a kind or partition limit, which picks jobs among
// candidates, stops buffering from the fetch that reads it on (the jobs
// already buffered count against it as running). An inner strategy that
// allows no buffer (FairFetch) allows none here either.
func (f *LimitFetch) BufferAllowed() bool {
	if b, ok := f.inner.(BufferAllower); !ok || !b.BufferAllowed() {
		return false
	}
	if f.stale.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readAt.IsZero() {
		return false
	}
	for _, l := range f.effective() {
		if l.Kind != "" || l.PerPartition > 0 {
			return false
		}
	}
	return true
}

// needsLock reports whether a limit counts other clients' jobs.
func needsLock(lims []millracetype.ConcurrencyLimit) bool {
	for _, l := range lims {
		if l.Global > 0 || l.PerPartition > 0 {
			return true
		}
	}
	return false
}

// track records jobs handed out (not those of a failed fetch: the
// producer starts only those it confirms, and a job recorded but never
// started would hold a local place for ever; one confirmed and started
// goes uncounted until it finishes).
func (f *LimitFetch) track(jobs []*millracetype.JobRow, err error) {
	if err != nil || len(jobs) == 0 {
		return
	}
	f.mu.Lock()
	for _, j := range jobs {
		f.own[j.ID] = j.Kind
	}
	f.mu.Unlock()
}

// fetchLimited fetches within lims; with lock, in a transaction holding
// the queue's advisory lock, counting the running jobs.
func (f *LimitFetch) fetchLimited(ctx context.Context, exec driver.Executor, req *FetchRequest,
	lims []millracetype.ConcurrencyLimit, lock bool) (res FetchResult, err error) {
	x := exec
	var tx driver.ExecutorTx
	// bound is the queue's running-jobs bound, read with the lock.
	var (
		bound   int
		boundOK bool
	)
	if lock {
		if tx, err = exec.Begin(ctx); err != nil {
			return FetchResult{}, err
		}
		defer func() {
			if tx != nil {
				_ = tx.Rollback(context.WithoutCancel(ctx))
			}
		}()
		// Read under the lock: a change made before another client's
		// fetch applies to this one too.
		f.stale.Store(false) // before the read, as readTable does
		read, rerr := driver.LimitLockRead(ctx, tx, &driver.LimitLockReadParams{Schema: f.schema, Queue: f.queue, LockKey: f.lockKey})
		var rows []*driver.LimitRow
		if rerr == nil {
			rows, bound, boundOK = read.Limits, read.Bound, read.BoundOK
		}
		if lims, err = f.tableRead(rows, rerr); err != nil {
			return FetchResult{}, err
		}
		if !needsLock(lims) {
			// The limits changed meanwhile; fetch by the new ones.
			_ = tx.Rollback(ctx)
			tx = nil
			return f.Fetch(ctx, exec, req)
		}
		x = tx
	}
	f.mu.Lock()
	ownKinds := make([]string, 0, len(f.own))
	for _, k := range f.own {
		ownKinds = append(ownKinds, k)
	}
	f.mu.Unlock()

	var jobs []*millracetype.JobRow
	var held bool // a limit held jobs back
	if queueWideOnly(lims) {
		room := req.Max
		total := 0 // running jobs of the queue, or a bound above them
		if lock {
			global := 0 // the lowest global limit
			for _, l := range lims {
				if l.Global > 0 && (global == 0 || l.Global < global) {
					global = l.Global
				}
			}
			// The bound (read with the lock) saves the count while it
			// leaves room for a full fetch: the limit cannot bind.
			if boundOK && bound >= 0 && bound+req.Max <= global {
				total = bound
			} else {
				scan, err := x.JobLimitScan(ctx, &driver.JobLimitScanParams{Schema: f.schema, Queue: f.queue})
				if err != nil {
					return FetchResult{}, err
				}
				for _, g := range scan.Running {
					total += g.Count
				}
			}
			room = min(room, global-total)
		}
		for _, l := range lims {
			if l.Local > 0 {
				room = min(room, l.Local-len(ownKinds))
			}
		}
		held = room < req.Max
		if room > 0 {
			orig := req.Max
			req.Max = room
			var ir FetchResult
			ir, err = f.inner.Fetch(ctx, x, req)
			req.Max = orig
			jobs = ir.Jobs
			held = held || ir.Limited
		}
		if lock && err == nil {
			err = x.LimitBoundSet(ctx, &driver.LimitBoundParams{Schema: f.schema, Queue: f.queue, Bound: total + len(jobs)})
		}
	} else {
		var ids []int64
		ids, held, err = f.choose(ctx, x, req, lims, ownKinds)
		if err == nil && len(ids) > 0 {
			jobs, err = x.JobGetAvailableByID(ctx, &driver.JobGetAvailableByIDParams{Schema: f.schema, IDs: ids, ClientID: req.ClientID})
		}
		if lock && err == nil && len(jobs) > 0 {
			// This path keeps no bound: a client whose limits take the
			// bounded path must count next time.
			err = x.LimitBoundSet(ctx, &driver.LimitBoundParams{Schema: f.schema, Queue: f.queue, Bound: -1})
		}
	}
	if err == nil && tx != nil {
		err = tx.Commit(ctx)
		tx = nil
	}
	// Jobs come back even with an error: the producer confirms them.
	f.track(jobs, err)
	res = FetchResult{Jobs: jobs, Limited: held}
	if held && lock {
		f.mu.Lock()
		res.NextFetch = f.backoff
		if len(jobs) == 0 {
			f.backoff = min(2*f.backoff, limitRecheckMax)
		} else {
			f.backoff = limitRecheckMin
		}
		f.mu.Unlock()
	}
	return res, err
}

// queueWideOnly reports whether every limit is of the whole queue and
// none is partitioned: then only totals count.
func queueWideOnly(lims []millracetype.ConcurrencyLimit) bool {
	for _, l := range lims {
		if l.Kind != "" || l.PerPartition > 0 {
			return false
		}
	}
	return true
}

// limitState is one limit's counts during choose.
type limitState struct {
	lim    millracetype.ConcurrencyLimit
	global int
	local  int
	parts  map[string]int
	keyIdx []int // index in the scan's keys of each of lim.PartitionByArgs
}

func (s *limitState) applies(kind string) bool { return s.lim.Kind == "" || s.lim.Kind == kind }

func (s *limitState) partKey(kind string, part []string) string {
	var b strings.Builder
	if s.lim.PartitionByKind {
		b.WriteString(kind)
	}
	for _, i := range s.keyIdx {
		b.WriteByte(0)
		if i < len(part) {
			b.WriteString(part[i])
		}
	}
	return b.String()
}

// candidateFactor: a fetch that may skip jobs reads this many times its
// free slots of candidates (at least minCandidates).
const (
	candidateFactor = 4
	minCandidates   = 200
)

// choose picks, in fetch order, the candidates every applicable limit
// still has room for.
func (f *LimitFetch) choose(ctx context.Context, x driver.Executor, req *FetchRequest,
	lims []millracetype.ConcurrencyLimit, ownKinds []string) (ids []int64, held bool, err error) {
	var keys []string
	states := make([]*limitState, len(lims))
	perGroup := req.Max
	first := 0 // the smallest partitioned limit, whatever its kind
	for i, l := range lims {
		st := &limitState{lim: l, parts: map[string]int{}}
		for _, k := range l.PartitionByArgs {
			at := slices.Index(keys, k)
			if at < 0 {
				at = len(keys)
				keys = append(keys, k)
			}
			st.keyIdx = append(st.keyIdx, at)
		}
		if l.Kind == "" && l.PerPartition > 0 {
			// No group of equal kind and keys can take more than this.
			perGroup = min(perGroup, l.PerPartition)
		}
		if l.PerPartition > 0 && (first == 0 || l.PerPartition < first) {
			first = l.PerPartition
		}
		states[i] = st
	}
	scan, err := x.JobLimitScan(ctx, &driver.JobLimitScanParams{Schema: f.schema, Queue: f.queue, Keys: keys,
		Kinds: req.Kinds, Candidates: max(candidateFactor*req.Max, minCandidates), PerGroup: perGroup, FirstPerGroup: first})
	if err != nil {
		return nil, false, err
	}
	for _, st := range states {
		for _, g := range scan.Running {
			if st.applies(g.Kind) {
				st.global += g.Count
				if st.lim.PerPartition > 0 {
					st.parts[st.partKey(g.Kind, g.Part)] += g.Count
				}
			}
		}
		for _, k := range ownKinds {
			if st.applies(k) {
				st.local++
			}
		}
	}
	keysOf := make([]string, len(states))
	for _, c := range scan.Available {
		if len(ids) == req.Max {
			break
		}
		fits := true
		for i, st := range states {
			if !st.applies(c.Kind) {
				continue
			}
			if st.lim.PerPartition > 0 {
				keysOf[i] = st.partKey(c.Kind, c.Part)
			}
			if (st.lim.Global > 0 && st.global >= st.lim.Global) || (st.lim.Local > 0 && st.local >= st.lim.Local) ||
				(st.lim.PerPartition > 0 && st.parts[keysOf[i]] >= st.lim.PerPartition) {
				fits = false
				break
			}
		}
		if !fits {
			held = true
			continue
		}
		for i, st := range states {
			if st.applies(c.Kind) {
				st.global++
				st.local++
				if st.lim.PerPartition > 0 {
					st.parts[keysOf[i]]++
				}
			}
		}
		ids = append(ids, c.ID)
	}
	return ids, held, nil
}
