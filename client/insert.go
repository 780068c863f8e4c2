package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/uniquekey"
	"github.com/millrace/millrace/millracetype"
)

// InsertResult is the outcome of inserting one job.
type InsertResult struct {
	// Job is the inserted job, or the existing one for a duplicate.
	Job *millracetype.JobRow
	// UniqueSkippedAsDuplicate is true when a live job with the same unique
	// key existed: nothing was inserted and Job is that job, left as it
	// was.
	UniqueSkippedAsDuplicate bool
	// UniqueReplaced is true when a job with the same unique key existed
	// that had not started and InsertOpts.Replace updated it: nothing was
	// inserted and Job is that job as updated. UniqueSkippedAsDuplicate is
	// then false.
	UniqueReplaced bool
}

// InsertManyParams is one job of a batch insert.
type InsertManyParams struct {
	Args       JobArgs
	InsertOpts *InsertOpts
}

// JobInsertParams is one job as it will be written, after options are
// resolved and validated; insert middleware may change it.
type JobInsertParams struct {
	Kind         string
	EncodedArgs  []byte
	Queue        string
	Priority     int
	MaxAttempts  int
	CreatedAt    time.Time
	ScheduledAt  time.Time
	State        millracetype.JobState
	Tags         []string
	Metadata     []byte
	UniqueKey    []byte
	UniqueStates byte
	// Sequence comes from InsertOpts.Sequence. A job with a Key is
	// written pending, with its sequence in Metadata, whatever State and
	// Metadata middleware leave.
	Sequence SequenceOpts
	// ReplaceArgs and ReplaceScheduledAt come from InsertOpts.Replace
	// (Debounce sets ReplaceScheduledAt): a duplicate that has not started
	// takes this job's EncodedArgs, and its ScheduledAt and State. They
	// need a UniqueKey.
	ReplaceArgs        bool
	ReplaceScheduledAt bool

	// Args is the args value the job was made from (for hooks and
	// middleware to inspect; changing it changes nothing stored).
	Args JobArgs
}

