package driver

import (
	"bytes"

	"github.com/millrace/millrace/millracetype"
)

// Sequences (tables millrace_sequence and millrace_sequence_job of
// migration line millrace; see its migration 007 for the model): jobs of a
// queue sharing a sequence key run one at a time in insertion order. A
// sequenced job is inserted pending; SequenceAppend gives it its place,
// SequencePromote makes the next job of a sequence whose head is finalized
// available.

// SequenceMetadataKey is the key of a sequenced job's metadata holding its
// sequence: {"key": <key>} plus "block": true when a discarded or
// cancelled job keeps its sequence blocked.
const SequenceMetadataKey = "millrace:sequence"

// SequenceJob is a sequenced job just inserted (pending).
type SequenceJob struct {
	Queue string
	Key   string
	ID    int64
}

// SequenceAppendParams are the jobs to append, in insertion order.
type SequenceAppendParams struct {
	Schema string
	Jobs   []SequenceJob
}

// SequencePromoteParams selects the sequences to promote: exactly one of
// HeadIDs, Queue and All.
type SequencePromoteParams struct {
	Schema string
	// HeadIDs selects the sequences whose head is one of these jobs.
	HeadIDs []int64
	// Queue selects the queue's sequences.
	Queue string
	// All selects every sequence.
	All bool
	// SkipLocked passes over the sequences another transaction holds (an
	// insert appending to one promotes it before it commits; another
	// promotion is at work on it). Without it, the call waits for them.
	SkipLocked bool
}

// SequencePromoteResult tells what a promotion moved.
type SequencePromoteResult struct {
	// Promoted counts the jobs made available or scheduled.
	Promoted int
	// Moved are those jobs and the state each was given, by ID.
	Moved []SequenceMoved
	// Queues are the queues where a job became available (an insert
	// notification was sent for each, in the same transaction), sorted.
	Queues []string
}

// SequenceGetManyParams lists sequences.
type SequenceGetManyParams struct {
	Schema string
	// Queue, when not empty, lists that queue's only.
	Queue string
	// After, when not empty, starts after this key (of Queue, which is
	// then required) in key order.
	After string
	// Limit bounds the rows returned (at least 1).
	Limit int
}

// SequenceRow describes a sequence with jobs not yet passed.
type SequenceRow struct {
	Queue string
	Key   string
	// HeadID is the job whose turn it is (0 before the first promotion).
	HeadID int64
	// HeadState is that job's state ("" when it is gone).
	HeadState string
	// Waiting counts the sequence's jobs still pending after the head.
	Waiting int
	// Blocked reports a head discarded or cancelled that asked to block
	// the sequence: nothing runs until it is retried or deleted.
	Blocked bool
}

// IsSequenced tells, cheaply, whether a job's metadata may hold a
// sequence: it looks for the key's text, so a false positive (the text in
// some value) costs a promotion that finds nothing to do.
func IsSequenced(metadata []byte) bool {
	return bytes.Contains(metadata, sequenceKeyJSON)
}

var sequenceKeyJSON = []byte(`"` + SequenceMetadataKey + `"`)

// SequenceMoved is a job a promotion took out of pending.
type SequenceMoved struct {
	ID    int64
	State millracetype.JobState
}
