package client

import (
	"time"

	"github.com/millrace/millrace/millracetype"
)

// JobArgs is what a job's args type implements: Kind names the job's type
// and selects its worker. Kinds match `\A[\w][\w\-\[\]<>\/.·:+]+\z` (2 to
// 127 characters). The value is stored as JSON (encoding/json).
type JobArgs interface {
	Kind() string
}

// JobArgsWithInsertOpts is implemented by args types that give defaults for
// every job of their kind; options passed to an insert take precedence.
type JobArgsWithInsertOpts interface {
	JobArgs
	InsertOpts() InsertOpts
}

// QueueDefault is the queue jobs go to unless told otherwise.
const QueueDefault = "default"

// PriorityDefault is the priority jobs get unless told otherwise (1 runs
// first, 4 last).
const PriorityDefault = 1

// MaxAttemptsDefault is how many attempts a job gets unless told otherwise.
const MaxAttemptsDefault = 25

// InsertOpts are per-job insert options. For each field the first set value
// wins: the options passed to the insert, then the args type's InsertOpts,
// then the client's Config.
type InsertOpts struct {
	// Queue to run in (default "default"). Names match
	// `^[a-z0-9]+([_|-]?[a-z0-9]+)*$`, at most 64 characters.
	Queue string
	// Priority 1 (first) to 4 (last); default 1.
	Priority int
	// MaxAttempts before the job is discarded; default Config.MaxAttempts
	// (25).
	MaxAttempts int
	// ScheduledAt delays the job. A job due within 5 s (or in the past) is
	// inserted available and runs when due; a later one is inserted
	// scheduled and the leader's scheduler makes it available when due.
	// (River inserts every ScheduledAt as scheduled; both read either row
	// the same way.)
	ScheduledAt time.Time
	// Tags are free-form labels, each 3 to 255 characters of letters,
	// digits, '_' and '-' (no commas).
	Tags []string
	// Metadata is a JSON object stored with the job. Keys starting with
	// "river:" or "millrace:" are reserved.
	Metadata []byte
	// Pending inserts the job on hold: it is never fetched until moved by
	// JobRetry or an update from outside.
	Pending bool
	// UniqueOpts make the job unique: an insert that matches a live job
	// returns that job (InsertResult.UniqueSkippedAsDuplicate) instead.
	UniqueOpts UniqueOpts
	// Replace makes an insert that matches a unique job that has not
	// started update it instead (see ReplaceOpts); it needs UniqueOpts.
	Replace ReplaceOpts
	// Sequence puts the job in a sequence: the queue's jobs with the same
	// key run one at a time, in insertion order (see SequenceOpts). It
	// cannot be used with Pending, Replace or InsertManyFast.
	Sequence SequenceOpts
}

// ReplaceOpts make a unique insert that finds a duplicate that has not
// started (state available, pending, retryable or scheduled) update it
// with its own values, and report InsertResult.UniqueReplaced. A duplicate
// that is running or finished is left alone (UniqueSkippedAsDuplicate), as
// without them. The unique key does not change: it is computed as River
// computes it, so River clients find the replaced job as a duplicate too.
// With ByArgs, new args replace only when the key is the same: when the
// args' fields tagged `river:"unique"` (or, untagged, all of them) are the
// same. Args that differ where the key looks make a new job.
//
// They need UniqueOpts (an insert without them is refused with
// ErrInvalidArgs; a kind whose InsertOpts set them without UniqueOpts is
// refused by AddWorker) and cannot be used with InsertManyFast.
type ReplaceOpts struct {
	// Args gives the duplicate this insert's args.
	Args bool
	// ScheduledAt gives the duplicate this insert's run time (ScheduledAt,
	// or the insert's time when unset) and the state that goes with it
	// (available or scheduled; a pending duplicate stays pending). Not
	// with InsertOpts.Pending.
	ScheduledAt bool
	// Debounce sets the run time to the insert's time plus Debounce (the
	// client's clock, as for ScheduledAt) and replaces the duplicate's run
	// time with it, so a job inserted again and again runs once, Debounce
	// after the last insert. Not with InsertOpts.ScheduledAt or Pending;
	// not negative. A
	// unique period (ByPeriod) is taken from the insert's time, not from
	// the run time Debounce gives.
	Debounce time.Duration
}

// UniqueOpts select what makes a job a duplicate of another, with River's
// rules so both compute the same keys. The kind always counts unless
// ExcludeKind is set.
type UniqueOpts struct {
	// ByArgs: jobs with the same args (or the same fields tagged
	// `river:"unique"`) are duplicates.
	ByArgs bool
	// ByPeriod: jobs in the same period (of ScheduledAt, else the insert
	// time, truncated to the period) are duplicates. At least 1 s.
	ByPeriod time.Duration
	// ByQueue: jobs in the same queue are duplicates.
	ByQueue bool
	// ByState: the states in which an existing job counts (default: every
	// state but cancelled and discarded). Must include available, pending,
	// running and scheduled.
	ByState []millracetype.JobState
	// ExcludeKind leaves the kind out of the key (needs another By option).
	ExcludeKind bool
}
