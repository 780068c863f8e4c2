package pgexec

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// The fetch: lock due jobs in priority order, skipping rows others hold,
// and mark them running in the same statement.
//
// The update finds the locked rows with id = ANY(ARRAY(...)), not by joining
// the CTE: the statement is prepared, and Postgres's generic plan for it
// assumes LIMIT $3 takes a tenth of the rows; for a join that means a merge
// join over the whole primary key index, once per fetch (a table of a
// million jobs fetched at a tenth of the speed). The array form is an index
// lookup per locked row whatever the estimate.
var sqlJobGetAvailable = `
WITH locked AS (
    SELECT id FROM {{schema}}river_job
    WHERE state = 'available' AND queue = $1 AND scheduled_at <= coalesce($2::timestamptz, now())
        AND ($5::text[] IS NULL OR kind = ANY($5::text[]))
    ORDER BY priority, scheduled_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE {{schema}}river_job AS j SET
        state = 'running',
        attempt = j.attempt + 1,
        attempted_at = coalesce($2::timestamptz, now()),
        attempted_by = ` + sqlAppendAttemptedBy("$4", "            ") + `
    WHERE j.id = ANY(ARRAY(SELECT id FROM locked))
    RETURNING ` + jobColsJ + `
)
SELECT * FROM updated ORDER BY priority, scheduled_at, id`

// sqlJobGetAvailableAfter is the fetch continuing after a job: the same
// statement with one more condition, the row comparison, which is an index
// condition on (state, queue, priority, scheduled_at, id), so the scan
// starts there. (Written out: a change to the fetch must be made to both.)
var sqlJobGetAvailableAfter = `
WITH locked AS (
    SELECT id FROM {{schema}}river_job
    WHERE state = 'available' AND queue = $1 AND scheduled_at <= coalesce($2::timestamptz, now())
        AND ($5::text[] IS NULL OR kind = ANY($5::text[]))
        AND (priority, scheduled_at, id) > ($6::smallint, $7::timestamptz, $8::bigint)
    ORDER BY priority, scheduled_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE {{schema}}river_job AS j SET
        state = 'running',
        attempt = j.attempt + 1,
        attempted_at = coalesce($2::timestamptz, now()),
        attempted_by = ` + sqlAppendAttemptedBy("$4", "            ") + `
    WHERE j.id = ANY(ARRAY(SELECT id FROM locked))
    RETURNING ` + jobColsJ + `
)
SELECT * FROM updated ORDER BY priority, scheduled_at, id`

func (e *executor) JobGetAvailable(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
	if p.Max <= 0 {
		return nil, nil
	}
	var kinds []string
	if len(p.Kinds) > 0 {
		kinds = p.Kinds
	}
	if a := p.After; a != nil {
		return e.hotJobs(ctx, e.sql.get(p.Schema, &sqlJobGetAvailableAfter), p.Queue, p.Now, p.Max, p.ClientID, kinds,
			int16(a.Priority), a.ScheduledAt, a.ID)
	}
	return e.hotJobs(ctx, e.sql.get(p.Schema, &sqlJobGetAvailable), p.Queue, p.Now, p.Max, p.ClientID, kinds)
}

// sqlJobReturnUnstarted undoes fetches (driver.JobReturnUnstarted). The
// conditions read the row being updated, so a job cancelled, rescued or
// finished meanwhile is judged as it is now.
var sqlJobReturnUnstarted = `
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::smallint[]) AS t(id, attempt)
), updated AS (
    UPDATE {{schema}}river_job AS j SET
        state = CASE WHEN j.metadata ? 'cancel_attempted_at' THEN 'cancelled'::{{schema}}river_job_state
            ELSE 'available'::{{schema}}river_job_state END,
        finalized_at = CASE WHEN j.metadata ? 'cancel_attempted_at' THEN now() END,
        attempt = j.attempt - 1,
        attempted_at = CASE WHEN j.attempt > 1 THEN j.attempted_at END,
        attempted_by = j.attempted_by[1:cardinality(j.attempted_by) - 1]
    FROM input
    WHERE j.id = input.id AND j.state = 'running' AND j.attempt = input.attempt AND j.attempt > 0
        AND j.attempted_by[cardinality(j.attempted_by)] = $3::text
    RETURNING ` + jobColsJ + `
)
SELECT *, CASE WHEN $4::text <> '' AND EXISTS (SELECT 1 FROM updated WHERE state = 'available')
    THEN (SELECT count(pg_notify({{insert_channel}}, $4::text))) ELSE 0 END AS notified
FROM updated`

