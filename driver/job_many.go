package driver

import (
	"fmt"
	"time"
)

// TimeRange bounds a timestamp column in a job filter: From is inclusive,
// Before exclusive, and a nil end is open. The zero TimeRange filters
// nothing; any other range leaves out jobs whose column is NULL
// (attempted_at of a job never run, finalized_at of a live job).
type TimeRange struct {
	// From keeps jobs at or after this time.
	From *time.Time
	// Before keeps jobs strictly before this time.
	Before *time.Time
}

// IsZero reports whether the range is unbounded on both ends (no filter).
func (r TimeRange) IsZero() bool { return r.From == nil && r.Before == nil }

// JobDeleteManyParams selects a batch of jobs to delete: the jobs JobList
// would list with the embedded filters and order (AfterID must be nil),
// at most Limit of them, leaving out running jobs and rows that other
// transactions hold locked.
type JobDeleteManyParams struct {
	JobListParams
}

// JobCancelManyParams selects a batch of jobs to cancel, as
// JobDeleteManyParams does, among the jobs that are not finalized, leaving
// out running jobs already asked to cancel (their metadata has
// cancel_attempted_at). Each gets metadata cancel_attempted_at =
// CancelAttemptedAt (RFC 3339 with nanoseconds); one that is not running
// becomes cancelled with finalized_at = now(); for each running one a
// cancel control notification is sent in the same statement (the others
// are final at once and need none).
type JobCancelManyParams struct {
	JobListParams
	CancelAttemptedAt time.Time
}

// JobRetryManyParams selects a batch of jobs to retry, as
// JobDeleteManyParams does, among the jobs JobRetry would change (not
// running, and not available and already due at Now), and changes each as
// JobRetry does: available, scheduled_at = Now (or now()), finalized_at
// NULL, cancel_attempted_at removed from metadata, max_attempts + 1 when
// attempt = max_attempts. No notification is sent.
type JobRetryManyParams struct {
	JobListParams
	Now *time.Time
}

// ColumnRange is one of a job filter's time ranges and the column it
// bounds.
type ColumnRange struct {
	Column string
	Range  TimeRange
}

// TimeRanges returns the filter's four time ranges with their columns
// (created_at, scheduled_at, attempted_at, finalized_at), or an error for a
// range that is empty or inverted, so that every driver checks them alike.
func (p *JobListParams) TimeRanges() ([]ColumnRange, error) {
	out := []ColumnRange{
		{"created_at", p.CreatedAt},
		{"scheduled_at", p.ScheduledAt},
		{"attempted_at", p.AttemptedAt},
		{"finalized_at", p.FinalizedAt},
	}
	for _, r := range out {
		if r.Range.From != nil && r.Range.Before != nil && !r.Range.From.Before(*r.Range.Before) {
			return nil, fmt.Errorf("%s range is empty or inverted (from %s, before %s)", r.Column,
				r.Range.From.Format(time.RFC3339Nano), r.Range.Before.Format(time.RFC3339Nano))
		}
	}
	return out, nil
}
