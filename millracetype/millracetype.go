// Package millracetype holds the plain value types that every millrace
// package shares: the job row as stored in River's schema, job states,
// recorded attempt errors, queues and a few sentinel errors.
//
// The package has no logic beyond small helpers on these values and imports
// nothing of millrace's own, so any package (drivers, maintenance services,
// the client) can depend on it without creating an import cycle.
package millracetype

import (
	"encoding/json"
	"errors"
	"time"
)

// ErrNotFound is returned (wrapped) by lookups of a job, queue or other row
// that does not exist. Test for it with errors.Is.
var ErrNotFound = errors.New("not found")

// ErrInvalidArgs is returned (wrapped) for invalid job args, options or
// parameters (client.ErrInvalidArgs).
var ErrInvalidArgs = errors.New("invalid job")

// ErrJobRunning is returned (wrapped) when an operation refuses to touch a
// job because it is running, such as deleting it.
var ErrJobRunning = errors.New("job is running")

// ErrJobNotRunning is returned (wrapped) when an operation meant for a job
// in the middle of its run (completing it in a transaction, recording a
// resumable step) finds it no longer running that attempt.
var ErrJobNotRunning = errors.New("job is not running")

// JobState is the state of a job, stored in the river_job_state enum.
type JobState string

// The job states, exactly as River stores them.
const (
	// JobStateAvailable: ready to be fetched once scheduled_at has passed.
	JobStateAvailable JobState = "available"
	// JobStateCancelled: finalized; cancelled from inside or outside its worker.
	JobStateCancelled JobState = "cancelled"
	// JobStateCompleted: finalized; its worker returned success.
	JobStateCompleted JobState = "completed"
	// JobStateDiscarded: finalized; out of attempts or discarded on purpose.
	JobStateDiscarded JobState = "discarded"
	// JobStatePending: inserted on hold; never fetched until moved from outside.
	JobStatePending JobState = "pending"
	// JobStateRetryable: errored; waits for its retry time (the scheduler makes it available).
	JobStateRetryable JobState = "retryable"
	// JobStateRunning: fetched by a producer and being worked.
	JobStateRunning JobState = "running"
	// JobStateScheduled: waits for scheduled_at (the scheduler makes it available).
	JobStateScheduled JobState = "scheduled"
)

// JobStates returns every job state, in the order of the database enum.
func JobStates() []JobState {
	return []JobState{
		JobStateAvailable, JobStateCancelled, JobStateCompleted, JobStateDiscarded,
		JobStatePending, JobStateRetryable, JobStateRunning, JobStateScheduled,
	}
}

// Valid reports whether s is one of the eight job states.
func (s JobState) Valid() bool {
	switch s {
	case JobStateAvailable, JobStateCancelled, JobStateCompleted, JobStateDiscarded,
		JobStatePending, JobStateRetryable, JobStateRunning, JobStateScheduled:
		return true
	}
	return false
}

// Finalized reports whether s is a final state (completed, cancelled or
// discarded). Finalized jobs have finalized_at set; all others have it NULL.
func (s JobState) Finalized() bool {
	return s == JobStateCompleted || s == JobStateCancelled || s == JobStateDiscarded
}