// JobReturnUnstarted implements driver.Executor.
func (e *executor) JobReturnUnstarted(ctx context.Context, p *driver.JobReturnUnstartedParams) ([]*millracetype.JobRow, error) {
	if len(p.IDs) != len(p.Attempts) {
		return nil, fmt.Errorf("job return: %d IDs but %d attempts", len(p.IDs), len(p.Attempts))
	}
	if len(p.IDs) == 0 {
		return nil, nil
	}
	attempts := make([]int16, len(p.Attempts))
	for i, a := range p.Attempts {
		attempts[i] = int16(a)
	}
	payload := ""
	if p.NotifyQueue != "" {
		payload = driver.InsertNotifyPayload(p.NotifyQueue)
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobReturnUnstarted), p.IDs, attempts, p.ClientID, payload)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanJobNotified)
}

// sqlAppendAttemptedBy is the SQL of j.attempted_by with the client given
// by parameter param appended, keeping the last 100 (River's rule), its
// second and third lines indented by indent.
func sqlAppendAttemptedBy(param, indent string) string {
	return "CASE WHEN cardinality(j.attempted_by) >= 100\n" +
		indent + "THEN j.attempted_by[cardinality(j.attempted_by) - 98:] || " + param + "::text\n" +
		indent + "ELSE array_append(j.attempted_by, " + param + "::text) END"
}

// metadataCount is the SQL for a counter kept in a metadata key
// (river:rescue_count; the completer's statement writes the same
// expression out for snoozes): the key's value when it is a JSON number
// (whole part), else 0. A row whose metadata holds something else there (a
// string, an object, metadata that is not an object at all) must not fail
// the statement, which writes a whole batch of jobs.
func metadataCount(metadata, key string) string {
	return "(CASE WHEN jsonb_typeof(" + metadata + " -> '" + key + "') = 'number' THEN trunc((" +
		metadata + " ->> '" + key + "')::numeric) ELSE 0 END)"
}

// The completer's statement. Conditions read the row version being updated
// (not a snapshot taken earlier), so a job rescued or cancelled meanwhile is
// judged as it is now. A row is the outcome's own ("ours") while it runs the
// outcome's attempt (any attempt when the outcome gives none): the
// condition (j.state = 'running' AND (u.attempt = 0 OR j.attempt =
// u.attempt)), written out wherever it applies.
//
// The statement's variants (returning rows, deleting: see
// job_set_state_delete.go) are this text with fixed text around it.
const sqlJobSetStateUpdate = `
UPDATE {{schema}}river_job AS j SET
    state = CASE
        WHEN NOT (j.state = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt)) THEN j.state
        WHEN u.state IN ('available', 'retryable', 'scheduled') AND j.metadata ? 'cancel_attempted_at' THEN 'cancelled'
        ELSE u.state::{{schema}}river_job_state END,
    finalized_at = CASE
        WHEN NOT (j.state = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt)) THEN j.finalized_at
        WHEN u.state IN ('available', 'retryable', 'scheduled') AND j.metadata ? 'cancel_attempted_at' THEN now()
        ELSE u.finalized_at END,
    scheduled_at = CASE
        WHEN NOT (j.state = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt)) OR u.scheduled_at IS NULL THEN j.scheduled_at
        WHEN u.state IN ('available', 'retryable', 'scheduled') AND j.metadata ? 'cancel_attempted_at' THEN j.scheduled_at
        ELSE u.scheduled_at END,
    attempt = CASE
        WHEN (j.state = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt)) AND u.attempt_decrement
            AND NOT (u.state IN ('available', 'retryable', 'scheduled') AND j.metadata ? 'cancel_attempted_at')
        THEN greatest(j.attempt - 1, 0)
        ELSE j.attempt END,
    errors = CASE WHEN (j.state = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt)) AND u.error IS NOT NULL
        THEN array_append(j.errors, u.error::jsonb) ELSE j.errors END,
    metadata = CASE
        -- Nothing to merge: leave the metadata as it is (concatenating an
        -- empty object would wrap metadata that is not an object in an array).
        WHEN u.metadata_updates IS NULL AND NOT ((j.state = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt)) AND u.snooze_increment
            AND NOT (u.state IN ('available', 'retryable', 'scheduled') AND j.metadata ? 'cancel_attempted_at'))
        THEN j.metadata
        ELSE j.metadata || coalesce(u.metadata_updates::jsonb, '{}'::jsonb) || CASE
            WHEN (j.state = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt)) AND u.snooze_increment
                AND NOT (u.state IN ('available', 'retryable', 'scheduled') AND j.metadata ? 'cancel_attempted_at')
            THEN jsonb_build_object('snoozes', (CASE WHEN jsonb_typeof(j.metadata -> 'snoozes') = 'number' THEN trunc((j.metadata ->> 'snoozes')::numeric) ELSE 0 END) + 1)
            ELSE '{}'::jsonb END
        END
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::boolean[],
        $7::boolean[], $8::text[], $9::integer[], $10::boolean[])
    AS u(id, state, finalized_at, scheduled_at, error, attempt_decrement, snooze_increment, metadata_updates, attempt,
        only_if_running)
WHERE j.id = u.id AND ((j.state = 'running' AND (u.attempt = 0 OR j.attempt = u.attempt))
    OR (u.metadata_updates IS NOT NULL AND NOT u.only_if_running AND (u.attempt = 0 OR j.attempt = u.attempt)))`

