package driver

import "time"

// PeriodicJobRow is one row of millrace_periodic: the schedule state of a
// durable periodic job.
type PeriodicJobRow struct {
	// ID is the periodic job's ID.
	ID string
	// NextRunAt is the job's next run not yet enqueued.
	NextRunAt time.Time
	// NextFrom is the time NextRunAt was computed from: NextRunAt is the
	// job's schedule's first run after NextFrom.
	NextFrom time.Time
	// LastRunAt is the run time of the last run enqueued; nil before the
	// first.
	LastRunAt *time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// PeriodicJobGetManyParams names the periodic jobs to read.
type PeriodicJobGetManyParams struct {
	Schema string
	IDs    []string
}

// PeriodicJobGetManyResult is the rows found, ordered by ID, and the
// database's clock (now()) when they were read.
type PeriodicJobGetManyResult struct {
	Now  time.Time
	Jobs []*PeriodicJobRow
}

// PeriodicJobInsert is a new periodic job row.
type PeriodicJobInsert struct {
	ID        string
	NextRunAt time.Time
	NextFrom  time.Time
}

// PeriodicJobInsertManyParams are rows to insert where their ID has none.
type PeriodicJobInsertManyParams struct {
	Schema string
	Jobs   []*PeriodicJobInsert
}

// PeriodicJobAdvance moves one periodic job's schedule on, if its
// NextRunAt is still Expected.
type PeriodicJobAdvance struct {
	ID string
	// Expected is the NextRunAt the caller read; the row changes only if it
	// still has it.
	Expected  time.Time
	NextRunAt time.Time
	NextFrom  time.Time
	// LastRunAt, when set, replaces the row's last_run_at (nil keeps it).
	LastRunAt *time.Time
}

// PeriodicJobAdvanceManyParams are the compare-and-sets of one call.
type PeriodicJobAdvanceManyParams struct {
	Schema string
	Jobs   []*PeriodicJobAdvance
}

// PeriodicJobDeleteManyParams says which periodic job rows to delete: those
// named in IDs, and, when OverdueBefore is set, those whose next_run_at is
// before it and whose ID is not in Keep.
type PeriodicJobDeleteManyParams struct {
	Schema        string
	IDs           []string
	OverdueBefore *time.Time
	Keep          []string
}
