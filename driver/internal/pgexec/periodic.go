package pgexec

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
)

// The rows and now() in one statement: a row of now() alone (a NULL id)
// when none of the IDs has a row.
var sqlPeriodicJobGetMany = `
SELECT n.now, p.id, p.next_run_at, p.next_from, p.last_run_at, p.created_at, p.updated_at
FROM (SELECT now() AS now) AS n
LEFT JOIN {{schema}}millrace_periodic AS p ON p.id = ANY($1::text[])
ORDER BY p.id`

func (e *executor) PeriodicJobGetMany(ctx context.Context, p *driver.PeriodicJobGetManyParams) (*driver.PeriodicJobGetManyResult, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlPeriodicJobGetMany), nonNilStrings(p.IDs))
	if err != nil {
		return nil, err
	}
	res := &driver.PeriodicJobGetManyResult{}
	var (
		now                          time.Time
		id                           *string
		next, from, created, updated *time.Time
		last                         *time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&now, &id, &next, &from, &last, &created, &updated}, func() error {
		res.Now = now.UTC()
		if id == nil {
			return nil
		}
		row := &driver.PeriodicJobRow{ID: *id, NextRunAt: next.UTC(), NextFrom: from.UTC(), CreatedAt: created.UTC(), UpdatedAt: updated.UTC()}
		if last != nil {
			l := last.UTC()
			row.LastRunAt = &l
		}
		res.Jobs = append(res.Jobs, row)
		return nil
	}); err != nil {
		return nil, err
	}
	return res, nil
}

var sqlPeriodicJobInsertMany = `
INSERT INTO {{schema}}millrace_periodic (id, next_run_at, next_from)
SELECT id, next_run_at, next_from
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS u(id, next_run_at, next_from)
ORDER BY id
ON CONFLICT (id) DO NOTHING`

func (e *executor) PeriodicJobInsertMany(ctx context.Context, p *driver.PeriodicJobInsertManyParams) (int, error) {
	if len(p.Jobs) == 0 {
		return 0, nil
	}
	ids := make([]string, len(p.Jobs))
	next := make([]time.Time, len(p.Jobs))
	from := make([]time.Time, len(p.Jobs))
	for i, j := range p.Jobs {
		ids[i], next[i], from[i] = j.ID, j.NextRunAt, j.NextFrom
	}
	tag, err := e.db.Exec(ctx, e.sql.get(p.Schema, &sqlPeriodicJobInsertMany), ids, next, from)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// The compare-and-set. The rows are locked in ID order first (so that two
// callers with overlapping sets cannot deadlock); a row a concurrent
// transaction changed is compared again, by the UPDATE, in its committed
// version, so a caller that read an older next_run_at changes nothing.
var sqlPeriodicJobAdvanceMany = `
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[])
        AS u(id, expected, next_run_at, next_from, last_run_at)
), locked AS (
    SELECT p.id FROM {{schema}}millrace_periodic AS p
    WHERE p.id IN (SELECT id FROM input)
    ORDER BY p.id
    FOR UPDATE
)
UPDATE {{schema}}millrace_periodic AS p
SET next_run_at = i.next_run_at, next_from = i.next_from,
    last_run_at = coalesce(i.last_run_at, p.last_run_at), updated_at = now()
FROM input AS i
WHERE p.id = i.id AND p.id IN (SELECT id FROM locked) AND p.next_run_at = i.expected
RETURNING p.id`

func (e *executor) PeriodicJobAdvanceMany(ctx context.Context, p *driver.PeriodicJobAdvanceManyParams) ([]string, error) {
	if len(p.Jobs) == 0 {
		return nil, nil
	}
	n := len(p.Jobs)
	ids := make([]string, n)
	expected := make([]time.Time, n)
	next := make([]time.Time, n)
	from := make([]time.Time, n)
	last := make([]*time.Time, n)
	for i, j := range p.Jobs {
		ids[i], expected[i], next[i], from[i], last[i] = j.ID, j.Expected, j.NextRunAt, j.NextFrom, j.LastRunAt
	}
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlPeriodicJobAdvanceMany), ids, expected, next, from, last)
	if err != nil {
		return nil, err
	}
	changed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	slices.Sort(changed)
	return changed, nil
}

var sqlPeriodicJobDeleteMany = `
DELETE FROM {{schema}}millrace_periodic
WHERE id = ANY($1::text[])
    OR ($2::timestamptz IS NOT NULL AND next_run_at < $2 AND NOT (id = ANY($3::text[])))
RETURNING id`

func (e *executor) PeriodicJobDeleteMany(ctx context.Context, p *driver.PeriodicJobDeleteManyParams) ([]string, error) {
	rows, err := e.db.Query(ctx, e.sql.get(p.Schema, &sqlPeriodicJobDeleteMany), nonNilStrings(p.IDs), p.OverdueBefore, nonNilStrings(p.Keep))
	if err != nil {
		return nil, err
	}
	deleted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	slices.Sort(deleted)
	return deleted, nil
}

// nonNilStrings makes a nil list an empty array: pgx sends a nil slice as
// NULL, and "x = ANY(NULL)" is NULL, not false.
func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