// sqlJobSetStateIfRunningMany is the completer's statement returning
// nothing.
var sqlJobSetStateIfRunningMany = sqlJobSetStateUpdate

// sqlJobSetStateIfRunningManyRows is the completer's statement returning
// the changed rows.
var sqlJobSetStateIfRunningManyRows = sqlJobSetStateUpdate + `
RETURNING ` + jobColsJ

func (e *executor) JobSetStateIfRunningMany(ctx context.Context, p *driver.JobSetStateIfRunningManyParams) ([]*millracetype.JobRow, error) {
	n := len(p.Jobs)
	if n == 0 {
		return nil, nil
	}
	if allComplete(p.Jobs) { // plain completions: job_set_state_complete.go
		ids, attempts, finalizedAt := make(int8Array, n), make([]int32, n), make(timestamptzArray, n)
		for i, j := range p.Jobs {
			ids[i], attempts[i], finalizedAt[i] = j.ID, int32(j.Attempt), j.FinalizedAt
		}
		return e.jobCompleteAll(ctx, p, ids, attempts, finalizedAt)
	}
	deletes, err := jobSetStateDeletes(p.Jobs) // ephemeral jobs: job_set_state_delete.go
	if err != nil {
		return nil, err
	}
	if deletes != nil && allDelete(p.Jobs) {
		return e.jobDeleteAll(ctx, p)
	}
	var (
		ids              = make(int8Array, n)
		states           = make([]string, n)
		finalizedAt      = make(timestamptzArray, n)
		scheduledAt      = make(timestamptzArray, n)
		errs             = make([]*string, n)
		attemptDecrement = make([]bool, n)
		snoozeIncrement  = make([]bool, n)
		metadataUpdates  = make([]*string, n)
		attempts         = make([]int32, n)
		onlyIfRunning    = make([]bool, n)
	)
	for i, j := range p.Jobs {
		if !j.State.Valid() {
			return nil, fmt.Errorf("job %d: invalid state %q", j.ID, j.State)
		}
		if j.State.Finalized() != (j.FinalizedAt != nil) {
			return nil, fmt.Errorf("job %d: finalized_at must be given exactly for a final state (got state %q)", j.ID, j.State)
		}
		ids[i] = j.ID
		states[i] = string(j.State)
		finalizedAt[i] = j.FinalizedAt
		scheduledAt[i] = j.ScheduledAt
		if j.Error != nil {
			s, err := encodeError(j.Error)
			if err != nil {
				return nil, fmt.Errorf("job %d: encode error: %w", j.ID, err)
			}
			errs[i] = &s
		}
		attemptDecrement[i] = j.AttemptDecrement
		snoozeIncrement[i] = j.SnoozeIncrement
		if j.MetadataUpdates != nil {
			s := string(j.MetadataUpdates)
			metadataUpdates[i] = &s
		}
		attempts[i] = int32(j.Attempt)
		onlyIfRunning[i] = j.OnlyIfRunning
	}
	args := []any{ids, states, finalizedAt, scheduledAt, errs, attemptDecrement, snoozeIncrement, metadataUpdates, attempts, onlyIfRunning}
	if deletes != nil {
		rows, err := e.jobSetStateDeleting(ctx, p, append(args, deletes))
		if p.Applied != nil {
			*p.Applied = len(rows)
			if p.NoRows {
				*p.Applied = -1
			}
		}
		return rows, err
	}
	return e.writeOutcomes(ctx, p, &sqlJobSetStateIfRunningMany, &sqlJobSetStateIfRunningManyRows, args)
}

