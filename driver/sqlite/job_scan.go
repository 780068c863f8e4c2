package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/millrace/millrace/millracetype"
)

// jobCols are river_job's columns in the order scanJob reads them.
const jobCols = `id, args, attempt, attempted_at, attempted_by, created_at, errors, finalized_at, kind, max_attempts,
    metadata, priority, queue, scheduled_at, state, tags, unique_key, unique_states`

type rowScanner interface{ Scan(dest ...any) error }

// scanJob reads one row of jobCols.
func scanJob(r rowScanner) (*millracetype.JobRow, error) {
	var (
		j                                 millracetype.JobRow
		args, metadata, tags, kind, queue string
		state, createdAt, scheduledAt     string
		attemptedAt, finalizedAt          sql.NullString
		attemptedBy, errs                 sql.NullString
		uniqueKey                         []byte
		uniqueStates                      sql.NullInt64
	)
	if err := r.Scan(&j.ID, &args, &j.Attempt, &attemptedAt, &attemptedBy, &createdAt, &errs, &finalizedAt, &kind,
		&j.MaxAttempts, &metadata, &j.Priority, &queue, &scheduledAt, &state, &tags, &uniqueKey, &uniqueStates); err != nil {
		return nil, err
	}
	var err error
	fail := func(col string, e error) (*millracetype.JobRow, error) {
		return nil, fmt.Errorf("sqlite: job %d: column %s: %w", j.ID, col, e)
	}
	j.Args, j.Metadata, j.Kind, j.Queue, j.State = []byte(args), []byte(metadata), kind, queue, millracetype.JobState(state)
	if j.AttemptedAt, err = parseTimePtr(attemptedAt); err != nil {
		return fail("attempted_at", err)
	}
	if j.FinalizedAt, err = parseTimePtr(finalizedAt); err != nil {
		return fail("finalized_at", err)
	}
	if j.CreatedAt, err = parseTime(createdAt); err != nil {
		return fail("created_at", err)
	}
	if j.ScheduledAt, err = parseTime(scheduledAt); err != nil {
		return fail("scheduled_at", err)
	}
	if attemptedBy.Valid {
		if err := json.Unmarshal([]byte(attemptedBy.String), &j.AttemptedBy); err != nil {
			return fail("attempted_by", err)
		}
	}
	if errs.Valid {
		if err := json.Unmarshal([]byte(errs.String), &j.Errors); err != nil {
			return fail("errors", err)
		}
		for i := range j.Errors {
			j.Errors[i].At = j.Errors[i].At.UTC()
		}
	}
	if err := json.Unmarshal([]byte(tags), &j.Tags); err != nil {
		return fail("tags", err)
	}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	if uniqueKey != nil {
		j.UniqueKey = uniqueKey
	}
	if uniqueStates.Valid {
		j.UniqueStates = byte(uniqueStates.Int64)
	}
	return &j, nil
}

// loadJobs reads the jobs a WHERE clause (with its ORDER BY and LIMIT)
// selects.
func (e *executor) loadJobs(ctx context.Context, schema, where string, args ...any) ([]*millracetype.JobRow, error) {
	var jobs []*millracetype.JobRow
	err := e.query(ctx, `SELECT `+jobCols+` FROM `+qualify(schema)+`river_job `+where, args, func(r *sql.Rows) error {
		j, err := scanJob(r)
		if err == nil {
			jobs = append(jobs, j)
		}
		return err
	})
	return jobs, err
}