// JobRow is one row of river_job, decoded. Args, Metadata and each error stay
// raw JSON here; typed decoding happens at the edge (the client) so a row that
// cannot be decoded fails alone.
type JobRow struct {
	// ID is the job's unique, increasing identifier.
	ID int64
	// Args is the job's encoded arguments (JSON object).
	Args []byte
	// Attempt is how many times the job has been fetched to run (snoozes and
	// soft stops give the attempt back).
	Attempt int
	// AttemptedAt is when the current or last attempt started, or nil.
	AttemptedAt *time.Time
	// AttemptedBy lists the IDs of the clients that ran the job, the last
	// 100 at most, oldest first.
	AttemptedBy []string
	// CreatedAt is when the job was inserted (the inserting client's clock).
	CreatedAt time.Time
	// Errors holds one entry per failed attempt, oldest first.
	Errors []AttemptError
	// FinalizedAt is set when the job reached a final state.
	FinalizedAt *time.Time
	// Kind names the job's type and selects its worker.
	Kind string
	// MaxAttempts is how many attempts the job gets before it is discarded.
	MaxAttempts int
	// Metadata is a JSON object of bookkeeping keys (output, snoozes, ...)
	// and the user's own keys.
	Metadata []byte
	// Priority is 1 (first) to 4 (last).
	Priority int
	// Queue is the name of the queue the job runs in.
	Queue string
	// ScheduledAt is when the job may run next.
	ScheduledAt time.Time
	// State is the job's current state.
	State JobState
	// Tags are free-form labels, each at most 255 characters.
	Tags []string
	// UniqueKey is the SHA-256 unique key, or nil for a non-unique job.
	UniqueKey []byte
	// UniqueStates is the mask of states in which UniqueKey must be unique,
	// one bit per state: the lowest bit is available, then cancelled,
	// completed, discarded, pending, retryable, running, and the highest bit
	// scheduled (see UniqueStatesMask). Zero means the column is NULL.
	UniqueStates byte
}

// AttemptError is one recorded failure of a job, stored as an element of the
// river_job.errors jsonb array in River's shape.
type AttemptError struct {
	// At is when the failed attempt started.
	At time.Time `json:"at"`
	// Attempt is the attempt number that failed (1 for the first).
	Attempt int `json:"attempt"`
	// Error is the error message.
	Error string `json:"error"`
	// Trace is a Go stack trace for a panic, else empty.
	Trace string `json:"trace"`
}

// MetadataHasKey reports whether a job's metadata is a JSON object with the
// given top-level key (cancel_attempted_at, snoozes, ...). Metadata that is
// not an object has no keys.
func MetadataHasKey(metadata []byte, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(metadata, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}

// Queue is one row of river_queue.
type Queue struct {
	// Name is the queue's name.
	Name string
	// CreatedAt is when a producer first registered the queue.
	CreatedAt time.Time
	// Metadata is the queue's JSON metadata.
	Metadata json.RawMessage
	// PausedAt is set while the queue is paused.
	PausedAt *time.Time
	// UpdatedAt is when a producer last reported the queue alive.
	UpdatedAt time.Time
}

// Leader is the row of river_leader: who leads and until when.
type Leader struct {
	// Domain is the domain led (millrace_leader), or "" for the database
	// (river_leader).
	Domain string
	// LeaderID is the client ID of the leader.
	LeaderID string
	// ElectedAt is when the leader was elected (used to guard re-election
	// and resignation against a newer term).
	ElectedAt time.Time
	// ExpiresAt is when the leadership lapses unless it is extended.
	ExpiresAt time.Time
}

// stateBit is each state's bit in a unique_states mask, as River assigns
// them: available is the lowest bit, scheduled the highest.
var stateBit = map[JobState]byte{
	JobStateAvailable: 1 << 0,
	JobStateCancelled: 1 << 1,
	JobStateCompleted: 1 << 2,
	JobStateDiscarded: 1 << 3,
	JobStatePending:   1 << 4,
	JobStateRetryable: 1 << 5,
	JobStateRunning:   1 << 6,
	JobStateScheduled: 1 << 7,
}

// UniqueStatesMask returns the unique_states mask holding the given states.
// Unknown states are ignored.
func UniqueStatesMask(states ...JobState) byte {
	var mask byte
	for _, s := range states {
		mask |= stateBit[s]
	}
	return mask
}

// UniqueStatesFromMask lists the states set in a unique_states mask, in enum
// order.
func UniqueStatesFromMask(mask byte) []JobState {
	var states []JobState
	for _, s := range JobStates() {
		if mask&stateBit[s] != 0 {
			states = append(states, s)
		}
	}
	return states
}