// writeOutcomes runs a completer statement whose every changed row counts
// as applied: noRows (returning nothing) when p.NoRows, else withRows.
func (e *executor) writeOutcomes(ctx context.Context, p *driver.JobSetStateIfRunningManyParams, noRows, withRows *string,
	args []any) ([]*millracetype.JobRow, error) {
	if p.NoRows {
		tag, err := e.hotExec(ctx, e.sql.get(p.Schema, noRows), args)
		if p.Applied != nil {
			*p.Applied = int(tag.RowsAffected())
		}
		return nil, err
	}
	rows, err := e.hotJobs(ctx, e.sql.get(p.Schema, withRows), args...)
	if p.Applied != nil {
		*p.Applied = len(rows)
	}
	return rows, err
}

var sqlJobGetByID = `SELECT ` + jobCols + ` FROM {{schema}}river_job WHERE id = $1`

func (e *executor) JobGetByID(ctx context.Context, p *driver.JobGetByIDParams) (*millracetype.JobRow, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobGetByID), p.ID)
	if err != nil {
		return nil, err
	}
	return oneJob(rows, p.ID)
}

// oneJob collects exactly one job or reports it not found.
func oneJob(rows pgx.Rows, id int64) (*millracetype.JobRow, error) {
	job, err := pgx.CollectExactlyOneRow(rows, scanJob)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("job %d: %w", id, millracetype.ErrNotFound)
	}
	return job, err
}

var sqlJobGetByIDMany = `SELECT ` + jobCols + ` FROM {{schema}}river_job WHERE id = ANY($1::bigint[]) ORDER BY id`

func (e *executor) JobGetByIDMany(ctx context.Context, p *driver.JobGetByIDManyParams) ([]*millracetype.JobRow, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobGetByIDMany), p.IDs)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanJob)
}

// The single-job admin statements (cancel, retry, delete) lock the row
// first and judge and return it as the lock gives it. Under READ COMMITTED
// a statement that waits for a row lock held by another call still reads
// the table with the snapshot it took before the wait; only the locking
// read (the CTE locked, its SELECT ... FOR UPDATE) gets the row's newest
// version once the other transaction commits, and no row when it deleted
// the job. So:
//
//   - every condition on the row is a condition on locked (l), never on
//     the table as the change scans it: a condition there would be judged
//     on the snapshot's version, and could even drop the row before locked
//     is read, so that the statement neither waits nor sees the change;
//   - the change joins the table to locked by id alone, so Postgres
//     re-reads the newest version for it as it writes (its SET reads
//     that version);
//   - the row returned when nothing changed is locked's, never a fresh read
//     of the table.
//
// The call that waited thus acts on, and returns, the row as the winner
// left it (and finds no job when the winner deleted it).

