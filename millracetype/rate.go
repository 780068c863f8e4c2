package millracetype

import "time"

// RateLimit bounds how many jobs of a queue (or of one kind in it) start
// per interval: at most N are fetched in each window of length Interval,
// across every millrace client working the queue on the database. Windows
// are fixed: they start at whole multiples of Interval since the Unix epoch
// of the database's clock (a 1-minute window starts on the minute).
type RateLimit struct {
	// Kind limits only the queue's jobs of this kind; empty: every job of
	// the queue.
	Kind string
	// N is how many jobs may start per window (at least 1).
	N int
	// Interval is the window's length, a whole number of milliseconds
	// from 100 ms to 24 h.
	Interval time.Duration
	// PartitionByKind counts each kind separately (only for a limit of
	// the whole queue: a kind's limit has one kind).
	PartitionByKind bool
	// PartitionByArgs counts separately each set of values of these
	// top-level keys of the job's args (compared as JSON values): with
	// "token", at most N per interval per token. A job whose args lack a
	// key or have null there counts in the default partition of that key,
	// shared by all such jobs.
	PartitionByArgs []string
}

// Pause is a timed pause of a queue, or of part of it: the jobs of the
// queue (of Kind, when set) whose args contain Args (JSON containment,
// Postgres' @>: {"token":"a"} pauses the jobs whose args have "token":
// "a") are not fetched until Until, then resume by themselves.
type Pause struct {
	Queue string
	// Kind, when not empty, pauses only jobs of this kind.
	Kind string
	// Args, when not empty, is a JSON object the paused jobs' args
	// contain; empty (or {}): every job (of Kind).
	Args []byte
	// Until is when the pause ends.
	Until time.Time
}
