package pgexec

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// The update guards what it expects in its WHERE clause, which Postgres
// re-checks on the row's latest version once it holds the row lock: a
// concurrent completion or rescue is judged as it is now.
var sqlJobUpdate = `
UPDATE {{schema}}river_job SET
    metadata = CASE WHEN $2::jsonb IS NULL THEN metadata ELSE metadata || $2::jsonb END
WHERE id = $1
    AND ($3::integer = 0 OR (state = 'running' AND attempt = $3::integer))
    AND ($2::jsonb IS NULL OR jsonb_typeof(metadata) = 'object')
RETURNING ` + jobCols

func (e *executor) JobUpdate(ctx context.Context, p *driver.JobUpdateParams) (*millracetype.JobRow, error) {
	var merge *string
	if p.MetadataMerge != nil {
		s := string(p.MetadataMerge)
		merge = &s
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobUpdate), p.ID, merge, int32(p.RunningAttempt))
	if err != nil {
		return nil, err
	}
	jobs, err := pgx.CollectRows(rows, scanJob)
	if err != nil {
		return nil, err
	}
	if len(jobs) == 1 {
		return jobs[0], nil
	}
	// Nothing written: say why, from the row as it is now.
	job, err := e.JobGetByID(ctx, &driver.JobGetByIDParams{Schema: p.Schema, ID: p.ID})
	if err != nil {
		return nil, err
	}
	switch {
	case p.RunningAttempt != 0 && (job.State != millracetype.JobStateRunning || job.Attempt != p.RunningAttempt):
		return nil, fmt.Errorf("job %d is %s at attempt %d, not running attempt %d: %w",
			p.ID, job.State, job.Attempt, p.RunningAttempt, millracetype.ErrJobNotRunning)
	case p.MetadataMerge != nil && !isJSONObject(job.Metadata):
		return nil, fmt.Errorf("job %d: stored metadata is not a JSON object; not merging into it", p.ID)
	}
	return nil, fmt.Errorf("job %d changed while it was being updated; nothing written", p.ID)
}

// isJSONObject reports whether raw JSON starts as an object.
func isJSONObject(raw []byte) bool {
	for _, b := range raw {
		switch b {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return b == '{'
	}
	return false
}

// sqlJobMarkRunning is the fetch's change to one chosen job.
var sqlJobMarkRunning = `
UPDATE {{schema}}river_job AS j SET
    state = 'running',
    attempt = j.attempt + 1,
    attempted_at = now(),
    finalized_at = NULL,
    attempted_by = ` + sqlAppendAttemptedBy("$2", "        ") + `
WHERE j.id = $1 AND j.state <> 'running'
RETURNING ` + jobColsJ

func (e *executor) JobMarkRunning(ctx context.Context, p *driver.JobMarkRunningParams) (*millracetype.JobRow, error) {
	if p.ClientID == "" {
		return nil, fmt.Errorf("mark job %d running: empty client ID", p.ID)
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobMarkRunning), p.ID, p.ClientID)
	if err != nil {
		return nil, err
	}
	jobs, err := pgx.CollectRows(rows, scanJob)
	if err != nil {
		return nil, err
	}
	if len(jobs) == 1 {
		return jobs[0], nil
	}
	// Nothing changed: missing, or running already.
	if _, err := e.JobGetByID(ctx, &driver.JobGetByIDParams{Schema: p.Schema, ID: p.ID}); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("mark job %d running: %w", p.ID, millracetype.ErrJobRunning)
}
