package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// SequenceOpts put a job in a sequence (InsertOpts.Sequence): the jobs of a
// queue with the same Key run one at a time, in the order their inserts
// committed. See "Sequences" in the README.
//
// A job waits for its turn in state pending (River's clients and UI see it
// so, and never fetch it). Its turn comes when the job before it is
// completed or deleted, and, unless that job set BlockOnFailure, discarded
// or cancelled. A job that fails and is retried keeps its turn through
// its retries. Sequences are per queue: the same key in two queues names
// two sequences.
type SequenceOpts struct {
	// Key names the sequence within the job's queue: 1 to 255 bytes of
	// UTF-8 without NUL. Empty: the job is not in a sequence.
	Key string
	// BlockOnFailure keeps the sequence from moving on when this job is
	// discarded or cancelled: the jobs after it wait until it is retried
	// (JobRetry) and completes, or is deleted (JobDelete). By default a
	// discarded or cancelled job lets the next one run.
	BlockOnFailure bool
}

// MaxSequenceKeyLength bounds SequenceOpts.Key, in bytes.
const MaxSequenceKeyLength = 255

// validateSequence checks a job's resolved sequence options against the
// rest of its options.
func validateSequence(s SequenceOpts, pending bool, replace ReplaceOpts) error {
	if s.Key == "" {
		if s.BlockOnFailure {
			return errors.New("sequence: BlockOnFailure needs a Key")
		}
		return nil
	}
	if len(s.Key) > MaxSequenceKeyLength || !utf8.ValidString(s.Key) || strings.IndexByte(s.Key, 0) >= 0 {
		return fmt.Errorf("sequence key %.40q: must be 1 to %d bytes of UTF-8 without NUL", s.Key, MaxSequenceKeyLength)
	}
	if pending {
		return errors.New("sequence: a job in a sequence waits in state pending for its turn; Pending cannot be set on it")
	}
	if replace != (ReplaceOpts{}) {
		return errors.New("sequence: Replace cannot be used with a sequence (replacing a waiting job's run time or args would move it around its turn); use UniqueOpts alone")
	}
	return nil
}

// sequenceMetadata adds the sequence's entry to a job's metadata (a
// compact JSON object without it).
func sequenceMetadata(meta []byte, s SequenceOpts) ([]byte, error) {
	entry := struct {
		Key   string `json:"key"`
		Block bool   `json:"block,omitempty"`
	}{s.Key, s.BlockOnFailure}
	b, err := json.Marshal(map[string]any{driver.SequenceMetadataKey: entry})
	if err != nil {
		return nil, err
	}
	if len(meta) <= 2 { // {}
		return b, nil
	}
	// {"millrace:sequence":{...}} + the other keys.
	out := make([]byte, 0, len(b)+len(meta))
	out = append(out, b[:len(b)-1]...)
	out = append(out, ',')
	return append(out, meta[1:]...), nil
}

// appendSequences gives the sequenced jobs just inserted (not those that
// found a duplicate) their places, in exec's transaction.
func (c *Client[TTx]) appendSequences(ctx context.Context, exec driver.Executor, prepared []*JobInsertParams, res []*driver.JobInsertResult) (*driver.SequencePromoteResult, error) {
	var jobs []driver.SequenceJob
	for i, p := range prepared {
		if p.Sequence.Key == "" || res[i].UniqueSkippedAsDuplicate || res[i].UniqueReplaced {
			continue
		}
		jobs = append(jobs, driver.SequenceJob{Queue: p.Queue, Key: p.Sequence.Key, ID: res[i].Job.ID})
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	r, err := exec.SequenceAppend(ctx, &driver.SequenceAppendParams{Schema: c.config.Schema, Jobs: jobs})
	if err != nil {
		return nil, fmt.Errorf("append jobs to their sequences: %w", err)
	}
	return r, nil
}

// sequenced reports whether some job is in a sequence.
func sequenced(prepared []*JobInsertParams) bool {
	for _, p := range prepared {
		if p.Sequence.Key != "" {
			return true
		}
	}
	return false
}

// promoteTimeout bounds the completer's promotion of sequences.
const promoteTimeout = 10 * time.Second

// promoteSequences is the completer's Promote: the sequences whose heads
// it just finalized move on (those an insert holds are passed over: the
// insert moves them on itself, or the leader's sequencer does within its
// interval), and this client's producers of the queues where a job became
// available are woken.
func (c *Client[TTx]) promoteSequences(ctx context.Context, ids []int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), promoteTimeout)
	defer cancel()
	res, err := c.driver.GetExecutor().SequencePromote(ctx, &driver.SequencePromoteParams{Schema: c.config.Schema,
		HeadIDs: ids, SkipLocked: true})
	if err != nil {
		c.config.Logger.Warn("millrace: moving sequences on after their jobs finished failed; the leader's sequencer retries within a second",
			"jobs", ids[:min(len(ids), 20)], "error", err)
		return
	}
	c.pokeQueues(res.Queues)
}

// pokeQueues wakes this client's producers of queues.
func (c *Client[TTx]) pokeQueues(queues []string) {
	for _, q := range queues {
		if p := c.producer(q); p != nil {
			p.Poke()
		}
	}
}

