// Package pgexec is the Postgres query layer shared by millrace's drivers:
// every statement of driver.Executor, its SQL text and the scanning of its
// rows, written once and run on a small DB interface that each driver
// implements (driver/pgxv5 on a pgx pool, driver/databasesql on a
// *sql.DB of pgx's stdlib).
//
// A DB may offer fast paths through optional interfaces: Copier (COPY for
// JobInsertCopy) and HotRunner (the fetch and the completer's write sent
// as one pipelined batch behind a transaction-local enable_seqscan = off;
// see hot_plan.go). A DB without them gets the plain path: a multi-row INSERT
// from unnest arrays, and the hot statements as lone statements.
package pgexec

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/millrace/millrace/driver"
)

// DB is what the executor needs of a pool, a connection or a transaction.
// Rows and errors are pgx's: a Query's rows are scanned as pgx scans
// them, and a server error is a *pgconn.PgError.
type DB interface {
	// Begin starts a transaction, or a savepoint inside a transaction.
	Begin(ctx context.Context) (Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	// QueryRow returns a row whose Scan gives pgx.ErrNoRows when the
	// query returned none.
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Tx is a transaction (or savepoint) of a DB. Rollback after Commit, or
// twice, returns pgx.ErrTxClosed.
type Tx interface {
	DB
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Copier is a DB that can COPY rows into a table.
type Copier interface {
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// HotRunner is a DB that runs the hot statements behind the setting of
// hot_plan.go, in one implicit transaction per statement. Only a pool
// (never a transaction, where the local setting would outlive the
// statement) may offer it.
type HotRunner interface {
	// HotQuery runs sql with args; read gets its rows and must consume
	// them.
	HotQuery(ctx context.Context, sql string, args []any, read func(pgx.Rows) error) error
	// HotExec runs a statement returning no rows and gives its command
	// tag.
	HotExec(ctx context.Context, sql string, args []any) (pgconn.CommandTag, error)
}

// Batcher is a Tx that sends several statements in one round trip (a pgx
// batch), run one after the other in the transaction, each with its own
// snapshot as separate statements would have.
type Batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Executor implements driver.Executor on a DB.
type Executor = executor

// ExecutorTx implements driver.ExecutorTx on a Tx.
type ExecutorTx = executorTx

var (
	_ driver.Executor        = (*executor)(nil)
	_ driver.ExecutorTx      = (*executorTx)(nil)
	_ driver.LimitLockReader = (*executorTx)(nil)
)

type executor struct {
	db  DB
	sql *SQLCache
}

type executorTx struct {
	executor
	tx Tx
	// borrowed is true for a caller's transaction: Commit and Rollback do
	// nothing, the caller ends it.
	borrowed bool
}

// NewExecutor returns an executor running each call on db, with SQL
// rendered through cache (one per driver).
func NewExecutor(db DB, cache *SQLCache) *Executor {
	return &executor{db: db, sql: cache}
}

// NewExecutorTx returns an executor inside tx. A borrowed tx belongs to
// the caller: the executor's Commit and Rollback do nothing.
func NewExecutorTx(tx Tx, cache *SQLCache, borrowed bool) *ExecutorTx {
	return &executorTx{executor: executor{db: tx, sql: cache}, tx: tx, borrowed: borrowed}
}

// Tx returns the transaction behind the executor.
func (t *executorTx) Tx() Tx { return t.tx }

// Cache returns the SQL cache the executor renders with.
func (e *executor) Cache() *SQLCache { return e.sql }

func (e *executor) Begin(ctx context.Context) (driver.ExecutorTx, error) {
	tx, err := e.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return NewExecutorTx(tx, e.sql, false), nil
}

func (e *executor) Exec(ctx context.Context, sql string, args ...any) error {
	_, err := e.db.Exec(ctx, sql, args...)
	return err
}

func (t *executorTx) Commit(ctx context.Context) error {
	if t.borrowed {
		return nil
	}
	return t.tx.Commit(ctx)
}

func (t *executorTx) Rollback(ctx context.Context) error {
	if t.borrowed {
		return nil
	}
	err := t.tx.Rollback(ctx)
	if errors.Is(err, pgx.ErrTxClosed) {
		return nil
	}
	return err
}

// inTx runs fn in a transaction: the executor's own when it is one (a
// savepoint keeps fn atomic), else a new one on the pool.
func (e *executor) inTx(ctx context.Context, fn func(tx *executor) error) error {
	tx, err := e.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(&executor{db: tx, sql: e.sql}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// SQLCache renders each query template once per schema: "{{schema}}"
// becomes `"schema".` or nothing.
type SQLCache struct {
	mu sync.RWMutex
	m  map[sqlKey]string
}

type sqlKey struct {
	schema string
	tmpl   *string
}

// NewSQLCache returns an empty cache.
func NewSQLCache() *SQLCache { return &SQLCache{m: map[sqlKey]string{}} }

// get returns the template rendered for the schema. Templates are package
// variables, so their addresses identify them cheaply.
func (c *SQLCache) get(schema string, tmpl *string) string {
	k := sqlKey{schema, tmpl}
	c.mu.RLock()
	s, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return s
	}
	s = renderSchema(schema, *tmpl)
	c.mu.Lock()
	c.m[k] = s
	c.mu.Unlock()
	return s
}

func renderSchema(schema, tmpl string) string {
	prefix := ""
	if schema != "" {
		prefix = pgx.Identifier{schema}.Sanitize() + "."
	}
	return strings.NewReplacer(
		"{{schema}}", prefix,
		"{{insert_channel}}", channelExpr(schema, driver.TopicInsert),
		"{{control_channel}}", channelExpr(schema, driver.TopicControl),
		"{{leadership_channel}}", channelExpr(schema, driver.TopicLeadership),
		"{{domain_leadership_channel}}", channelExpr(schema, driver.TopicDomainLeadership),
	).Replace(tmpl)
}

// channel returns the SQL expression for a notification channel of the
// schema: a literal when a schema is configured, else current_schema() read
// by the server (prefix dropped when it is NULL).
func channelExpr(schema, topic string) string {
	if schema != "" {
		return quoteLiteral(schema + "." + topic)
	}
	return "coalesce(current_schema() || '.', '') || " + quoteLiteral(topic)
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// FailDB is a Tx whose every call fails with Err: the DB of a driver that
// has no pool, or of a nil transaction.
type FailDB struct{ Err error }

func (f FailDB) Begin(context.Context) (Tx, error) { return nil, f.Err }
func (f FailDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, f.Err
}
func (f FailDB) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, f.Err }
func (f FailDB) QueryRow(context.Context, string, ...any) pgx.Row        { return failRow(f) }
func (f FailDB) Commit(context.Context) error                            { return f.Err }
func (f FailDB) Rollback(context.Context) error                          { return f.Err }

type failRow FailDB

func (r failRow) Scan(...any) error { return r.Err }
