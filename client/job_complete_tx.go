package client

import (
	"context"
	"fmt"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/millracetype"
)

// ErrJobNotRunning is returned (wrapped) when an operation on a running
// job finds it no longer running the attempt being worked.
var ErrJobNotRunning = millracetype.ErrJobNotRunning

// JobCompleteTx marks the job being worked completed inside tx, the
// worker's own transaction, so the job's completion commits or rolls back
// with the worker's writes in tx. The metadata updates made so far
// (RecordOutput, MetadataSet) are written with it. It returns the job as
// completed.
//
// Call it from Work with Work's context and job, and commit or roll back
// tx before Work returns (the client's own write of the outcome waits for
// the row while tx holds it). If tx commits, the job stays exactly as
// JobCompleteTx left it, whatever Work returns, and the client's event is
// EventKindJobCompleted; metadata set after the call is then not stored.
// If tx rolls back, Work's result applies as usual.
//
// An ephemeral job (JobArgsWithEphemeral, QueueConfig.Ephemeral) is
// deleted in tx instead, with its metadata updates; the job returned is
// the row as the completion would have left it (state completed).
//
// Errors (each wrapped): ErrJobNotRunning when the job is not running this
// attempt (already completed, cancelled and rescued, ...); ErrNotFound when
// it was deleted; ErrNotInWorker outside a worker or after Work returned;
// ErrInvalidArgs for a nil job or tx, or a job other than the one being
// worked. TTx must be the client's transaction type (pgx.Tx for pgxv5,
// *sql.Tx for databasesql).
func JobCompleteTx[TTx any, TArgs JobArgs](ctx context.Context, tx TTx, job *Job[TArgs]) (*Job[TArgs], error) {
	st, c, row, err := runningJobTx[TTx](ctx, tx, job)
	if err != nil {
		return nil, fmt.Errorf("complete job in transaction: %w", err)
	}
	now := c.config.clock().UTC()
	exec := c.driver.UnwrapExecutor(tx)
	rows, err := exec.JobSetStateIfRunningMany(ctx, &driver.JobSetStateIfRunningManyParams{Schema: c.config.Schema,
		Jobs: []*driver.JobSetState{{ID: job.ID, State: millracetype.JobStateCompleted, FinalizedAt: &now,
			MetadataUpdates: jobexec.MetadataUpdates(ctx), Attempt: row.Attempt, OnlyIfRunning: true,
			Delete: jobIsEphemeral(ctx, c.config.Workers.lookup(row.Kind))}}})
	if err != nil {
		return nil, fmt.Errorf("complete job %d in transaction: %w", job.ID, err)
	}
	if len(rows) == 0 {
		cur, err := exec.JobGetByID(ctx, &driver.JobGetByIDParams{Schema: c.config.Schema, ID: job.ID})
		if err != nil {
			return nil, fmt.Errorf("complete job %d in transaction: %w", job.ID, err)
		}
		return nil, fmt.Errorf("complete job %d in transaction: it is %s at attempt %d, not running attempt %d: %w",
			job.ID, cur.State, cur.Attempt, row.Attempt, ErrJobNotRunning)
	}
	st.Mu.Lock()
	st.CompletedInTx = rows[0]
	st.Mu.Unlock()
	return &Job[TArgs]{JobRow: rows[0], Args: job.Args}, nil
}
