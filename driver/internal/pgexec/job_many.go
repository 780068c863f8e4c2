package pgexec

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// jobQuery is a job selection built from driver.JobListParams: the WHERE
// conditions and their arguments, and the order. Every value the caller
// gives is a bind parameter; the only words spliced into the SQL are
// column names and directions chosen from fixed lists.
type jobQuery struct {
	where   []string
	args    []any
	orderBy driver.JobListOrderBy
	desc    bool
	// idsArg is the parameter holding the IDs filter ("" without one).
	idsArg string
}

// arg adds a bind parameter and returns its placeholder.
func (q *jobQuery) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

// newJobQuery validates p's filters and order and builds the conditions
// they make. The cursor (AfterID, AfterValue) is left to the caller.
// leading are arguments of the caller's own SQL, $1 onwards; the filters'
// placeholders follow them.
func newJobQuery(p *driver.JobListParams, leading ...any) (*jobQuery, error) {
	if p.Limit < 1 || p.Limit > 10000 {
		return nil, fmt.Errorf("limit %d out of range 1..10000", p.Limit)
	}
	q := &jobQuery{orderBy: p.OrderBy, desc: p.Desc, args: slices.Clip(leading)}
	if q.orderBy == "" {
		q.orderBy = driver.JobListOrderByID
	}
	switch q.orderBy {
	case driver.JobListOrderByID, driver.JobListOrderByScheduledAt, driver.JobListOrderByCreatedAt,
		driver.JobListOrderByAttemptedAt, driver.JobListOrderByFinalizedAt:
	default:
		return nil, fmt.Errorf("cannot order by %q", q.orderBy)
	}
	if len(p.IDs) > 0 {
		q.idsArg = q.arg(p.IDs)
		q.where = append(q.where, "id = ANY("+q.idsArg+"::bigint[])")
	}
	if len(p.Kinds) > 0 {
		q.where = append(q.where, "kind = ANY("+q.arg(p.Kinds)+"::text[])")
	}
	if len(p.Queues) > 0 {
		q.where = append(q.where, "queue = ANY("+q.arg(p.Queues)+"::text[])")
	}
	if len(p.States) > 0 {
		states := make([]string, len(p.States))
		for i, s := range p.States {
			if !s.Valid() {
				return nil, fmt.Errorf("invalid state %q", s)
			}
			states[i] = string(s)
		}
		q.where = append(q.where, "state::text = ANY("+q.arg(states)+"::text[])")
	}
	if len(p.Priorities) > 0 {
		prios := make([]int16, len(p.Priorities))
		for i, pr := range p.Priorities {
			// The schema allows 1..4 only; checking here also keeps a large
			// int from wrapping around into a valid smallint.
			if pr < 1 || pr > 4 {
				return nil, fmt.Errorf("priority %d out of range 1..4", pr)
			}
			prios[i] = int16(pr)
		}
		q.where = append(q.where, "priority = ANY("+q.arg(prios)+"::smallint[])")
	}
	if p.MetadataContains != nil {
		q.where = append(q.where, "metadata @> "+q.arg(string(p.MetadataContains))+"::jsonb")
	}
	// varchar without a length: a cast to varchar(255) would silently cut
	// a longer tag and match a different one.
	if len(p.TagsAny) > 0 {
		q.where = append(q.where, "tags && "+q.arg(p.TagsAny)+"::varchar[]")
	}
	if len(p.TagsAll) > 0 {
		q.where = append(q.where, "tags @> "+q.arg(p.TagsAll)+"::varchar[]")
	}
	ranges, err := p.TimeRanges()
	if err != nil {
		return nil, err
	}
	for _, r := range ranges {
		if r.Range.From != nil {
			q.where = append(q.where, r.Column+" >= "+q.arg(*r.Range.From)+"::timestamptz")
		}
		if r.Range.Before != nil {
			q.where = append(q.where, r.Column+" < "+q.arg(*r.Range.Before)+"::timestamptz")
		}
	}
	if q.orderBy != driver.JobListOrderByID {
		// Keyset pagination needs a value on every listed row.
		q.where = append(q.where, string(q.orderBy)+" IS NOT NULL")
	}
	return q, nil
}

