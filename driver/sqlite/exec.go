package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/millrace/millrace/driver"
)

// querier is what a *sql.DB and a *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// executor runs the driver's methods on the pool (db set) or inside a
// transaction (tx set).
//
// SQLite has one writer at a time, and the database Open returns begins
// every transaction IMMEDIATE, taking the write lock at BEGIN. So a
// method that must be atomic reads the rows it changes, decides in Go and
// writes them back, all in one transaction (or savepoint): no other
// writer can come in between. That is what Postgres' row locks and SKIP
// LOCKED give the Postgres drivers; here a fetched job is never fetched
// twice because two fetches never overlap.
type executor struct {
	q  querier
	db *sql.DB
	tx *sql.Tx
	// fail, when set, is the error of every call (a driver without a pool).
	fail error
	// txStart is when the executor's transaction began (zero outside one,
	// and in a caller's transaction): the database's now() inside it, as
	// Postgres' now() is its transaction's start.
	txStart time.Time
}

// now is the database's now(): the transaction's start inside one of the
// driver's transactions, else the clock.
func (e *executor) now() time.Time {
	if !e.txStart.IsZero() {
		return e.txStart
	}
	return dbNow()
}

type executorTx struct {
	executor
	// savepoint names the savepoint this executor is, or "" for a
	// transaction.
	savepoint string
	// borrowed is set for a caller's transaction: Commit and Rollback do
	// nothing.
	borrowed bool
	done     bool
}

var (
	_ driver.Executor   = (*executor)(nil)
	_ driver.ExecutorTx = (*executorTx)(nil)
)

// savepointSeq names savepoints uniquely within the process.
var savepointSeq atomic.Uint64

func (e *executor) Begin(ctx context.Context) (driver.ExecutorTx, error) {
	if e.fail != nil {
		return nil, e.fail
	}
	if e.tx == nil {
		tx, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("sqlite: begin: %w", err)
		}
		return &executorTx{executor: executor{q: tx, tx: tx, txStart: dbNow()}}, nil
	}
	name := fmt.Sprintf("millrace_sp_%d", savepointSeq.Add(1))
	if _, err := e.tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return nil, fmt.Errorf("sqlite: savepoint: %w", err)
	}
	return &executorTx{executor: executor{q: e.tx, tx: e.tx, txStart: e.txStart}, savepoint: name}, nil
}

func (e *executor) Exec(ctx context.Context, query string, args ...any) error {
	if e.fail != nil {
		return e.fail
	}
	_, err := e.q.ExecContext(ctx, query, args...)
	return err
}

func (t *executorTx) Commit(ctx context.Context) error {
	if t.borrowed || t.done {
		return nil
	}
	t.done = true
	if t.savepoint != "" {
		_, err := t.tx.ExecContext(ctx, "RELEASE "+t.savepoint)
		return err
	}
	return t.tx.Commit()
}

func (t *executorTx) Rollback(ctx context.Context) error {
	if t.borrowed || t.done {
		return nil
	}
	t.done = true
	if t.savepoint != "" {
		if _, err := t.tx.ExecContext(ctx, "ROLLBACK TO "+t.savepoint); err != nil {
			return err
		}
		_, err := t.tx.ExecContext(ctx, "RELEASE "+t.savepoint)
		return err
	}
	if err := t.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

// inTx runs fn atomically: in a new transaction on the pool (which takes
// the write lock at BEGIN), or in a savepoint of the executor's own.
func (e *executor) inTx(ctx context.Context, fn func(tx *executor) error) error {
	if e.fail != nil {
		return e.fail
	}
	tx, err := e.Begin(ctx)
	if err != nil {
		return err
	}
	t := tx.(*executorTx)
	defer func() { _ = t.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(&t.executor); err != nil {
		return err
	}
	return t.Commit(ctx)
}

// --- SQL helpers ---

// qualify returns the prefix of a table of schema: `"schema".`, or nothing
// for the empty schema. SQLite's schemas are the connection's databases
// ("main", and any ATTACHed); schema names are validated by millrace's
// callers (letters, digits, underscores), and any double quote is doubled
// here all the same.
func qualify(schema string) string {
	if schema == "" {
		return ""
	}
	return `"` + strings.ReplaceAll(schema, `"`, `""`) + `".`
}

// render replaces "{{schema}}" in a statement.
func render(schema, query string) string {
	return strings.ReplaceAll(query, "{{schema}}", qualify(schema))
}

// placeholders returns "?, ?, ..." for n values.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// --- time ---

// timeLayout is how times are stored: UTC, microseconds, fixed width, so
// that text order is time order.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// dbNow is the database's clock. SQLite runs in this process, so its
// clock is this process's; microseconds, as Postgres keeps.
func dbNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func fmtTime(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(timeLayout) }

// fmtTimePtr is fmtTime for an optional time: nil gives NULL.
func fmtTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return fmtTime(*t)
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		// Rows written by hand may use SQLite's own formats.
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05"} {
			if t2, err2 := time.Parse(layout, s); err2 == nil {
				return t2.UTC(), nil
			}
		}
		return time.Time{}, fmt.Errorf("sqlite: stored time %q: %w", s, err)
	}
	return t, nil
}

func parseTimePtr(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := parseTime(s.String)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// failQuerier fails every call: the querier of a driver without a pool
// (executor.fail is set too, and checked first by every helper).
type failQuerier struct{}

var errNoDB = errors.New("sqlite: driver has no *sql.DB")

func (failQuerier) ExecContext(context.Context, string, ...any) (sql.Result, error) {
	return nil, errNoDB
}
func (failQuerier) QueryContext(context.Context, string, ...any) (*sql.Rows, error) {
	return nil, errNoDB
}
func (failQuerier) QueryRowContext(context.Context, string, ...any) *sql.Row { return &sql.Row{} }
func (failQuerier) PrepareContext(context.Context, string) (*sql.Stmt, error) {
	return nil, errNoDB
}

// exec runs a statement and returns how many rows it changed.
func (e *executor) exec(ctx context.Context, query string, args ...any) (int64, error) {
	if e.fail != nil {
		return 0, e.fail
	}
	res, err := e.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// query runs a query and calls scan for each row.
func (e *executor) query(ctx context.Context, query string, args []any, scan func(*sql.Rows) error) error {
	if e.fail != nil {
		return e.fail
	}
	rows, err := e.q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// queryOne runs a query and scans its first row into dest; ok is false
// when it returned none.
func (e *executor) queryOne(ctx context.Context, query string, args []any, dest ...any) (ok bool, err error) {
	err = e.query(ctx, query, args, func(r *sql.Rows) error {
		if ok {
			return nil
		}
		ok = true
		return r.Scan(dest...)
	})
	return ok, err
}
