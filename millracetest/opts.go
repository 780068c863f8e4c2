package millracetest

import (
	"time"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/millracetype"
)

// RequireInsertedOpts say where to look for jobs and what a job must look
// like to match. Every expectation is optional: its zero value (nil for
// slices) checks nothing, so a nil *RequireInsertedOpts matches any job of
// the args' kind in the connection's search_path.
type RequireInsertedOpts struct {
	// Schema holds the job tables. Default "": the connection's
	// search_path. In RequireManyInserted it must be empty or equal to
	// RequireManyInsertedOpts.Schema.
	Schema string

	// Queue, when set, is the queue the job must be in.
	Queue string
	// Priority, when set (1..4), is the priority the job must have.
	Priority int
	// MaxAttempts, when set (1 or more), is the job's max_attempts.
	MaxAttempts int
	// State, when set, is the state the job must be in. Unset, a job
	// counts as inserted whatever happened to it since (worked, retried,
	// cancelled ...).
	State millracetype.JobState

	// ScheduledAt, when set, is when the job must be scheduled, give or
	// take ScheduledAtWithin.
	ScheduledAt time.Time
	// ScheduledAtWithin is the tolerance of ScheduledAt, in both
	// directions. Default 0: equal to the database's precision (a
	// microsecond).
	ScheduledAtWithin time.Duration
	// ScheduledFrom, when set, is the earliest scheduled_at the job may
	// have (inclusive). It may be set without ScheduledTo, and combined
	// with ScheduledAt.
	ScheduledFrom time.Time
	// ScheduledTo, when set, is the latest scheduled_at the job may have
	// (inclusive). It may be set without ScheduledFrom.
	ScheduledTo time.Time

	// Tags, when not nil, are exactly the job's tags, in any order (an
	// empty, non-nil slice requires a job without tags).
	Tags []string
	// Metadata, when not nil, is a JSON object the job's metadata must
	// contain, with the rules of PostgreSQL's jsonb @> operator: every
	// key given must be present with a value that contains the given one
	// (objects recursively, arrays as subsets, scalars equal, numbers by
	// value). Other keys of the job's metadata are ignored.
	Metadata []byte

	// Unique requires the job to have a unique key (it was inserted with
	// client.UniqueOpts). False checks nothing.
	Unique bool
	// UniqueStates, when not nil, are exactly the states in which the
	// job's unique key counts (client.UniqueOpts.ByState, or River's
	// default set when that was empty), in any order. It implies Unique.
	UniqueStates []millracetype.JobState

	// MatchArgs requires the job's args to equal the expected args: both
	// are compared as JSON values (the expected args are encoded with
	// encoding/json, as an insert would store them; key order and number
	// spelling do not count). By default only the kind of the expected
	// args is used, and the test reads the returned job's Args itself.
	MatchArgs bool
}

// ExpectedJob is one job RequireManyInserted expects.
type ExpectedJob struct {
	// Args give the job's kind (Args.Kind()), and its args when
	// Opts.MatchArgs is set. Required.
	Args client.JobArgs
	// Opts are what the job must look like beyond its kind; nil checks
	// the kind only. Opts.Schema must be empty or equal to
	// RequireManyInsertedOpts.Schema.
	Opts *RequireInsertedOpts
}

// RequireManyInsertedOpts are the options of RequireManyInserted.
type RequireManyInsertedOpts struct {
	// Schema holds the job tables. Default "": the connection's
	// search_path.
	Schema string
}