// loadJob reads one job, or fails with an error wrapping
// millracetype.ErrNotFound.
func (e *executor) loadJob(ctx context.Context, schema string, id int64) (*millracetype.JobRow, error) {
	jobs, err := e.loadJobs(ctx, schema, `WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("job %d: %w", id, millracetype.ErrNotFound)
	}
	return jobs[0], nil
}

// loadJobsByID reads the jobs of ids that exist, by id.
func (e *executor) loadJobsByID(ctx context.Context, schema string, ids []int64) ([]*millracetype.JobRow, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return e.loadJobs(ctx, schema, `WHERE id IN (`+placeholders(len(ids))+`) ORDER BY id`, args...)
}

// jobValues are the stored forms of a job's columns, in the order of
// jobWriteCols.
func jobValues(j *millracetype.JobRow) ([]any, error) {
	var attemptedBy, errs any
	if j.AttemptedBy != nil {
		b, err := json.Marshal(j.AttemptedBy)
		if err != nil {
			return nil, err
		}
		attemptedBy = string(b)
	}
	if len(j.Errors) > 0 {
		b, err := json.Marshal(j.Errors)
		if err != nil {
			return nil, err
		}
		errs = string(b)
	}
	tags := j.Tags
	if tags == nil {
		tags = []string{}
	}
	tagsJSON, err := json.Marshal(tags)
	if err != nil {
		return nil, err
	}
	metadata := j.Metadata
	if metadata == nil {
		metadata = []byte(`{}`)
	}
	var uniqueKey, uniqueStates any
	if j.UniqueKey != nil {
		uniqueKey = j.UniqueKey
	}
	if j.UniqueStates != 0 {
		uniqueStates = int64(j.UniqueStates)
	}
	return []any{string(j.Args), j.Attempt, fmtTimePtr(j.AttemptedAt), attemptedBy, fmtTime(j.CreatedAt), errs,
		fmtTimePtr(j.FinalizedAt), j.Kind, j.MaxAttempts, string(metadata), j.Priority, j.Queue, fmtTime(j.ScheduledAt),
		string(j.State), string(tagsJSON), uniqueKey, uniqueStates}, nil
}

const jobWriteCols = `args, attempt, attempted_at, attempted_by, created_at, errors, finalized_at, kind, max_attempts,
    metadata, priority, queue, scheduled_at, state, tags, unique_key, unique_states`

// insertJob inserts a row with every column of j but its id, and sets
// j.ID.
func (e *executor) insertJob(ctx context.Context, schema string, j *millracetype.JobRow) error {
	vals, err := jobValues(j)
	if err != nil {
		return err
	}
	var id int64
	if _, err := e.queryOne(ctx, `INSERT INTO `+qualify(schema)+`river_job (`+jobWriteCols+`) VALUES (`+placeholders(len(vals))+`) RETURNING id`,
		vals, &id); err != nil {
		return err
	}
	j.ID = id
	return nil
}

// inserter inserts many rows with one prepared statement.
type inserter struct {
	stmt *sql.Stmt
}

func (e *executor) newInserter(ctx context.Context, schema string) (*inserter, error) {
	if e.fail != nil {
		return nil, e.fail
	}
	stmt, err := e.q.PrepareContext(ctx, `INSERT INTO `+qualify(schema)+`river_job (`+jobWriteCols+`) VALUES (`+
		placeholders(17)+`) RETURNING id`)
	if err != nil {
		return nil, err
	}
	return &inserter{stmt: stmt}, nil
}

// insert inserts a row with every column of j but its id, and sets j.ID.
func (ins *inserter) insert(ctx context.Context, j *millracetype.JobRow) error {
	vals, err := jobValues(j)
	if err != nil {
		return err
	}
	return ins.stmt.QueryRowContext(ctx, vals...).Scan(&j.ID)
}

func (ins *inserter) close() { _ = ins.stmt.Close() }

// saveJob writes every column of j to its row.
func (e *executor) saveJob(ctx context.Context, schema string, j *millracetype.JobRow) error {
	vals, err := jobValues(j)
	if err != nil {
		return err
	}
	cols := strings.Split(strings.ReplaceAll(jobWriteCols, "\n", ""), ",")
	sets := make([]string, len(cols))
	for i, c := range cols {
		sets[i] = strings.TrimSpace(c) + " = ?"
	}
	_, err = e.exec(ctx, `UPDATE `+qualify(schema)+`river_job SET `+strings.Join(sets, ", ")+` WHERE id = ?`, append(vals, j.ID)...)
	return err
}

// deleteJobs deletes rows by id.
func (e *executor) deleteJobs(ctx context.Context, schema string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	_, err := e.exec(ctx, `DELETE FROM `+qualify(schema)+`river_job WHERE id IN (`+placeholders(len(ids))+`)`, args...)
	return err
}

// mergeObject merges the top-level keys of the JSON object upd into the
// JSON object base (Postgres' jsonb ||).
func mergeObject(base, upd []byte) ([]byte, error) {
	m := map[string]json.RawMessage{}
	if len(base) > 0 {
		if err := json.Unmarshal(base, &m); err != nil {
			return nil, fmt.Errorf("metadata is not a JSON object: %w", err)
		}
		if m == nil {
			return nil, fmt.Errorf("metadata is not a JSON object")
		}
	}
	var u map[string]json.RawMessage
	if err := json.Unmarshal(upd, &u); err != nil {
		return nil, fmt.Errorf("metadata update is not a JSON object: %w", err)
	}
	for k, v := range u {
		m[k] = v
	}
	return json.Marshal(m)
}

// setKey sets one key of a JSON object to a value.
func setKey(base []byte, key string, value any) ([]byte, error) {
	v, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	k, _ := json.Marshal(key)
	return mergeObject(base, []byte(`{`+string(k)+`:`+string(v)+`}`))
}

// deleteKey removes one key of a JSON object.
func deleteKey(base []byte, key string) ([]byte, error) {
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(base, &m); err != nil {
		return nil, err
	}
	delete(m, key)
	return json.Marshal(m)
}

// hasKey reports whether JSON object metadata has a top-level key.
func hasKey(metadata []byte, key string) bool {
	return millracetype.MetadataHasKey(metadata, key)
}

// metadataCount is a counter kept in a metadata key: its whole value when
// it is a JSON number, else 0.
func metadataCount(metadata []byte, key string) int64 {
	var m map[string]any
	if json.Unmarshal(metadata, &m) != nil {
		return 0
	}
	if f, ok := m[key].(float64); ok {
		return int64(f)
	}
	return 0
}

// stateBit is the bit of a state in a unique_states mask.
func stateBit(s millracetype.JobState) byte {
	switch s {
	case millracetype.JobStateAvailable:
		return 1 << 0
	case millracetype.JobStateCancelled:
		return 1 << 1
	case millracetype.JobStateCompleted:
		return 1 << 2
	case millracetype.JobStateDiscarded:
		return 1 << 3
	case millracetype.JobStatePending:
		return 1 << 4
	case millracetype.JobStateRetryable:
		return 1 << 5
	case millracetype.JobStateRunning:
		return 1 << 6
	case millracetype.JobStateScheduled:
		return 1 << 7
	}
	return 0
}

// sqlInUniqueIndex is the condition of river_job_unique_idx, for a row
// aliased o.
const sqlInUniqueIndex = `o.unique_key IS NOT NULL AND o.unique_states IS NOT NULL
    AND ((o.unique_states >> (CASE o.state
        WHEN 'available' THEN 0 WHEN 'cancelled' THEN 1 WHEN 'completed' THEN 2 WHEN 'discarded' THEN 3
        WHEN 'pending' THEN 4 WHEN 'retryable' THEN 5 WHEN 'running' THEN 6 WHEN 'scheduled' THEN 7
        END)) & 1) = 1`

// uniqueHolder returns the live row that holds a unique key in the unique
// index, other than the row except (0 for none), or nil.
func (e *executor) uniqueHolder(ctx context.Context, schema string, key []byte, except int64) (*millracetype.JobRow, error) {
	jobs, err := e.loadJobs(ctx, schema, `AS o WHERE o.unique_key = ? AND o.id <> ? AND `+sqlInUniqueIndex+` LIMIT 1`, key, except)
	if err != nil || len(jobs) == 0 {
		return nil, err
	}
	return jobs[0], nil
}
