package pgexec

import (
	"context"
	"fmt"
	"strings"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// Ephemeral jobs: a successful completion that deletes the row
// (driver.JobSetState.Delete) instead of updating it. A DELETE costs
// Postgres a fraction of the completing UPDATE (which, state being
// indexed, is never a HOT update and writes every index again).
//
// A batch with at least one such outcome is written by the completer's
// statement (sqlJobSetStateIfRunningMany) behind a data-modifying CTE:
//
//   - the CTE deletes the rows whose outcome asks for it and that are
//     still ours (running, the outcome's attempt), the same condition
//     the UPDATE uses;
//   - the UPDATE then leaves out every row the CTE deleted. It reads the
//     CTE's result, so it runs only once the deletes are known, and the
//     two never act on one row. An outcome asking for a delete whose row
//     is no longer ours (rescued, cancelled, finalized meanwhile) is not
//     deleted and gets the UPDATE's treatment of such rows (its metadata
//     updates merged, unless OnlyIfRunning).
//
// Both statements lock and judge each row as it is now (a row changed by
// a transaction that commits while the statement waits for it is judged
// again), so a job rescued meanwhile is never deleted. A batch without
// deletes uses the plain statement: ephemeral jobs cost nothing to those
// who do not use them.

// jobSetStateDeletes validates the Delete flags of a batch and returns
// them as the statement's parameter, or nil when no outcome deletes.
func jobSetStateDeletes(jobs []*driver.JobSetState) ([]bool, error) {
	var deletes []bool
	for i, j := range jobs {
		if !j.Delete {
			continue
		}
		if j.State != millracetype.JobStateCompleted {
			return nil, fmt.Errorf("job %d: Delete is only valid with state completed (got state %q)", j.ID, j.State)
		}
		if deletes == nil {
			deletes = make([]bool, len(jobs))
		}
		deletes[i] = true
	}
	return deletes, nil
}

// sqlJobSetStateDeleteCTE deletes the rows of ephemeral outcomes that are
// still ours, returning their ids; sqlJobSetStateDeleteCTERows is the same
// returning the rows (deletedJobCols). The rows must be found by
// primary key, one lookup per outcome (as the UPDATE finds its rows):
// given state = 'running' as an index condition, Postgres scans the state
// index's running range instead, which (until a vacuum) holds an entry for
// every job ever deleted, so each batch costs more than the last (1k
// jobs/s in the bench). Comparing state as text keeps that index out of
// the plan.
const sqlJobSetStateDeleteCTE = `
WITH deleted AS (
    DELETE FROM {{schema}}river_job AS j
    USING unnest($1::bigint[], $9::integer[], $11::boolean[], $3::timestamptz[], $8::text[])
        AS d(id, attempt, del, finalized_at, metadata_updates)
    WHERE j.id = d.id AND d.del AND j.state::text = 'running' AND (d.attempt = 0 OR j.attempt = d.attempt)
    RETURNING j.id
)`

var sqlJobSetStateDeleteCTERows = `
WITH deleted AS (
    DELETE FROM {{schema}}river_job AS j
    USING unnest($1::bigint[], $9::integer[], $11::boolean[], $3::timestamptz[], $8::text[])
        AS d(id, attempt, del, finalized_at, metadata_updates)
    WHERE j.id = d.id AND d.del AND j.state::text = 'running' AND (d.attempt = 0 OR j.attempt = d.attempt)
    RETURNING ` + deletedJobCols + `
)`

// sqlJobSetStateSkipDeleted, appended to the completer's UPDATE (whose
// WHERE clause ends its text), leaves out the rows the CTE deleted. NOT IN
// (ids are never NULL) makes Postgres hash the deleted ids once; NOT
// EXISTS would be planned as a nested loop over the CTE, quadratic in the
// batch size.
const sqlJobSetStateSkipDeleted = `
    AND j.id NOT IN (SELECT id FROM deleted)`

// deletedJobCols is the column list of a deleted row as the completion
// would have left it (scan order, as jobColumns).
var deletedJobCols = func() string {
	cols := make([]string, len(jobColumnNames))
	for i, c := range jobColumnNames {
		switch c {
		case "state":
			cols[i] = "'completed'::text AS state"
		case "finalized_at":
			cols[i] = "d.finalized_at AS finalized_at"
		case "metadata":
			// Merged as the UPDATE merges: nothing to merge leaves the
			// metadata as it is.
			cols[i] = "CASE WHEN d.metadata_updates IS NULL THEN j.metadata ELSE j.metadata || d.metadata_updates::jsonb END AS metadata"
		case "unique_states":
			cols[i] = "j.unique_states::integer AS unique_states"
		default:
			cols[i] = "j." + c
		}
	}
	return strings.Join(cols, ", ")
}()

var (
	// sqlJobSetStateDeleting is the completer's statement for a batch with
	// deletes, returning nothing.
	sqlJobSetStateDeleting = sqlJobSetStateDeleteCTE + sqlJobSetStateUpdate + sqlJobSetStateSkipDeleted

	// sqlJobSetStateDeletingRows is the same returning the updated rows
	// and the deleted ones (as completed).
	sqlJobSetStateDeletingRows = sqlJobSetStateDeleteCTERows + `, updated AS (` + sqlJobSetStateUpdate +
		sqlJobSetStateSkipDeleted + `
    RETURNING ` + jobColsJ + `
)
SELECT * FROM updated
UNION ALL
SELECT * FROM deleted`
)

// sqlJobDeleteAll is the statement for a batch whose every outcome deletes
// its row and merges no metadata into a row that has moved on (see
// allDelete): the DELETE alone, without the UPDATE over the same rows that
// a mixed batch needs (which finds every row a second time, then leaves
// out the deleted ones). The rows are judged as the CTE judges them. It
// takes the IDs and attempts only: a deleted row keeps no finalized_at or
// metadata. sqlJobDeleteAllRows returns the deleted rows as completed,
// which takes the outcomes' finalized_at and metadata updates as well.
const sqlJobDeleteAllWhere = `
WHERE j.id = d.id AND j.state::text = 'running' AND (d.attempt = 0 OR j.attempt = d.attempt)`

var (
	sqlJobDeleteAll = `
DELETE FROM {{schema}}river_job AS j
USING unnest($1::bigint[], $2::integer[]) AS d(id, attempt)` + sqlJobDeleteAllWhere
	sqlJobDeleteAllRows = `
DELETE FROM {{schema}}river_job AS j
USING unnest($1::bigint[], $2::integer[], $3::timestamptz[], $4::text[]) AS d(id, attempt, finalized_at, metadata_updates)` +
		sqlJobDeleteAllWhere + `
RETURNING ` + deletedJobCols
)

// allDelete reports whether every outcome of a batch deletes its row and
// none would merge metadata into a row no longer ours (an outcome with
// MetadataUpdates and not OnlyIfRunning, which the mixed statement's
// UPDATE applies), so that sqlJobDeleteAll writes it as the mixed
// statement would.
func allDelete(jobs []*driver.JobSetState) bool {
	for _, j := range jobs {
		if !j.Delete || (j.MetadataUpdates != nil && !j.OnlyIfRunning) {
			return false
		}
	}
	return true
}

// jobDeleteAll writes a batch that allDelete accepts (each outcome's state
// already checked to be completed, jobSetStateDeletes).
func (e *executor) jobDeleteAll(ctx context.Context, p *driver.JobSetStateIfRunningManyParams) ([]*millracetype.JobRow, error) {
	n := len(p.Jobs)
	ids, attempts := make(int8Array, n), make([]int32, n)
	for i, j := range p.Jobs {
		if j.FinalizedAt == nil {
			return nil, fmt.Errorf("job %d: finalized_at must be given exactly for a final state (got state %q)", j.ID, j.State)
		}
		ids[i], attempts[i] = j.ID, int32(j.Attempt)
	}
	if p.NoRows {
		return e.writeOutcomes(ctx, p, &sqlJobDeleteAll, nil, []any{ids, attempts})
	}
	finalizedAt, metadataUpdates := make(timestamptzArray, n), make([]*string, n)
	for i, j := range p.Jobs {
		finalizedAt[i] = j.FinalizedAt
		if j.MetadataUpdates != nil {
			s := string(j.MetadataUpdates)
			metadataUpdates[i] = &s
		}
	}
	return e.writeOutcomes(ctx, p, nil, &sqlJobDeleteAllRows, []any{ids, attempts, finalizedAt, metadataUpdates})
}

// jobSetStateDeleting writes a batch with deletes; args are the plain
// statement's parameters followed by the Delete flags.
func (e *executor) jobSetStateDeleting(ctx context.Context, p *driver.JobSetStateIfRunningManyParams, args []any) ([]*millracetype.JobRow, error) {
	if p.NoRows {
		_, err := e.hotExec(ctx, e.sql.get(p.Schema, &sqlJobSetStateDeleting), args)
		return nil, err
	}
	return e.hotJobs(ctx, e.sql.get(p.Schema, &sqlJobSetStateDeletingRows), args...)
}