// after adds the keyset condition that continues after a previous page's
// last row: strictly after (orderBy value, id) in the listing's direction,
// a total order, so rows inserted meanwhile never make a page repeat or
// skip a row that was there all along.
func (q *jobQuery) after(id int64, value *time.Time) error {
	cmp := ">"
	if q.desc {
		cmp = "<"
	}
	if q.orderBy == driver.JobListOrderByID {
		q.where = append(q.where, "id "+cmp+" "+q.arg(id))
		return nil
	}
	if value == nil {
		return errors.New("AfterValue is required with AfterID when not ordering by id")
	}
	v := q.arg(*value)
	q.where = append(q.where, fmt.Sprintf("(%s, id) %s (%s::timestamptz, %s::bigint)", q.orderBy, cmp, v, q.arg(id)))
	return nil
}

// whereSQL is " WHERE ..." with the extra conditions, or "" without any.
func (q *jobQuery) whereSQL(extra ...string) string {
	conds := append(slices.Clip(q.where), extra...)
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// orderSQL is the ORDER BY list of the listing: the order column, then id
// to break ties, both in the listing's direction.
func (q *jobQuery) orderSQL() string {
	return q.orderSQLOf(string(q.orderBy), "id")
}

// orderSQLOf is orderSQL with other expressions for the order column and
// the id (ignoring column when ordering by id).
func (q *jobQuery) orderSQLOf(column, id string) string {
	dir := " ASC"
	if q.desc {
		dir = " DESC"
	}
	if q.orderBy == driver.JobListOrderByID {
		return id + dir
	}
	return column + dir + ", " + id + dir
}

// JobList lists jobs matching the filters, in order, after the cursor.
func (e *executor) JobList(ctx context.Context, p *driver.JobListParams) ([]*millracetype.JobRow, error) {
	q, err := newJobQuery(p)
	if err != nil {
		return nil, fmt.Errorf("job list: %w", err)
	}
	if p.AfterID != nil {
		if err := q.after(*p.AfterID, p.AfterValue); err != nil {
			return nil, fmt.Errorf("job list: %w", err)
		}
	}
	sql := "SELECT " + jobCols + " FROM " + renderSchema(p.Schema, "{{schema}}river_job") + q.whereSQL() +
		" ORDER BY " + q.orderSQL() + " LIMIT " + q.arg(p.Limit)
	rows, err := e.db.Query(ctx, sql, q.args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanJob)
}

// manyOp is what distinguishes the three bulk statements.
type manyOp struct {
	name string
	// target is the condition a row must meet for the op to change it.
	target string
	// change is the data-modifying statement on the locked rows (aliased
	// j, joined to target t), ending in RETURNING.
	change string
	// notify, when set, is a query over the changed rows that sends
	// notifications and counts them in column n (scanned and dropped).
	notify string
}

// jobMany runs one bulk statement: lock a batch of matching rows in list
// order (skipping rows others hold), change them, return them in that
// order. With an IDs filter, the statement changes nothing unless every
// ID names a job; when it changed nothing, the missing IDs are looked up
// and reported.
func (e *executor) jobMany(ctx context.Context, p *driver.JobListParams, op *manyOp, opArgs ...any) ([]*millracetype.JobRow, error) {
	if p.AfterID != nil || p.AfterValue != nil {
		return nil, fmt.Errorf("%s: a cursor (AfterID, AfterValue) is for listing only", op.name)
	}
	// The op's own arguments come first: $1, $2 ... in its SQL.
	q, err := newJobQuery(p, opArgs...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op.name, err)
	}
	table := renderSchema(p.Schema, "{{schema}}river_job")
	extra := []string{op.target}
	if q.idsArg != "" {
		extra = append(extra, "NOT EXISTS (SELECT 1 FROM unnest("+q.idsArg+"::bigint[]) AS want(id) "+
			"WHERE NOT EXISTS (SELECT 1 FROM "+table+" AS r WHERE r.id = want.id))")
	}
	ordCol := "NULL::timestamptz"
	if q.orderBy != driver.JobListOrderByID {
		ordCol = string(q.orderBy)
	}
	sql := "WITH t AS (SELECT id, " + ordCol + " AS ord FROM " + table + q.whereSQL(extra...) +
		" ORDER BY " + q.orderSQL() + " LIMIT " + q.arg(p.Limit) + " FOR UPDATE SKIP LOCKED), " +
		"changed AS (" + renderSchema(p.Schema, op.change) + ")"
	notified := ""
	if op.notify != "" {
		sql += ", notified AS (" + renderSchema(p.Schema, op.notify) + ")"
		notified = ", (SELECT n FROM notified)"
	}
	// The batch comes back in the order it was selected in (by the values
	// the rows had then: a retry changes scheduled_at).
	sql += " SELECT c.*" + notified + " FROM changed AS c JOIN t ON t.id = c.id ORDER BY " + q.orderSQLOf("t.ord", "t.id")
	rows, err := e.db.Query(ctx, sql, q.args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op.name, err)
	}
	jobs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*millracetype.JobRow, error) {
		var s jobScan
		dest := s.dest()
		if op.notify != "" {
			var n int64
			dest = append(dest, &n)
		}
		if err := row.Scan(dest...); err != nil {
			return nil, err
		}
		return s.finish(), nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op.name, err)
	}
	if len(jobs) == 0 && len(p.IDs) > 0 {
		if err := e.requireJobsExist(ctx, p.Schema, p.IDs); err != nil {
			return nil, fmt.Errorf("%s: %w", op.name, err)
		}
	}
	return jobs, nil
}