// The cancel: every non-finalized job gets cancel_attempted_at and a control
// notification; one that is not running is cancelled at once. A finalized
// job comes back unchanged (second branch).
var sqlJobCancel = `
WITH locked AS (
    SELECT ` + jobCols + ` FROM {{schema}}river_job WHERE id = $1 FOR UPDATE
), updated AS (
    UPDATE {{schema}}river_job AS j SET
        state = CASE WHEN j.state = 'running' THEN j.state ELSE 'cancelled' END,
        finalized_at = CASE WHEN j.state = 'running' THEN j.finalized_at ELSE now() END,
        metadata = j.metadata || jsonb_build_object('cancel_attempted_at', $2::text)
    FROM locked AS l WHERE j.id = l.id AND l.finalized_at IS NULL
    RETURNING ` + jobColsJ + `
)
SELECT *, (SELECT count(pg_notify({{control_channel}},
        json_build_object('action', 'cancel', 'job_id', id, 'queue', queue)::text)) FROM updated)
FROM updated
UNION ALL
SELECT *, 0 FROM locked WHERE NOT EXISTS (SELECT 1 FROM updated)`

func (e *executor) JobCancel(ctx context.Context, p *driver.JobCancelParams) (*millracetype.JobRow, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobCancel), p.ID, p.CancelAttemptedAt.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return nil, err
	}
	job, err := pgx.CollectExactlyOneRow(rows, scanJobNotified)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("job %d: %w", p.ID, millracetype.ErrNotFound)
	}
	return job, err
}

// The retry: see the single-job admin statements above for why every
// condition reads locked.
var sqlJobRetry = `
WITH locked AS (
    SELECT ` + jobCols + ` FROM {{schema}}river_job WHERE id = $1 FOR UPDATE
), updated AS (
    UPDATE {{schema}}river_job AS j SET
        state = 'available',
        scheduled_at = coalesce($2::timestamptz, now()),
        finalized_at = NULL,
        metadata = j.metadata - 'cancel_attempted_at',
        max_attempts = CASE WHEN j.attempt = j.max_attempts THEN j.max_attempts + 1 ELSE j.max_attempts END
    FROM locked AS l
    WHERE j.id = l.id AND l.state <> 'running'
        AND NOT (l.state = 'available' AND l.scheduled_at <= coalesce($2::timestamptz, now()))
    RETURNING ` + jobColsJ + `
)
SELECT * FROM updated
UNION ALL
SELECT * FROM locked WHERE NOT EXISTS (SELECT 1 FROM updated)`

func (e *executor) JobRetry(ctx context.Context, p *driver.JobRetryParams) (*millracetype.JobRow, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobRetry), p.ID, p.Now)
	if err != nil {
		return nil, err
	}
	return oneJob(rows, p.ID)
}

// The delete: see the single-job admin statements above for why every
// condition reads locked.
var sqlJobDelete = `
WITH locked AS (
    SELECT ` + jobCols + ` FROM {{schema}}river_job WHERE id = $1 FOR UPDATE
), deleted AS (
    DELETE FROM {{schema}}river_job AS j USING locked AS l
    WHERE j.id = l.id AND l.state <> 'running'
    RETURNING ` + jobColsJ + `
)
SELECT true, * FROM deleted
UNION ALL
SELECT false, * FROM locked WHERE NOT EXISTS (SELECT 1 FROM deleted)`

