package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// jobFilter is a job selection built from driver.JobListParams. Every value
// is a bind parameter; only column names and directions from fixed lists
// are spliced into the SQL. MetadataContains (Postgres' @>) is checked in
// Go on the rows the SQL selects.
type jobFilter struct {
	where    []string
	args     []any
	orderBy  driver.JobListOrderBy
	desc     bool
	contains any // decoded MetadataContains, nil without
}

func newJobFilter(p *driver.JobListParams) (*jobFilter, error) {
	if p.Limit < 1 || p.Limit > 10000 {
		return nil, fmt.Errorf("limit %d out of range 1..10000", p.Limit)
	}
	f := &jobFilter{orderBy: p.OrderBy, desc: p.Desc}
	if f.orderBy == "" {
		f.orderBy = driver.JobListOrderByID
	}
	switch f.orderBy {
	case driver.JobListOrderByID, driver.JobListOrderByScheduledAt, driver.JobListOrderByCreatedAt,
		driver.JobListOrderByAttemptedAt, driver.JobListOrderByFinalizedAt:
	default:
		return nil, fmt.Errorf("cannot order by %q", f.orderBy)
	}
	in := func(col string, n int, value func(i int) any) {
		f.where = append(f.where, col+" IN ("+placeholders(n)+")")
		for i := range n {
			f.args = append(f.args, value(i))
		}
	}
	if len(p.IDs) > 0 {
		in("id", len(p.IDs), func(i int) any { return p.IDs[i] })
	}
	if len(p.Kinds) > 0 {
		in("kind", len(p.Kinds), func(i int) any { return p.Kinds[i] })
	}
	if len(p.Queues) > 0 {
		in("queue", len(p.Queues), func(i int) any { return p.Queues[i] })
	}
	if len(p.States) > 0 {
		for _, s := range p.States {
			if !s.Valid() {
				return nil, fmt.Errorf("invalid state %q", s)
			}
		}
		in("state", len(p.States), func(i int) any { return string(p.States[i]) })
	}
	if len(p.Priorities) > 0 {
		for _, pr := range p.Priorities {
			if pr < 1 || pr > 4 {
				return nil, fmt.Errorf("priority %d out of range 1..4", pr)
			}
		}
		in("priority", len(p.Priorities), func(i int) any { return p.Priorities[i] })
	}
	if p.MetadataContains != nil {
		if err := json.Unmarshal(p.MetadataContains, &f.contains); err != nil {
			return nil, fmt.Errorf("metadata filter is not JSON: %w", err)
		}
		if f.contains == nil {
			f.contains = jsonNull{}
		}
	}
	if len(p.TagsAny) > 0 {
		f.where = append(f.where, "EXISTS (SELECT 1 FROM json_each(tags) WHERE value IN ("+placeholders(len(p.TagsAny))+"))")
		for _, t := range p.TagsAny {
			f.args = append(f.args, t)
		}
	}
	for _, t := range p.TagsAll {
		f.where = append(f.where, "EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ?)")
		f.args = append(f.args, t)
	}
	ranges, err := p.TimeRanges()
	if err != nil {
		return nil, err
	}
	for _, r := range ranges {
		if r.Range.From != nil {
			f.where = append(f.where, r.Column+" >= ?")
			f.args = append(f.args, fmtTime(*r.Range.From))
		}
		if r.Range.Before != nil {
			f.where = append(f.where, r.Column+" < ?")
			f.args = append(f.args, fmtTime(*r.Range.Before))
		}
	}
	if f.orderBy != driver.JobListOrderByID {
		f.where = append(f.where, string(f.orderBy)+" IS NOT NULL")
	}
	return f, nil
}

// jsonNull stands for a JSON null filter value.
type jsonNull struct{}

// after adds the keyset condition continuing after a previous page.
func (f *jobFilter) after(id int64, value *time.Time) error {
	cmp := ">"
	if f.desc {
		cmp = "<"
	}
	if f.orderBy == driver.JobListOrderByID {
		f.where = append(f.where, "id "+cmp+" ?")
		f.args = append(f.args, id)
		return nil
	}
	if value == nil {
		return errors.New("AfterValue is required with AfterID when not ordering by id")
	}
	f.where = append(f.where, "("+string(f.orderBy)+", id) "+cmp+" (?, ?)")
	f.args = append(f.args, fmtTime(*value), id)
	return nil
}

func (f *jobFilter) whereSQL() string {
	if len(f.where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(f.where, " AND ")
}

func (f *jobFilter) orderSQL() string {
	dir := " ASC"
	if f.desc {
		dir = " DESC"
	}
	if f.orderBy == driver.JobListOrderByID {
		return " ORDER BY id" + dir
	}
	return " ORDER BY " + string(f.orderBy) + dir + ", id" + dir
}

// list reads up to limit matching jobs in order.
func (e *executor) list(ctx context.Context, schema string, f *jobFilter, limit int) ([]*millracetype.JobRow, error) {
	q := `SELECT ` + jobCols + ` FROM ` + qualify(schema) + `river_job` + f.whereSQL() + f.orderSQL()
	args := f.args
	if f.contains == nil {
		q += ` LIMIT ?`
		args = append(args[:len(args):len(args)], limit)
	}
	jobs := []*millracetype.JobRow{}
	errEnough := errors.New("enough")
	err := e.query(ctx, q, args, func(r *sql.Rows) error {
		j, err := scanJob(r)
		if err != nil {
			return err
		}
		if f.contains != nil && !metadataContains(j.Metadata, f.contains) {
			return nil
		}
		jobs = append(jobs, j)
		if len(jobs) >= limit {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return jobs, err
}

// metadataContains is Postgres' jsonb @> on a stored document.
func metadataContains(doc []byte, want any) bool {
	var have any
	if json.Unmarshal(doc, &have) != nil {
		return false
	}
	if _, ok := want.(jsonNull); ok {
		return have == nil
	}
	return contains(have, want)
}

// contains reports whether JSON value a contains b as jsonb @> does:
// objects contain the pairs they include (recursively), arrays contain
// every element of the other array, scalars are equal.
func contains(a, b any) bool {
	switch bv := b.(type) {
	case map[string]any:
		av, ok := a.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range bv {
			x, ok := av[k]
			if !ok || !contains(x, v) {
				return false
			}
		}
		return true
	case []any:
		av, ok := a.([]any)
		if !ok {
			// A top-level array contains a scalar; not the reverse.
			return false
		}
		for _, want := range bv {
			found := false
			for _, x := range av {
				if contains(x, want) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	default:
		if av, ok := a.([]any); ok {
			for _, x := range av {
				if reflect.DeepEqual(x, b) {
					return true
				}
			}
			return false
		}
		return reflect.DeepEqual(a, b)
	}
}

func (e *executor) JobList(ctx context.Context, p *driver.JobListParams) ([]*millracetype.JobRow, error) {
	f, err := newJobFilter(p)
	if err != nil {
		return nil, fmt.Errorf("job list: %w", err)
	}
	if p.AfterID != nil {
		if err := f.after(*p.AfterID, p.AfterValue); err != nil {
			return nil, fmt.Errorf("job list: %w", err)
		}
	}
	return e.list(ctx, p.Schema, f, p.Limit)
}