// Insert inserts one job and returns it. Available jobs wake a producer of
// their queue (on any client) within milliseconds.
func (c *Client[TTx]) Insert(ctx context.Context, args JobArgs, opts *InsertOpts) (*InsertResult, error) {
	res, err := c.insertMany(ctx, c.driver.GetExecutor(), false, []InsertManyParams{{Args: args, InsertOpts: opts}})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// InsertTx inserts one job inside the caller's transaction: it exists (and
// its insert notification is sent) only if tx commits.
func (c *Client[TTx]) InsertTx(ctx context.Context, tx TTx, args JobArgs, opts *InsertOpts) (*InsertResult, error) {
	res, err := c.insertMany(ctx, c.driver.UnwrapExecutor(tx), true, []InsertManyParams{{Args: args, InsertOpts: opts}})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// InsertMany inserts jobs in one statement and returns one result per job,
// in order. Invalid input fails the whole batch before anything is written.
func (c *Client[TTx]) InsertMany(ctx context.Context, params []InsertManyParams) ([]*InsertResult, error) {
	return c.insertMany(ctx, c.driver.GetExecutor(), false, params)
}

// InsertManyTx is InsertMany inside the caller's transaction.
func (c *Client[TTx]) InsertManyTx(ctx context.Context, tx TTx, params []InsertManyParams) ([]*InsertResult, error) {
	return c.insertMany(ctx, c.driver.UnwrapExecutor(tx), true, params)
}

// InsertManyFast inserts jobs with COPY, the fastest way to insert many,
// and returns how many it inserted. It returns no rows, and a unique-key
// conflict fails the whole batch (use InsertMany for unique jobs); jobs
// with InsertOpts.Replace are refused.
func (c *Client[TTx]) InsertManyFast(ctx context.Context, params []InsertManyParams) (int, error) {
	return c.insertManyFast(ctx, c.driver.GetExecutor(), false, params)
}

// InsertManyFastTx is InsertManyFast inside the caller's transaction.
func (c *Client[TTx]) InsertManyFastTx(ctx context.Context, tx TTx, params []InsertManyParams) (int, error) {
	return c.insertManyFast(ctx, c.driver.UnwrapExecutor(tx), true, params)
}

func (c *Client[TTx]) insertMany(ctx context.Context, exec driver.Executor, inTx bool, params []InsertManyParams) ([]*InsertResult, error) {
	prepared, err := c.prepareInsert(params)
	if err != nil {
		return nil, err
	}
	return c.runInsertMiddleware(ctx, prepared, func(ctx context.Context) ([]*InsertResult, error) {
		seq, err := finishSequenced(prepared)
		if err != nil {
			return nil, err
		}
		jobs := toDriverParams(prepared)
		notify, suppressed := c.notifyQueues(prepared, inTx)
		var res []*driver.JobInsertResult
		var promoted *driver.SequencePromoteResult
		if seq {
			res, promoted, err = c.insertSequenced(ctx, exec, inTx, prepared, &driver.JobInsertManyParams{
				Schema: c.config.Schema, Jobs: jobs, NotifyQueues: notify})
		} else {
			res, err = exec.JobInsertMany(ctx, &driver.JobInsertManyParams{
				Schema: c.config.Schema, Jobs: jobs, NotifyQueues: notify})
			if err != nil {
				err = fmt.Errorf("insert jobs: %w", c.explainSchemaError(ctx, err))
			}
		}
		if err != nil {
			return nil, err
		}
		if !inTx {
			c.pokeProducers(prepared)
			c.notifyTrailing(suppressed)
			if promoted != nil {
				c.pokeQueues(promoted.Queues)
			}
		}
		out := make([]*InsertResult, len(res))
		for i, r := range res {
			out[i] = &InsertResult{Job: r.Job, UniqueSkippedAsDuplicate: r.UniqueSkippedAsDuplicate,
				UniqueReplaced: r.UniqueReplaced}
		}
		if !inTx {
			c.pokeReplaced(prepared, out)
		}
		return out, nil
	})
}

func (c *Client[TTx]) insertManyFast(ctx context.Context, exec driver.Executor, inTx bool, params []InsertManyParams) (int, error) {
	prepared, err := c.prepareInsert(params)
	if err != nil {
		return 0, err
	}
	for i, p := range prepared {
		if p.ReplaceArgs || p.ReplaceScheduledAt {
			return 0, fmt.Errorf("%w: job %d: InsertManyFast (COPY) cannot replace a duplicate; use InsertMany", ErrInvalidArgs, i)
		}
		if p.Sequence.Key != "" {
			return 0, fmt.Errorf("%w: job %d: InsertManyFast (COPY) cannot put a job in a sequence (it returns no job IDs); use InsertMany", ErrInvalidArgs, i)
		}
	}
	var count int
	_, err = c.runInsertMiddleware(ctx, prepared, func(ctx context.Context) ([]*InsertResult, error) {
		notify, suppressed := c.notifyQueues(prepared, inTx)
		n, err := exec.JobInsertCopy(ctx, &driver.JobInsertManyParams{
			Schema: c.config.Schema, Jobs: toDriverParams(prepared), NotifyQueues: notify})
		if err != nil {
			return nil, fmt.Errorf("insert jobs with COPY: %w", c.explainSchemaError(ctx, err))
		}
		if !inTx {
			c.pokeProducers(prepared)
			c.notifyTrailing(suppressed)
		}
		count = n
		return nil, nil
	})
	return count, err
}

func (c *Client[TTx]) runInsertMiddleware(ctx context.Context, params []*JobInsertParams, last func(ctx context.Context) ([]*InsertResult, error)) ([]*InsertResult, error) {
	return c.runInsertChain(ctx, params, last) // middleware and hooks: hooks.go
}

func toDriverParams(prepared []*JobInsertParams) []*driver.JobInsertParams {
	jobs := make([]*driver.JobInsertParams, len(prepared))
	for i, p := range prepared {
		createdAt, scheduledAt := p.CreatedAt, p.ScheduledAt
		jobs[i] = &driver.JobInsertParams{Args: p.EncodedArgs, CreatedAt: &createdAt, Kind: p.Kind,
			MaxAttempts: p.MaxAttempts, Metadata: p.Metadata, Priority: p.Priority, Queue: p.Queue,
			ScheduledAt: &scheduledAt, State: p.State, Tags: p.Tags, UniqueKey: p.UniqueKey, UniqueStates: p.UniqueStates,
			ReplaceArgs: p.ReplaceArgs, ReplaceScheduledAt: p.ReplaceScheduledAt}
	}
	return jobs
}

// MaxInsertBatch bounds one InsertMany or InsertManyFast call.
const MaxInsertBatch = 100_000

var tagRE = regexp.MustCompile(`\A[\w][\w\-]+[\w]\z`)

// prepareInsert resolves options, validates and encodes every job; one bad
// job fails the batch with its index.
func (c *Client[TTx]) prepareInsert(params []InsertManyParams) ([]*JobInsertParams, error) {
	if len(params) == 0 {
		return nil, fmt.Errorf("%w: no jobs to insert", ErrInvalidArgs)
	}
	if len(params) > MaxInsertBatch {
		return nil, fmt.Errorf("%w: %d jobs in one insert; at most %d", ErrInvalidArgs, len(params), MaxInsertBatch)
	}
	now := c.config.clock().UTC()
	out := make([]*JobInsertParams, len(params))
	for i, p := range params {
		job, err := c.prepareOne(p, now)
		if err != nil {
			if len(params) == 1 {
				return nil, fmt.Errorf("%w: %w", ErrInvalidArgs, err)
			}
			return nil, fmt.Errorf("%w: job %d: %w", ErrInvalidArgs, i, err)
		}
		out[i] = job
	}
	return out, nil
}

func (c *Client[TTx]) prepareOne(p InsertManyParams, now time.Time) (*JobInsertParams, error) {
	if p.Args == nil {
		return nil, errors.New("args is nil")
	}
	kind, err := kindOf(p.Args)
	if err != nil {
		return nil, fmt.Errorf("args %T: %w", p.Args, err)
	}
	encoded, err := json.Marshal(p.Args)
	if err != nil {
		return nil, fmt.Errorf("encode args %T: %w", p.Args, err)
	}
	if len(encoded) == 0 || encoded[0] != '{' {
		return nil, fmt.Errorf("args %T encode to %.40s, not a JSON object", p.Args, encoded)
	}
	// Resolve each option: the insert's, then the kind's, then the config.
	var kindOpts InsertOpts
	if w, ok := p.Args.(JobArgsWithInsertOpts); ok {
		if kindOpts, err = safeInsertOpts(w); err != nil {
			return nil, fmt.Errorf("args %T: %w", p.Args, err)
		}
	}
	var opts InsertOpts
	if p.InsertOpts != nil {
		opts = *p.InsertOpts
	}
	job := &JobInsertParams{
		Kind:        kind,
		EncodedArgs: encoded,
		Queue:       firstNonZero(opts.Queue, kindOpts.Queue, QueueDefault),
		Priority:    firstNonZero(opts.Priority, kindOpts.Priority, PriorityDefault),
		MaxAttempts: firstNonZero(opts.MaxAttempts, kindOpts.MaxAttempts, c.config.MaxAttempts),
		CreatedAt:   now,
		ScheduledAt: now,
		State:       millracetype.JobStateAvailable,
		Metadata:    []byte("{}"),
		Tags:        []string{},
		Args:        p.Args,
	}
	if err := validateQueueName(job.Queue); err != nil {
		return nil, err
	}
	if job.Priority < 1 || job.Priority > 4 {
		return nil, fmt.Errorf("priority %d out of range 1..4", job.Priority)
	}
	if job.MaxAttempts < 1 || job.MaxAttempts > 32767 {
		return nil, fmt.Errorf("max attempts %d out of range 1..32767", job.MaxAttempts)
	}
	scheduledAt := opts.ScheduledAt
	if scheduledAt.IsZero() {
		scheduledAt = kindOpts.ScheduledAt
	}
	if !scheduledAt.IsZero() {
		job.ScheduledAt = scheduledAt.UTC()
		// River writes every ScheduledAt as scheduled and leaves it to the
		// leader's scheduler, up to one scheduler interval (5 s) late.
		// millrace writes a job due within that look-ahead available with
		// its scheduled_at, as the scheduler itself would: the fetch waits
		// for the time, and River's producers read such rows the same way.
		if job.ScheduledAt.Sub(now) > soonHorizon {
			job.State = millracetype.JobStateScheduled
		}
	}
	if opts.Pending || kindOpts.Pending {
		job.State = millracetype.JobStatePending
	}
	tags := opts.Tags
	if tags == nil {
		tags = kindOpts.Tags
	}
	for _, tag := range tags {
		if len(tag) > 255 || !tagRE.MatchString(tag) {
			return nil, fmt.Errorf("tag %q must match %s and be at most 255 characters", tag, tagRE)
		}
	}
	if tags != nil {
		// A copy: insert middleware may edit it, and the caller's slice (or
		// one the kind's InsertOpts returns every time) must not change.
		job.Tags = slices.Clone(tags)
	}
	if opts.Metadata != nil {
		if job.Metadata, err = validateMetadata(opts.Metadata); err != nil {
			return nil, err
		}
	}
	unique := opts.UniqueOpts
	if isZeroUnique(unique) {
		unique = kindOpts.UniqueOpts
	}
	uopts := &uniquekey.Opts{ByArgs: unique.ByArgs, ByPeriod: unique.ByPeriod, ByQueue: unique.ByQueue,
		ByState: unique.ByState, ExcludeKind: unique.ExcludeKind}
	if !uopts.IsEmpty() {
		// The key is River's, from the ScheduledAt given (not the one a
		// Debounce gives below), so River computes the same.
		var sched *time.Time
		if !scheduledAt.IsZero() {
			sched = &scheduledAt
		}
		key, err := uniquekey.Key(uopts, kind, encoded, p.Args, job.Queue, sched, now)
		if err != nil {
			return nil, fmt.Errorf("unique options: %w", err)
		}
		job.UniqueKey, job.UniqueStates = key, uopts.StatesMask()
	}
	replace := firstNonZero(opts.Replace, kindOpts.Replace)
	job.Sequence = firstNonZero(opts.Sequence, kindOpts.Sequence)
	if err := validateSequence(job.Sequence, job.State == millracetype.JobStatePending, replace); err != nil {
		return nil, err
	}
	if err := checkReplace(replace, uopts.IsEmpty(), scheduledAt, job.State == millracetype.JobStatePending); err != nil {
		return nil, err
	}
	job.ReplaceArgs, job.ReplaceScheduledAt = replace.Args, replace.ScheduledAt || replace.Debounce > 0
	if replace.Debounce > 0 {
		job.ScheduledAt = now.Add(replace.Debounce)
		if replace.Debounce > soonHorizon {
			job.State = millracetype.JobStateScheduled
		}
	}
	return job, nil
}

// checkReplace validates replace options against the rest of a job's
// resolved options.
func checkReplace(r ReplaceOpts, noUnique bool, scheduledAt time.Time, pending bool) error {
	if r == (ReplaceOpts{}) {
		return nil
	}
	if noUnique {
		return errors.New("replace options (Replace) need unique options (UniqueOpts): a job without a unique key has no duplicate to replace")
	}
	if r.Debounce < 0 {
		return fmt.Errorf("replace debounce %s is negative", r.Debounce)
	}
	if r.Debounce > 0 && !scheduledAt.IsZero() {
		return errors.New("replace debounce sets the run time: ScheduledAt must not be set with it")
	}
	if (r.ScheduledAt || r.Debounce > 0) && pending {
		return errors.New("replacing the run time of a pending job: Pending must not be set with Replace.ScheduledAt or Debounce")
	}
	return nil
}

func isZeroUnique(u UniqueOpts) bool {
	return !u.ByArgs && u.ByPeriod == 0 && !u.ByQueue && u.ByState == nil && !u.ExcludeKind
}

// validateMetadata checks user metadata: a JSON object without "river:"
// or "millrace:" keys. It returns it compacted.
func validateMetadata(raw []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, fmt.Errorf("metadata must be a JSON object: %.60s", raw)
	}
	for k := range m {
		if reservedMetadataKey(k) {
			return nil, fmt.Errorf("metadata key %q: %w", k, ErrReservedMetadataKey)
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func firstNonZero[T comparable](vals ...T) T {
	var zero T
	for _, v := range vals {
		if v != zero {
			return v
		}
	}
	return zero
}

// notifyBurst is how many insert notifications of a queue a client may send
// at once before its notifyLimiter paces them.
const notifyBurst = 4

// notifyPerCooldown is the pace of a client's insert notifications of a
// queue: this many per FetchCooldown on average (1,000 a second at the
// default).
const notifyPerCooldown = 2

// notifyLimiter paces a client's insert notifications of each queue to one
// per window (FetchCooldown / notifyPerCooldown) on average, allowing bursts
// of notifyBurst: a token bucket per queue, refilled by one token per
// window. A steady stream of inserts below that pace notifies for every
// insert, whatever its jitter, and a stream that catches up after a slow
// insert gets its tokens back; above the pace, an insert that finds no
// token goes without, and one trailing notification follows when the next
// token is due (see notifyQueues and notifyTrailing).
//
// Measured with 5,000 inserts at 500 a second by a separate client (ms
// from the insert's return to Work, 3 runs each, FetchCooldown 2 ms): a
// window restarted by every notification left three inserts in four
// without one (p50 1.25-1.66, p90 2.83-3.31; a ticker's stream). With
// the stream paced from its start time, as the bench paces it (a slow
// insert is followed by a catch-up), a bucket at one token per
// FetchCooldown, exactly the stream's rate, never got the tokens of a
// catch-up back: 73-111 inserts went without (p50 1.10-1.37, p90
// 2.65-2.88); at two per FetchCooldown, 1-4 (p50 0.86-0.99, p90
// 1.67-1.92), alternated with it.
type notifyLimiter struct {
	mu      sync.Mutex
	window  time.Duration
	buckets map[string]*notifyBucket
	// trailing holds the queues with a trailing notification scheduled.
	trailing map[string]bool
}

// notifyBucket is one queue's tokens as of at.
type notifyBucket struct {
	tokens float64
	at     time.Time
}

// bucket returns queue's bucket refilled up to now (a new queue's is
// full). The caller holds l.mu.
func (l *notifyLimiter) bucket(queue string, now time.Time) *notifyBucket {
	b, ok := l.buckets[queue]
	if !ok {
		if l.buckets == nil {
			l.buckets = map[string]*notifyBucket{}
		}
		b = &notifyBucket{tokens: notifyBurst, at: now}
		l.buckets[queue] = b
		return b
	}
	if now.After(b.at) { // a clock going back refills nothing
		b.tokens = min(notifyBurst, b.tokens+float64(now.Sub(b.at))/float64(l.window))
		b.at = now
	}
	return b
}

// allow takes a token of queue's bucket, if there is one.
func (l *notifyLimiter) allow(queue string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(queue, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// trailingDue schedules a trailing notification for queue, unless one is
// already scheduled: it returns how long to wait for the bucket's next
// token, and false when nothing needs scheduling.
func (l *notifyLimiter) trailingDue(queue string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.trailing[queue] {
		return 0, false
	}
	if l.trailing == nil {
		l.trailing = map[string]bool{}
	}
	l.trailing[queue] = true
	b := l.bucket(queue, now)
	return time.Duration(max(0, 1-b.tokens) * float64(l.window)), true
}

// trailingSent records the trailing notification sent at now: it takes a
// token, as a leading one does (the timer may fire a little early, and
// the bucket then owes a fraction of one).
func (l *notifyLimiter) trailingSent(queue string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.trailing, queue)
	l.bucket(queue, now).tokens--
}

// notifyQueues lists the queues of available jobs that get a notification,
// and those that go without one (suppressed).
// Inserts on the pool are committed when they return, so their
// notifications are paced (notifyLimiter: notifyPerCooldown per queue per
// FetchCooldown on average, in bursts of notifyBurst). Inserts in
// a caller's transaction always notify: the transaction may roll back, and
// a notification it takes with it must not silence the next ones (Postgres
// folds identical notifications of one transaction into one).
// A job that replaces a duplicate's run time with a later one (a
// debounce) sends none: no producer has anything to do before it is due,
// and each insert of a burst would wake them for nothing.
func (c *Client[TTx]) notifyQueues(jobs []*JobInsertParams, inTx bool) (queues, suppressed []string) {
	now := time.Now()
	clock := c.config.clock()
	seen := map[string]bool{}
	for _, j := range jobs {
		if j.State != millracetype.JobStateAvailable || seen[j.Queue] {
			continue
		}
		if j.ReplaceScheduledAt && j.ScheduledAt.After(clock) {
			continue
		}
		seen[j.Queue] = true
		if inTx || c.notifyLimit.allow(j.Queue, now) {
			queues = append(queues, j.Queue)
		} else {
			suppressed = append(suppressed, j.Queue)
		}
	}
	return queues, suppressed
}

// notifyTrailing makes sure an insert that went without a notification
// (suppressed, committed by now) is followed by one. A producer that took
// the last notification fetches once more FetchCooldown later, but an
// insert whose commit came after that fetch would otherwise wait for the
// next notification or poll (up to FetchPollInterval when it was the last
// insert of a burst). When the queue's next token is due, a notification
// goes out for every queue whose inserts went without one; it takes that
// token, as an insert's own notification would, so the pace holds.
func (c *Client[TTx]) notifyTrailing(suppressed []string) {
	for _, queue := range suppressed {
		wait, ok := c.notifyLimit.trailingDue(queue, time.Now())
		if !ok {
			continue
		}
		time.AfterFunc(wait, func() {
			c.notifyLimit.trailingSent(queue, time.Now())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := c.driver.GetExecutor().NotifyMany(ctx, &driver.NotifyManyParams{Schema: c.config.Schema,
				Topic: driver.TopicInsert, Payloads: []string{driver.InsertNotifyPayload(queue)}})
			if err != nil {
				c.config.Logger.Warn("millrace: sending an insert notification failed; producers find the jobs at their next poll",
					"queue", queue, "error", err)
			}
		})
	}
}

// pokeProducers wakes this client's own producers of the queues that just
// got available jobs, without waiting for the notification's round trip;
// for a job due a little later, when it is due. Jobs that replace a
// duplicate's run time are pokeReplaced's.
func (c *Client[TTx]) pokeProducers(jobs []*JobInsertParams) {
	now := c.config.clock()
	poked := map[string]bool{}
	for _, j := range jobs {
		if j.State != millracetype.JobStateAvailable || j.ReplaceScheduledAt {
			continue
		}
		p := c.producer(j.Queue)
		if p == nil {
			continue
		}
		if wait := j.ScheduledAt.Sub(now); wait > time.Millisecond {
			time.AfterFunc(wait+time.Millisecond, p.Poke)
			continue
		}
		if !poked[j.Queue] {
			poked[j.Queue] = true
			p.Poke()
		}
	}
}

// pokeReplaced wakes this client's producer of a queue when a job inserted
// or replaced with a new run time (InsertOpts.Replace) is due: at once if
// it is due now, else by a timer per job that a later replacement moves,
// so a burst of inserts that keep moving the run time wakes the producer
// once, when the job is due. A duplicate left alone (running) wakes
// nothing; a scheduled (or pending) job is the scheduler's (or nobody's).
func (c *Client[TTx]) pokeReplaced(jobs []*JobInsertParams, res []*InsertResult) {
	now := c.config.clock()
	for i, j := range jobs {
		row := res[i].Job
		if !j.ReplaceScheduledAt || res[i].UniqueSkippedAsDuplicate {
			continue
		}
		if row.State != millracetype.JobStateAvailable {
			c.dueTimers.stop(row.ID) // moved out of reach: a timer set before has nothing to wake
			continue
		}
		queue := row.Queue
		if c.producer(queue) == nil {
			continue // this client does not work the queue
		}
		poke := func() {
			if p := c.producer(queue); p != nil {
				p.Poke()
			}
		}
		if wait := row.ScheduledAt.Sub(now); wait > time.Millisecond {
			c.dueTimers.set(row.ID, wait+time.Millisecond, poke)
		} else {
			c.dueTimers.stop(row.ID)
			poke()
		}
	}
}

// dueTimers holds one timer per job, keyed by ID; setting it again moves
// it, and it forgets the job once fired.
type dueTimers struct {
	mu sync.Mutex
	m  map[int64]*dueTimer
}

type dueTimer struct{ t *time.Timer }

func (d *dueTimers) set(id int64, wait time.Duration, fire func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.m[id]; ok {
		old.t.Stop()
	}
	if d.m == nil {
		d.m = map[int64]*dueTimer{}
	}
	dt := &dueTimer{}
	dt.t = time.AfterFunc(wait, func() {
		d.mu.Lock()
		if d.m[id] == dt {
			delete(d.m, id)
		}
		d.mu.Unlock()
		fire()
	})
	d.m[id] = dt
}

func (d *dueTimers) stop(id int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.m[id]; ok {
		old.t.Stop()
		delete(d.m, id)
	}
}

// pending reports how many timers are set (for tests).
func (d *dueTimers) pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}