func (e *executor) JobDelete(ctx context.Context, p *driver.JobDeleteParams) (*millracetype.JobRow, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobDelete), p.ID)
	if err != nil {
		return nil, err
	}
	var deleted bool
	job, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (*millracetype.JobRow, error) {
		var s jobScan
		if err := row.Scan(append([]any{&deleted}, s.dest()...)...); err != nil {
			return nil, err
		}
		return s.finish(), nil
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("job %d: %w", p.ID, millracetype.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if !deleted {
		return job, fmt.Errorf("delete job %d: %w", p.ID, millracetype.ErrJobRunning)
	}
	return job, nil
}

// The scheduler's statement. Within the batch, the first job of a unique key
// (in fetch order) may go on; the others, and any whose key is held by a
// live job outside the batch, are discarded.
var sqlJobSchedule = `
WITH due AS (
    SELECT id, unique_key, unique_states, priority, scheduled_at
    FROM {{schema}}river_job
    WHERE state IN ('retryable', 'scheduled') AND scheduled_at <= $1
    ORDER BY priority, scheduled_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), ranked AS (
    SELECT id, unique_key,
        CASE WHEN unique_key IS NOT NULL AND unique_states IS NOT NULL
                AND {{schema}}river_job_state_in_bitmask(unique_states, 'available')
            THEN row_number() OVER (PARTITION BY unique_key ORDER BY priority, scheduled_at, id) END AS rank
    FROM due
), verdict AS (
    SELECT r.id, r.rank IS NOT NULL AND (r.rank > 1 OR EXISTS (
        SELECT 1 FROM {{schema}}river_job AS o
        WHERE o.unique_key = r.unique_key AND o.unique_states IS NOT NULL
            AND {{schema}}river_job_state_in_bitmask(o.unique_states, o.state)
            AND o.id NOT IN (SELECT id FROM due))) AS conflict
    FROM ranked AS r
)
UPDATE {{schema}}river_job AS j SET
    state = CASE WHEN v.conflict THEN 'discarded'::{{schema}}river_job_state ELSE 'available' END,
    finalized_at = CASE WHEN v.conflict THEN $3::timestamptz END,
    metadata = CASE WHEN v.conflict
        THEN j.metadata || '{"unique_key_conflict": "scheduler_discarded"}'::jsonb ELSE j.metadata END
FROM verdict AS v
WHERE j.id = v.id
RETURNING ` + jobColsJ + `, v.conflict`

func (e *executor) JobSchedule(ctx context.Context, p *driver.JobScheduleParams) ([]*driver.JobScheduleResult, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobSchedule), p.Horizon, p.Max, p.Now)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*driver.JobScheduleResult, error) {
		var s jobScan
		var conflict bool
		if err := row.Scan(append(s.dest(), &conflict)...); err != nil {
			return nil, err
		}
		return &driver.JobScheduleResult{Job: s.finish(), ConflictDiscarded: conflict}, nil
	})
}

// The rescuer's page of stuck jobs: after the previous page's last id, so
// a page of jobs the rescuer must leave running is passed over, not read
// again.
var sqlJobGetStuck = `SELECT ` + jobCols + ` FROM {{schema}}river_job
WHERE state = 'running' AND attempted_at < $1 AND id > $3 ORDER BY id LIMIT $2`

// sqlJobGetStuckSkipLive is the same page leaving out the jobs of clients
// alive in millrace_client. (Written out: a change to the page must be made
// to both.)
var sqlJobGetStuckSkipLive = `SELECT ` + jobCols + ` FROM {{schema}}river_job
WHERE state = 'running' AND attempted_at < $1 AND id > $3
    AND NOT EXISTS (SELECT 1 FROM {{schema}}millrace_client AS c
        WHERE c.client_id = attempted_by[cardinality(attempted_by)] AND c.heartbeat_at >= now() - c.heartbeat_timeout)
ORDER BY id LIMIT $2`

func (e *executor) JobGetStuck(ctx context.Context, p *driver.JobGetStuckParams) ([]*millracetype.JobRow, error) {
	if p.Max <= 0 {
		return nil, fmt.Errorf("get stuck jobs: max %d must be positive", p.Max)
	}
	var rows pgx.Rows
	var err error
	if p.SkipLiveClients {
		rows, err = e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobGetStuckSkipLive), p.StuckHorizon, p.Max, p.AfterID)
	} else {
		rows, err = e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobGetStuck), p.StuckHorizon, p.Max, p.AfterID)
	}
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanJob)
}

var sqlJobRescueMany = `
WITH locked AS (
    SELECT id FROM {{schema}}river_job WHERE id = ANY($1::bigint[]) FOR UPDATE SKIP LOCKED
)
UPDATE {{schema}}river_job AS j SET
    state = u.state::{{schema}}river_job_state,
    scheduled_at = u.scheduled_at,
    finalized_at = u.finalized_at,
    errors = array_append(j.errors, u.error::jsonb),
    metadata = j.metadata || jsonb_build_object('river:rescue_count', ` + metadataCount("j.metadata", "river:rescue_count") + ` + 1)
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $7::integer[])
    AS u(id, state, scheduled_at, finalized_at, error, attempt)
WHERE j.id = u.id AND j.id IN (SELECT id FROM locked) AND j.state = 'running'
    AND ($6::timestamptz IS NULL OR j.attempted_at < $6::timestamptz)
    AND (u.attempt = 0 OR j.attempt = u.attempt)`

