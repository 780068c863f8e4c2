package driver

import (
	"time"

	"github.com/millrace/millrace/millracetype"
)

// Rate limits and timed pauses (tables millrace_rate and millrace_pause of
// migration line millrace, and the reads and writes of a rate-limited
// fetch).

// RateStateParams reads what a rate-limited fetch decides from.
type RateStateParams struct {
	Schema string
	Queue  string
}

// RateCount is the number of jobs started in one window of one rate key
// (a limit and a partition of it).
type RateCount struct {
	Key         string
	WindowStart time.Time
	WindowEnd   time.Time
	Started     int
}

// RateState is RateStateRead's answer.
type RateState struct {
	// Now is the database's clock: now(), the transaction's start, which a
	// fetch in the same transaction records as the jobs' attempted_at.
	Now time.Time
	// Counts are the queue's counts of windows not yet ended at Now.
	Counts []*RateCount
	// Pauses are the queue's pauses not yet ended at Now.
	Pauses []*millracetype.Pause
}

// RateCountAddParams adds to the counts of a queue's windows (creating
// their rows) and deletes the rows of windows ended before Now.
type RateCountAddParams struct {
	Schema string
	Queue  string
	Now    time.Time
	Add    []*RateCount
}

// JobRateScanParams reads available jobs of a queue a rate-limited fetch
// may take (in rounds over its groups: see Executor.JobRateScan): due, not paused (by a row of millrace_pause
// current at now()).
type JobRateScanParams struct {
	Schema string
	Queue  string
	// Keys are the args keys to read from each job (its Part), in order.
	Keys []string
	// Kinds, when not empty, are the only kinds read.
	Kinds []string
	// Max is how many jobs to read at most.
	Max int
	// PerGroup is how many jobs to read at most of each group of equal
	// kind and Part (0: no bound).
	PerGroup int
}

// JobRateCandidate is an available job a rate-limited fetch may take.
type JobRateCandidate struct {
	ID   int64
	Kind string
	// Part holds the job's values of JobRateScanParams.Keys as JSON text
	// (Postgres' jsonb text form), "" where the key is missing or null.
	Part []string
}

// PauseSetParams inserts or replaces the pause of (Pause.Queue, Pause.Kind,
// Pause.Args).
type PauseSetParams struct {
	Schema string
	Pause  millracetype.Pause
}

// PauseGetManyParams lists pauses.
type PauseGetManyParams struct {
	Schema string
	// Queue, when not empty, selects that queue's pauses only.
	Queue string
	// All includes pauses whose time has passed (not yet deleted).
	All bool
}

// PauseDeleteParams deletes the pause of (Queue, Kind, Args).
type PauseDeleteParams struct {
	Schema string
	Queue  string
	Kind   string
	Args   []byte // a JSON object; empty: {}
}
