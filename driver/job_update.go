package driver

// JobUpdateParams changes one job. The row is locked for the update; a
// missing job gives an error wrapping millracetype.ErrNotFound.
type JobUpdateParams struct {
	Schema string
	// ID of the job.
	ID int64
	// MetadataMerge, when set, is a JSON object merged top-level into the
	// job's metadata (keys given replace those stored, others are kept;
	// a key set to null is stored as null). Metadata stored as something
	// other than an object is left alone and the call fails: merging into
	// it would change its shape. Nil changes nothing.
	MetadataMerge []byte
	// RunningAttempt, when not 0, changes the row only while it is running
	// that attempt; otherwise nothing is written and the error wraps
	// millracetype.ErrJobNotRunning. 0 changes the job in any state.
	RunningAttempt int
}

// JobMarkRunningParams names the job to mark running and the client that
// runs it. A job already running gives an error wrapping
// millracetype.ErrJobRunning, a missing one millracetype.ErrNotFound.
type JobMarkRunningParams struct {
	Schema   string
	ID       int64
	ClientID string
}
