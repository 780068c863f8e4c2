package millracetest

import (
	"context"
	"fmt"
	"slices"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// pageSize is how many rows one listing query reads.
const pageSize = 1000

// kindsShown is how many other kinds a "no job of this kind" failure
// names.
const kindsShown = 10

// listJobs reads every job of the given kinds, ordered by id (ascending,
// so in insertion order), page by page.
func listJobs(ctx context.Context, exec driver.Executor, schema string, kinds []string) ([]*millracetype.JobRow, error) {
	var all []*millracetype.JobRow
	var after *int64
	for {
		page, err := exec.JobList(ctx, &driver.JobListParams{
			Schema:  schema,
			Kinds:   kinds,
			OrderBy: driver.JobListOrderByID,
			AfterID: after,
			Limit:   pageSize,
		})
		if err != nil {
			return nil, fmt.Errorf("list jobs of kinds %q in %s: %w", kinds, where(schema), err)
		}
		all = append(all, page...)
		if len(page) < pageSize {
			return all, nil
		}
		last := page[len(page)-1].ID
		after = &last
	}
}

// otherKinds lists the distinct kinds among the newest jobs (at most
// kindsShown of them, most recent first) and whether some jobs were not
// looked at.
func otherKinds(ctx context.Context, exec driver.Executor, schema string) (kinds []string, total int, partial bool, err error) {
	rows, err := exec.JobList(ctx, &driver.JobListParams{
		Schema:  schema,
		OrderBy: driver.JobListOrderByID,
		Desc:    true,
		Limit:   pageSize,
	})
	if err != nil {
		return nil, 0, false, fmt.Errorf("list jobs in %s: %w", where(schema), err)
	}
	for _, r := range rows {
		if !slices.Contains(kinds, r.Kind) {
			if len(kinds) == kindsShown {
				partial = true
				break
			}
			kinds = append(kinds, r.Kind)
		}
	}
	return kinds, len(rows), partial || len(rows) == pageSize, nil
}

// where names the schema for messages.
func where(schema string) string {
	if schema == "" {
		return "the search_path"
	}
	return fmt.Sprintf("schema %q", schema)
}

// source is where jobs are read: an executor, and a function to call
// when done with it.
type source struct {
	exec driver.Executor
	done func()
}

// poolSource checks a driver and returns its pool's executor.
func poolSource[TTx any](drv driver.Driver[TTx]) (*source, error) {
	if isNil(drv) {
		return nil, fmt.Errorf("driver is nil")
	}
	if !drv.PoolIsSet() {
		return nil, fmt.Errorf("driver %T has no pool; inside a transaction use the Tx variant", drv)
	}
	return &source{exec: drv.GetExecutor(), done: func() {}}, nil
}

// txSource returns an executor inside a savepoint of tx, which done rolls
// back: the assertion reads only, and a failed query leaves the caller's
// transaction usable.
func txSource[TTx any](ctx context.Context, drv driver.Driver[TTx], tx TTx) (*source, error) {
	if isNil(drv) {
		return nil, fmt.Errorf("driver is nil")
	}
	if isNil(tx) {
		return nil, fmt.Errorf("transaction is nil")
	}
	sp, err := drv.UnwrapExecutor(tx).Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("open a savepoint in the transaction: %w", err)
	}
	return &source{exec: sp, done: func() { _ = sp.Rollback(context.WithoutCancel(ctx)) }}, nil
}