var sqlJobsMissing = `
SELECT coalesce(array_agg(want.id ORDER BY want.id), '{}')
FROM (SELECT DISTINCT unnest($1::bigint[]) AS id) AS want
WHERE NOT EXISTS (SELECT 1 FROM {{schema}}river_job AS r WHERE r.id = want.id)`

// requireJobsExist returns an error wrapping millracetype.ErrNotFound that
// names the IDs with no job.
func (e *executor) requireJobsExist(ctx context.Context, schema string, ids []int64) error {
	var missing []int64
	if err := e.db.QueryRow(ctx, e.sql.get(schema, &sqlJobsMissing), ids).Scan(&missing); err != nil {
		return err
	}
	if len(missing) == 0 {
		return nil
	}
	names := make([]string, len(missing))
	for i, id := range missing {
		names[i] = strconv.FormatInt(id, 10)
	}
	return fmt.Errorf("jobs %s: %w", strings.Join(names, ", "), millracetype.ErrNotFound)
}

var opDeleteMany = &manyOp{
	name:   "delete jobs",
	target: "state <> 'running'",
	change: `DELETE FROM {{schema}}river_job AS j USING t WHERE j.id = t.id AND j.state <> 'running' RETURNING ` + jobColsJ,
}

func (e *executor) JobDeleteMany(ctx context.Context, p *driver.JobDeleteManyParams) ([]*millracetype.JobRow, error) {
	return e.jobMany(ctx, &p.JobListParams, opDeleteMany)
}

// A running job already asked to cancel is left out: asking again would
// change nothing, and a caller working through batches would get it back
// in every one.
var opCancelMany = &manyOp{
	name: "cancel jobs",
	target: "finalized_at IS NULL AND state NOT IN ('cancelled', 'completed', 'discarded') " +
		"AND NOT (state = 'running' AND metadata ? 'cancel_attempted_at')",
	change: `UPDATE {{schema}}river_job AS j SET
        state = CASE WHEN j.state = 'running' THEN j.state ELSE 'cancelled' END,
        finalized_at = CASE WHEN j.state = 'running' THEN j.finalized_at ELSE now() END,
        metadata = j.metadata || jsonb_build_object('cancel_attempted_at', $1::text)
    FROM t WHERE j.id = t.id AND j.finalized_at IS NULL
    RETURNING ` + jobColsJ,
	notify: `SELECT count(pg_notify({{control_channel}},
        json_build_object('action', 'cancel', 'job_id', id, 'queue', queue)::text)) AS n
    FROM changed WHERE state = 'running'`,
}

func (e *executor) JobCancelMany(ctx context.Context, p *driver.JobCancelManyParams) ([]*millracetype.JobRow, error) {
	return e.jobMany(ctx, &p.JobListParams, opCancelMany, p.CancelAttemptedAt.UTC().Format(time.RFC3339Nano))
}

var opRetryMany = &manyOp{
	name:   "retry jobs",
	target: "state <> 'running' AND NOT (state = 'available' AND scheduled_at <= coalesce($1::timestamptz, now()))",
	change: `UPDATE {{schema}}river_job AS j SET
        state = 'available',
        scheduled_at = coalesce($1::timestamptz, now()),
        finalized_at = NULL,
        metadata = j.metadata - 'cancel_attempted_at',
        max_attempts = CASE WHEN j.attempt = j.max_attempts THEN j.max_attempts + 1 ELSE j.max_attempts END
    FROM t WHERE j.id = t.id AND j.state <> 'running'
    RETURNING ` + jobColsJ,
}

func (e *executor) JobRetryMany(ctx context.Context, p *driver.JobRetryManyParams) ([]*millracetype.JobRow, error) {
	return e.jobMany(ctx, &p.JobListParams, opRetryMany, p.Now)
}