// Sequence describes a sequence with jobs not yet passed (SequenceList).
type Sequence struct {
	Queue string
	Key   string
	// HeadID is the job whose turn it is (0: none yet).
	HeadID int64
	// HeadState is its state ("" when it was deleted).
	HeadState millracetype.JobState
	// Waiting counts the jobs pending after the head.
	Waiting int
	// Blocked reports a head discarded or cancelled with BlockOnFailure:
	// retry it (JobRetry) or delete it (JobDelete) to go on.
	Blocked bool
}

// SequenceListParams select sequences for SequenceList.
type SequenceListParams struct {
	// Queue, when not empty, lists that queue's sequences only.
	Queue string
	// After, when not empty, lists the keys after it (of Queue, which it
	// needs), for paging.
	After string
	// Limit bounds the list: 1 to 10,000; 0 means 100.
	Limit int
}

// SequenceList lists sequences that have jobs not yet passed, by queue and
// key: whose turn it is, how many wait, and whether a failed job blocks
// them.
func (c *Client[TTx]) SequenceList(ctx context.Context, params *SequenceListParams) ([]*Sequence, error) {
	var p SequenceListParams
	if params != nil {
		p = *params
	}
	if p.Limit == 0 {
		p.Limit = 100
	}
	if p.Limit < 1 || p.Limit > 10_000 {
		return nil, fmt.Errorf("%w: list sequences: limit %d out of range 1..10000", ErrInvalidArgs, p.Limit)
	}
	if p.Queue != "" {
		if err := validateQueueName(p.Queue); err != nil {
			return nil, fmt.Errorf("list sequences: %w: %w", ErrInvalidQueue, err)
		}
	}
	if p.After != "" && p.Queue == "" {
		return nil, fmt.Errorf("%w: list sequences: After needs Queue", ErrInvalidArgs)
	}
	rows, err := c.driver.GetExecutor().SequenceGetMany(ctx, &driver.SequenceGetManyParams{Schema: c.config.Schema,
		Queue: p.Queue, After: p.After, Limit: p.Limit})
	if err != nil {
		return nil, fmt.Errorf("list sequences: %w", c.explainSchemaError(ctx, err))
	}
	out := make([]*Sequence, len(rows))
	for i, r := range rows {
		out[i] = &Sequence{Queue: r.Queue, Key: r.Key, HeadID: r.HeadID, HeadState: millracetype.JobState(r.HeadState),
			Waiting: r.Waiting, Blocked: r.Blocked}
	}
	return out, nil
}

// finishSequenced makes the sequenced jobs of a batch (after insert
// middleware) pending, with their sequence in their metadata, and reports
// whether there are any.
func finishSequenced(prepared []*JobInsertParams) (bool, error) {
	any := false
	for i, p := range prepared {
		if p.Sequence.Key == "" {
			continue
		}
		any = true
		if err := validateSequence(p.Sequence, false, ReplaceOpts{}); err != nil {
			return false, fmt.Errorf("%w: job %d: %w", ErrInvalidArgs, i, err)
		}
		if p.ReplaceArgs || p.ReplaceScheduledAt {
			return false, fmt.Errorf("%w: job %d: a job in a sequence cannot replace a duplicate", ErrInvalidArgs, i)
		}
		p.State = millracetype.JobStatePending
		if !millracetype.MetadataHasKey(p.Metadata, driver.SequenceMetadataKey) {
			meta, err := validateMetadata(p.Metadata)
			if err != nil {
				return false, fmt.Errorf("%w: job %d: %w", ErrInvalidArgs, i, err)
			}
			if p.Metadata, err = sequenceMetadata(meta, p.Sequence); err != nil {
				return false, fmt.Errorf("%w: job %d: %w", ErrInvalidArgs, i, err)
			}
		}
	}
	return any, nil
}

// insertSequenced inserts a batch with sequenced jobs and appends them to
// their sequences in one transaction (the caller's when inTx).
func (c *Client[TTx]) insertSequenced(ctx context.Context, exec driver.Executor, inTx bool, prepared []*JobInsertParams, params *driver.JobInsertManyParams) ([]*driver.JobInsertResult, *driver.SequencePromoteResult, error) {
	run := func(exec driver.Executor) ([]*driver.JobInsertResult, *driver.SequencePromoteResult, error) {
		res, err := exec.JobInsertMany(ctx, params)
		if err != nil {
			return nil, nil, fmt.Errorf("insert jobs: %w", c.explainSchemaError(ctx, err))
		}
		promoted, err := c.appendSequences(ctx, exec, prepared, res)
		if err != nil {
			return nil, nil, c.explainSchemaError(ctx, err)
		}
		if promoted != nil && len(promoted.Moved) > 0 {
			// The rows returned show the jobs as inserted (pending): give
			// the heads their state.
			moved := make(map[int64]millracetype.JobState, len(promoted.Moved))
			for _, m := range promoted.Moved {
				moved[m.ID] = m.State
			}
			for _, r := range res {
				if st, ok := moved[r.Job.ID]; ok && !r.UniqueSkippedAsDuplicate {
					r.Job.State = st
				}
			}
		}
		return res, promoted, nil
	}
	if inTx {
		return run(exec)
	}
	tx, err := exec.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("insert jobs: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	res, promoted, err := run(tx)
	if err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, fmt.Errorf("insert jobs: commit: %w", err)
	}
	return res, promoted, nil
}
