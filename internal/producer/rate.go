package producer

import (
	"context"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// RateFetch is the FetchStrategy of a queue with rate limits or timed
// pauses: a decorator of another strategy (Inner).
//
// Each fetch runs in a transaction of its own (a savepoint inside the
// caller's) that first takes an advisory lock on the schema and queue, so
// the rate-limited fetches of every client are serialized: it reads the
// database's clock (now(), the transaction's start, which the fetch also
// writes as the jobs' attempted_at), the counts of the current windows
// (table millrace_rate) and the current pauses (millrace_pause), takes
// only what fits, and adds what it took to the counts before committing.
// The counts are exact across processes and survive crashes; a fetch that
// rolls back counts nothing.
//
// With only whole-queue, unpartitioned limits and no partial pause it
// lowers req.Max to the room left and calls Inner in the transaction. With
// kind or partitioned limits, or a pause of part of the queue, it chooses
// the jobs itself (JobRateScan, JobGetAvailableByID) and Inner is not called.
type RateFetch struct {
	schema, queue string
	limits        []millracetype.RateLimit
	inner         FetchStrategy
	lockKey       int64
}

// rateRecheck is the margin added to a NextFetch at a window's or a
// pause's end, for the local and the database's clocks to differ a little.
const rateRecheck = 5 * time.Millisecond

// NewRateFetch returns the strategy of queue in schema with limits
// (validated by the caller), wrapping inner (DefaultFetch when nil).
func NewRateFetch(schema, queue string, limits []millracetype.RateLimit, inner FetchStrategy) *RateFetch {
	if inner == nil {
		inner = DefaultFetch{}
	}
	h := fnv.New64a()
	h.Write([]byte("millrace_rate\x00" + schema + "\x00" + queue))
	return &RateFetch{schema: schema, queue: queue, limits: slices.Clone(limits), inner: inner, lockKey: int64(h.Sum64())}
}

// JobFinished passes the news to Inner when it listens.
func (f *RateFetch) JobFinished(job *millracetype.JobRow) {
	if o, ok := f.inner.(JobFinishedObserver); ok {
		o.JobFinished(job)
	}
}

// LimitsChanged passes the news of changed limits (a control
// notification) to Inner when it listens, so that wrapping a strategy
// that reads limits from the database hides nothing from the producer.
func (f *RateFetch) LimitsChanged() {
	if o, ok := f.inner.(interface{ LimitsChanged() }); ok {
		o.LimitsChanged()
	}
}

// RateWindow returns the window of length interval (a positive whole
// number of milliseconds) that now is in: windows start at whole multiples
// of interval since the Unix epoch.
func RateWindow(now time.Time, interval time.Duration) (start, end time.Time) {
	ms := interval.Milliseconds()
	t := now.UnixMilli()
	s := t - t%ms
	if t%ms < 0 { // before the epoch
		s -= ms
	}
	start = time.UnixMilli(s).UTC()
	return start, start.Add(interval)
}

// RateKey is the key of a limit's partition in table millrace_rate: the
// limit's identity (kind, interval, partitioning; not N, so a change of N
// keeps the counts) and the partition's values.
func RateKey(l millracetype.RateLimit, kind string, part []string) string {
	var b strings.Builder
	b.WriteString("kind=")
	b.WriteString(l.Kind)
	b.WriteString(";every=")
	b.WriteString(strconv.FormatInt(l.Interval.Milliseconds(), 10))
	b.WriteString("ms")
	if l.PartitionByKind {
		b.WriteString(";by_kind=")
		b.WriteString(kind)
	}
	for i, k := range l.PartitionByArgs {
		b.WriteString(";arg:")
		b.WriteString(strconv.Quote(k))
		b.WriteString("=")
		if i < len(part) {
			b.WriteString(part[i])
		}
	}
	return b.String()
}

// rateState is one limit's place during a fetch.
type rateState struct {
	lim        millracetype.RateLimit
	start, end time.Time
	keyIdx     []int          // index in the scan's keys of each of lim.PartitionByArgs
	counts     map[string]int // started in the current window, by rate key
	added      map[string]int // taken by this fetch, by rate key
}

func (s *rateState) applies(kind string) bool { return s.lim.Kind == "" || s.lim.Kind == kind }

func (s *rateState) key(kind string, part []string) string {
	var vals []string
	for _, i := range s.keyIdx {
		if i < len(part) {
			vals = append(vals, part[i])
		} else {
			vals = append(vals, "")
		}
	}
	return RateKey(s.lim, kind, vals)
}

func partitioned(l millracetype.RateLimit) bool {
	return l.Kind != "" || l.PartitionByKind || len(l.PartitionByArgs) > 0
}

// Fetch implements FetchStrategy.
func (f *RateFetch) Fetch(ctx context.Context, exec driver.Executor, req *FetchRequest) (res FetchResult, err error) {
	tx, err := exec.Begin(ctx)
	if err != nil {
		return FetchResult{}, err
	}
	defer func() {
		if tx != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err = tx.PGAdvisoryXactLock(ctx, f.lockKey); err != nil {
		return FetchResult{}, err
	}
	st, err := tx.RateStateRead(ctx, &driver.RateStateParams{Schema: f.schema, Queue: f.queue})
	if err != nil {
		return FetchResult{}, err
	}
	now := st.Now
	var next time.Duration // the NextFetch hint: the first end of what holds jobs back
	hint := func(at time.Time) {
		if d := at.Sub(now) + rateRecheck; next == 0 || d < next {
			next = d
		}
	}
	partialPause := false
	for _, p := range st.Pauses {
		if p.Kind == "" && (len(p.Args) == 0 || string(p.Args) == "{}") {
			// The whole queue is paused: nothing to take.
			return FetchResult{Limited: true, NextFetch: p.Until.Sub(now) + rateRecheck}, nil
		}
		partialPause = true
		hint(p.Until)
	}

	states := make([]*rateState, len(f.limits))
	simple := !partialPause
	var keys []string
	perGroup := 0
	for i, l := range f.limits {
		s := &rateState{lim: l, counts: map[string]int{}, added: map[string]int{}}
		s.start, s.end = RateWindow(now, l.Interval)
		for _, k := range l.PartitionByArgs {
			at := slices.Index(keys, k)
			if at < 0 {
				at = len(keys)
				keys = append(keys, k)
			}
			s.keyIdx = append(s.keyIdx, at)
		}
		if partitioned(l) {
			simple = false
			if l.Kind == "" && (perGroup == 0 || l.N+1 < perGroup) {
				// No group of equal kind and part can take more than N;
				// one more shows that the limit holds jobs back.
				perGroup = l.N + 1
			}
		}
		states[i] = s
	}
	for _, c := range st.Counts {
		for _, s := range states {
			if c.WindowStart.Equal(s.start) {
				s.counts[c.Key] = c.Started // a key names one limit
			}
		}
	}

	var jobs []*millracetype.JobRow
	held := partialPause
	if simple {
		room := req.Max
		for _, s := range states {
			left := s.lim.N - s.counts[s.key("", nil)]
			if left < req.Max {
				hint(s.end)
			}
			room = min(room, left)
		}
		if room < req.Max {
			held = true
		}
		if room <= 0 {
			return FetchResult{Limited: true, NextFetch: next}, nil
		}
		orig := req.Max
		req.Max = room
		var ir FetchResult
		ir, err = f.inner.Fetch(ctx, tx, req)
		req.Max = orig
		jobs = ir.Jobs
		if ir.Limited {
			held = true
		}
		if ir.NextFetch > 0 && (next == 0 || ir.NextFetch < next) {
			next = ir.NextFetch
		}
		for _, s := range states {
			s.added[s.key("", nil)] += len(jobs)
		}
	} else {
		var cands []*driver.JobRateCandidate
		cands, err = tx.JobRateScan(ctx, &driver.JobRateScanParams{Schema: f.schema, Queue: f.queue, Keys: keys,
			Kinds: req.Kinds, Max: max(4*req.Max, 200), PerGroup: perGroup})
		if err != nil {
			return FetchResult{}, err
		}
		ids, byID, h := chooseRate(states, cands, req.Max, hint)
		held = held || h
		jobs, err = tx.JobGetAvailableByID(ctx, &driver.JobGetAvailableByIDParams{Schema: f.schema, IDs: ids, ClientID: req.ClientID})
		for _, s := range states {
			clear(s.added)
			for _, j := range jobs {
				if c := byID[j.ID]; c != nil && s.applies(c.Kind) {
					s.added[s.key(c.Kind, c.Part)]++
				}
			}
		}
	}
	if err == nil && len(jobs) > 0 {
		var add []*driver.RateCount
		for _, s := range states {
			for k, n := range s.added {
				if n > 0 {
					add = append(add, &driver.RateCount{Key: k, WindowStart: s.start, WindowEnd: s.end, Started: n})
				}
			}
		}
		err = tx.RateCountAdd(ctx, &driver.RateCountAddParams{Schema: f.schema, Queue: f.queue, Now: now, Add: add})
	}
	if err == nil {
		err = tx.Commit(ctx)
		tx = nil
	}
	// Jobs come back even with an error: the producer confirms them.
	return FetchResult{Jobs: jobs, Limited: held, NextFetch: next}, err
}

// chooseRate picks, in fetch order, at most max candidates every
// applicable limit still has room for, counting them in the states'
// counts; it reports whether a limit held one back, and hints the end of
// the window of each limit that did.
func chooseRate(states []*rateState, cands []*driver.JobRateCandidate, maxJobs int, hint func(time.Time)) (ids []int64, byID map[int64]*driver.JobRateCandidate, held bool) {
	byID = make(map[int64]*driver.JobRateCandidate, len(cands))
	keys := make([]string, len(states))
	for _, c := range cands {
		if len(ids) == maxJobs {
			break
		}
		fits := true
		for i, s := range states {
			if !s.applies(c.Kind) {
				continue
			}
			keys[i] = s.key(c.Kind, c.Part)
			if s.counts[keys[i]] >= s.lim.N {
				fits = false
				hint(s.end)
			}
		}
		if !fits {
			held = true
			continue
		}
		for i, s := range states {
			if s.applies(c.Kind) {
				s.counts[keys[i]]++
			}
		}
		ids = append(ids, c.ID)
		byID[c.ID] = c
	}
	return ids, byID, held
}
