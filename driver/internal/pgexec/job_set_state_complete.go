package pgexec

import (
	"context"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// sqlJobCompleteAll is the statement for a batch whose every outcome is a
// plain completion (see allComplete), the outcome of nearly every job of a
// busy queue: it sets state and finalized_at of the rows still running the
// outcome's attempt, as the mixed statement (sqlJobSetStateUpdate) would,
// from three arrays instead of ten and without that statement's CASE over
// every column. The rows are judged as the mixed statement judges them (a
// row that moved on is left alone: no metadata to merge into it). state is
// compared as text so that, as in the mixed statement's plan, the rows are
// found by their IDs and not through the state index (plan_test.go).
const sqlJobCompleteAllFrom = `
UPDATE {{schema}}river_job AS j SET state = 'completed', finalized_at = u.finalized_at
FROM unnest($1::bigint[], $2::integer[], $3::timestamptz[]) AS u(id, attempt, finalized_at)
WHERE j.id = u.id AND j.state::text = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt)`

var (
	sqlJobCompleteAll     = sqlJobCompleteAllFrom
	sqlJobCompleteAllRows = sqlJobCompleteAllFrom + `
RETURNING ` + jobColsJ
)

// allComplete reports whether every outcome of a batch completes its job
// and writes nothing else (no error, no metadata, no snooze, no attempt
// given back, no new scheduled_at, no delete), so that sqlJobCompleteAll
// writes it as the mixed statement would.
func allComplete(jobs []*driver.JobSetState) bool {
	for _, j := range jobs {
		if j.State != millracetype.JobStateCompleted || j.FinalizedAt == nil || j.ScheduledAt != nil || j.Error != nil ||
			j.AttemptDecrement || j.SnoozeIncrement || j.MetadataUpdates != nil || j.Delete {
			return false
		}
	}
	return true
}

// jobCompleteAll writes a batch that allComplete accepts.
func (e *executor) jobCompleteAll(ctx context.Context, p *driver.JobSetStateIfRunningManyParams, ids int8Array, attempts []int32,
	finalizedAt timestamptzArray) ([]*millracetype.JobRow, error) {
	return e.writeOutcomes(ctx, p, &sqlJobCompleteAll, &sqlJobCompleteAllRows, []any{ids, attempts, finalizedAt})
}