func (e *executor) JobRescueMany(ctx context.Context, p *driver.JobRescueManyParams) (int, error) {
	n := len(p.Jobs)
	if n == 0 {
		return 0, nil
	}
	ids := make([]int64, n)
	states := make([]string, n)
	scheduledAt := make([]time.Time, n)
	finalizedAt := make([]*time.Time, n)
	errs := make([]string, n)
	attempts := make([]int32, n)
	for i, j := range p.Jobs {
		attempts[i] = int32(j.Attempt)
		if j.State.Finalized() != (j.FinalizedAt != nil) {
			return 0, fmt.Errorf("job %d: finalized_at must be given exactly for a final state (got state %q)", j.ID, j.State)
		}
		s, err := encodeError(&j.Error)
		if err != nil {
			return 0, err
		}
		ids[i], states[i], scheduledAt[i], finalizedAt[i], errs[i] = j.ID, string(j.State), j.ScheduledAt, j.FinalizedAt, s
	}
	tag, err := e.db.Exec(ctx, e.sql.get(p.Schema, &sqlJobRescueMany), ids, states, scheduledAt, finalizedAt, errs, p.StuckHorizon, attempts)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

var sqlJobDeleteBefore = `
WITH doomed AS (
    SELECT id FROM {{schema}}river_job
    WHERE (state = 'completed' AND finalized_at < $1::timestamptz)
        OR (state = 'cancelled' AND finalized_at < $2::timestamptz)
        OR (state = 'discarded' AND finalized_at < $3::timestamptz)
    ORDER BY id
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
DELETE FROM {{schema}}river_job WHERE id IN (SELECT id FROM doomed)`

func (e *executor) JobDeleteBefore(ctx context.Context, p *driver.JobDeleteBeforeParams) (int, error) {
	tag, err := e.db.Exec(ctx, e.sql.get(p.Schema, &sqlJobDeleteBefore),
		p.CompletedFinalizedAtBefore, p.CancelledFinalizedAtBefore, p.DiscardedFinalizedAtBefore, p.Max)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

var sqlJobInsertFull = `
INSERT INTO {{schema}}river_job (args, attempt, attempted_at, attempted_by, created_at, errors, finalized_at,
    kind, max_attempts, metadata, priority, queue, scheduled_at, state, tags, unique_key, unique_states)
VALUES ($1::jsonb, $2, $3, $4, coalesce($5::timestamptz, now()), $6::text[]::jsonb[], $7, $8, $9,
    coalesce($10::jsonb, '{}'::jsonb), $11, $12, coalesce($13::timestamptz, now()),
    $14::{{schema}}river_job_state, $15::varchar(255)[], $16, nullif($17::integer, 0)::bit(8))
RETURNING ` + jobCols

func (e *executor) JobInsertFull(ctx context.Context, p *driver.JobInsertFullParams) (*millracetype.JobRow, error) {
	var errs []string
	for i := range p.Errors {
		s, err := encodeError(&p.Errors[i])
		if err != nil {
			return nil, err
		}
		errs = append(errs, s)
	}
	var metadata *string
	if p.Metadata != nil {
		m := string(p.Metadata)
		metadata = &m
	}
	args := p.Args
	if args == nil {
		args = []byte("{}")
	}
	maxAttempts := p.MaxAttempts
	if maxAttempts == 0 {
		maxAttempts = 25
	}
	priority := p.Priority
	if priority == 0 {
		priority = 1
	}
	queue := p.Queue
	if queue == "" {
		queue = "default"
	}
	state := p.State
	if state == "" {
		state = millracetype.JobStateAvailable
	}
	tags := p.Tags
	if tags == nil {
		tags = []string{}
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobInsertFull), string(args), int16(p.Attempt), p.AttemptedAt,
		p.AttemptedBy, p.CreatedAt, errs, p.FinalizedAt, p.Kind, int16(maxAttempts), metadata, int16(priority), queue,
		p.ScheduledAt, string(state), tags, p.UniqueKey, int32(p.UniqueStates))
	if err != nil {
		return nil, err
	}
	return pgx.CollectExactlyOneRow(rows, scanJob)
}
